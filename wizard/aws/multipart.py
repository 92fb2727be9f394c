"""S3 multipart uploads from the browser: create, presign parts, list, complete, abort, head.

The server owns CreateMultipartUpload and CompleteMultipartUpload; the browser only PUTs
parts to presigned URLs, each naming exactly one key, upload id and part number. SigV4
signs the Host header, so URLs are presigned with the endpoint the browser reaches
(`settings.AWS_ENDPOINT_URL` in the sandbox, AWS's own endpoint otherwise).

Uploads carry S3's CRC32 checksums (ChecksumAlgorithm CRC32, composite): the browser
computes each part's CRC32, the part's URL signs it (header x-amz-checksum-crc32), S3
checks the part's bytes against it, and the object's checksum is the CRC32 of the parts'
CRC32s, which the server compares with the browser's at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError
from django.conf import settings

from wizard.aws.clients import client
from wizard.aws.errors import AwsError

# Presigned part URLs are good for this long: enough for one part on a slow link,
# short enough that a leaked URL is soon worthless.
PART_URL_SECONDS = 15 * 60
# S3's limits.
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
MAX_OBJECT_SIZE = 5 * 1024**4
CHECKSUM_ALGORITHM = "CRC32"
CHECKSUM_HEADER = "x-amz-checksum-crc32"


_raise_from = AwsError.from_client_error


# CompleteMultipartUpload can take minutes on a large object (S3 says so; the sandbox
# takes about 30 s for 2 GiB). It waits that long and is not retried: a retry while the
# first call is still joining the parts fails, and `wizard.uploads.uploads.complete` settles a
# lost answer by HEADing the object instead.
COMPLETE_SECONDS = 15 * 60


def _s3(slow: bool = False) -> Any:
    """The S3 client (made once per configuration by wizard.aws.clients). Path-style addressing
    against a custom endpoint (the sandbox), S3's default otherwise."""
    style = "path" if settings.AWS_ENDPOINT_URL else "auto"
    config: dict[str, Any] = {"signature_version": "s3v4", "s3": {"addressing_style": style}}
    if slow:
        config |= {"read_timeout": COMPLETE_SECONDS, "retries": {"mode": "standard", "max_attempts": 1}}
    return client("s3", **config)


@dataclass(frozen=True)
class Part:
    number: int
    etag: str
    size: int = 0
    checksum_crc32: str = ""  # base64 of the big-endian CRC32, as S3 writes it

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"PartNumber": self.number, "ETag": self.etag, "Size": self.size}
        if self.checksum_crc32:
            found["ChecksumCRC32"] = self.checksum_crc32
        return found


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    metadata: dict[str, str]
    checksum_crc32: str = ""  # S3 writes a composite one as "<base64>-<parts>"


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
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
        )
    except ClientError as exc:
        raise _raise_from(exc) from exc
    return answer["UploadId"]


def presign_parts(
    bucket: str, key: str, upload_id: str, checksums: dict[int, str], expires: int = PART_URL_SECONDS
) -> dict[int, tuple[str, dict[str, str]]]:
    """For each part number, the URL the browser PUTs that part's bytes to, and the headers
    it must send with them (the part's CRC32, which the URL signs).

    Each URL names exactly this key, upload id and part number, and expires after
    `expires` seconds. No AWS call: signing is local.
    """
    s3 = _s3()
    return {
        n: (
            s3.generate_presigned_url(
                "upload_part",
                Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": n, "ChecksumCRC32": crc},
                ExpiresIn=expires,
                HttpMethod="PUT",
            ),
            {CHECKSUM_HEADER: crc},
        )
        for n, crc in sorted(checksums.items())
    }


def list_parts(bucket: str, key: str, upload_id: str) -> list[Part]:
    """Every part S3 holds for the upload, in part-number order (all pages)."""
    parts: list[Part] = []
    try:
        for page in _s3().get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id):
            parts.extend(
                Part(p["PartNumber"], p["ETag"], p["Size"], p.get("ChecksumCRC32", "")) for p in page.get("Parts", [])
            )
    except ClientError as exc:
        raise _raise_from(exc) from exc
    return sorted(parts, key=lambda p: p.number)


def complete(bucket: str, key: str, upload_id: str, parts: list[Part]) -> str:
    """Join the parts (number, ETag, CRC32) into the object; returns its ETag."""
    listed = []
    for part in parts:
        entry = {"PartNumber": part.number, "ETag": part.etag}
        if part.checksum_crc32:
            entry["ChecksumCRC32"] = part.checksum_crc32
        listed.append(entry)
    try:
        answer = _s3(slow=True).complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
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
        answer = _s3().head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        raise _raise_from(exc) from exc
    return ObjectInfo(
        size=answer["ContentLength"],
        etag=answer.get("ETag", ""),
        metadata=answer.get("Metadata", {}),
        checksum_crc32=answer.get("ChecksumCRC32", ""),
    )


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
