"""Just enough XFS to read a guest's small files by path (RHEL-like roots): no mount, no library.

The superblock, inodes (found by their number alone: allocation group, block, slot), the data
fork in local (short-form directories, short symlinks) or extent form, and directory data
blocks (block, leaf and node directories keep their entries in the same data blocks). B-tree
forks (very fragmented files) are not read. Every number is checked before use and every read
goes through the inspection's budgeted reader; files and directories are read only up to
`ext4.MAX_FILE` / `ext4.MAX_DIR` bytes, like ext4's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .ext4 import MAX_DIR, MAX_FILE, MAX_RUNS, S_IFDIR, S_IFMT, Ext4Error, FileSystem, walk
from .reader import Reader

LEAF_OFFSET = 32 * 1024**3  # directory data blocks lie below this byte offset of the directory
FTYPE_V5 = 0x1  # sb_features_incompat: directory entries carry a file type byte
FTYPE_V4 = 0x200  # sb_features2
NREXT64 = 0x20


class XfsError(Ext4Error):
    """XFS structures not as they should be (a subclass, so callers catch one error for both)."""


@dataclass
class XInode:
    number: int
    mode: int
    size: int
    format: int  # 1 local, 2 extents, 3 btree
    nextents: int
    fork: bytes  # the data fork's bytes

    @property
    def kind(self) -> int:
        return self.mode & S_IFMT


def probe(guest: Reader, start: int) -> bytes | None:
    sb = guest.read(start, 512)
    return sb if len(sb) >= 512 and sb.startswith(b"XFSB") else None


class Xfs(FileSystem[XInode]):
    def __init__(self, guest: Reader, start: int, size: int) -> None:
        sb = probe(guest, start)
        if sb is None:
            raise XfsError("no XFS superblock")
        self.guest, self.start, self.size = guest, start, size

        def u32(at: int) -> int:
            value: int = struct.unpack_from(">I", sb, at)[0]
            return value

        self.block_size = u32(4)
        self.dblocks = struct.unpack_from(">Q", sb, 8)[0]
        self.rootino = struct.unpack_from(">Q", sb, 56)[0]
        self.agblocks, self.agcount = u32(84), u32(88)
        version = struct.unpack_from(">H", sb, 100)[0] & 0xF
        self.inode_size = struct.unpack_from(">H", sb, 104)[0]
        self.blocklog, self.inodelog, self.inopblog, self.agblklog = sb[120], sb[122], sb[123], sb[124]
        self.dirblklog = sb[192]
        self.v5 = version == 5
        incompat = u32(216) if self.v5 else 0
        self.ftype = bool(incompat & FTYPE_V5) if self.v5 else bool(u32(200) & FTYPE_V4)
        self.nrext64 = bool(incompat & NREXT64)
        if (
            version not in (4, 5)
            or not 9 <= self.blocklog <= 16
            or self.block_size != 1 << self.blocklog
            or not 8 <= self.inodelog <= 11
            or self.inode_size != 1 << self.inodelog
            or self.inopblog != self.blocklog - self.inodelog
            or not self.agblocks
            or not self.agcount
            or self.agblklog > 31
            or (1 << self.agblklog) < self.agblocks
            or self.dirblklog > 6
        ):
            raise XfsError("superblock fields out of range")
        self.dir_block = self.block_size << self.dirblklog

    def _read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise XfsError(f"a read at {offset} beyond the file system")
        data = self.guest.read(self.start + offset, length)
        if len(data) < length:
            raise XfsError("the file system is cut short")
        return data

    def _fsblock(self, fsb: int) -> int:
        """The byte offset of file system block `fsb` (allocation group number in its high bits)."""
        ag, block = fsb >> self.agblklog, fsb & ((1 << self.agblklog) - 1)
        if ag >= self.agcount or block >= self.agblocks:
            raise XfsError(f"block {fsb} outside the file system")
        return (ag * self.agblocks + block) * self.block_size

    def inode(self, number: int) -> XInode:
        bits = self.agblklog + self.inopblog
        ag, agino = number >> bits, number & ((1 << bits) - 1)
        block, slot = agino >> self.inopblog, agino & ((1 << self.inopblog) - 1)
        if ag >= self.agcount or block >= self.agblocks:
            raise XfsError(f"inode {number} outside the file system")
        raw = self._read((ag * self.agblocks + block) * self.block_size + slot * self.inode_size, self.inode_size)
        if raw[:2] != b"IN":
            raise XfsError(f"inode {number} has no inode magic")
        mode, version, fmt = struct.unpack_from(">HBB", raw, 2)
        size = struct.unpack_from(">Q", raw, 56)[0]
        nextents = struct.unpack_from(">Q" if self.nrext64 else ">I", raw, 24 if self.nrext64 else 76)[0]
        core = 176 if version == 3 else 100
        forkoff = raw[82]
        end = core + forkoff * 8 if forkoff else self.inode_size
        if end > self.inode_size or core >= end:
            raise XfsError(f"inode {number}'s fork offset")
        return XInode(number, mode, size, fmt, min(nextents, 1 << 32), raw[core:end])

    def _extents(self, inode: XInode) -> list[tuple[int, int, int, bool]]:
        """(file block, file system block, count, unwritten) of an extent-form fork."""
        if inode.format != 2:
            raise XfsError("a B-tree fork (a very fragmented file): not read")
        count = min(inode.nextents, len(inode.fork) // 16, MAX_RUNS)
        runs = []
        for i in range(count):
            hi, lo = struct.unpack_from(">QQ", inode.fork, 16 * i)
            whole = hi << 64 | lo
            runs.append(
                (
                    (whole >> 73) & ((1 << 54) - 1),
                    (whole >> 21) & ((1 << 52) - 1),
                    whole & ((1 << 21) - 1),
                    bool(whole >> 127),
                )
            )
        return runs

    def read(self, inode: XInode, length: int = MAX_FILE, offset: int = 0) -> bytes:
        end = min(inode.size, offset + min(length, MAX_FILE))
        if offset >= end:
            return b""
        if inode.format == 1:  # local: the data is in the inode
            return inode.fork[offset:end]
        bs = self.block_size
        first, last = offset // bs, (end - 1) // bs
        out = bytearray((last - first + 1) * bs)
        for logical, fsb, count, unwritten in self._extents(inode):
            lo, hi = max(logical, first), min(logical + count, last + 1)
            if lo >= hi or unwritten:
                continue
            data = self._read(self._fsblock(fsb + (lo - logical)), (hi - lo) * bs)
            out[(lo - first) * bs : (hi - first) * bs] = data
        return bytes(out[offset - first * bs : end - first * bs])

    def entries(self, inode: XInode) -> dict[str, int]:
        if inode.kind != S_IFDIR:
            raise XfsError(f"inode {inode.number} is not a directory")
        if inode.format == 1:
            return self._shortform(inode.fork)
        found: dict[str, int] = {}
        bs, db = self.block_size, self.dir_block
        read = 0
        for logical, fsb, count, unwritten in self._extents(inode):
            if logical * bs >= LEAF_OFFSET or unwritten:
                continue
            for at in range(0, count * bs, db):
                if read >= MAX_DIR:
                    return found
                block = self._read(self._fsblock(fsb) + at, db)
                read += db
                self._data_block(block, found)
        return found

    def _shortform(self, fork: bytes) -> dict[str, int]:
        if len(fork) < 6:
            raise XfsError("short-form directory")
        count, i8 = fork[0], fork[1]
        width = 8 if i8 else 4
        at = 2 + width
        found: dict[str, int] = {}
        for _ in range(count or i8):
            if at + 3 > len(fork):
                raise XfsError("short-form directory entries")
            namelen = fork[at]
            name = fork[at + 3 : at + 3 + namelen]
            at += 3 + namelen + (1 if self.ftype else 0)
            if at + width > len(fork):
                raise XfsError("short-form directory entries")
            number = int.from_bytes(fork[at : at + width], "big")
            at += width
            found.setdefault(name.decode("utf-8", "replace"), number)
        return found

    def _data_block(self, block: bytes, found: dict[str, int]) -> None:
        magic = block[:4]
        if magic in (b"XDB3", b"XDD3"):
            at = 64
        elif magic in (b"XD2B", b"XD2D"):
            at = 16
        else:
            return  # a free or damaged block: no entries
        end = len(block)
        if magic in (b"XDB3", b"XD2B"):  # a single-block directory: leaf entries and a tail at the end
            leaves = struct.unpack_from(">I", block, end - 8)[0]
            end = max(at, end - 8 - 8 * min(leaves, end // 8))
        while at + 8 <= end:
            if block[at : at + 2] == b"\xff\xff":  # unused space: its length follows
                length = struct.unpack_from(">H", block, at + 2)[0]
                if length < 8 or length % 8:
                    return
                at += length
                continue
            number, namelen = struct.unpack_from(">QB", block, at)
            name = block[at + 9 : at + 9 + namelen]
            size = (8 + 1 + namelen + (1 if self.ftype else 0) + 2 + 7) // 8 * 8
            if not namelen or at + size > end:
                return
            found.setdefault(name.decode("utf-8", "replace"), number)
            at += size

    def _target(self, node: XInode) -> str:
        data = self.read(node, 4096)
        if self.v5 and node.format == 2 and data.startswith(b"XSLM"):  # a remote link's block header
            data = self._read(self._fsblock(self._extents(node)[0][1]) + 56, min(node.size, self.block_size - 56))
        return data.decode("utf-8", "replace")

    def lookup(self, path: str) -> XInode | None:
        return walk(path, self.inode(self.rootino), self.entries, self.inode, self._target, XfsError)
