"""CompleteMultipartUpload joined part by part, not in memory.

moto 5.2.5 joins a multipart upload's parts in memory: a bytearray of the whole object, then a
bytes copy of it, then (for a FULL_OBJECT checksum) a third, then the new object's in-memory
buffer before it spills to disk. A 20 GiB disk image completed in the sandbox needs about
60 GiB of memory, and even a 1 GiB one spends seconds in page faults. Here the parts are read
once, 8 MiB at a time, into the new object's own buffer (a temporary file past moto's key
buffer size, 5 MiB by default, as moto keeps every object), the checksum computed on the way.
The answers are moto's: the same ETag, the same checksum and type, the same errors (InvalidPart,
EntityTooSmall, MalformedXML) for the same requests.

`install` patches moto's classes in place; call it before serving.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from moto.core.compat import HAS_CRT
from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
from moto.s3.models import S3_UPLOAD_PART_MIN_SIZE, FakeKey, FakeMultipart
from moto.s3.utils import compute_checksum
from moto.settings import get_s3_default_key_buffer_size
from moto.utilities.utils import md5_hash

CHUNK = 8 * 2**20

_installed = False


class JoinedParts:
    """The bytes of a completed upload, joined in a buffer of their own, for FakeKey.value."""

    def __init__(self, buffer: Any, size: int):
        self.buffer = buffer
        self.size = size


def part_chunks(part: FakeKey) -> Iterator[bytes]:
    """A part's bytes, CHUNK at a time, from its own buffer (memory or temporary file)."""
    with part.lock:
        buffer = part._value_buffer
        buffer.seek(0)
        while chunk := buffer.read(CHUNK):
            yield chunk


class Digest:
    """`compute_checksum(body, algorithm, encode_base64=False)` of moto, fed in pieces."""

    def __init__(self, algorithm: str):
        self.crc = 0
        self.hash: Any = None
        if algorithm == "SHA1":
            self.hash = hashlib.sha1(usedforsecurity=False)
        elif algorithm not in ("CRC32", "CRC32C", "CRC64NVME"):
            self.hash = hashlib.sha256(usedforsecurity=False)
        self.width = 8 if algorithm == "CRC64NVME" and HAS_CRT else 4
        self.update_crc = _crc_function(algorithm)

    def update(self, data: bytes) -> None:
        if self.hash is not None:
            self.hash.update(data)
        else:
            self.crc = self.update_crc(data, self.crc)

    def digest(self) -> bytes:
        if self.hash is not None:
            return bytes(self.hash.digest())
        return self.crc.to_bytes(self.width, "big")


def _crc_function(algorithm: str) -> Any:
    """The running CRC moto computes for `algorithm`, with the same fallbacks to CRC32."""
    if algorithm == "CRC32C":
        try:
            import crc32c  # type: ignore[import-not-found]

            return lambda data, crc: crc32c.crc32c(data, crc)
        except ImportError:
            pass
    if algorithm == "CRC64NVME" and HAS_CRT:
        from awscrt import checksums  # type: ignore[import-not-found]

        return lambda data, crc: checksums.crc64nvme(data, crc)
    return binascii.crc32


def checksum_of(parts: Iterable[Iterable[bytes]], algorithm: str | None, kind: str | None) -> tuple[str, str, int]:
    """(type, base64 value, parts counted) as moto's MultipartChecksumBuilder builds them, each
    part given as its bytes in pieces. No algorithm is CRC64NVME; no type is FULL_OBJECT for
    CRC64NVME and COMPOSITE for the others."""
    algorithm = algorithm or "CRC64NVME"
    kind = kind or ("FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE")
    if kind == "COMPOSITE":
        digests = bytearray()
        count = 0
        for pieces in parts:
            digest = Digest(algorithm)
            for piece in pieces:
                digest.update(piece)
            digests.extend(digest.digest())
            count += 1
        return kind, compute_checksum(bytes(digests), algorithm).decode(), count
    whole = Digest(algorithm)
    for pieces in parts:
        for piece in pieces:
            whole.update(piece)
    return kind, base64.b64encode(whole.digest()).decode(), 1


def complete(multipart: FakeMultipart, body: Iterator[tuple[int, str]]) -> tuple[Any, str, tuple[str, str, int]]:
    """FakeMultipart.complete, joining the parts into a buffer of the new object's own: the
    parts checked as moto checks them, then the object's bytes (a JoinedParts), ETag and
    checksum. moto disposes of the parts once this returns."""
    decode_hex = codecs.getdecoder("hex_codec")
    md5s = bytearray()
    chosen: list[FakeKey] = []
    last = None
    for number, etag in body:
        part = multipart.parts.get(number)
        if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
            raise InvalidPart()
        if last is not None and last.contentsize < S3_UPLOAD_PART_MIN_SIZE:
            raise EntityTooSmall()
        md5s.extend(decode_hex(part.etag.replace('"', ""))[0])  # type: ignore[arg-type]
        chosen.append(part)
        last = part
    if not chosen:
        raise MalformedXML
    full_etag = md5_hash()
    full_etag.update(bytes(md5s))

    # Not closed here: the new object keeps it as its bytes (closed if anything fails).
    buffer = tempfile.SpooledTemporaryFile(get_s3_default_key_buffer_size())  # noqa: SIM115
    try:

        def copied(part: FakeKey) -> Iterator[bytes]:
            for chunk in part_chunks(part):
                buffer.write(chunk)
                yield chunk

        checksum = checksum_of(
            (copied(part) for part in chosen),
            multipart.metadata.get("x-amz-checksum-algorithm"),
            multipart.metadata.get("x-amz-checksum-type"),
        )
        size = sum(part.contentsize for part in chosen)
        if buffer.tell() != size:  # checksum_of reads every piece of every part
            raise RuntimeError(f"joined {buffer.tell()} bytes of {size}")
    except BaseException:
        buffer.close()
        raise
    return JoinedParts(buffer, size), f"{full_etag.hexdigest()}-{len(chosen)}", checksum


def install() -> None:
    """Patch moto (once): complete joins part by part into the new object's file."""
    global _installed
    if _installed:
        return
    _installed = True

    value: property = FakeKey.__dict__["value"]
    original_set = value.fset
    assert original_set is not None

    def set_value(self: FakeKey, new_value: Any) -> None:
        if not isinstance(new_value, JoinedParts):
            original_set(self, new_value)
            return
        self._value_buffer.close()
        self._value_buffer = new_value.buffer  # the joined bytes become the object's own
        self.contentsize = new_value.size

    FakeKey.value = value.setter(set_value)  # type: ignore[method-assign,assignment]
    FakeMultipart.complete = complete  # type: ignore[method-assign,assignment]
