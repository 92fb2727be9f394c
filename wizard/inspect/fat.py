"""Just enough FAT12/16/32 to look up one path on the EFI System Partition.

UEFI Linux imports need the fallback loader EFI/BOOT/BOOTX64.EFI; finding it costs a boot
sector, a few FAT entries and a few directory clusters.
"""

from __future__ import annotations

import struct

from .reader import Reader

MAX_DIR_BYTES = 256 * 1024  # directories on an ESP are small; stop reading beyond this


class _Fat:
    def __init__(self, guest: Reader, start: int, boot: bytes) -> None:
        bps, spc, reserved, fats, root_entries, total16, _, fat16 = struct.unpack_from("<HBHBHHBH", boot, 11)
        total32, fat32, root_cluster = struct.unpack_from("<IIxxxxI", boot, 32)
        fat_sectors, total = fat16 or fat32, total16 or total32
        if (
            bps not in (512, 1024, 2048, 4096)
            or not spc
            or spc & (spc - 1)
            or not reserved
            or not fats
            or not fat_sectors
        ):
            raise ValueError("not a FAT boot sector")
        self.guest, self.start, self.bps, self.spc = guest, start, bps, spc
        self.fat = start + reserved * bps
        self.root_offset = self.fat + fats * fat_sectors * bps
        self.root_size = root_entries * 32
        self.data = reserved + fats * fat_sectors + -(-self.root_size // bps)
        clusters = (total - self.data) // spc
        self.bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
        self.root_cluster = root_cluster if self.bits == 32 else 0

    def _entry(self, offset: int, size: int) -> int | None:
        raw = self.guest.read(offset, size)
        return int.from_bytes(raw, "little") if len(raw) == size else None

    def _next(self, cluster: int) -> int | None:
        if self.bits == 12:
            v = self._entry(self.fat + cluster + cluster // 2, 2)
            v, end = (None if v is None else v >> 4 if cluster & 1 else v & 0xFFF), 0xFF8
        elif self.bits == 16:
            v, end = self._entry(self.fat + 2 * cluster, 2), 0xFFF8
        else:
            v, end = self._entry(self.fat + 4 * cluster, 4), 0x0FFF_FFF8
            v = None if v is None else v & 0x0FFF_FFFF
        return v if v is not None and 2 <= v < end else None

    def directory(self, cluster: int) -> bytes:
        """A directory's entries; cluster 0 is the FAT12/16 root directory."""
        if cluster == 0:
            return self.guest.read(self.root_offset, min(self.root_size, MAX_DIR_BYTES))
        size = self.bps * self.spc
        parts: list[bytes] = []
        current: int | None = cluster
        while current is not None and len(parts) * size < MAX_DIR_BYTES:
            part = self.guest.read(self.start + (self.data + (current - 2) * self.spc) * self.bps, size)
            parts.append(part)
            current = self._next(current) if len(part) == size else None
        return b"".join(parts)


def _lookup(entries: bytes, name: str) -> tuple[bool, int] | None:
    """(is a directory, first cluster) of the entry with short name `name`."""
    for i in range(0, len(entries) - 31, 32):
        e = entries[i : i + 32]
        if e[0] == 0:
            break
        if e[0] == 0xE5 or e[11] & 0x08:  # deleted, volume label or long-name part
            continue
        base, ext = e[:8].decode("latin-1").rstrip(), e[8:11].decode("latin-1").rstrip()
        if (f"{base}.{ext}" if ext else base).upper() == name.upper():
            hi, lo = struct.unpack_from("<H", e, 20)[0], struct.unpack_from("<H", e, 26)[0]
            return bool(e[11] & 0x10), hi << 16 | lo
    return None


def has_file(guest: Reader, start: int, path: str) -> bool | None:
    """Whether the FAT file system at byte `start` has the file `path` (short 8.3 names);
    None if it is not a FAT file system this can read."""
    boot = guest.read(start, 512)
    if len(boot) < 512 or boot[510:512] != b"\x55\xaa":
        return None
    try:
        fs = _Fat(guest, start, boot)
    except ValueError:
        return None
    parts = path.split("/")
    cluster = fs.root_cluster
    for depth, part in enumerate(parts):
        found = _lookup(fs.directory(cluster), part)
        if found is None or found[0] != (depth < len(parts) - 1):
            return False
        cluster = found[1]
        if cluster == 0 and depth < len(parts) - 1:  # a subdirectory never starts at cluster 0
            return False
    return True
