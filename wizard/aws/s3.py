"""S3 calls: where uploaded images live."""

from __future__ import annotations

from django.conf import settings

from wizard.aws.clients import TargetLike, client


def head_bucket(bucket: str | None = None) -> None:
    """Raises if the upload bucket cannot be reached (used by /healthz)."""
    client("s3", connect_timeout=2, read_timeout=3, retries={"max_attempts": 1}).head_bucket(
        Bucket=bucket or settings.IMPORT_BUCKET
    )


class S3RangeReader:
    """An S3 object as a `wizard.inspect.Reader`: HeadObject once, then ranged GETs (in `target`'s
    account through its role; None: the application's own credentials)."""

    def __init__(self, bucket: str, key: str, target: TargetLike | None = None):
        self.bucket, self.key = bucket, key
        self._s3 = client("s3", target=target)
        self.size = self._s3.head_object(Bucket=bucket, Key=key)["ContentLength"]

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self.size:
            return b""
        end = min(offset + length, self.size) - 1
        return self._s3.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={offset}-{end}")["Body"].read()
