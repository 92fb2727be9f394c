"""S3 calls: where uploaded images live."""

from __future__ import annotations

from django.conf import settings

from wizard.aws.clients import client


def head_bucket(bucket: str | None = None) -> None:
    """Raises if the upload bucket cannot be reached (used by /healthz)."""
    client("s3", connect_timeout=2, read_timeout=3, retries={"max_attempts": 1}).head_bucket(
        Bucket=bucket or settings.IMPORT_BUCKET
    )
