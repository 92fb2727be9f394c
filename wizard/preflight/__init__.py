"""Pre-flight: each disk image inspected where it lies (in a limited child process), the account
checks, and the one-click fixes the image settles.
"""
