"""Readers for the tests: in memory, counting, patched, and an endless run of zeros."""

from __future__ import annotations

from wizard.inspect import Reader


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + max(0, length)]


class ZeroReader:
    """A disk of `size` zero bytes that exists nowhere (for sizes no file system allows)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        return bytes(max(0, min(length, self.size - offset)))


class CountingReader:
    """Records every read passed to the reader it wraps."""

    def __init__(self, base: Reader) -> None:
        self.base = base
        self.size = base.size
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.base.read(offset, length)

    @property
    def total(self) -> int:
        return sum(length for _, length in self.reads)


class PatchedReader:
    """`base` with some byte ranges replaced: a crafted variant of a real image, no copy."""

    def __init__(self, base: Reader, patches: dict[int, bytes]) -> None:
        self.base = base
        self.patches = patches
        self.size = base.size

    def read(self, offset: int, length: int) -> bytes:
        data = bytearray(self.base.read(offset, length))
        for at, patch in self.patches.items():
            lo, hi = max(at, offset), min(at + len(patch), offset + len(data))
            if lo < hi:
                data[lo - offset : hi - offset] = patch[lo - at : hi - at]
        return bytes(data)
