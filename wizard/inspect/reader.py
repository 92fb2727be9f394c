"""Random access to an image: a local file, a byte range of another reader, or an S3 object.

Images can be 5 TiB, and on S3 every read is a ranged GET, so the inspection reads the
head and the tail once (`CachedReader`) and otherwise only the few small pieces it needs.
"""

from __future__ import annotations

import os
from typing import Protocol

from .report import ImageError, human

HEAD = 256 * 1024
TAIL = 64 * 1024
PAGE = 16 * 1024  # small reads elsewhere fetch and keep the aligned page around them
MAX_PAGES = 64


class Reader(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset`; fewer at the end of the image."""
        ...


class FileReader:
    """A local file, opened for each read so that no handle outlives the inspection."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.size = os.path.getsize(self.path)

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self.size:
            return b""
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)


class SliceReader:
    """`size` bytes of `base` from `start`: a file inside an OVA's tar, a fixed VHD's data."""

    def __init__(self, base: Reader, start: int, size: int) -> None:
        self.base = base
        self.start = start
        self.size = max(0, min(size, base.size - start))

    def read(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0 or offset < 0:
            return b""
        return self.base.read(self.start + offset, length)


class CachedReader:
    """Keeps the head and the tail in memory, each read from `base` once and only if asked for.

    Every format probe and most headers, footers and tables lie in one of them. Small reads
    elsewhere (table entries, directory sectors) tend to come back to the same places, so they
    are served from 16 KiB pages: one ranged GET each instead of one per entry.
    """

    def __init__(self, base: Reader) -> None:
        self.base = base
        self.size = base.size
        self._head: bytes | None = None
        self._tail: bytes | None = None
        self._pages: dict[int, bytes] = {}

    @property
    def head(self) -> bytes:
        if self._head is None:
            self._head = self.base.read(0, min(HEAD, self.size))
        return self._head

    @property
    def tail_start(self) -> int:
        return max(0, self.size - TAIL)

    @property
    def tail(self) -> bytes:
        if self._tail is None:
            self._tail = self.base.read(self.tail_start, self.size - self.tail_start)
        return self._tail

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if offset < 0 or offset >= end:
            return b""
        if end <= min(HEAD, self.size):
            return self.head[offset:end]
        if offset >= self.tail_start:
            return self.tail[offset - self.tail_start : end - self.tail_start]
        page, start = divmod(offset, PAGE)
        if (end - 1) // PAGE == page:
            return self._page(page)[start : start + end - offset]
        return self.base.read(offset, end - offset)

    def _page(self, index: int) -> bytes:
        if index not in self._pages:
            if len(self._pages) >= MAX_PAGES:
                self._pages.clear()
            self._pages[index] = self.base.read(index * PAGE, PAGE)
        return self._pages[index]


def read_exact(reader: Reader, offset: int, length: int, what: str) -> bytes:
    """Reads `length` bytes or raises a "truncated" error naming the missing structure."""
    data = reader.read(offset, length)
    if len(data) < length:
        raise ImageError(
            "truncated",
            f"The image ends before its {what} (needed bytes {offset}..{offset + length} of a "
            f"{human(reader.size)} file): the file was cut short, e.g. by an interrupted copy or "
            "upload. Upload the complete file again.",
        )
    return data
