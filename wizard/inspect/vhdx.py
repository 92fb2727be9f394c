"""VHDX (Hyper-V): fixed, dynamic and differencing.

Two checksummed headers (the valid one with the higher sequence number wins) point at a log;
a non-empty log means Hyper-V did not close the file cleanly and its last writes are still in
the log, not in the disk. Region tables lead to the metadata (sizes, flags) and the BAT.
Every VHDX structure and block is 1 MiB-aligned, so a file whose size is not is cut short.
"""

from __future__ import annotations

import struct
import uuid

import google_crc32c

from .guest import Disk, UnitReader
from .reader import CachedReader, read_exact
from .report import ERROR, Finding, ImageError, human

KiB, MiB = 1024, 1024 * 1024
BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
LOGICAL_SECTOR_SIZE = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
LEAVE_BLOCKS_ALLOCATED, HAS_PARENT = 1, 2
PRESENT = (6, 7)  # fully / partially present payload block
FULL_BAT_CHECK = 256 * KiB  # BATs up to this size are read whole to find blocks past the end
METADATA_AHEAD = 128 * KiB  # the metadata table (64 KiB) and, after it, the items read
READ_AHEAD = 4 * MiB  # of the guest, at once: payload blocks lie after the regions, past the file's head


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of VHDX headers and region tables: google-crc32c's C
    extension (the package falls back to its own pure Python where the extension is missing)."""
    return int(google_crc32c.value(data))


def _valid(block: bytes, magic: bytes) -> bool:
    """Signature and CRC-32C (computed with the checksum field at 4..8 zeroed)."""
    return block.startswith(magic) and struct.unpack_from("<I", block, 4)[0] == crc32c(block[:4] + bytes(4) + block[8:])


def _header(src: CachedReader) -> bytes:
    headers = [h for h in (src.read(64 * KiB, 4 * KiB), src.read(128 * KiB, 4 * KiB)) if _valid(h, b"head")]
    if not headers:
        raise ImageError("corrupt", "Neither VHDX header is valid (bad signature or checksum): the file is damaged.")
    return max(headers, key=lambda h: struct.unpack_from("<Q", h, 8)[0])


def _regions(src: CachedReader) -> dict[uuid.UUID, tuple[int, int]]:
    for offset in (192 * KiB, 256 * KiB):
        table = src.read(offset, 64 * KiB)
        if _valid(table, b"regi"):
            (count,) = struct.unpack_from("<I", table, 8)
            entries = (table[16 + 32 * i : 48 + 32 * i] for i in range(min(count, 2047)))
            regions = {uuid.UUID(bytes_le=e[:16]): struct.unpack_from("<QI", e, 16) for e in entries}
            for start, length in regions.values():
                if start + length > src.size:
                    raise ImageError("truncated", _cut(src.size, f"a region at {start}"))
            return regions
    raise ImageError("corrupt", "Neither VHDX region table is valid: the file is damaged.")


def _metadata(src: CachedReader, start: int) -> dict[uuid.UUID, bytes]:
    table = read_exact(src, start, 64 * KiB, "metadata table")
    if not table.startswith(b"metadata"):
        raise ImageError("corrupt", "The VHDX metadata table is missing: the file is damaged.")
    (count,) = struct.unpack_from("<H", table, 10)
    items = {}
    for i in range(min(count, 2047)):
        entry = table[32 + 32 * i : 64 + 32 * i]
        offset, length = struct.unpack_from("<II", entry, 16)
        if length <= 64:  # the items read here are 4 or 8 bytes; locators are not needed
            items[uuid.UUID(bytes_le=entry[:16])] = read_exact(src, start + offset, length, "metadata item")
    return items


def _cut(size: int, what: str) -> str:
    return (
        f"The VHDX ({human(size)}) ends before {what}: the file was cut short, e.g. by an "
        "interrupted copy or upload. Upload the complete file again."
    )


def open_vhdx(src: CachedReader) -> Disk:
    disk = Disk("VHDX", "", None, None)
    try:
        _open(src, disk)
    except ImageError as e:
        disk.guest = None
        disk.findings.append(e.finding())
    return disk


def _open(src: CachedReader, disk: Disk) -> None:
    """Fills in `disk` as far as the file allows; raises at the first broken structure."""
    header = _header(src)
    if header[48:64] != bytes(16):
        disk.findings.append(
            Finding(
                ERROR,
                "vhdx-log-not-replayed",
                "The VHDX was not closed cleanly: its log still holds writes that are not in the "
                "disk yet (non-zero LogGuid). VM Import would read a stale or inconsistent disk. "
                "Attach and detach it once in Hyper-V (Mount-VHD, then Dismount-VHD), or open it "
                "read-write with qemu (`qemu-img check -r all disk.vhdx`), which replays the log.",
            )
        )
    regions = _regions(src)
    if BAT_REGION not in regions or METADATA_REGION not in regions:
        raise ImageError("corrupt", "The VHDX lacks its BAT or metadata region: the file is damaged.")
    (bat_at, bat_length), (metadata, _) = regions[BAT_REGION], regions[METADATA_REGION]
    low = min(bat_at, metadata)  # the metadata table and items and the BAT's start, in one read if near
    src.prefetch(low, max(bat_at + min(bat_length, FULL_BAT_CHECK), metadata + METADATA_AHEAD) - low)
    items = _metadata(src, metadata)
    try:
        block_size, flags = struct.unpack("<II", items[FILE_PARAMETERS][:8])
        (virtual_size,) = struct.unpack("<Q", items[VIRTUAL_DISK_SIZE][:8])
        (sector_size,) = struct.unpack("<I", items[LOGICAL_SECTOR_SIZE][:4])
    except (KeyError, struct.error) as e:
        raise ImageError("corrupt", "The VHDX metadata lacks a required item: the file is damaged.") from e
    if not MiB <= block_size <= 256 * MiB or sector_size not in (512, 4096):
        raise ImageError("corrupt", "The VHDX metadata has an invalid block or sector size.")
    disk.subformat = "differencing" if flags & HAS_PARENT else "fixed" if flags & LEAVE_BLOCKS_ALLOCATED else "dynamic"
    disk.virtual_size, disk.sector_size = virtual_size, sector_size
    if flags & HAS_PARENT:
        disk.findings.append(
            Finding(
                ERROR,
                "differencing-disk",
                "This is a differencing VHDX (HasParent): it holds only the changes since its parent "
                "disk. VM Import cannot import it. Merge it into its parent (Hyper-V: Edit Disk > "
                "Merge, or Merge-VHD) and import the merged disk.",
            )
        )
        return
    if src.size % MiB:
        raise ImageError("truncated", _cut(src.size, "a 1 MiB boundary (VHDX files are 1 MiB-aligned)"))
    bat = _Bat(src, bat_at, block_size, sector_size, virtual_size)
    bat.check_blocks_inside()
    disk.guest = UnitReader(virtual_size, block_size, bat.read, src.budget, bat.place, bat.read_at)
    disk.read_ahead = READ_AHEAD


class _Bat:
    def __init__(self, src: CachedReader, offset: int, block_size: int, sector_size: int, virtual_size: int) -> None:
        self.src, self.offset, self.block_size, self.virtual_size = src, offset, block_size, virtual_size
        self.chunk_ratio = (1 << 23) * sector_size // block_size  # payload blocks per sector bitmap block
        self.blocks = -(-virtual_size // block_size)

    def _index(self, block: int) -> int:
        return block + block // self.chunk_ratio

    def _place(self, block: int, entry: int) -> int | None:
        """File offset of a payload block, None if it reads as zeros."""
        if entry & 7 not in PRESENT:
            return None
        offset = (entry >> 20) * MiB
        if offset + min(self.block_size, self.virtual_size - block * self.block_size) > self.src.size:
            raise ImageError("truncated", _cut(self.src.size, f"data block {block} (at byte {offset})"))
        return offset

    def check_blocks_inside(self) -> None:
        """Every present block lies inside the file; only for BATs small enough to read whole."""
        if not self.blocks:
            return
        count = self._index(self.blocks - 1) + 1
        if 8 * count > FULL_BAT_CHECK:
            return
        table = read_exact(self.src, self.offset, 8 * count, "block allocation table")
        for block in range(self.blocks):
            self._place(block, struct.unpack_from("<Q", table, 8 * self._index(block))[0])

    def place(self, block: int) -> int | None:
        """File offset of payload block `block`, None if it reads as zeros."""
        raw = read_exact(self.src, self.offset + 8 * self._index(block), 8, "block allocation table")
        return self._place(block, struct.unpack("<Q", raw)[0])

    def read_at(self, offset: int, length: int) -> bytes:
        return read_exact(self.src, offset, length, f"the data blocks at byte {offset}")

    def read(self, block: int, start: int, length: int) -> bytes:
        offset = self.place(block)
        if offset is None:
            return bytes(length)
        return read_exact(self.src, offset + start, length, f"data block {block}")
