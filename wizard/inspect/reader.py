"""Random access to an image: a local file, a byte range of another reader, or an S3 object.

Images can be 5 TiB, and on S3 every read is a ranged GET, so the inspection reads the head,
the rest of the first 4 MiB and the tail once each (`CachedReader`), and otherwise only the few
small pieces it needs.

Everything an image's header says (sizes, offsets, counts) is checked before use, and as a
second line, every inspection has a `Budget`: at most `MAX_READ` bytes in one read, `MAX_TOTAL`
bytes and `MAX_READS` reads of the image in all (each read is a GET on S3), `MAX_CALLS` reads
asked for (served from memory or not: a bound on every loop) and `MAX_INFLATED` bytes
decompressed. A damaged header that asks for more ends the inspection of that structure with a
"corrupt" finding, never with a hang or a memory error.
"""

from __future__ import annotations

import os
import zlib
from typing import Protocol

from .report import ImageError, human

MiB = 1024 * 1024
HEAD = 1 * MiB
NEAR = 4 * MiB  # the rest of the image's first 4 MiB: read the first time a read falls in it
TAIL = 64 * 1024
PAGE = 64 * 1024  # small reads elsewhere fetch and keep the aligned pages around them
MAX_SPAN = 256 * 1024  # reads up to this size are served from pages; larger ones go to the image
MAX_PAGES = 64
MAX_PREFETCH = 2 * MiB  # what `CachedReader.prefetch` reads at most, in pages
MAX_READ = 4 * MiB  # bytes in one read of the image
MAX_TOTAL = 32 * MiB  # bytes read of the image in one inspection
MAX_READS = 128  # reads of the image in one inspection
MAX_CALLS = 50_000  # reads asked of the inspection's readers, served from memory or not
MAX_INFLATED = 64 * MiB  # bytes decompressed (VMDK grains, QCOW2 clusters) in one inspection


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
        if length <= 0 or offset < 0 or offset >= self.size:
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


class BudgetExceeded(ImageError):
    """The image's structures ask for more reading or decompressing than any real image needs."""

    def __init__(self, what: str) -> None:
        super().__init__(
            "corrupt",
            f"The image's headers ask for {what}: the file is probably damaged, and VM Import would "
            "most likely fail on it too. Export the image again (or convert it: qemu-img convert -O vmdk "
            "-o subformat=streamOptimized in.img out.vmdk).",
        )


class ReadFailed(Exception):
    """The image's reader itself failed (S3 or the file system): not the image's fault, so
    `inspect_image` raises the reader's own exception again instead of making it a finding."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


class Budget:
    """What one inspection may read and decompress; see the module's docstring."""

    def __init__(self) -> None:
        self.reads = self.total = self.calls = self.inflated = 0
        self.exceeded: BudgetExceeded | None = None

    def _over(self, what: str) -> None:
        self.exceeded = self.exceeded or BudgetExceeded(what)
        raise self.exceeded

    def read(self, length: int) -> None:
        """One read of `length` bytes of the image is about to be made."""
        if self.exceeded:
            raise self.exceeded
        if length > MAX_READ:
            self._over(f"a read of {human(length)} at once (an inspection reads at most {human(MAX_READ)})")
        self.reads, self.total = self.reads + 1, self.total + length
        if self.reads > MAX_READS:
            self._over(f"more than {MAX_READS} separate reads of the file")
        if self.total > MAX_TOTAL:
            self._over(f"more than {human(MAX_TOTAL)} of reads")

    def call(self, length: int) -> None:
        """A read of `length` bytes is asked of one of the inspection's readers."""
        if self.exceeded:
            raise self.exceeded
        self.calls += 1
        if self.calls > MAX_CALLS:
            self._over(f"more than {MAX_CALLS} lookups")
        if length > MAX_READ:
            self._over(f"a read of {human(length)} at once (an inspection reads at most {human(MAX_READ)})")

    def inflate(self, data: bytes, size: int, wbits: int = zlib.MAX_WBITS) -> bytes:
        """`data` decompressed (zlib; raw deflate with wbits=-15), at most `size` bytes of it."""
        if self.exceeded:
            raise self.exceeded
        self.inflated += size
        if self.inflated > MAX_INFLATED:
            self._over(f"more than {human(MAX_INFLATED)} of decompressing")
        return zlib.decompressobj(wbits).decompress(data, size)


class BudgetReader:
    """The image as the inspection sees it: every read of it is counted against the budget."""

    def __init__(self, base: Reader, budget: Budget) -> None:
        self.base, self.budget, self.size = base, budget, base.size

    def read(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0 or offset < 0:
            return b""
        self.budget.read(length)
        try:
            data = self.base.read(offset, length)
        except Exception as e:
            raise ReadFailed(e) from e
        return data[:length]


class CachedReader:
    """Keeps the start and the tail of the image in memory, each read from `base` once and only
    if asked for.

    Every format probe and most headers, footers and tables lie there: the head (1 MiB) holds
    a VHDX's headers and region tables, a QCOW2's header and first tables, a GPT with its
    entries; the rest of the first 4 MiB (`NEAR`, read the first time a read falls in it) the
    FAT of an ESP at 1 MiB, a VHD's first blocks (a VHDX `prefetch`es its BAT and metadata
    instead: its log, often 1 MiB of nothing, lies before them). Other reads
    (table entries, directory sectors) tend to come back to the same places, so they are
    served from 64 KiB pages, the missing pages of one read fetched together: one ranged GET
    each instead of one per entry. A read larger than `MAX_SPAN` goes to `base` as it is.
    """

    def __init__(self, base: Reader, budget: Budget, head: int = HEAD, near: int = NEAR, tail: int = TAIL) -> None:
        self.base = base
        self.budget = budget
        self.size = base.size
        # four ranges that do not overlap: head [0, h), near [h, n), pages [n, t), tail [t, size)
        self.head_size = min(head, self.size)
        self.tail_start = max(self.head_size, self.size - tail)
        self.near_end = min(max(near, self.head_size), self.tail_start)
        self._head: bytes | None = None
        self._near: bytes | None = None
        self._tail: bytes | None = None
        self._pages: dict[int, bytes] = {}

    @property
    def head(self) -> bytes:
        if self._head is None:
            self._head = self.base.read(0, self.head_size)
        return self._head

    @property
    def near(self) -> bytes:
        if self._near is None:
            self._near = self.base.read(self.head_size, self.near_end - self.head_size)
        return self._near

    @property
    def tail(self) -> bytes:
        if self._tail is None:
            self._tail = self.base.read(self.tail_start, self.size - self.tail_start)
        return self._tail

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if offset < 0 or offset >= end:
            return b""
        self.budget.call(end - offset)
        parts: list[bytes | memoryview] = []
        while offset < end:
            if offset < self.head_size:
                buffer, start, stop = self.head, 0, self.head_size
            elif offset < self.near_end:
                stop = min(end, self.near_end)
                if self._near is None and self._kept(offset, stop):  # prefetched: the rest is not needed
                    parts.append(self._middle(offset, stop))
                    offset = stop
                    continue
                buffer, start, stop = self.near, self.head_size, self.near_end
            elif offset >= self.tail_start:
                buffer, start, stop = self.tail, self.tail_start, self.size
            else:
                stop = min(end, self.tail_start)
                parts.append(self._middle(offset, stop))
                offset = stop
                continue
            stop = min(end, stop)
            if not parts and stop == end:  # the whole read in one buffer: the common case
                return buffer[offset - start : stop - start]
            parts.append(memoryview(buffer)[offset - start : stop - start])
            offset = stop
        return b"".join(parts)

    def prefetch(self, offset: int, length: int) -> None:
        """Reads the pages of [offset, offset + length) now, in one read, where they lie past the
        head and before the tail and span at most `MAX_PREFETCH`: for a format that knows where
        its next structures are (a VHDX's BAT and metadata), instead of the rest of the first 4 MiB."""
        start, end = max(offset, self.head_size), min(offset + length, self.tail_start)
        if start < end <= start + MAX_PREFETCH:
            self.budget.call(end - start)
            self._fetch(start // PAGE, (end - 1) // PAGE)

    def _kept(self, offset: int, end: int) -> bool:
        return end - offset <= MAX_SPAN and all(i in self._pages for i in range(offset // PAGE, (end - 1) // PAGE + 1))

    def _fetch(self, first: int, last: int) -> None:
        missing = [i for i in range(first, last + 1) if i not in self._pages]
        if len(self._pages) + len(missing) > MAX_PAGES:
            self._pages = {i: self._pages[i] for i in range(first, last + 1) if i in self._pages}
        while missing:  # each run of adjacent missing pages in one read
            run = 1
            while run < len(missing) and missing[run] == missing[0] + run:
                run += 1
            at = missing[0] * PAGE  # pages stop where the tail starts: no byte is read twice
            data = self.base.read(at, min(run * PAGE, self.tail_start - at))
            for n in range(run):
                self._pages[missing[n]] = data[n * PAGE : (n + 1) * PAGE]
            missing = missing[run:]

    def _middle(self, offset: int, end: int) -> bytes:
        if end - offset > MAX_SPAN:
            return self.base.read(offset, end - offset)
        first, last = offset // PAGE, (end - 1) // PAGE
        self._fetch(first, last)
        if first == last:
            return self._pages[first][offset - first * PAGE : end - first * PAGE]
        data = b"".join(self._pages[i] for i in range(first, last + 1))
        return data[offset - first * PAGE : end - first * PAGE]


def read_exact(reader: Reader, offset: int, length: int, what: str) -> bytes:
    """Reads `length` bytes or raises a "truncated" error naming the missing structure."""
    data = reader.read(offset, length) if offset >= 0 else b""
    if len(data) < length:
        raise ImageError(
            "truncated",
            f"The image ends before its {what} (needed bytes {offset}..{offset + length} of a "
            f"{human(reader.size)} file): the file was cut short, e.g. by an interrupted copy or "
            "upload. Upload the complete file again.",
        )
    return data
