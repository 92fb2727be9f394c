"""Which format an image is, from its magic numbers (head first, then the tail).

The order matters: container magics at offset 0 first; tar before ISO; ISO before the
partition table (hybrid ISOs carry an MBR too); the VHD footer at the end last, since a fixed
VHD is raw data with a footer and nothing at the front.
"""

from __future__ import annotations

from .reader import CachedReader
from .vmdk import DESCRIPTOR_MAGICS

# formats VM Import does not take that a person may upload by mistake: magic, offset, name
OTHER_MAGICS = [
    (b"\x1f\x8b\x08", 0, "gzip"),
    (b"\xfd7zXZ\x00", 0, "xz"),
    (b"BZh", 0, "bzip2"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd"),
    (b"PK\x03\x04", 0, "zip"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7z"),
    (b"\x7f\x10\xda\xbe", 0x40, "VDI"),
    (b"QED\x00", 0, "QED"),
    (b"WithoutFreeSpace", 0, "Parallels"),
    (b"WithouFreSpacExt", 0, "Parallels"),
]
_CONVERT = "convert it: qemu-img convert -O vmdk -o subformat=streamOptimized in.img out.vmdk"
ADVICE = {
    "gzip": "decompress it first (gunzip)",
    "xz": "decompress it first (unxz)",
    "bzip2": "decompress it first (bunzip2)",
    "zstd": "decompress it first (unzstd)",
    "zip": "unzip it and upload the disk image inside",
    "7z": "extract it and upload the disk image inside",
    "VDI": "convert it: VBoxManage clonemedium disk in.vdi out.vmdk --format VMDK --variant Stream",
    "QED": _CONVERT,
    "Parallels": _CONVERT,
}


def detect(src: CachedReader) -> tuple[str, str]:
    """(format, name of the unsupported kind for UNKNOWN); format is one of
    VMDK, VHD, VHDX, QCOW2, OVA, ISO, RAW, UNKNOWN."""
    head = src.head
    if head.startswith((b"KDMV", b"COWD", *DESCRIPTOR_MAGICS)):
        return "VMDK", ""
    if head.startswith(b"vhdxfile"):
        return "VHDX", ""
    if head.startswith(b"conectix"):
        return "VHD", ""
    if head.startswith(b"QFI\xfb"):
        return "QCOW2", ""
    if head[257:262] == b"ustar":
        return "OVA", ""
    if head[0x8001:0x8006] == b"CD001":
        return "ISO", ""
    for magic, offset, name in OTHER_MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return "UNKNOWN", name
    if src.size >= 511 and b"conectix" in (src.read(src.size - 512, 8), src.read(src.size - 511, 8)):
        return "VHD", ""
    return "RAW", ""
