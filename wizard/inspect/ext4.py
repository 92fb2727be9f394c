"""Just enough ext2/3/4 to read a guest's small files by path: no mount, no library.

The superblock, one group descriptor per inode looked up, the inode, its extent tree (ext4) or
block map (ext2/3), directories (linear entries; hashed directories read the same way) and
symbolic links. Every number read from the file system is checked before it is used, and every
read goes through the inspection's reader, so its budget bounds what a hostile image can make
this read; on top of that a file or directory is read only up to `MAX_FILE` / `MAX_DIR` bytes.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .reader import Reader

MAGIC = 0xEF53
ROOT_INODE = 2
MAX_FILE = 256 * 1024  # the most read of one file (configuration files are small)
MAX_DIR = 256 * 1024  # the most read of one directory
MAX_DEPTH = 5  # extent tree depth (ext4 itself allows at most 5)
MAX_LINKS = 8  # symbolic links followed in one lookup
MAX_PARTS = 64  # path components in one lookup, after links
MAX_RUNS = 256  # block runs of one file read
INCOMPAT_META_BG = 0x10
INCOMPAT_EXTENTS = 0x40
INCOMPAT_64BIT = 0x80
INCOMPAT_INLINE_DATA = 0x8000
EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000


class HasKind(Protocol):
    @property
    def kind(self) -> int: ...


N = TypeVar("N", bound=HasKind)


def walk(
    path: str,
    root: N,
    entries: Callable[[N], dict[str, int]],
    inode: Callable[[int], N],
    link_target: Callable[[N], str],
    error: Callable[[str], Exception],
) -> N | None:
    """The node at absolute `path` in a file system given by its callbacks (ext4, XFS): '.' and
    '..' resolved, symbolic links followed inside it (at most MAX_LINKS), at most MAX_PARTS
    components; None if some component does not exist or is not a directory."""
    parts = [p for p in path.split("/") if p]
    stack: list[N] = [root]
    links = steps = 0
    while parts:
        steps += 1
        if steps > MAX_PARTS:
            raise error("path too long")
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if len(stack) > 1:
                stack.pop()
            continue
        number = entries(stack[-1]).get(part)
        if number is None:
            return None
        node = inode(number)
        if node.kind == S_IFLNK:
            links += 1
            if links > MAX_LINKS:
                raise error("too many symbolic links")
            target = link_target(node)
            if target.startswith("/"):
                stack = stack[:1]
            parts = [p for p in target.split("/") if p] + parts
            continue
        if parts and node.kind != S_IFDIR:
            return None
        stack.append(node)
    return stack[-1]


class FileSystem(Generic[N]):
    """Files and directories by path, over a reader's `lookup`, `read` and `entries` (ext4, XFS)."""

    def lookup(self, path: str) -> N | None:
        raise NotImplementedError

    def read(self, inode: N, length: int = MAX_FILE, offset: int = 0) -> bytes:
        raise NotImplementedError

    def entries(self, inode: N) -> dict[str, int]:
        raise NotImplementedError

    def file(self, path: str, length: int = MAX_FILE) -> bytes | None:
        node = self.lookup(path)
        if node is None or node.kind != S_IFREG:
            return None
        return self.read(node, length)

    def listdir(self, path: str) -> list[str] | None:
        node = self.lookup(path)
        if node is None or node.kind != S_IFDIR:
            return None
        return sorted(n for n in self.entries(node) if n not in (".", ".."))


class Ext4Error(ValueError):
    """The file system's structures are not what they should be (damaged, or not ext)."""


@dataclass
class Inode:
    number: int
    mode: int
    size: int
    flags: int
    block: bytes  # i_block: 60 bytes (extent tree root, block map or fast symlink target)

    @property
    def kind(self) -> int:
        return self.mode & S_IFMT


def probe(guest: Reader, start: int) -> bytes | None:
    """The superblock of an ext2/3/4 file system at byte `start`, or None."""
    sb = guest.read(start + 1024, 1024)
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 56)[0] != MAGIC:
        return None
    return sb


class Ext4(FileSystem[Inode]):
    """One ext2/3/4 file system of `size` bytes at byte `start` of `guest`."""

    def __init__(self, guest: Reader, start: int, size: int) -> None:
        sb = probe(guest, start)
        if sb is None:
            raise Ext4Error("no ext2/3/4 superblock")
        self.guest, self.start, self.size = guest, start, size
        log_block = struct.unpack_from("<I", sb, 24)[0]
        if log_block > 6:  # 1 KiB .. 64 KiB blocks
            raise Ext4Error(f"block size 2^{10 + log_block}")
        self.block_size = 1024 << log_block
        (self.inodes_count,) = struct.unpack_from("<I", sb, 0)
        blocks_lo, first_data = struct.unpack_from("<I", sb, 4)[0], struct.unpack_from("<I", sb, 20)[0]
        self.blocks_per_group, self.inodes_per_group = (
            struct.unpack_from("<I", sb, 32)[0],
            struct.unpack_from("<I", sb, 40)[0],
        )
        rev = struct.unpack_from("<I", sb, 76)[0]
        self.inode_size = struct.unpack_from("<H", sb, 88)[0] if rev >= 1 else 128
        self.incompat = struct.unpack_from("<I", sb, 96)[0]
        self.uuid = str(uuid.UUID(bytes=sb[104:120]))
        self.label = sb[120:136].split(b"\0", 1)[0].decode("utf-8", "replace")
        blocks_hi = struct.unpack_from("<I", sb, 336)[0] if self.incompat & INCOMPAT_64BIT else 0
        self.blocks = blocks_lo | blocks_hi << 32
        desc = struct.unpack_from("<H", sb, 254)[0] if self.incompat & INCOMPAT_64BIT else 32
        self.desc_size = desc if self.incompat & INCOMPAT_64BIT else 32
        if (
            not self.blocks_per_group
            or not self.inodes_per_group
            or self.inode_size < 128
            or self.inode_size > self.block_size
            or self.inode_size & (self.inode_size - 1)
            or self.desc_size not in (32, 64, 128, 256, 512, 1024)
            or first_data > 1
        ):
            raise Ext4Error("superblock fields out of range")
        if self.incompat & INCOMPAT_META_BG:
            raise Ext4Error("meta_bg layout")
        self.gdt = (first_data + 1) * self.block_size

    # --- blocks and inodes ------------------------------------------------------------------

    def _read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise Ext4Error(f"a read at {offset} beyond the file system")
        data = self.guest.read(self.start + offset, length)
        if len(data) < length:
            raise Ext4Error("the file system is cut short")
        return data

    def _block(self, number: int) -> bytes:
        if not 0 < number < self.blocks:
            raise Ext4Error(f"block {number} outside the file system")
        return self._read(number * self.block_size, self.block_size)

    def inode(self, number: int) -> Inode:
        if not 0 < number <= self.inodes_count:
            raise Ext4Error(f"inode {number} outside the file system")
        group, index = divmod(number - 1, self.inodes_per_group)
        desc = self._read(self.gdt + group * self.desc_size, self.desc_size)
        table = struct.unpack_from("<I", desc, 8)[0]
        if self.desc_size >= 64:
            table |= struct.unpack_from("<I", desc, 0x28)[0] << 32
        if not 0 < table < self.blocks:
            raise Ext4Error(f"inode table of group {group} at block {table}")
        raw = self._read(table * self.block_size + index * self.inode_size, 128)
        mode, size_lo, flags = struct.unpack_from("<H", raw, 0)[0], struct.unpack_from("<I", raw, 4)[0], 0
        flags = struct.unpack_from("<I", raw, 32)[0]
        size = size_lo | struct.unpack_from("<I", raw, 108)[0] << 32
        return Inode(number, mode, size, flags, raw[40:100])

    def _runs(self, inode: Inode, first: int, count: int) -> list[tuple[int, int, int]]:
        """(logical block, physical block or 0 for a hole, length) runs covering blocks
        first..first+count of the file, in order."""
        if inode.flags & INLINE_DATA_FL:
            raise Ext4Error("inline data")
        if inode.flags & EXTENTS_FL:
            runs: list[tuple[int, int, int]] = []
            self._extents(inode.block, first, first + count, 0, runs)
            return runs
        return self._mapped(inode.block, first, count)

    def _extents(self, node: bytes, lo: int, hi: int, depth: int, runs: list[tuple[int, int, int]]) -> None:
        magic, entries, _, level = struct.unpack_from("<HHHH", node, 0)
        if magic != 0xF30A or level > MAX_DEPTH or depth > MAX_DEPTH or 12 + 12 * entries > len(node):
            raise Ext4Error("extent header")
        for i in range(entries):
            e = node[12 + 12 * i : 24 + 12 * i]
            logical = struct.unpack_from("<I", e, 0)[0]
            if level == 0:
                length, hi16, lo32 = struct.unpack_from("<HHI", e, 4)
                zeros = length > 32768
                length = length - 32768 if zeros else length
                if logical + length <= lo or logical >= hi:
                    continue
                if len(runs) >= MAX_RUNS:
                    raise Ext4Error("too many extents")
                runs.append((logical, 0 if zeros else hi16 << 32 | lo32, length))
            else:
                if logical >= hi:
                    break
                nxt = struct.unpack_from("<I", node, 12 + 12 * (i + 1))[0] if i + 1 < entries else None
                if nxt is not None and nxt <= lo:
                    continue
                leaf = struct.unpack_from("<I", e, 4)[0] | struct.unpack_from("<H", e, 8)[0] << 32
                self._extents(self._block(leaf), lo, hi, depth + 1, runs)

    def _mapped(self, block: bytes, first: int, count: int) -> list[tuple[int, int, int]]:
        """ext2/3 block map: 12 direct blocks, then single, double and triple indirect."""
        per = self.block_size // 4
        pointers = struct.unpack("<15I", block)
        runs: list[tuple[int, int, int]] = []
        for logical in range(first, first + count):
            if len(runs) >= MAX_RUNS * 4:
                raise Ext4Error("too many blocks")
            if logical < 12:
                physical = pointers[logical]
            else:
                n, level, root = logical - 12, 1, pointers[12]
                if n >= per:
                    n, level, root = n - per, 2, pointers[13]
                    if n >= per * per:
                        n, level, root = n - per * per, 3, pointers[14]
                physical = root
                for depth in range(level - 1, -1, -1):
                    if not physical:
                        break
                    index = n // per**depth % per
                    physical = struct.unpack_from("<I", self._block(physical), 4 * index)[0]
            if runs and physical and runs[-1][1] and runs[-1][1] + runs[-1][2] == physical:
                runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
            else:
                runs.append((logical, physical, 1))
        return runs

    def read(self, inode: Inode, length: int = MAX_FILE, offset: int = 0) -> bytes:
        """Up to `length` bytes (at most MAX_FILE) of the file from `offset`."""
        end = min(inode.size, offset + min(length, MAX_FILE))
        if offset >= end:
            return b""
        if inode.kind == S_IFLNK and inode.size < 60 and not inode.flags & EXTENTS_FL:
            return inode.block[offset:end]  # a fast symbolic link: the target is in i_block
        bs = self.block_size
        first, last = offset // bs, (end - 1) // bs
        out = bytearray()
        for logical, physical, length_ in self._runs(inode, first, last - first + 1):
            lo, hi = max(logical, first), min(logical + length_, last + 1)
            if lo >= hi:
                continue
            at = first + len(out) // bs
            if lo > at:
                out += bytes((lo - at) * bs)  # a hole
            if physical:
                if physical + (hi - logical) > self.blocks:
                    raise Ext4Error("extent past the file system")
                out += self._read((physical + lo - logical) * bs, (hi - lo) * bs)
            else:
                out += bytes((hi - lo) * bs)
        want = (last - first + 1) * bs
        out += bytes(max(0, want - len(out)))
        return bytes(out[offset - first * bs : end - first * bs])

    # --- directories and paths --------------------------------------------------------------

    def entries(self, inode: Inode) -> dict[str, int]:
        """name -> inode number of a directory's entries."""
        if inode.kind != S_IFDIR:
            raise Ext4Error(f"inode {inode.number} is not a directory")
        data = self.read(inode, MAX_DIR)
        found: dict[str, int] = {}
        at = 0
        while at + 8 <= len(data):
            number, rec_len, name_len = struct.unpack_from("<IHB", data, at)
            if rec_len < 8 or rec_len % 4:
                at = (at // self.block_size + 1) * self.block_size  # damaged block: go to the next
                continue
            if number and at + 8 + name_len <= len(data):
                name = data[at + 8 : at + 8 + name_len].decode("utf-8", "replace")
                found.setdefault(name, number)
            at += rec_len
        return found

    def lookup(self, path: str) -> Inode | None:
        """The inode at absolute `path`, symbolic links followed (inside this file system); None
        if some component does not exist."""
        return walk(
            path,
            self.inode(ROOT_INODE),
            self.entries,
            self.inode,
            lambda node: self.read(node, 4096).decode("utf-8", "replace"),
            Ext4Error,
        )
