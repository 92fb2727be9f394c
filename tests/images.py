"""Small disk images that VM Import's pre-flight accepts, made byte by byte (no tools needed)."""

from __future__ import annotations

import struct

MIB = 1024 * 1024


def raw_mbr(size: int = MIB) -> bytes:
    """A RAW disk with an MBR holding one bootable Linux partition from sector 2048 (or 1 when tiny)."""
    start = 2048 if size >= 2 * MIB else 1
    sectors = size // 512 - start
    entry = struct.pack("<B3sB3sII", 0x80, b"\x00\x02\x00", 0x83, b"\xfe\xff\xff", start, sectors)
    mbr = bytearray(512)
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr) + bytes(size - 512)
