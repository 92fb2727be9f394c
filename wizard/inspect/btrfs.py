"""Just enough Btrfs to list its subvolumes and tell the default one: no mount, no library.

The superblock (at 64 KiB), its sys_chunk_array (the chunks that hold the chunk tree), the chunk
tree (logical to physical addresses; single-device profiles only: single and DUP), and the root
tree: a ROOT_ITEM with an id of 256 or more is a subvolume, its ROOT_REF gives its name and
parent, and the root tree's "default" directory item the subvolume mounted when no subvol= is
given (5, the top level, unless `btrfs subvolume set-default` changed it). Every number is
checked before use, at most `MAX_NODES` tree nodes are read per tree, and damage raises
`BtrfsError`.
"""

from __future__ import annotations

import struct
import uuid as uuids
from dataclasses import dataclass, field

from .reader import Reader

SUPERBLOCK = 64 * 1024
MAGIC = b"_BHRfS_M"
FS_TREE = 5
FIRST_FREE = 256
LAST_FREE = 2**64 - 256
ROOT_TREE_DIR = 6
HEADER = 101  # a tree node's header
ITEM = 25  # a leaf's item: key and data offset and size
KEY_PTR = 33  # an internal node's pointer: key, block, generation
MAX_NODES = 64  # nodes read of one tree
MAX_LEVEL = 7  # btrfs itself allows 8 levels (0..7)
MAX_CHUNKS = 1024
MAX_SUBVOLUMES = 256  # kept in the report
CHUNK_ITEM, ROOT_ITEM, ROOT_REF, DIR_ITEM = 228, 132, 156, 84
PROFILES = {8: "RAID0", 16: "RAID1", 64: "RAID10", 128: "RAID5", 256: "RAID6", 512: "RAID1C3", 1024: "RAID1C4"}
DUP = 32


class BtrfsError(ValueError):
    """Btrfs structures not as they should be (or a layout this reader does not follow)."""


@dataclass
class Subvolume:
    id: int
    name: str  # its path from the top level, as far as its ROOT_REFs tell
    parent: int


@dataclass
class Btrfs:
    uuid: str
    label: str
    devices: int
    default: int  # the default subvolume's id (5: the top level)
    subvolumes: list[Subvolume] = field(default_factory=list)
    profiles: set[str] = field(default_factory=set)  # RAID profiles of its chunks, if any

    def path(self, id: int) -> str:
        for s in self.subvolumes:
            if s.id == id:
                return s.name
        return f"id {id}"


class _Reader:
    def __init__(self, guest: Reader, start: int, size: int, sb: bytes) -> None:
        self.guest, self.start, self.size = guest, start, size
        self.nodesize = struct.unpack_from("<I", sb, 0x94)[0]
        self.sectorsize = struct.unpack_from("<I", sb, 0x90)[0]
        if self.nodesize not in (4096, 8192, 16384, 32768, 65536) or self.sectorsize not in (4096, 8192, 16384, 65536):
            raise BtrfsError("the node or sector size")
        self.fsid = sb[0x20:0x30]
        self.devid = struct.unpack_from("<Q", sb, 0xC9)[0]
        self.chunks: list[tuple[int, int, int]] = []  # (logical, length, physical)
        self.profiles: set[str] = set()

    def add_chunk(self, logical: int, item: bytes) -> None:
        if len(item) < 48:
            raise BtrfsError("a chunk item")
        length, _, _, kind = struct.unpack_from("<QQQQ", item, 0)
        stripes = struct.unpack_from("<H", item, 44)[0]
        if not stripes or len(item) < 48 + 32 * stripes or not length or len(self.chunks) >= MAX_CHUNKS:
            raise BtrfsError("a chunk item's stripes")
        for bit, name in PROFILES.items():
            if kind & bit:
                self.profiles.add(name)
        devid, physical = struct.unpack_from("<QQ", item, 48)
        if devid == self.devid and not kind & sum(PROFILES):  # single or DUP: the first copy is whole
            self.chunks.append((logical, length, physical))

    def physical(self, logical: int, length: int) -> int:
        for start, size, physical in self.chunks:
            if start <= logical and logical + length <= start + size:
                return physical + logical - start
        raise BtrfsError(f"logical address {logical} in no chunk of this device")

    def node(self, logical: int) -> bytes:
        at = self.physical(logical, self.nodesize)
        if at + self.nodesize > self.size:
            raise BtrfsError(f"a tree node at {at} beyond the file system")
        data = self.guest.read(self.start + at, self.nodesize)
        if (
            len(data) < self.nodesize
            or data[0x20:0x30] != self.fsid
            or struct.unpack_from("<Q", data, 0x30)[0] != logical
        ):
            raise BtrfsError(f"the tree node at {logical} is not one of this file system")
        return data

    def items(self, root: int, level: int) -> list[tuple[tuple[int, int, int], bytes]]:
        """Every item of the tree at `root` (its root node's level given), in key order."""
        found: list[tuple[tuple[int, int, int], bytes]] = []
        stack = [(root, level)]
        nodes = 0
        while stack:
            logical, expect = stack.pop()
            nodes += 1
            if nodes > MAX_NODES:
                raise BtrfsError("a tree larger than this check reads")
            data = self.node(logical)
            count, node_level = struct.unpack_from("<IB", data, 0x60)
            if node_level != expect or node_level > MAX_LEVEL:
                raise BtrfsError("a tree node's level")
            width = KEY_PTR if node_level else ITEM
            if HEADER + count * width > len(data):
                raise BtrfsError("a tree node's item count")
            children = []
            for i in range(count):
                at = HEADER + i * width
                objectid, kind, offset = struct.unpack_from("<QBQ", data, at)
                if node_level:
                    children.append((struct.unpack_from("<Q", data, at + 17)[0], node_level - 1))
                    continue
                where, size = struct.unpack_from("<II", data, at + 17)
                if HEADER + where + size > len(data):
                    raise BtrfsError("a leaf item's data")
                found.append(((objectid, kind, offset), data[HEADER + where : HEADER + where + size]))
            stack.extend(reversed(children))
        return found


def probe(guest: Reader, start: int) -> bytes | None:
    sb = guest.read(start + SUPERBLOCK, 4096)
    return sb if len(sb) >= 4096 and sb[0x40:0x48] == MAGIC else None


def read(guest: Reader, start: int, size: int) -> Btrfs:
    """The subvolumes of the Btrfs at byte `start` of the guest (a partition of `size` bytes)."""
    sb = probe(guest, start)
    if sb is None:
        raise BtrfsError("no Btrfs superblock")

    fs = Btrfs(
        str(uuids.UUID(bytes=sb[0x20:0x30])),
        sb[0x12B : 0x12B + 256].split(b"\0", 1)[0].decode("utf-8", "replace"),
        struct.unpack_from("<Q", sb, 0x88)[0],
        FS_TREE,
    )
    if fs.devices != 1:
        return fs  # the other devices' chunks are not on this disk: nothing more is read
    r = _Reader(guest, start, size, sb)
    array = struct.unpack_from("<I", sb, 0xA0)[0]
    if array > 2048:
        raise BtrfsError("the sys_chunk_array's size")
    at = 0x32B
    end = at + array
    while at < end:
        if at + 17 + 48 > end:
            raise BtrfsError("the sys_chunk_array")
        _, kind, logical = struct.unpack_from("<QBQ", sb, at)
        stripes = struct.unpack_from("<H", sb, at + 17 + 44)[0]
        item = sb[at + 17 : at + 17 + 48 + 32 * stripes]
        if kind != CHUNK_ITEM:
            raise BtrfsError("the sys_chunk_array's keys")
        r.add_chunk(logical, item)
        at += 17 + len(item)
    chunk_root, chunk_level = struct.unpack_from("<Q", sb, 0x58)[0], sb[0xC7]
    for (_, kind, logical), item in r.items(chunk_root, chunk_level):
        if kind == CHUNK_ITEM:
            r.add_chunk(logical, item)
    fs.profiles = r.profiles
    names: dict[int, tuple[int, str]] = {}
    ids: list[int] = []
    for (objectid, kind, offset), item in r.items(struct.unpack_from("<Q", sb, 0x50)[0], sb[0xC6]):
        if kind == ROOT_ITEM and FIRST_FREE <= objectid < LAST_FREE and objectid not in ids:
            ids.append(objectid)
        elif kind == ROOT_REF and len(item) >= 18:
            length = struct.unpack_from("<H", item, 16)[0]
            names[offset] = (objectid, item[18 : 18 + length].decode("utf-8", "replace"))
        elif kind == DIR_ITEM and objectid == struct.unpack_from("<Q", sb, 0x80)[0] and len(item) >= 30:
            length = struct.unpack_from("<H", item, 27)[0]
            if item[30 : 30 + length] == b"default":
                fs.default = struct.unpack_from("<Q", item, 0)[0]
    for id in ids[:MAX_SUBVOLUMES]:
        parent, name = names.get(id, (FS_TREE, f"id {id}"))
        path, seen = name, {id}
        while parent != FS_TREE and parent in names and parent not in seen:  # the path from the top level
            seen.add(parent)
            parent, above = names[parent]
            path = f"{above}/{path}"
        fs.subvolumes.append(Subvolume(id, path, names.get(id, (FS_TREE, ""))[0]))
    return fs
