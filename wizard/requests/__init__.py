"""Import requests: drafts and the wizard's steps, the ImportImage and finishing specs, their life
cycle, submission and review.
"""
