"""What each partition holds, from its magic numbers: file systems, swap, LUKS, LVM, BitLocker.

One or two small reads per partition (mostly served from pages already read). The UUIDs and
labels found here are what /etc/fstab's UUID= and LABEL= entries must name.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

from .ext4 import probe as ext_superblock
from .reader import Reader

MAX_PARTITIONS = 32  # partitions probed (ImportImage takes at most 21 volumes anyway)


@dataclass
class FileSystem:
    partition: int  # the partition's index (1-based), 0 for a whole disk
    start: int
    size: int
    type: str  # ext2 | ext3 | ext4 | xfs | btrfs | vfat | swap | ntfs | luks | lvm | bitlocker | ""
    uuid: str = ""
    label: str = ""
    detail: str = ""  # e.g. the LVM volume group's name, the LUKS version
    volume: str = ""  # "VG/LV" for a file system in an LVM logical volume (start 0 of `reader`)
    reader: Reader | None = field(default=None, repr=False, compare=False)  # the LV's; None: the guest disk

    @property
    def where(self) -> str:
        return f"logical volume {self.volume}" if self.volume else f"partition {self.partition}"


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _uuid(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw[:16])) if len(raw) >= 16 else ""


def identify(guest: Reader, index: int, start: int, size: int) -> FileSystem:
    """What the partition at byte `start` holds; type "" when nothing known is there."""
    fs = FileSystem(index, start, size, "")
    head = guest.read(start, 4096)
    if len(head) < 512:
        return fs
    if head.startswith(b"LUKS\xba\xbe"):
        version = struct.unpack_from(">H", head, 6)[0]
        fs.type, fs.detail, fs.uuid = "luks", f"LUKS{version}", _text(head[168:208])
        return fs
    if head[3:11] == b"-FVE-FS-":
        fs.type = "bitlocker"
        return fs
    if head[3:11] == b"NTFS    ":
        fs.type, fs.uuid = "ntfs", f"{struct.unpack_from('<Q', head, 72)[0]:016X}"
        return fs
    if head.startswith(b"XFSB"):
        fs.type, fs.uuid, fs.label = "xfs", _uuid(head[32:48]), _text(head[108:120])
        return fs
    for sector in range(4):
        label = head[sector * 512 : sector * 512 + 512]
        if label.startswith(b"LABELONE") and label[24:32] == b"LVM2 001":
            fs.type, fs.uuid = "lvm", label[32:64].decode("ascii", "replace")
            return fs
    if head[4086:4096] in (b"SWAPSPACE2", b"SWAP-SPACE"):
        fs.type, fs.uuid, fs.label = "swap", _uuid(head[1024 + 12 : 1024 + 28]), _text(head[1024 + 28 : 1024 + 44])
        return fs
    if head[510:512] == b"\x55\xaa" and (head[82:87] == b"FAT32" or head[54:59] in (b"FAT12", b"FAT16")):
        serial_at, label_at = (67, 71) if head[82:87] == b"FAT32" else (39, 43)
        serial = struct.unpack_from("<I", head, serial_at)[0]
        fs.type, fs.uuid, fs.label = (
            "vfat",
            f"{serial >> 16:04X}-{serial & 0xFFFF:04X}",
            _text(head[label_at : label_at + 11]),
        )
        return fs
    sb = ext_superblock(guest, start)
    if sb is not None:
        compat, incompat = struct.unpack_from("<I", sb, 92)[0], struct.unpack_from("<I", sb, 96)[0]
        fs.type = "ext4" if incompat & 0x2C0 else "ext3" if compat & 0x4 else "ext2"  # extents/64bit/flex_bg; journal
        fs.uuid, fs.label = _uuid(sb[104:120]), _text(sb[120:136])
        return fs
    btrfs = guest.read(start + 65536, 4096)
    if btrfs[64:72] == b"_BHRfS_M":
        fs.type, fs.uuid, fs.label = "btrfs", _uuid(btrfs[32:48]), _text(btrfs[0x12B : 0x12B + 256])
    return fs
