"""S3 multipart uploads from the browser: create, presign parts, list, complete, abort, head.

The server owns CreateMultipartUpload and CompleteMultipartUpload; the browser only PUTs
parts to presigned URLs, each naming exactly one key, upload id and part number. SigV4
signs the Host header, so URLs are presigned with the endpoint the browser reaches
(`settings.AWS_ENDPOINT_URL` in the sandbox, AWS's own endpoint otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError
from django.conf import settings

from wizard.aws.clients import client

# Presigned part URLs are good for this long: enough for one part on a slow link,
# short enough that a leaked URL is soon worthless.
PART_URL_SECONDS = 15 * 60
# S3's limits.
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
MAX_OBJECT_SIZE = 5 * 1024**4


class MultipartError(Exception):
    """S3 refused a call; `code` and `message` are S3's own words."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _raise_from(exc: ClientError) -> MultipartError:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return MultipartError(error.get("Code", "Unknown"), error.get("Message", str(exc)), status)


def _s3() -> Any:
    return _cached_s3(settings.AWS_SANDBOX, settings.AWS_REGION, settings.AWS_ENDPOINT_URL)


@lru_cache(maxsize=4)
def _cached_s3(sandbox: bool, region: str, endpoint: str) -> Any:
    """One client per configuration: making a boto3 client costs far more than signing a URL.
    (boto3 clients are thread-safe.) Path-style addressing against a custom endpoint
    (the sandbox), S3's default otherwise."""
    style = "path" if endpoint else "auto"
    return client("s3", signature_version="s3v4", s3={"addressing_style": style})


@dataclass(frozen=True)
class Part:
    number: int
    etag: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"PartNumber": self.number, "ETag": self.etag, "Size": self.size}


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    metadata: dict[str, str]


def create(bucket: str, key: str, *, file_name: str) -> str:
    """Start a multipart upload of `key`; returns its UploadId.

    The object is always stored as application/octet-stream; the user's file name
    goes in metadata only (percent-encoded, as S3 metadata is ASCII).
    """
    try:
        answer = _s3().create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ContentType="application/octet-stream",
            Metadata={"file-name": quote(file_name, safe="")},
        )
    except ClientError as exc:
        raise _raise_from(exc) from exc
    return answer["UploadId"]


def presign_parts(
    bucket: str, key: str, upload_id: str, part_numbers: list[int], expires: int = PART_URL_SECONDS
) -> dict[int, str]:
    """For each part number, the URL the browser PUTs that part's bytes to.

    Each URL names exactly this key, upload id and part number, and expires after
    `expires` seconds. No AWS call: signing is local.
    """
    s3 = _s3()
    return {
        n: s3.generate_presigned_url(
            "upload_part",
            Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": n},
            ExpiresIn=expires,
            HttpMethod="PUT",
        )
        for n in part_numbers
    }


def list_parts(bucket: str, key: str, upload_id: str) -> list[Part]:
    """Every part S3 holds for the upload, in part-number order (all pages)."""
    parts: list[Part] = []
    try:
        for page in _s3().get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id):
            parts.extend(Part(p["PartNumber"], p["ETag"], p["Size"]) for p in page.get("Parts", []))
    except ClientError as exc:
        raise _raise_from(exc) from exc
    return sorted(parts, key=lambda p: p.number)


def complete(bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]) -> str:
    """Join the parts (number, ETag) into the object; returns its ETag."""
    try:
        answer = _s3().complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
        )
    except ClientError as exc:
        raise _raise_from(exc) from exc
    return answer.get("ETag", "")


def abort(bucket: str, key: str, upload_id: str) -> None:
    """Abort the upload; S3 drops its parts. An upload S3 no longer knows is fine."""
    try:
        _s3().abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        error = _raise_from(exc)
        if error.code not in ("NoSuchUpload", "404"):
            raise error from exc


def head(bucket: str, key: str) -> ObjectInfo:
    try:
        answer = _s3().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise _raise_from(exc) from exc
    return ObjectInfo(size=answer["ContentLength"], etag=answer.get("ETag", ""), metadata=answer.get("Metadata", {}))


def delete(bucket: str, key: str) -> None:
    try:
        _s3().delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise _raise_from(exc) from exc


def upload_ids(bucket: str, prefix: str = "") -> list[tuple[str, str]]:
    """(key, UploadId) of every multipart upload in progress under `prefix`."""
    found: list[tuple[str, str]] = []
    try:
        for page in _s3().get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            found.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
    except ClientError as exc:
        raise _raise_from(exc) from exc
    return found
