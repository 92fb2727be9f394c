"""A seeded fuzzer for the image inspector: mutated real images and hostile synthetic OVAs.

Shared by tests/inspect/test_fuzz.py (a few hundred cases) and bench/fuzz-inspect (as many as
fit in a time). A case is made from (seed, index) alone, so any case can be made again:

- mutations of the corpus images (tests/inspect/make-corpus.sh): byte flips in the first and
  last 64 KiB, interesting integers (0, 1, 2^31-1, 2^32-1, 2^63-1, 2^64-1, the file's size...)
  written at the offsets of header fields (VMDK, VHD, VHDX, QCOW2, GPT, MBR, FAT, tar), with
  the checksums that guard them made right again most of the time so that the parser goes on
  past them, truncations at random points or near the structures, and files made to look
  huge (the image at the front, zeros up to a size of up to 5 TiB, the original tail at the end);
- synthetic OVAs: hostile OVF capacity units (byte * 10^30000000), many disks, nested OVAs,
  huge or deeply nested descriptors, huge numbers of tar members, pax and GNU headers with huge
  or negative sizes.

Every image is a virtual reader over the corpus files (patches, slices, zeros): nothing is
copied. Each case runs in a child process (`run_cases`) under a watchdog (the parent kills a
child whose case takes longer than the timeout: a hang, even one inside C code such as a giant
`int ** int`), with an address-space limit (a runaway allocation is a MemoryError, not a
swapping machine) and tracemalloc (the peak memory of the inspection). Reads are counted by a
`CountingReader` between the inspector and the image.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import random
import resource
import statistics
import struct
import time
import traceback
import tracemalloc
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wizard.inspect import FileReader, Reader, SliceReader, inspect_image
from wizard.inspect.reader import MAX_READ, MAX_READS, MAX_TOTAL
from wizard.inspect.vhdx import crc32c

from .helpers import BytesReader, CountingReader, PatchedReader

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4
MAX_JSON_INT = 2**63 - 1
IMAGES = [
    "gpt.raw",
    "mbr.raw",
    "gpt-stream.vmdk",
    "mbr-stream.vmdk",
    "gpt-vmwstream.vmdk",
    "mbr-vmwstream.vmdk",
    "gpt-sparse.vmdk",
    "gpt-flat.vmdk",
    "gpt-dyn.vhd",
    "gpt-fixed.vhd",
    "mbr-dyn.vhd",
    "gpt-dyn.vhdx",
    "gpt-fixed.vhdx",
    "mbr-dyn.vhdx",
    "gpt.qcow2",
    "mbr.qcow2",
    "gpt.ova",
    "xfs-bls.raw",  # a RHEL-like guest: XFS root, BLS entries without a default
]
INTERESTING = [
    0,
    1,
    2,
    7,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x1FF,
    0x200,
    0x7FFF,
    0xFFFF,
    0x1_0000,
    0x10_0000,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**40,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
]
HUGE_UNITS = [
    "byte * 10^30000000",
    "byte * 10^4300",
    "byte * 10^400",
    "byte * 2^64",
    "byte * 2^1000000",
    "byte * 2^-1",
    "byte * 0^0",
    "byte*1024^9999",
    "byte * 2^20 * 2^20",
    "bytes",
    "",
    "byte * 2^" + "9" * 5000,
]
HUGE_CAPACITIES = ["9" * 5000, "9" * 19, "18446744073709551616", "٣٤٥", "²", "-1", "0", "1e9", " 512 "]


# --- readers ------------------------------------------------------------------------------------


class ConcatReader:
    """Parts end to end: synthetic bytes around slices of real files."""

    def __init__(self, parts: list[Reader]) -> None:
        self.parts = parts
        self.starts = []
        at = 0
        for p in parts:
            self.starts.append(at)
            at += p.size
        self.size = at

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + max(0, length), self.size)
        out = []
        for start, part in zip(self.starts, self.parts, strict=True):
            lo, hi = max(offset, start), min(end, start + part.size)
            if lo < hi:
                out.append(part.read(lo - start, hi - lo))
        return b"".join(out)


class ZerosReader:
    """`size` zero bytes, held nowhere."""

    def __init__(self, size: int) -> None:
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        return bytes(max(0, min(length, self.size - offset)))


class RepeatReader:
    """`unit` repeated `count` times: a file of millions of identical tar headers, held nowhere."""

    def __init__(self, unit: bytes, count: int) -> None:
        self.unit, self.size = unit, len(unit) * count

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + max(0, length), self.size)
        if offset >= end:
            return b""
        n = len(self.unit)
        first = offset - offset % n
        reps = -(-(end - first) // n)
        return (self.unit * reps)[offset - first : end - first]


# --- what a case is -----------------------------------------------------------------------------


@dataclass
class Case:
    index: int
    description: str
    reader: Reader
    declared: str = ""


@dataclass
class Result:
    index: int
    description: str
    kind: str = "ok"  # ok | hang | crash | exception | memory-error | internal | memory | reads | json
    detail: str = ""
    seconds: float = 0.0
    reads: int = 0
    read_bytes: int = 0
    largest_read: int = 0
    peak_memory: int = 0
    format: str = ""
    codes: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None  # ImageReport.to_dict()


@dataclass
class Limits:
    """What every case must stay within."""

    timeout: float = 5.0  # seconds per case, in the child (a hang beyond it)
    peak_memory: int = 64 * MiB  # tracemalloc peak during the inspection
    reads: int = MAX_READS  # reads of the image: the inspector's own budget
    read_bytes: int = MAX_TOTAL
    largest_read: int = MAX_READ
    address_space: int = 3 * GiB  # RLIMIT_AS of the child, above what it has at the start


# --- the mutator ---------------------------------------------------------------------------------


@dataclass
class FieldAt:
    """A header field of an image: where, how wide, which byte order; `guard` names the
    checksum that covers it (made right again after a mutation, most of the time)."""

    offset: int
    width: int
    order: str  # "<" little, ">" big, "o" tar octal
    name: str
    guard: str = ""
    group: int = 0  # which structure: mutations pick a structure first, then a field of it


class Corpus:
    """The corpus images and, for each, the offsets of its header fields (found by reading it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.names = [n for n in IMAGES if (self.folder / n).exists()]
        self._fields: dict[str, list[FieldAt]] = {}
        self._guards: dict[str, dict[str, tuple[int, int, int, str]]] = {}

    def reader(self, name: str) -> FileReader:
        return FileReader(self.folder / name)

    def fields(self, name: str) -> list[FieldAt]:
        if name not in self._fields:
            self._fields[name], self._guards[name] = _fields_of(self.reader(name))
        return self._fields[name]

    def guards(self, name: str) -> dict[str, tuple[int, int, int, str]]:
        self.fields(name)
        return self._guards[name]


def _u(data: bytes, fmt: str, at: int) -> int:
    return int(struct.unpack_from(fmt, data, at)[0])


def _fields_of(r: Reader) -> tuple[list[FieldAt], dict[str, tuple[int, int, int, str]]]:
    """Header fields of a good image and the checksums guarding them:
    guard name -> (start, length, checksum offset, kind)."""
    head, size = r.read(0, 256 * KiB), r.size
    fields: list[FieldAt] = []
    guards: dict[str, tuple[int, int, int, str]] = {}

    def add(base: int, spec: Iterable[tuple[int, int, str]], order: str, guard: str = "") -> None:
        group = len({f.group for f in fields})
        fields.extend(FieldAt(base + at, width, order, name, guard, group) for at, width, name in spec)

    if head.startswith(b"KDMV"):
        spec = [
            (4, 4, "version"),
            (8, 4, "flags"),
            (12, 8, "capacity"),
            (20, 8, "grainSize"),
            (28, 8, "descriptorOffset"),
            (36, 8, "descriptorSize"),
            (44, 4, "numGTEsPerGT"),
            (48, 8, "rgdOffset"),
            (56, 8, "gdOffset"),
            (64, 8, "overHead"),
        ]
        add(0, spec, "<")
        if r.read(size - 1024, 4) == b"KDMV":  # VMware's layout: a footer before the end-of-stream
            add(size - 1024, spec, "<")
            add(size - 1536, [(0, 8, "footer marker value"), (8, 4, "footer marker size"), (12, 4, "marker type")], "<")
            gd = _u(r.read(size - 1024, 512), "<Q", 56) * 512
        else:
            gd = _u(head, "<Q", 56) * 512
        add(gd, [(4 * i, 4, f"GD[{i}]") for i in range(4)], "<")
        overhead = _u(head, "<Q", 64) * 512
        add(overhead, [(0, 8, "grain 0 LBA"), (8, 4, "grain 0 compressed size")], "<")
        if 0 < gd < size:
            gt = _u(r.read(gd, 4), "<I", 0) * 512
            add(gt, [(4 * i, 4, f"GT[{i}]") for i in range(4)], "<")
    elif head.startswith(b"vhdxfile"):
        for at in (64 * KiB, 128 * KiB):
            guards[f"vhdx@{at}"] = (at, 4 * KiB, at + 4, "crc32c")
            add(
                at,
                [(8, 8, "sequence"), (48, 8, "logGuid"), (68, 4, "logLength"), (72, 8, "logOffset")],
                "<",
                f"vhdx@{at}",
            )
        table = r.read(192 * KiB, 64 * KiB)
        count = _u(table, "<I", 8)
        for at in (192 * KiB, 256 * KiB):
            guards[f"vhdx@{at}"] = (at, 64 * KiB, at + 4, "crc32c")
            spec = [(8, 4, "region count")]
            for i in range(count):
                spec += [(32 + 32 * i, 8, f"region {i} offset"), (40 + 32 * i, 4, f"region {i} length")]
            add(at, spec, "<", f"vhdx@{at}")
        for i in range(count):
            guid = uuid.UUID(bytes_le=table[16 + 32 * i : 32 + 32 * i])
            start = _u(table, "<Q", 32 + 32 * i)
            if guid == uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E"):
                meta = r.read(start, 64 * KiB)
                items = _u(meta, "<H", 10)
                spec = [(10, 2, "metadata count")]
                for j in range(items):
                    spec += [(48 + 32 * j, 4, f"item {j} offset"), (52 + 32 * j, 4, f"item {j} length")]
                    offset = _u(meta, "<I", 48 + 32 * j)
                    add(start + offset, [(0, 4, f"item {j} u32"), (4, 4, f"item {j} u32+4")], "<")
                add(start, spec, "<")
            elif guid == uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08"):
                add(start, [(8 * i, 8, f"BAT[{i}]") for i in range(4)], "<")
    elif head.startswith(b"QFI\xfb"):
        spec = [
            (4, 4, "version"),
            (8, 8, "backingOffset"),
            (16, 4, "backingSize"),
            (20, 4, "clusterBits"),
            (24, 8, "size"),
            (32, 4, "cryptMethod"),
            (36, 4, "l1Size"),
            (40, 8, "l1Offset"),
            (72, 8, "incompatible"),
        ]
        add(0, spec, ">")
        l1 = _u(head, ">Q", 40)
        add(l1, [(0, 8, "L1[0]")], ">")
        l2 = _u(r.read(l1, 8), ">Q", 0) & 0x00FF_FFFF_FFFF_FE00
        if l2:
            add(l2, [(8 * i, 8, f"L2[{i}]") for i in range(4)], ">")
    elif head[257:262] == b"ustar":
        offset = 0
        for _ in range(8):
            header = r.read(offset, 512)
            if header[257:262] != b"ustar":
                break
            guards[f"tar@{offset}"] = (offset, 512, offset + 148, "tar")
            add(offset, [(124, 12, "size")], "o", f"tar@{offset}")
            add(offset, [(156, 1, "typeflag")], "<", f"tar@{offset}")
            size = int(header[124:136].strip(b"\0 ") or b"0", 8)
            if header[156:157] == b"0" and size > 1024 and r.read(offset + 512, 4) == b"KDMV":
                group = len({f.group for f in fields})
                fields.extend(
                    FieldAt(f.offset + offset + 512, f.width, f.order, "disk " + f.name, "", group + f.group)
                    for f in _fields_of(SliceReader(r, offset + 512, size))[0]
                )
            offset += 512 + -(-size // 512) * 512
    if size >= 1024 and (head.startswith(b"conectix") or r.read(size - 512, 8) == b"conectix"):
        foot = size - 512
        guards["vhd-footer"] = (foot, 512, foot + 64, "vhd")
        add(
            foot,
            [(16, 8, "dataOffset"), (40, 8, "originalSize"), (48, 8, "currentSize"), (60, 4, "diskType")],
            ">",
            "vhd-footer",
        )
        data_offset = _u(r.read(foot, 512), ">Q", 16)
        if data_offset < size:
            add(data_offset, [(16, 8, "tableOffset"), (28, 4, "maxTableEntries"), (32, 4, "blockSize")], ">")
            table = _u(r.read(data_offset, 1024), ">Q", 16)
            add(table, [(4 * i, 4, f"BAT[{i}]") for i in range(4)], ">")
    # the guest's partition table and ESP, where the guest is the file (raw, fixed VHD)
    if head[510:512] == b"\x55\xaa" and not head.startswith((b"KDMV", b"vhdxfile", b"QFI\xfb")):
        add(0, [(446 + 16 * i + at, w, f"MBR[{i}] {n}") for i in range(4) for at, w, n in MBR_ENTRY], "<")
        if head[512:520] == b"EFI PART":
            guards["gpt-entries"] = (1024, 128 * 128, 512 + 88, "crc32")
            guards["gpt-header"] = (512, 92, 512 + 16, "crc32")
            spec = [
                (12, 4, "headerSize"),
                (32, 8, "alternateLBA"),
                (72, 8, "entriesLBA"),
                (80, 4, "entries"),
                (84, 4, "entrySize"),
            ]
            add(512, spec, "<", "gpt-header")
            add(
                1024,
                [(128 * i + at, 8, f"GPT[{i}] {n}") for i in range(2) for at, n in ((32, "first"), (40, "last"))],
                "<",
                "gpt-entries",
            )
            esp = _u(head, "<Q", 1024 + 32) * 512
            add(esp, FAT_BOOT, "<")
            starts = [_u(head, "<Q", 1024 + 128 * i + 32) * 512 for i in range(4)]
        else:
            starts = [_u(head, "<I", 446 + 16 * i + 8) * 512 for i in range(4)]
        for start in starts:  # the guest's ext4 file systems: superblock, group 0, root inode
            if 0 < start < size and r.read(start + 1024 + 56, 2) == b"\x53\xef":
                _ext4_fields(r, start, add)
            elif 0 < start < size and r.read(start, 4) == b"XFSB":
                _xfs_fields(r, start, add)
    return fields, guards


EXT4_SUPERBLOCK = [
    (0, 4, "s_inodes_count"),
    (4, 4, "s_blocks_count"),
    (20, 4, "s_first_data_block"),
    (24, 4, "s_log_block_size"),
    (32, 4, "s_blocks_per_group"),
    (40, 4, "s_inodes_per_group"),
    (76, 4, "s_rev_level"),
    (88, 2, "s_inode_size"),
    (96, 4, "s_feature_incompat"),
    (254, 2, "s_desc_size"),
    (336, 4, "s_blocks_count_hi"),
]


XFS_SUPERBLOCK = [
    (4, 4, "sb_blocksize"),
    (8, 8, "sb_dblocks"),
    (56, 8, "sb_rootino"),
    (84, 4, "sb_agblocks"),
    (88, 4, "sb_agcount"),
    (100, 2, "sb_versionnum"),
    (104, 2, "sb_inodesize"),
    (120, 1, "sb_blocklog"),
    (123, 1, "sb_inopblog"),
    (124, 1, "sb_agblklog"),
    (192, 1, "sb_dirblklog"),
    (216, 4, "sb_features_incompat"),
]


def _xfs_fields(r: Reader, start: int, add: Callable[..., None]) -> None:
    """An XFS file system's superblock (big-endian; CRCs are not checked by the reader) and its
    root directory's inode: mode, format, size, extent count, fork offset and short-form header."""
    sb = r.read(start, 512)
    add(start, XFS_SUPERBLOCK, ">")
    blocklog, inopblog, agblklog = sb[120], sb[123], sb[124]
    rootino = _u(sb, ">Q", 56)
    bits = agblklog + inopblog
    ag, agino = rootino >> bits, rootino & ((1 << bits) - 1)
    block = ag * _u(sb, ">I", 84) + (agino >> inopblog)
    inode = start + (block << blocklog) + (agino & ((1 << inopblog) - 1)) * _u(sb, ">H", 104)
    add(
        inode,
        [(2, 2, "di_mode"), (5, 1, "di_format"), (56, 8, "di_size"), (76, 4, "di_nextents"), (82, 1, "di_forkoff")]
        + [(176, 1, "sf_count"), (177, 1, "sf_i8count"), (182, 1, "sf_namelen")],
        ">",
    )


def _ext4_fields(r: Reader, start: int, add: Callable[..., None]) -> None:
    """An ext4 file system's superblock, first group descriptor and root inode (its size, flags
    and extent tree root), where the guest inspection starts reading."""
    sb = r.read(start + 1024, 1024)
    add(start + 1024, EXT4_SUPERBLOCK, "<")
    block = 1024 << min(6, _u(sb, "<I", 24))
    gdt = start + (_u(sb, "<I", 20) + 1) * block
    add(gdt, [(8, 4, "bg_inode_table"), (0x28, 4, "bg_inode_table_hi")], "<")
    table = _u(r.read(gdt + 8, 4), "<I", 0)
    inode = start + table * block + _u(sb, "<H", 88)  # inode 2
    add(
        inode,
        [(0, 2, "i_mode"), (4, 4, "i_size"), (32, 4, "i_flags"), (40, 2, "eh_magic"), (42, 2, "eh_entries")]
        + [(46, 2, "eh_depth"), (52, 4, "ee_block"), (56, 2, "ee_len"), (58, 2, "ee_start_hi"), (60, 4, "ee_start")],
        "<",
    )


MBR_ENTRY = [(0, 1, "status"), (4, 1, "type"), (8, 4, "start"), (12, 4, "sectors")]
FAT_BOOT = [
    (11, 2, "bytesPerSector"),
    (13, 1, "sectorsPerCluster"),
    (14, 2, "reserved"),
    (16, 1, "fats"),
    (17, 2, "rootEntries"),
    (19, 2, "total16"),
    (22, 2, "fat16"),
    (32, 4, "total32"),
    (36, 4, "fat32"),
    (44, 4, "rootCluster"),
]


def _encode(value: int, f: FieldAt) -> bytes:
    if f.order == "o":  # a tar number: octal, or base-256 when it does not fit
        if value < 8**11:
            return b"%011o\0" % value
        return bytes([0x80]) + (value % 256**11).to_bytes(11, "big")
    return (value % 256**f.width).to_bytes(f.width, "little" if f.order == "<" else "big")


def _fix_guards(base: Reader, patches: dict[int, bytes], guards: dict[str, tuple[int, int, int, str]]) -> None:
    """Make the checksums of the structures in `guards` right again for the patched bytes."""
    for start, length, at, kind in guards.values():  # gpt-entries before gpt-header: dict order
        view = PatchedReader(base, patches)
        if kind == "crc32" and start == 1024:  # GPT entries: their count and size from the header
            count, size = struct.unpack("<II", view.read(512 + 80, 8))
            length = min(count * size, 1 * MiB)
        data = bytearray(view.read(start, length))
        rel = at - start
        if kind == "crc32c":
            data[rel : rel + 4] = bytes(4)
            patches[at] = struct.pack("<I", crc32c(bytes(data)))
        elif kind == "crc32":
            if start == 512:  # the GPT header: its checksum covers headerSize bytes
                (hsize,) = struct.unpack_from("<I", data, 12)
                data = data[: hsize if 92 <= hsize <= 512 else 92]
            data[rel : rel + 4] = bytes(4)
            patches[at] = struct.pack("<I", zlib.crc32(bytes(data)))
        elif kind == "vhd":
            data[rel : rel + 4] = bytes(4)
            patches[at] = struct.pack(">I", ~sum(data) & 0xFFFF_FFFF)
        elif kind == "tar":
            data[148:156] = b" " * 8
            patches[at] = b"%06o\0 " % sum(data)


def _value(rng: random.Random, size: int) -> int:
    pick = rng.random()
    if pick < 0.7:
        return rng.choice(INTERESTING)
    if pick < 0.85:  # near the file's size, in bytes, sectors or MiB: plausible offsets
        unit = rng.choice([1, 512, MiB])
        return max(0, size // unit + rng.randint(-2, 2))
    return rng.getrandbits(rng.choice([8, 16, 32, 64]))


def _header_ints(rng: random.Random, corpus: Corpus, name: str, base: Reader) -> tuple[Reader, str]:
    fields = corpus.fields(name)
    if not fields:
        return _flips(rng, base)
    patches: dict[int, bytes] = {}
    what = []
    groups = sorted({f.group for f in fields})
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        group = rng.choice(groups)
        f = rng.choice([f for f in fields if f.group == group])
        value = _value(rng, base.size)
        patches[f.offset] = _encode(value, f)
        what.append(f"{f.name}={value:#x}")
    fix = rng.random() < 0.75
    if fix:
        _fix_guards(base, patches, {k: v for k, v in corpus.guards(name).items()})
    return PatchedReader(base, patches), "ints " + ", ".join(what) + (" (checksums fixed)" if fix else "")


def _flips(rng: random.Random, base: Reader) -> tuple[Reader, str]:
    size = base.size
    region = rng.choice(["head", "tail", "header"])
    lo, hi = {"head": (0, 64 * KiB), "tail": (size - 64 * KiB, size), "header": (0, 4 * KiB)}[region]
    lo, hi = max(0, lo), max(1, min(hi, size))
    patches = {}
    for _ in range(rng.choice([1, 2, 4, 8, 16, 64])):
        at = rng.randrange(lo, hi)
        patches[at] = bytes(
            [rng.getrandbits(8) if rng.random() < 0.5 else base.read(at, 1)[0] ^ (1 << rng.randrange(8))]
        )
    return PatchedReader(base, patches), f"{len(patches)} flips in the {region}"


def _truncate(rng: random.Random, corpus: Corpus, name: str, base: Reader) -> tuple[Reader, str]:
    size = base.size
    near = [f.offset for f in corpus.fields(name) if 0 < f.offset < size]
    pick = rng.random()
    if pick < 0.4 and near:
        keep = rng.choice(near) + rng.randint(-600, 600)
    elif pick < 0.6:
        keep = size - rng.choice([1, 511, 512, 513, 1024, 1536, 4096, 64 * KiB, MiB])
    else:
        keep = rng.randrange(1, max(2, size))
    keep = max(1, min(keep, size - 1))
    return SliceReader(base, 0, keep), f"cut at {keep}"


def _extend(rng: random.Random, base: Reader) -> tuple[Reader, str]:
    """The image made to look huge: its head, zeros, its tail (a VHD's footer, a VMDK's end)."""
    size = rng.choice([base.size + 512, 2 * GiB, 2**32 + 7, TiB, 5 * TiB - 512, 8 * TiB])
    keep_tail = min(base.size, rng.choice([0, 512, 1536, 64 * KiB]))
    head = SliceReader(base, 0, min(base.size - keep_tail, 8 * MiB))
    tail = SliceReader(base, base.size - keep_tail, keep_tail)
    zeros = ZerosReader(size - head.size - tail.size)
    return ConcatReader([head, zeros, tail]), f"extended to {size} bytes (tail {keep_tail})"


def _mutated(rng: random.Random, corpus: Corpus) -> tuple[Reader, str]:
    name = rng.choice(corpus.names)
    base = corpus.reader(name)
    pick = rng.random()
    if pick < 0.55:
        reader, what = _header_ints(rng, corpus, name, base)
    elif pick < 0.77:
        reader, what = _flips(rng, base)
    elif pick < 0.92:
        reader, what = _truncate(rng, corpus, name, base)
    else:
        reader, what = _extend(rng, base)
    if rng.random() < 0.15:  # and a second mutation on top
        reader, more = _flips(rng, reader) if rng.random() < 0.5 else _truncate(rng, corpus, name, reader)
        what += "; " + more
    return reader, f"{name}: {what}"


# --- synthetic OVAs ----------------------------------------------------------------------------


def tar_header(name: str, size: int, kind: bytes = b"0", size_field: bytes | None = None) -> bytes:
    h = bytearray(512)
    raw = name.encode()[:100]
    h[: len(raw)] = raw
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = size_field if size_field is not None else _encode(size, FieldAt(0, 12, "o", "size"))
    h[136:148] = b"00000000000\0"
    h[156:157] = kind
    h[257:265] = b"ustar\x0000"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def tar_member(name: str, data: bytes, kind: bytes = b"0", size_field: bytes | None = None) -> bytes:
    return tar_header(name, len(data), kind, size_field) + data + bytes(-len(data) % 512)


def pax_member(records: dict[str, str]) -> bytes:
    body = b""
    for key, value in records.items():
        record = f" {key}={value}\n".encode()
        n = len(record)
        n += len(str(n + len(str(n))))
        body += str(n).encode() + record
    return tar_member("PaxHeader", body, b"x")


def ovf_text(disks: Iterable[tuple[str, str, str]], firmware: str = "efi", extra: str = "") -> bytes:
    """An OVF for `disks` as (href, capacity, capacityAllocationUnits)."""
    files, items = [], []
    for i, (href, capacity, units) in enumerate(disks):
        files.append(f'<File ovf:id="f{i}" ovf:href="{href}"/>')
        items.append(
            f'<Disk ovf:diskId="d{i}" ovf:fileRef="f{i}" ovf:capacity="{capacity}" '
            f'ovf:capacityAllocationUnits="{units}" '
            'ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>'
        )
    return (
        '<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:vmw="http://www.vmware.com/schema/ovf">'
        f"<References>{''.join(files)}</References><DiskSection><Info>d</Info>{''.join(items)}</DiskSection>"
        f'<VirtualSystem ovf:id="vm"><Info>vm</Info>{extra}<VirtualHardwareSection><Info>hw</Info>'
        f'<vmw:Config vmw:key="firmware" vmw:value="{firmware}"/></VirtualHardwareSection></VirtualSystem></Envelope>'
    ).encode()


def ova_with_disk(ovf: bytes, disk: Reader | None, disk_name: str = "disk1.vmdk", before: bytes = b"") -> Reader:
    """A tar: `before` (raw tar members), the OVF, then the disk file (a reader) and the end."""
    parts: list[Reader] = [BytesReader(before + tar_member("vm.ovf", ovf))]
    if disk is not None:
        parts += [BytesReader(tar_header(disk_name, disk.size)), disk, BytesReader(bytes(-disk.size % 512))]
    parts.append(BytesReader(bytes(1024)))
    return ConcatReader(parts)


def nested_ova(depth: int, inner: Reader) -> Reader:
    reader = inner
    for _ in range(depth):
        reader = ova_with_disk(ovf_text([("disk1.vmdk", "512", "byte * 2^20")]), reader)
    return reader


def _synthetic(rng: random.Random, corpus: Corpus) -> tuple[Reader, str]:
    disk_name = rng.choice([n for n in corpus.names if n.endswith("stream.vmdk")] or corpus.names)
    disk = corpus.reader(disk_name)
    kind = rng.choice(["capacity", "many-disks", "nested", "huge-ovf", "deep-xml", "members", "pax", "gnu", "base256"])
    if kind == "capacity":
        capacity = rng.choice(["512", *HUGE_CAPACITIES])
        units = rng.choice(HUGE_UNITS)
        ovf = ovf_text([("disk1.vmdk", capacity, units)])
        return ova_with_disk(ovf, disk), f"OVA: capacity {capacity[:24]!r} units {units[:40]!r}"
    if kind == "many-disks":
        n = rng.choice([22, 1000, 4000])
        ovf = ovf_text([(f"disk{i}.vmdk", "512", "byte * 2^20") for i in range(n)])
        return ova_with_disk(ovf, disk, "disk0.vmdk"), f"OVA: {n} disks"
    if kind == "nested":
        depth = rng.choice([1, 2, 3, 50, 400])
        return nested_ova(depth, disk), f"OVA: nested {depth} deep around {disk_name}"
    if kind == "huge-ovf":
        size = rng.choice([MiB + 1, 2**33, 2**40, 2**63])
        ovf = ovf_text([("disk1.vmdk", "512", "byte * 2^20")])
        header = tar_header("vm.ovf", size)
        body = ovf + bytes(-len(ovf) % 512)
        return ConcatReader([BytesReader(header + body), ZerosReader(min(size, 4 * MiB))]), f"OVA: OVF of {size} bytes"
    if kind == "deep-xml":
        depth = rng.choice([1000, 100_000, 300_000])
        shape = rng.choice(["nested", "flat", "attributes"])
        if shape == "nested":
            extra = "<a>" * depth + "</a>" * depth
        elif shape == "flat":
            extra = "<a/>" * depth
        else:
            extra = "<a " + " ".join(f'x{i}="1"' for i in range(min(depth, 50_000))) + "/>"
        ovf = ovf_text([("disk1.vmdk", "512", "byte * 2^20")], extra=extra)
        return ova_with_disk(ovf, disk), f"OVA: descriptor of {len(ovf)} bytes, {shape} x{depth}"
    if kind == "members":
        count = rng.choice([1001, 100_000, 10_000_000])
        unit = tar_header(rng.choice(["dir/", "a.txt", "link"]), 0, rng.choice([b"5", b"0", b"2", b"g"]))
        ovf = tar_member("vm.ovf", ovf_text([("disk1.vmdk", "512", "byte * 2^20")]))
        return ConcatReader(
            [RepeatReader(unit, count), BytesReader(ovf + bytes(1024))]
        ), f"OVA: {count} tar members first"
    if kind == "pax":
        size = rng.choice(["9" * 30, "9" * 5000, "-1", "-512", "-1024", "0x10", "1e3", "١٢", str(2**64), ""])
        records = {"size": size} if rng.random() < 0.8 else {"path": "p" * rng.choice([100, 70_000])}
        ovf = ovf_text([("disk1.vmdk", "512", "byte * 2^20")])
        before = pax_member(records) if rng.random() < 0.5 else b""
        tail = pax_member(records)
        return (
            ConcatReader(
                [
                    BytesReader(before + tar_member("vm.ovf", ovf) + tail + tar_header("disk1.vmdk", disk.size)),
                    disk,
                    BytesReader(bytes(-disk.size % 512 + 1024)),
                ]
            ),
            f"OVA: pax {next(iter(records))}={next(iter(records.values()))[:24]!r}",
        )
    if kind == "gnu":
        size = rng.choice([2**33, 2**62, 100 * KiB])
        member = tar_header("././@LongLink", size, b"L") + b"n" * 512
        ovf = tar_member("vm.ovf", ovf_text([("disk1.vmdk", "512", "byte * 2^20")]))
        return ConcatReader([BytesReader(ovf + member), ZerosReader(min(size, MiB))]), f"OVA: GNU long name of {size}"
    # base-256 sizes
    value = rng.choice([2**64, 2**88 - 1, 2**40])
    field = bytes([0x80]) + (value % 256**11).to_bytes(11, "big")
    kind_byte = rng.choice([b"0", b"x", b"L", b"5"])
    ovf = tar_member("vm.ovf", ovf_text([("disk1.vmdk", "512", "byte * 2^20")]))
    member = tar_header("disk1.vmdk", 0, kind_byte, size_field=field)
    return ConcatReader([BytesReader(ovf + member), disk]), f"OVA: base-256 size {value} type {kind_byte!r}"


def make_case(corpus: Corpus, seed: int, index: int) -> Case:
    rng = random.Random(f"{seed}:{index}")
    if rng.random() < 0.25:
        reader, description = _synthetic(rng, corpus)
    else:
        reader, description = _mutated(rng, corpus)
    declared = rng.choice(["", "", "VMDK", "OVA", "RAW", "VHD", "VHDX"])
    return Case(index, description + (f" [declared {declared}]" if declared else ""), reader, declared)


# --- running cases --------------------------------------------------------------------------------


class _Internal(logging.Handler):
    """Collects the exceptions the inspector caught only in its last-resort net (it logs them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _big_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -MAX_JSON_INT - 1 <= value <= MAX_JSON_INT
    if isinstance(value, dict):
        return any(_big_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_big_int(v) for v in value)
    return False


def run_case(case: Case, limits: Limits) -> Result:
    """One case in this process (no watchdog here: `run_cases` is the watchdog)."""
    result = Result(case.index, case.description)
    counting = CountingReader(case.reader)
    internal = _Internal()
    logger = logging.getLogger("wizard.inspect")
    logger.addHandler(internal)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        report = inspect_image(counting, case.declared)
        result.seconds = time.perf_counter() - start
        _, result.peak_memory = tracemalloc.get_traced_memory()
    except MemoryError:
        result.kind, result.detail = "memory-error", traceback.format_exc(limit=-4)
        report = None
    except BaseException as e:  # noqa: BLE001 - counting what escapes is the point
        result.kind, result.detail = "exception", f"{type(e).__name__}: {str(e)[:200]}\n" + traceback.format_exc(-4)
        report = None
    finally:
        result.seconds = result.seconds or time.perf_counter() - start
        tracemalloc.stop()
        logger.removeHandler(internal)
    result.reads, result.read_bytes = len(counting.reads), counting.total
    result.largest_read = max((n for _, n in counting.reads), default=0)
    if report is None:
        return result
    result.format, result.codes = report.format, sorted({f.code for f in report.findings})
    try:
        data = report.to_dict()
        json.dumps(data)
        result.report = data
        if _big_int(data):
            raise ValueError("an int over 2^63")
    except Exception as e:  # noqa: BLE001
        result.kind, result.detail = "json", f"{type(e).__name__}: {str(e)[:200]}"
        return result
    if internal.records:
        record = internal.records[0]
        kind = "memory-error" if record.exc_info and record.exc_info[0] is MemoryError else "internal"
        result.kind, result.detail = kind, record.getMessage()[:300]
        if record.exc_info:
            result.detail += "\n" + "".join(traceback.format_exception(*record.exc_info, limit=-4))
    elif result.peak_memory > limits.peak_memory:
        result.kind, result.detail = "memory", f"peak {result.peak_memory} bytes"
    elif (
        result.reads > limits.reads
        or result.read_bytes > limits.read_bytes
        or result.largest_read > limits.largest_read
    ):
        result.kind = "reads"
        result.detail = f"{result.reads} reads, {result.read_bytes} bytes, largest {result.largest_read}"
    return result


def _child(conn: Any, build: Callable[[int], Case], limits: Limits) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (vm + limits.address_space, hard))
    while True:
        try:
            index = conn.recv()
        except EOFError:
            return
        if index is None:
            return
        try:
            case = build(index)
        except Exception:  # noqa: BLE001 - a bug of the fuzzer, not of the inspector
            conn.send(("start", f"case {index}"))
            conn.send(("done", Result(index, f"case {index}", "fuzzer-error", traceback.format_exc(limit=-3))))
            continue
        conn.send(("start", case.description))
        conn.send(("done", run_case(case, limits)))


class _Worker:
    """A child process (forked, so `build` need not be picklable) that runs cases one by one."""

    def __init__(self, build: Callable[[int], Case], limits: Limits) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child_conn, build, limits), daemon=True)
        self.process.start()
        child_conn.close()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


def run_built(build: Callable[[int], Case], indexes: Iterable[int], limits: Limits | None = None) -> Iterator[Result]:
    """Runs the cases `build` makes in a child process under a watchdog; one result per case.
    A case that hangs or kills its child is reported as such, and a new child goes on."""
    limits = limits or Limits()
    worker = _Worker(build, limits)
    try:
        for index in indexes:
            worker.conn.send(index)
            description = f"case {index}"
            try:
                if not worker.conn.poll(60):  # making the case: quick
                    raise EOFError
                _, description = worker.conn.recv()
                if not worker.conn.poll(limits.timeout):
                    yield Result(index, description, "hang", f"still running after {limits.timeout} s", limits.timeout)
                    worker.stop()
                    worker = _Worker(build, limits)
                    continue
                _, result = worker.conn.recv()
                yield result
            except (EOFError, OSError):
                worker.process.join(5)
                code = worker.process.exitcode
                yield Result(index, description, "crash", f"the child process died (exit code {code})")
                worker.stop()
                worker = _Worker(build, limits)
    finally:
        with contextlib.suppress(OSError):
            worker.conn.send(None)
        worker.stop()


def run_cases(folder: Path, seed: int, indexes: Iterable[int], limits: Limits | None = None) -> Iterator[Result]:
    """The fuzzer's cases `indexes` of `seed` over the corpus in `folder`."""
    corpus = Corpus(folder)
    return run_built(lambda index: make_case(corpus, seed, index), indexes, limits)


def run_isolated(make_reader: Callable[[], Reader], declared: str = "", limits: Limits | None = None) -> Result:
    """One inspection of the image `make_reader()` makes, in a child under the same watchdog."""
    [result] = run_built(lambda index: Case(index, "example", make_reader(), declared), [0], limits)
    return result


def summary(results: list[Result]) -> dict[str, Any]:
    """Cases, failures by kind, and the slowest case's time and reads against the median case."""
    kinds = Counter(r.kind for r in results if r.kind != "ok")
    timed = [r for r in results if r.kind != "hang"]
    slowest = max(timed, key=lambda r: r.seconds) if timed else None
    most_reads = max(results, key=lambda r: r.reads) if results else None
    median_seconds = statistics.median([r.seconds for r in timed]) if timed else 0.0
    median_reads = statistics.median([r.reads for r in results]) if results else 0
    return {
        "cases": len(results),
        "failures": dict(kinds),
        "median_seconds": median_seconds,
        "median_reads": median_reads,
        "slowest": slowest,
        "most_reads": most_reads,
        "peak_memory": max((r.peak_memory for r in results), default=0),
    }


def describe(result: Result) -> str:
    return f"#{result.index} {result.kind}: {result.description}\n    {result.detail.strip()[:1500]}"


def kinds_of(results: Iterable[Result], predicate: Callable[[Result], bool] | None = None) -> Counter[str]:
    return Counter(r.kind for r in results if r.kind != "ok" and (predicate is None or predicate(r)))
