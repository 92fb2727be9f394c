"""Every boto3 call of the application lives in this package."""
