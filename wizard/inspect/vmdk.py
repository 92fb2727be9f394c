"""VMDK: hosted sparse extents (streamOptimized, monolithicSparse), descriptor files, COWD.

VM Import takes only stream-optimized VMDKs (what ESXi and ovftool export); anything else is
"Disk validation failed [Unsupported VMDK File Format]" after the upload. The guest's first
grain is decompressed to read the partition table, through the grain directory and table,
which works for qemu-img's layout (directory at the front) and VMware's (directory at the end,
found through the footer).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

from .guest import Disk, UnitReader
from .reader import CachedReader, read_exact
from .report import ERROR, Finding, ImageError, human, short

SECTOR = 512
GD_AT_END = 0xFFFF_FFFF_FFFF_FFFF
COMPRESSED = 0x10000
NO_PARENT = "ffffffff"
HEADER = struct.Struct("<4sIIQQQQIQQQ")  # magic .. overHead
MARKER = struct.Struct("<QI")  # grain marker: LBA, compressed size
MARKER_FOOTER = 3
DESCRIPTOR_MAGICS = (b"# Disk DescriptorFile", b"# Disk Descriptor File")
CONVERT = "qemu-img convert -O vmdk -o subformat=streamOptimized in.vmdk out.vmdk"
UNSUPPORTED = "Disk validation failed [Unsupported VMDK File Format]"
MAX_DESCRIPTOR = 64 * 1024  # bytes of an embedded or separate descriptor read (real ones: 1 KiB)
MAX_GRAIN = 2048  # sectors (1 MiB): VMware writes 128 (64 KiB); qemu takes up to 1 GiB, no tool writes it
MAX_GTES = 512  # grain table entries: the VMDK specification fixes 512
KEPT_GRAINS = 2 * 1024 * 1024  # bytes of inflated grains kept (32 of VMware's 64 KiB grains)


@dataclass
class Descriptor:
    create_type: str = ""
    parent_cid: str = NO_PARENT
    extents: list[tuple[int, str, str]] = field(default_factory=list)  # sectors, type, file


def parse_descriptor(text: str) -> Descriptor:
    d = Descriptor()
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"(RW|RDONLY|NOACCESS)\s+([0-9]{1,20})\s+(\w+)(?:\s+\"([^\"]*)\")?", line):
            d.extents.append((int(m[2]), m[3].upper(), short(m[4] or "")))
        elif m := re.match(r"(\w+)\s*=\s*\"?([^\"]*)\"?", line):
            key, value = m[1].lower(), m[2].strip()
            if key == "createtype":
                d.create_type = short(value, 100)
            elif key == "parentcid":
                d.parent_cid = short(value.lower(), 100)
    return d


def open_vmdk(src: CachedReader) -> Disk:
    head = src.head
    if head.startswith(b"KDMV"):
        return _open_sparse(src)
    if head.startswith(b"COWD"):
        return _open_cowd(src)
    return _open_descriptor(src)


def _parent_findings(d: Descriptor) -> list[Finding]:
    if d.parent_cid in ("", NO_PARENT):
        return []
    return [
        Finding(
            ERROR,
            "differencing-disk",
            f"This VMDK is a delta (snapshot) disk: parentCID={d.parent_cid}, so most of its "
            "data is in the parent disk. VM Import cannot import it. Consolidate the snapshots "
            f"(or clone the VM), then export a stream-optimized VMDK, e.g. {CONVERT}.",
        )
    ]


def _open_descriptor(src: CachedReader) -> Disk:
    d = parse_descriptor(src.head[:MAX_DESCRIPTOR].split(b"\0", 1)[0].decode("utf-8", "replace"))
    files = short(", ".join(sorted({f for _, _, f in d.extents if f})), 1000) or "other files"
    findings = [
        Finding(
            ERROR,
            "vmdk-descriptor-only",
            f"This is only a VMDK descriptor (text, createType={d.create_type or '?'}); the disk "
            f"data is in {files}. VM Import needs one self-contained stream-optimized VMDK and "
            f'says "{UNSUPPORTED}". Put the data files next to it and convert: {CONVERT}',
        )
    ]
    size = sum(sectors for sectors, _, _ in d.extents) * SECTOR or None
    return Disk("VMDK", d.create_type, size, None, findings + _parent_findings(d))


def _open_cowd(src: CachedReader) -> Disk:
    (sectors,) = struct.unpack_from("<I", src.head, 12)
    finding = Finding(
        ERROR,
        "differencing-disk",
        "This is an ESX vmfsSparse delta (snapshot) disk ('COWD'): its data depends on a parent "
        f"disk. Consolidate the snapshots and export a stream-optimized VMDK ({CONVERT}).",
    )
    return Disk("VMDK", "vmfsSparse", sectors * SECTOR, None, [finding])


def _open_sparse(src: CachedReader) -> Disk:
    (_, _, flags, capacity, grain, desc_off, desc_size, gtes, _, gd_off, _) = HEADER.unpack_from(
        read_exact(src, 0, SECTOR, "VMDK header")
    )
    text = src.read(desc_off * SECTOR, min(desc_size * SECTOR, MAX_DESCRIPTOR)) if desc_off else b""
    d = parse_descriptor(text.split(b"\0", 1)[0].decode("utf-8", "replace"))
    subformat = d.create_type or ("streamOptimized" if flags & COMPRESSED else "monolithicSparse")
    stream = subformat.lower() == "streamoptimized"
    virtual_size = capacity * SECTOR
    findings = _parent_findings(d)
    if not stream:
        findings.append(
            Finding(
                ERROR,
                "vmdk-not-stream-optimized",
                f"This VMDK is {subformat}, not streamOptimized. VM Import accepts only "
                f'stream-optimized VMDKs (as ESXi/ovftool export them) and fails with "{UNSUPPORTED}". '
                f"Convert with: {CONVERT}",
            )
        )
    try:
        if stream:
            gd_off = _check_stream_end(src, gd_off)
        if gd_off * SECTOR >= src.size:
            raise ImageError("truncated", _cut(src.size, f"its grain directory (byte {gd_off * SECTOR})"))
    except ImageError as e:
        return Disk("VMDK", subformat, virtual_size, None, [*findings, e.finding()])
    if d.parent_cid not in ("", NO_PARENT):  # a delta needs its parent
        return Disk("VMDK", subformat, virtual_size, None, findings)
    if not 1 <= grain <= MAX_GRAIN or not 1 <= gtes <= MAX_GTES:
        finding = Finding(
            ERROR,
            "corrupt",
            f"The VMDK header declares grains of {grain} sectors and {gtes} entries per grain table "
            f"(VMDKs use 128 and 512): the header is damaged. Export the disk again.",
        )
        return Disk("VMDK", subformat, virtual_size, None, [*findings, finding])
    grains = _Grains(src, flags, grain * SECTOR, gtes, gd_off)
    guest = UnitReader(virtual_size, grain * SECTOR, grains.read, src.budget)
    return Disk("VMDK", subformat, virtual_size, guest, findings)


def _cut(size: int, what: str) -> str:
    return (
        f"The VMDK ({human(size)}) ends before {what}: the file was cut short, e.g. by an "
        "interrupted copy or upload. Upload the complete file again."
    )


def _check_stream_end(src: CachedReader, gd_off: int) -> int:
    """A stream ends with an end-of-stream marker (512 zero bytes); VMware's layout puts a
    footer (a header copy holding the real grain directory offset) just before it."""
    size = src.size
    if size < 3 * SECTOR or src.read(size - SECTOR, SECTOR) != bytes(SECTOR):
        raise ImageError("truncated", _cut(size, "its end-of-stream marker"))
    if gd_off != GD_AT_END:
        return gd_off
    footer = src.read(size - 2 * SECTOR, SECTOR)
    (marker_type,) = struct.unpack_from("<I", src.read(size - 3 * SECTOR, 16), 12)
    if not footer.startswith(b"KDMV") or marker_type != MARKER_FOOTER:
        raise ImageError("truncated", _cut(size, "its footer (the grain directory is at the end)"))
    return int(HEADER.unpack_from(footer)[9])


class _Grains:
    """Reads grains through the grain directory and tables; keeps the last grains inflated (up
    to `KEPT_GRAINS` bytes of them: a file system's reads go back and forth between a few)."""

    def __init__(self, src: CachedReader, flags: int, grain: int, gtes: int, gd_off: int) -> None:
        self.src, self.flags, self.grain, self.gtes, self.gd_off = src, flags, grain, gtes, gd_off
        self.kept: OrderedDict[int, bytes] = OrderedDict()
        self.keep = max(1, KEPT_GRAINS // grain)

    def _entry(self, sector: int, index: int, what: str) -> int:
        return int(struct.unpack("<I", read_exact(self.src, sector * SECTOR + 4 * index, 4, what))[0])

    def read(self, index: int, start: int, length: int) -> bytes:
        gt = self._entry(self.gd_off, index // self.gtes, "grain directory")
        gte = self._entry(gt, index % self.gtes, "grain table") if gt else 0
        if gte <= 1:  # 0: never written, 1: a zero grain
            return bytes(length)
        if not self.flags & COMPRESSED:
            return read_exact(self.src, gte * SECTOR + start, length, f"grain {index}")
        data = self.kept.pop(index, None)
        if data is None:
            data = self._inflate(index, gte * SECTOR)
            if len(self.kept) >= self.keep:
                self.kept.popitem(last=False)
        self.kept[index] = data
        return data[start : start + length]

    def _inflate(self, index: int, offset: int) -> bytes:
        lba, size = MARKER.unpack(read_exact(self.src, offset, MARKER.size, f"grain {index}"))
        if lba * SECTOR != index * self.grain or size > 2 * self.grain + 1024:
            raise ImageError(
                "corrupt", f"The grain table points grain {index} at a bad grain marker: the VMDK is damaged."
            )
        try:
            data = self.src.budget.inflate(
                read_exact(self.src, offset + MARKER.size, size, f"grain {index}"), self.grain
            )
        except zlib.error as e:
            raise ImageError(
                "corrupt", f"Grain {index} of the VMDK does not decompress ({e}): the file is damaged."
            ) from e
        return data.ljust(self.grain, b"\0")[: self.grain]
