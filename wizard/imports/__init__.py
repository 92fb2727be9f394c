"""Imports: dispatch (and its queue), polling, cancelling, progress, reconciliation, failure advice
and finishing the AMI.
"""
