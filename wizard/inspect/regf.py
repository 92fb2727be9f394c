"""Just enough of the Windows registry's hive format (regf) to read a few values by key path.

The base block (the root key's cell, the size of the hive bins), then only the cells on the
path: key nodes (nk), their subkey lists (lf, lh, li and ri of those), value lists, value keys
(vk) and their data (in the cell's offset field, one data cell, or a big-data `db` cell's
segments). Types read: REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD (others as bytes).

The hive is read lazily through a `Reader` (a file on the guest's NTFS volume): a real SOFTWARE
hive is 50-100 MiB, and a lookup of one key reads a few dozen cells of it, in `PAGE`-sized
pieces kept in memory. regipy (MIT) reads the same format but wants the whole file in memory,
which is why this reader exists. Every offset, size and count is checked against the hive and
bounded; damaged structures raise `RegfError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .reader import Reader

BASE = 4096  # cell offsets count from the first hive bin, after the base block
PAGE = 16 * 1024
MAX_PAGES = 64
MAX_CELL = 1024 * 1024
MAX_VALUE = 64 * 1024  # the most of one value's data read (the values read are short strings)
MAX_SUBKEYS = 65536  # entries of one subkey list scanned
MAX_VALUES = 4096
MAX_PARTS = 32
MAX_NAME = 512  # characters of a key or value name
MAX_VISITS = 20_000  # cells read from one hive, in all (a damaged ri list could name millions)
REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_MULTI_SZ = 1, 2, 3, 4, 7
KEY_COMP_NAME, VALUE_COMP_NAME = 0x20, 0x1
BIG_DATA = 16344  # data larger than this is in a db cell's segments (hive version 1.4 and later)

Value = str | int | list[str] | bytes


class RegfError(ValueError):
    """The hive's structures are not what they should be (damaged, or not a hive)."""


@dataclass
class Key:
    offset: int
    name: str
    subkeys: int
    subkey_list: int
    values: int
    value_list: int


def _u(data: bytes, fmt: str, at: int) -> int:
    if at < 0 or at + struct.calcsize(fmt) > len(data):
        raise RegfError(f"a field at {at} past the end of its cell")
    value: int = struct.unpack_from(fmt, data, at)[0]
    return value


def _name(raw: bytes, compressed: bool) -> str:
    return raw.decode("latin-1") if compressed else raw.decode("utf-16-le", "replace")


def lh_hash(name: str) -> int:
    """The hash an lh list keeps for each subkey's name."""
    h = 0
    for ch in name.upper():
        h = (h * 37 + ord(ch)) & 0xFFFFFFFF
    return h


class Hive:
    """A registry hive read from `source` (its bytes from 0: the base block, then the bins)."""

    def __init__(self, source: Reader) -> None:
        self.source = source
        self._pages: dict[int, bytes] = {}
        self.visits = 0
        base = self._bytes(0, 512)
        if len(base) < 512 or base[:4] != b"regf":
            raise RegfError("no regf base block")
        self.major, self.minor = _u(base, "<I", 20), _u(base, "<I", 24)
        self.root_offset, self.bins_size = _u(base, "<I", 36), _u(base, "<I", 40)
        self.dirty = _u(base, "<I", 4) != _u(base, "<I", 8)  # sequence numbers differ: logs not applied
        if self.major != 1 or self.bins_size < 32 or self.bins_size % 4096:
            raise RegfError(f"hive version {self.major}.{self.minor}, bins of {self.bins_size} bytes")
        self.bins_size = min(self.bins_size, source.size - BASE)
        self.root = self.key_at(self.root_offset)

    # --- cells ------------------------------------------------------------------------------

    def _bytes(self, offset: int, length: int) -> bytes:
        """Bytes of the hive file, read in aligned PAGE-sized pieces kept in memory."""
        out = bytearray()
        at, end = offset, min(offset + length, self.source.size)
        while at < end:
            page, within = divmod(at, PAGE)
            if page not in self._pages:
                if len(self._pages) >= MAX_PAGES:
                    self._pages.clear()
                self._pages[page] = self.source.read(page * PAGE, PAGE)
            data = self._pages[page]
            piece = data[within : within + end - at]
            if not piece:
                break
            out += piece
            at += len(piece)
        return bytes(out)

    def cell(self, offset: int) -> bytes:
        """The data of the allocated cell at `offset` (relative to the first bin)."""
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise RegfError(f"more than {MAX_VISITS} cells read")
        if offset % 8 or not 0 <= offset < self.bins_size - 8:
            raise RegfError(f"cell offset {offset:#x} outside the hive bins")
        size = _u(self._bytes(BASE + offset, 4), "<i", 0)
        if size >= 0:
            raise RegfError(f"cell {offset:#x} is free")
        size = -size
        if size < 8 or size > MAX_CELL or offset + size > self.bins_size:
            raise RegfError(f"cell {offset:#x} of {size} bytes")
        data = self._bytes(BASE + offset + 4, size - 4)
        if len(data) < size - 4:
            raise RegfError("the hive is cut short")
        return data

    def key_at(self, offset: int) -> Key:
        data = self.cell(offset)
        if data[:2] != b"nk":
            raise RegfError(f"cell {offset:#x} is not a key node")
        flags, name_len = _u(data, "<H", 2), _u(data, "<H", 72)
        if name_len > 2 * MAX_NAME or 76 + name_len > len(data):
            raise RegfError(f"key node {offset:#x}: name out of range")
        name = _name(data[76 : 76 + name_len], bool(flags & KEY_COMP_NAME))
        return Key(offset, name, _u(data, "<I", 20), _u(data, "<I", 28), _u(data, "<I", 36), _u(data, "<I", 40))

    # --- keys -------------------------------------------------------------------------------

    def subkey(self, key: Key, name: str) -> Key | None:
        """The subkey of `key` named `name` (case-insensitive)."""
        if not key.subkeys or key.subkey_list == 0xFFFFFFFF:
            return None
        want = name.upper()
        return self._in_list(key.subkey_list, want, lh_hash(name), name.isascii(), 0)

    def _in_list(self, offset: int, want: str, hash_: int, ascii_: bool, depth: int) -> Key | None:
        data = self.cell(offset)
        kind, count = data[:2], _u(data, "<H", 2)
        if count > MAX_SUBKEYS:
            raise RegfError("subkey list too long")
        if kind == b"ri":
            if depth:
                raise RegfError("an index root inside an index root")
            for i in range(count):
                found = self._in_list(_u(data, "<I", 4 + 4 * i), want, hash_, ascii_, 1)
                if found is not None:
                    return found
            return None
        if kind not in (b"lf", b"lh", b"li"):
            raise RegfError(f"cell {offset:#x} is not a subkey list")
        step = 4 if kind == b"li" else 8
        if 4 + step * count > len(data):
            raise RegfError(f"subkey list {offset:#x} longer than its cell")
        for i in range(count):
            at = 4 + step * i
            if ascii_ and kind == b"lh" and _u(data, "<I", at + 4) != hash_:
                continue
            if ascii_ and kind == b"lf":
                hint = data[at + 4 : at + 8].rstrip(b"\0").decode("latin-1").upper()
                if not want.startswith(hint):
                    continue
            key = self.key_at(_u(data, "<I", at))
            if key.name.upper() == want:
                return key
        return None

    def key(self, path: str) -> Key | None:
        """The key at `path` ("Microsoft\\Windows NT\\CurrentVersion") from the root."""
        parts = [p for p in path.replace("/", "\\").split("\\") if p]
        if len(parts) > MAX_PARTS:
            raise RegfError("key path too long")
        key: Key | None = self.root
        for part in parts:
            assert key is not None
            key = self.subkey(key, part)
            if key is None:
                return None
        return key

    # --- values -----------------------------------------------------------------------------

    def values(self, key: Key, names: set[str] | None = None) -> dict[str, Value]:
        """The key's values (those named in `names`, case-insensitive, if given), decoded."""
        if not key.values or key.value_list == 0xFFFFFFFF:
            return {}
        if key.values > MAX_VALUES:
            raise RegfError("too many values")
        listing = self.cell(key.value_list)
        if 4 * key.values > len(listing):
            raise RegfError("value list longer than its cell")
        wanted = {n.upper() for n in names} if names is not None else None
        found: dict[str, Value] = {}
        for i in range(key.values):
            data = self.cell(_u(listing, "<I", 4 * i))
            if data[:2] != b"vk":
                raise RegfError("a value list entry that is not a value")
            name_len, flags = _u(data, "<H", 2), _u(data, "<H", 16)
            if name_len > 2 * MAX_NAME or 20 + name_len > len(data):
                raise RegfError("value name out of range")
            name = _name(data[20 : 20 + name_len], bool(flags & VALUE_COMP_NAME))
            if wanted is not None and name.upper() not in wanted:
                continue
            found[name] = decode(_u(data, "<I", 12), self._data(data))
        return found

    def value(self, path: str, name: str) -> Value | None:
        key = self.key(path)
        if key is None:
            return None
        found = self.values(key, {name})
        return next(iter(found.values()), None)

    def _data(self, vk: bytes) -> bytes:
        size, offset = _u(vk, "<I", 4), _u(vk, "<I", 8)
        if size & 0x80000000:  # up to 4 bytes, in the offset field itself
            return vk[8 : 8 + min(size & 0x7FFFFFFF, 4)]
        length = min(size, MAX_VALUE)
        if not size:
            return b""
        data = self.cell(offset)
        if size > BIG_DATA and data[:2] == b"db" and (self.major, self.minor) >= (1, 4):
            count, segments = _u(data, "<H", 2), self.cell(_u(data, "<I", 4))
            if 4 * count > len(segments):
                raise RegfError("big data segment list longer than its cell")
            out = bytearray()
            for i in range(count):
                if len(out) >= length:
                    break
                out += self.cell(_u(segments, "<I", 4 * i))[:BIG_DATA]
            return bytes(out[:length])
        if size > len(data):
            raise RegfError("value data longer than its cell")
        return data[:length]


def decode(kind: int, data: bytes) -> Value:
    """A value's data as Python: str (SZ, EXPAND_SZ), int (DWORD), list[str] (MULTI_SZ), bytes."""
    if kind in (REG_SZ, REG_EXPAND_SZ):
        return _utf16(data).split("\0", 1)[0]
    if kind == REG_DWORD and len(data) >= 4:
        return _u(data, "<I", 0)
    if kind == REG_MULTI_SZ:
        return [s for s in _utf16(data).split("\0") if s][:256]
    return data


def _utf16(data: bytes) -> str:
    return data[: len(data) // 2 * 2].decode("utf-16-le", "replace")
