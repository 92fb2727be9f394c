"""The VHDX checksum (CRC-32C) from google-crc32c's C extension, checked against the standard's
test vector and against a plain table implementation (the one the inspector used before)."""

from __future__ import annotations

import google_crc32c
import google_crc32c.python
from hypothesis import given, settings
from hypothesis import strategies as st

from wizard.inspect.vhdx import crc32c


def _table() -> list[int]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return table


TABLE = _table()


def reference(data: bytes) -> int:
    crc = 0xFFFF_FFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFF_FFFF


def test_the_c_extension_is_used() -> None:
    assert google_crc32c.implementation == "c"


def test_known_vectors() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720, B.4)
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(b"\xff" * 32) == 0x62A8AB43


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5000))
def test_equals_the_table_implementation_and_the_packages_pure_python(data: bytes) -> None:
    assert crc32c(data) == reference(data) == google_crc32c.python.value(data)
