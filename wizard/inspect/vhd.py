"""VHD (Virtual PC / Hyper-V gen 1 format): fixed, dynamic and differencing.

The footer is the last 512 bytes; dynamic and differencing disks keep a copy at offset 0 and a
block allocation table (BAT). A dynamic VHD whose end lacks the footer was cut short; a fixed
one cut short loses its footer altogether and is then seen as a raw image.
"""

from __future__ import annotations

import struct

from .guest import Disk, UnitReader
from .reader import CachedReader, SliceReader, read_exact
from .report import ERROR, Finding, ImageError, human

SECTOR = 512
COOKIE = b"conectix"
FIXED, DYNAMIC, DIFFERENCING = 2, 3, 4
SUBFORMATS = {FIXED: "fixed", DYNAMIC: "dynamic", DIFFERENCING: "differencing"}
UNALLOCATED = 0xFFFF_FFFF


def checksum_ok(footer: bytes) -> bool:
    stored: int = struct.unpack_from(">I", footer, 64)[0]
    return stored == ~sum(footer[:64] + bytes(4) + footer[68:]) & 0xFFFF_FFFF


def _find_footer(src: CachedReader) -> bytes | None:
    """The footer at the end (512 bytes; 511 in very old files)."""
    for length in (SECTOR, SECTOR - 1):
        footer = src.read(src.size - length, length)
        if len(footer) == length and footer.startswith(COOKIE):
            return footer
    return None


def open_vhd(src: CachedReader) -> Disk:
    findings: list[Finding] = []
    footer = _find_footer(src)
    if footer is None:  # only the copy at offset 0 is left
        findings.append(
            Finding(
                ERROR,
                "truncated",
                f"The VHD ({human(src.size)}) has its footer copy at the start but none at the "
                "end: the file was cut short, e.g. by an interrupted copy or upload. Upload the "
                "complete file again.",
            )
        )
        footer = src.head[:SECTOR]
    if not checksum_ok(footer):
        findings.append(Finding(ERROR, "corrupt", "The VHD footer's checksum is wrong: the file is damaged."))
    (data_offset,) = struct.unpack_from(">Q", footer, 16)
    (virtual_size,) = struct.unpack_from(">Q", footer, 48)
    (disk_type,) = struct.unpack_from(">I", footer, 60)
    subformat = SUBFORMATS.get(disk_type, f"type {disk_type}")
    if disk_type == FIXED:
        data_size = src.size - len(footer)
        if data_size < virtual_size:
            findings.append(
                Finding(
                    ERROR,
                    "truncated",
                    f"The fixed VHD holds {human(data_size)} of data but declares a "
                    f"{human(virtual_size)} disk: the file was cut short. Upload the complete file.",
                )
            )
            return Disk("VHD", subformat, virtual_size, None, findings)
        return Disk("VHD", subformat, virtual_size, SliceReader(src, 0, virtual_size), findings)
    if disk_type not in (DYNAMIC, DIFFERENCING):
        findings.append(Finding(ERROR, "corrupt", f"The VHD footer has an unknown disk type {disk_type}."))
        return Disk("VHD", subformat, virtual_size, None, findings)
    try:
        header = read_exact(src, data_offset, 1024, "dynamic disk header")
        if not header.startswith(b"cxsparse"):
            raise ImageError("corrupt", "The VHD's dynamic disk header is missing ('cxsparse'): the file is damaged.")
        if disk_type == DIFFERENCING:
            parent = header[64:576].decode("utf-16-be", "replace").split("\0", 1)[0]
            raise ImageError(
                "differencing-disk",
                f"This is a differencing VHD (its parent is {parent or 'another VHD'}): it holds only the "
                "changes since the parent. VM Import cannot import it. Merge it into its parent "
                "(Hyper-V Manager: Edit Disk > Merge, or PowerShell Merge-VHD) and import the result.",
            )
        (table_offset,) = struct.unpack_from(">Q", header, 16)
        entries, block_size = struct.unpack_from(">II", header, 28)
        if block_size < SECTOR or block_size & (block_size - 1):
            raise ImageError("corrupt", f"The VHD's block size {block_size} is invalid: the file is damaged.")
        if table_offset + 4 * entries > src.size:
            raise ImageError(
                "truncated",
                f"The VHD ({human(src.size)}) ends inside its block allocation table: the file was cut short.",
            )
    except ImageError as e:
        return Disk("VHD", subformat, virtual_size, None, [*findings, e.finding()])
    bitmap_bytes = -(-(block_size // SECTOR) // 8)  # one bit per sector, in whole sectors
    bitmap = -(-bitmap_bytes // SECTOR) * SECTOR

    def read_block(index: int, start: int, length: int) -> bytes:
        if index >= entries:
            return bytes(length)
        (sector,) = struct.unpack(">I", read_exact(src, table_offset + 4 * index, 4, "block allocation table"))
        if sector == UNALLOCATED:
            return bytes(length)
        return read_exact(src, sector * SECTOR + bitmap + start, length, f"data block {index}")

    return Disk("VHD", subformat, virtual_size, UnitReader(virtual_size, block_size, read_block, src.budget), findings)
