"""QCOW2 (QEMU, KVM, OpenStack): VM Import refuses it, but the report still shows the size and
partition layout, so the person knows what the converted image will need (e.g. BootMode)."""

from __future__ import annotations

import struct
import zlib

from .guest import Disk, UnitReader
from .reader import CachedReader, read_exact
from .report import ERROR, Finding, ImageError, short

OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00
COMPRESSED = 1 << 62
ALL_ZEROS = 1
EXTERNAL_DATA, OTHER_COMPRESSION, EXTENDED_L2 = 1 << 2, 1 << 3, 1 << 4


def open_qcow2(src: CachedReader) -> Disk:
    head = src.head
    version, backing_offset, backing_size, cluster_bits, size, crypt, _, l1_offset = struct.unpack_from(
        ">IQIIQIIQ", head, 4
    )
    incompatible = struct.unpack_from(">Q", head, 72)[0] if version >= 3 else 0
    notes = []
    if backing_offset:
        backing = head[backing_offset : backing_offset + min(backing_size, 1023)].decode("utf-8", "replace")
        backing = short(backing)
        notes.append(f" It is a delta on the backing file {backing!r}; qemu-img convert merges the chain.")
    if crypt:
        notes.append(" It is encrypted: add the secret with --object secret,... and --image-opts when converting.")
    finding = Finding(
        ERROR,
        "qcow2",
        "This is a QCOW2 image (QEMU/KVM/OpenStack). VM Import does not accept QCOW2."
        + "".join(notes)
        + " Convert it first: qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized "
        "in.qcow2 out.vmdk (or -O raw out.raw), then import the result.",
    )
    readable = not (backing_offset or crypt or incompatible & (EXTERNAL_DATA | OTHER_COMPRESSION | EXTENDED_L2))
    if not readable or not 9 <= cluster_bits <= 21:
        return Disk("QCOW2", f"v{version}", size, None, [finding])
    clusters = _Clusters(src, cluster_bits, l1_offset)
    return Disk("QCOW2", f"v{version}", size, UnitReader(size, 1 << cluster_bits, clusters.read, src.budget), [finding])


class _Clusters:
    """Guest clusters through the L1 and L2 tables (standard 8-byte entries, zlib compression)."""

    def __init__(self, src: CachedReader, cluster_bits: int, l1_offset: int) -> None:
        self.src, self.bits, self.l1_offset = src, cluster_bits, l1_offset
        self.l2_entries = 1 << (cluster_bits - 3)

    def _entry(self, offset: int) -> int:
        return int(struct.unpack(">Q", read_exact(self.src, offset, 8, "QCOW2 table"))[0])

    def read(self, index: int, start: int, length: int) -> bytes:
        l2 = self._entry(self.l1_offset + 8 * (index // self.l2_entries)) & OFFSET_MASK
        entry = self._entry(l2 + 8 * (index % self.l2_entries)) if l2 else 0
        if entry & COMPRESSED:
            return self._inflate(entry)[start : start + length]
        if entry & ALL_ZEROS or not entry & OFFSET_MASK:
            return bytes(length)
        return read_exact(self.src, (entry & OFFSET_MASK) + start, length, f"cluster {index}")

    def _inflate(self, entry: int) -> bytes:
        split = 62 - (self.bits - 8)
        offset = entry & ((1 << split) - 1)
        sectors = ((entry >> split) & ((1 << (self.bits - 8)) - 1)) + 1
        data = self.src.read(offset, sectors * 512 - offset % 512)
        try:
            return self.src.budget.inflate(data, 1 << self.bits, -15).ljust(1 << self.bits, b"\0")
        except zlib.error as e:
            raise ImageError("corrupt", f"A compressed QCOW2 cluster does not decompress ({e}).") from e
