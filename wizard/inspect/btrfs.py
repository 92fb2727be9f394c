"""Just enough Btrfs to list its subvolumes and tell the default one: no mount, no library.

The superblock (at 64 KiB), its sys_chunk_array (the chunks that hold the chunk tree), the chunk
tree (logical to physical addresses; single-device profiles only: single and DUP), and the root
tree: a ROOT_ITEM with an id of 256 or more is a subvolume, its ROOT_REF gives its name and
parent, and the root tree's "default" directory item the subvolume mounted when no subvol= is
given (5, the top level, unless `btrfs subvolume set-default` changed it).

`Files` reads a subvolume's files by path like `ext4.Ext4` does (for /etc/os-release and
/etc/fstab on a Btrfs root): INODE_ITEMs, directories by their DIR_INDEX items, EXTENT_DATA
inline or regular, uncompressed or zlib; LZO and zstd extents are not read (`Compressed`). Every number is
checked before use, at most `MAX_NODES` tree nodes are read per walk or search, and damage
raises `BtrfsError`.
"""

from __future__ import annotations

import bisect
import struct
import uuid as uuids
import zlib
from dataclasses import dataclass, field

from .ext4 import MAX_DIR, MAX_FILE, MAX_RUNS, S_IFMT, Ext4Error, FileSystem, walk
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
INODE_ITEM, DIR_INDEX, EXTENT_DATA = 1, 96, 108
MAX_CACHED = 32  # tree nodes kept (the upper levels are read again by every search)
KEY_MAX = (2**64 - 1, 255, 2**64 - 1)
ZLIB = 1
COMPRESSION = {1: "zlib", 2: "LZO", 3: "zstd"}
MAX_EXTENT = 128 * 1024  # btrfs compresses files in extents of at most 128 KiB
MAX_INFLATED = 8 * 1024 * 1024  # bytes decompressed in one file system
METADATA_UUID = 0x400  # incompat: tree nodes carry the metadata UUID, not the fsid
PROFILES = {8: "RAID0", 16: "RAID1", 64: "RAID10", 128: "RAID5", 256: "RAID6", 512: "RAID1C3", 1024: "RAID1C4"}
DUP = 32


class BtrfsError(Ext4Error):
    """Btrfs structures not as they should be (or a layout this reader does not follow); a
    subclass of ext4's error, so that callers catch one error for every file system."""


class Compressed(BtrfsError):
    """A file compressed with LZO or zstd (the standard library has neither): not read."""


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
    trees: dict[int, tuple[int, int, int]] = field(default_factory=dict, repr=False)  # id: (node, level, root dir)
    reader: _Reader | None = field(default=None, repr=False)

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
        incompat = struct.unpack_from("<Q", sb, 0xBC)[0]
        self.fsid = sb[0x23B:0x24B] if incompat & METADATA_UUID else sb[0x20:0x30]
        self.devid = struct.unpack_from("<Q", sb, 0xC9)[0]
        self.chunks: list[tuple[int, int, int]] = []  # (logical, length, physical)
        self.profiles: set[str] = set()
        self.cache: dict[int, bytes] = {}
        self.keys: dict[int, list[tuple[int, int, int]]] = {}

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

    def data(self, logical: int, length: int) -> bytes:
        """`length` bytes of file data at a logical address."""
        at = self.physical(logical, length)
        if at + length > self.size:
            raise BtrfsError(f"file data at {at} beyond the file system")
        data = self.guest.read(self.start + at, length)
        if len(data) < length:
            raise BtrfsError("the file system is cut short")
        return data

    def node(self, logical: int) -> bytes:
        if logical in self.cache:
            return self.cache[logical]
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
        if len(self.cache) >= MAX_CACHED:
            self.cache.clear()
            self.keys.clear()
        self.cache[logical] = data
        return data

    def _keys(self, logical: int, data: bytes, count: int, width: int) -> list[tuple[int, int, int]]:
        """A node's keys, parsed once per node kept (every search goes through the same upper nodes)."""
        if logical not in self.keys:
            self.keys[logical] = [struct.unpack_from("<QBQ", data, HEADER + i * width) for i in range(count)]
        return self.keys[logical]

    def items(
        self, root: int, level: int, lo: tuple[int, int, int] = (0, 0, 0), hi: tuple[int, int, int] = KEY_MAX
    ) -> list[tuple[tuple[int, int, int], bytes]]:
        """The items of the tree at `root` (its root node's level given) with keys from `lo` to
        `hi`, in key order: only the nodes whose key range meets that range are read."""
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
            keys = self._keys(logical, data, count, width)
            first = max(0, bisect.bisect_left(keys, lo) - 1)  # the child holding `lo` starts at or before it
            for i in range(first, count):
                key, at = keys[i], HEADER + i * width
                if key > hi:
                    break
                if node_level:  # child i holds the keys from its own up to the next child's
                    if key <= hi and (i + 1 == count or keys[i + 1] > lo):
                        children.append((struct.unpack_from("<Q", data, at + 17)[0], node_level - 1))
                    continue
                if not lo <= key <= hi:
                    continue
                where, size = struct.unpack_from("<II", data, at + 17)
                if HEADER + where + size > len(data):
                    raise BtrfsError("a leaf item's data")
                found.append((key, data[HEADER + where : HEADER + where + size]))
            stack.extend(reversed(children))
        return found


def probe(guest: Reader, start: int) -> bytes | None:
    sb = guest.read(start + SUPERBLOCK, 4096)
    return sb if len(sb) >= 4096 and sb[0x40:0x48] == MAGIC else None


def read(guest: Reader, start: int, size: int) -> Btrfs:
    """The subvolumes of the Btrfs at byte `start` of the guest (a partition of `size` bytes)."""
    try:
        return _read(guest, start, size)
    except struct.error as e:
        raise BtrfsError(f"a structure cut short ({e})") from e


def _read(guest: Reader, start: int, size: int) -> Btrfs:
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
        if kind == ROOT_ITEM and (objectid == FS_TREE or FIRST_FREE <= objectid < LAST_FREE) and len(item) >= 239:
            if objectid != FS_TREE and objectid not in ids:
                ids.append(objectid)
            root_dir, node = struct.unpack_from("<QQ", item, 168)
            fs.trees[objectid] = (node, item[238], root_dir)
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
    fs.reader = r
    return fs


# --- files -----------------------------------------------------------------------------------


@dataclass
class BInode:
    number: int
    mode: int
    size: int

    @property
    def kind(self) -> int:
        return self.mode & S_IFMT


class Files(FileSystem[BInode]):
    """The files of one subvolume (its tree), by path."""

    def __init__(self, fs: Btrfs, subvolume: int) -> None:
        if fs.reader is None or subvolume not in fs.trees:
            raise BtrfsError(f"subvolume {subvolume} has no tree here")
        self.r = fs.reader
        self.root, self.level, self.root_dir = fs.trees[subvolume]
        self.subvolume = subvolume
        self.inflated = 0

    def _items(self, objectid: int, kind: int, lo: int = 0, hi: int = 2**64 - 1) -> list[bytes]:
        try:
            return [item for _, item in self.r.items(self.root, self.level, (objectid, kind, lo), (objectid, kind, hi))]
        except struct.error as e:
            raise BtrfsError(f"a structure cut short ({e})") from e

    def inode(self, number: int) -> BInode:
        found = self._items(number, INODE_ITEM, 0, 0)
        if not found or len(found[0]) < 160:
            raise BtrfsError(f"inode {number} not found")
        size, mode = struct.unpack_from("<Q", found[0], 16)[0], struct.unpack_from("<I", found[0], 52)[0]
        return BInode(number, mode, size)

    def entries(self, inode: BInode) -> dict[str, int]:
        found: dict[str, int] = {}
        read = 0
        for item in self._items(inode.number, DIR_INDEX):
            if len(item) < 30:
                raise BtrfsError("a directory entry")
            objectid, kind = struct.unpack_from("<QB", item, 0)
            length = struct.unpack_from("<H", item, 27)[0]
            read += 30 + length
            if read > MAX_DIR:
                break
            if kind == INODE_ITEM:  # not a subvolume's root (ROOT_ITEM): that is another tree
                found.setdefault(item[30 : 30 + length].decode("utf-8", "replace"), objectid)
        return found

    def read(self, inode: BInode, length: int = MAX_FILE, offset: int = 0) -> bytes:
        end = min(inode.size, offset + min(length, MAX_FILE))
        if offset >= end:
            return b""
        out = bytearray(end - offset)  # holes read as zeros
        items = self.r.items(self.root, self.level, (inode.number, EXTENT_DATA, 0), (inode.number, EXTENT_DATA, end))
        if len(items) > MAX_RUNS:
            raise BtrfsError("too many extents")
        for (_, _, at), item in items:
            if len(item) < 21:
                raise BtrfsError("a file extent")
            ram, compression, kind = struct.unpack_from("<Q", item, 8)[0], item[16], item[20]
            if compression not in (0, ZLIB) or item[17] or item[18:20] != b"\0\0":
                raise Compressed(
                    f"inode {inode.number} has extents compressed with {COMPRESSION.get(compression, '?')}"
                )
            if kind == 0:
                data = self._inflate(item[21:], ram) if compression else item[21:]
            elif kind in (1, 2) and len(item) >= 53:
                disk, stored, inner, count = struct.unpack_from("<QQQQ", item, 21)
                lo, hi = max(at, offset), min(at + count, end)
                if kind == 2 or not disk or lo >= hi:
                    continue  # preallocated or a hole: zeros
                if compression:  # the whole extent is one zlib stream of `ram` bytes
                    if stored > MAX_EXTENT:
                        raise BtrfsError("a compressed extent larger than btrfs makes")
                    whole = self._inflate(self.r.data(disk, stored), ram)
                    part = whole[inner + lo - at : inner + hi - at]
                else:
                    part = self.r.data(disk + inner + lo - at, hi - lo)
                out[lo - offset : lo - offset + len(part)] = part
                continue
            else:
                raise BtrfsError("a file extent's type")
            lo, hi = max(at, offset), min(at + len(data), end)
            if lo < hi:
                out[lo - offset : hi - offset] = data[lo - at : hi - at]
        return bytes(out)

    def _inflate(self, data: bytes, size: int) -> bytes:
        if size > MAX_EXTENT:
            raise BtrfsError("a compressed extent larger than btrfs makes")
        self.inflated += size
        if self.inflated > MAX_INFLATED:
            raise BtrfsError("more compressed data than this check decompresses")
        try:
            return zlib.decompressobj().decompress(data, size)
        except zlib.error as e:
            raise BtrfsError(f"a compressed extent ({e})") from e

    def lookup(self, path: str) -> BInode | None:
        return walk(
            path,
            self.inode(self.root_dir),
            self.entries,
            self.inode,
            lambda node: self.read(node, 4096).decode("utf-8", "replace"),
            BtrfsError,
        )


def root_files(fs: Btrfs) -> Files | None:
    """The files of the subvolume holding the OS: the default one if it has /etc, else the top
    level or the first subvolume that has; else the default one's (a /boot, or data). None
    when there is no tree to read (a file system of several devices)."""
    if fs.reader is None:
        return None
    order = [fs.default, FS_TREE] + [s.id for s in fs.subvolumes[:8]]
    for id in dict.fromkeys(order):
        if id in fs.trees:
            files = Files(fs, id)
            if files.lookup("/etc") is not None:
                return files
    return Files(fs, fs.default) if fs.default in fs.trees else None
