"""CompleteMultipartUpload in the sandbox: the object, ETag, checksum and errors moto answers,
joined part by part on disk (wizard.sandbox.s3join), not in memory."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.s3.models import MultipartChecksumBuilder

from tests.sandbox.helpers import error_of
from wizard.sandbox import s3join
from wizard.sandbox.testing import SandboxProcess

MIB = 2**20
KEY = "uploads/joined.raw"


def upload(s3: Any, bucket: str, parts: list[bytes], algorithm: str | None = None) -> tuple[str, list[dict]]:
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=KEY, **extra)["UploadId"]
    done = []
    for number, body in enumerate(parts, 1):
        answer = s3.upload_part(Bucket=bucket, Key=KEY, UploadId=upload_id, PartNumber=number, Body=body, **extra)
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
    return upload_id, done


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA256", None])
def test_the_object_is_the_parts_joined_with_s3s_etag_and_checksum(
    sb: SandboxProcess, s3: Any, algorithm: str | None
) -> None:
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB + 3), os.urandom(1000)]
    upload_id, done = upload(s3, sb.bucket, parts, algorithm)
    answer = s3.complete_multipart_upload(
        Bucket=sb.bucket, Key=KEY, UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    md5s = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    assert answer["ETag"] == f'"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-3"'
    got = s3.get_object(Bucket=sb.bucket, Key=KEY)
    assert got["Body"].read() == b"".join(parts)
    head = s3.head_object(Bucket=sb.bucket, Key=KEY, ChecksumMode="ENABLED")
    assert head["ContentLength"] == sum(map(len, parts))
    if algorithm == "CRC32":
        composite = crc32_b64(b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts))
        assert head["ChecksumCRC32"].split("-")[0] == composite
    elif algorithm == "SHA256":
        composite_sha = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
        assert head["ChecksumSHA256"].split("-")[0] == base64.b64encode(composite_sha).decode()


def test_a_wrong_etag_is_invalid_part_and_a_small_part_before_the_last_is_entity_too_small(
    sb: SandboxProcess, s3: Any
) -> None:
    upload_id, done = upload(s3, sb.bucket, [b"small", os.urandom(5 * MIB)])
    wrong = [{**done[0], "ETag": '"0123456789abcdef0123456789abcdef"'}, done[1]]
    complete = s3.complete_multipart_upload
    common = {"Bucket": sb.bucket, "Key": KEY, "UploadId": upload_id}
    assert error_of(complete, **common, MultipartUpload={"Parts": wrong})["Code"] == "InvalidPart"
    assert error_of(complete, **common, MultipartUpload={"Parts": done})["Code"] == "EntityTooSmall"
    # the upload is still there, nothing half-made: with the first part sent again, it completes
    again = s3.upload_part(Bucket=sb.bucket, Key=KEY, UploadId=upload_id, PartNumber=1, Body=os.urandom(5 * MIB))
    fixed = [{"PartNumber": 1, "ETag": again["ETag"]}, done[1]]
    s3.complete_multipart_upload(Bucket=sb.bucket, Key=KEY, UploadId=upload_id, MultipartUpload={"Parts": fixed})
    assert s3.head_object(Bucket=sb.bucket, Key=KEY)["ContentLength"] == 10 * MIB


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_completing_does_not_hold_the_object_in_memory(sb: SandboxProcess, s3: Any) -> None:
    size = 16 * 8 * MIB  # 128 MiB: moto's own join held it three times over (~400 MiB)
    piece = os.urandom(8 * MIB)
    upload_id, done = upload(s3, sb.bucket, [piece] * 16, "CRC32")
    assert sb.pid is not None
    before, peak, stop = rss(sb.pid), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss(sb.pid or 0))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        s3.complete_multipart_upload(Bucket=sb.bucket, Key=KEY, UploadId=upload_id, MultipartUpload={"Parts": done})
    finally:
        stop.set()
        sampler.join()
    assert s3.head_object(Bucket=sb.bucket, Key=KEY)["ContentLength"] == size
    assert peak[0] - before < 48 * MIB, f"RSS {before / MIB:.0f} MiB -> peak {peak[0] / MIB:.0f} MiB"


ALGORITHMS = [None, "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]
KINDS = [None, "COMPOSITE", "FULL_OBJECT"]


@settings(max_examples=150, deadline=None)
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    kind=st.sampled_from(KINDS),
    parts=st.lists(st.lists(st.binary(max_size=300), max_size=4), min_size=1, max_size=5),
)
def test_the_checksum_in_pieces_is_mosts_of_the_whole_parts(
    algorithm: str | None, kind: str | None, parts: list[list[bytes]]
) -> None:
    """Each part given in pieces of any size: moto's checksum of the whole parts."""
    builder = MultipartChecksumBuilder(algorithm, kind)
    for pieces in parts:
        builder.addPart(b"".join(pieces))
    assert s3join.checksum_of(parts, algorithm, kind) == builder.build()
