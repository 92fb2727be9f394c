"""CachedReader: the same bytes as the image, from fewer reads (head, near, tail, coalesced pages)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from wizard.inspect.reader import MAX_PAGES, MAX_PREFETCH, MAX_SPAN, PAGE, Budget, CachedReader

from .helpers import BytesReader, CountingReader

SIZE = 40 * PAGE
DATA = random.Random(12).randbytes(SIZE)
HEAD, NEAR, TAIL = PAGE // 2, 3 * PAGE, PAGE // 4


def cached(
    head: int = HEAD, near: int = NEAR, tail: int = TAIL, size: int = SIZE
) -> tuple[CachedReader, CountingReader]:
    base = CountingReader(BytesReader(DATA[:size]))
    return CachedReader(base, Budget(), head=head, near=near, tail=tail), base


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2 * PAGE),
    st.integers(0, 6 * PAGE),
    st.integers(0, 2 * PAGE),
    st.integers(1, SIZE),
    st.lists(st.tuples(st.integers(-10, SIZE + 10), st.integers(-10, MAX_SPAN + 2 * PAGE)), max_size=40),
)
def test_reads_give_the_images_bytes(head: int, near: int, tail: int, size: int, reads: list[tuple[int, int]]) -> None:
    src, base = cached(head, near, tail, size)
    for offset, length in reads:
        expected = DATA[:size][offset : offset + length] if offset >= 0 and length > 0 else b""
        assert src.read(offset, length) == expected
        assert len(src._pages) <= MAX_PAGES
    # no page is read twice (reads over MAX_SPAN go to the image as they are, each time), nothing
    # past the end, no byte of the tail twice
    small = [r for r in base.reads if r[1] <= MAX_SPAN]
    assert len(small) == len(set(small))
    assert all(offset + length <= size for offset, length in base.reads)
    tail_start = max(min(head, size), size - tail)
    assert all(offset >= tail_start or offset + length <= tail_start for offset, length in base.reads)


def test_head_near_and_tail_are_each_read_once_and_only_when_asked_for() -> None:
    src, base = cached()
    for offset in (0, 100, HEAD - 60, SIZE - 100, SIZE - TAIL):
        src.read(offset, 50)
    assert base.reads == [(0, HEAD), (SIZE - TAIL, TAIL)]
    assert src.read(HEAD + 10, 10) == DATA[HEAD + 10 : HEAD + 20]
    assert src.read(NEAR - 10, 10) == DATA[NEAR - 10 : NEAR]
    assert base.reads[2:] == [(HEAD, NEAR - HEAD)]


def test_a_read_across_edges_takes_each_part_from_its_place() -> None:
    src, base = cached()
    assert src.read(HEAD - 5, NEAR - HEAD + 10) == DATA[HEAD - 5 : NEAR + 5]
    assert base.reads == [(0, HEAD), (HEAD, NEAR - HEAD), (NEAR, PAGE)]


def test_the_missing_pages_of_a_read_are_fetched_in_one_read_and_kept() -> None:
    src, base = cached()
    at = 10 * PAGE + 5
    assert src.read(at, 3 * PAGE) == DATA[at : at + 3 * PAGE]
    assert base.reads == [(10 * PAGE, 4 * PAGE)]
    assert src.read(11 * PAGE + 1, PAGE) == DATA[11 * PAGE + 1 : 12 * PAGE + 1]  # from the kept pages
    assert src.read(9 * PAGE, 2 * PAGE) == DATA[9 * PAGE : 11 * PAGE]  # only page 9 is missing
    assert base.reads[1:] == [(9 * PAGE, PAGE)]


def test_a_large_read_goes_to_the_image_as_it_is() -> None:
    src, base = cached()
    at = 5 * PAGE
    assert src.read(at, MAX_SPAN + 1) == DATA[at : at + MAX_SPAN + 1]
    assert base.reads == [(at, MAX_SPAN + 1)]
    assert not src._pages


def test_a_prefetched_range_is_read_at_once_and_spares_the_rest_of_the_near_range() -> None:
    src, base = cached(near=8 * PAGE)
    src.prefetch(2 * PAGE + 100, 3 * PAGE)  # pages 2..5, in the near range
    assert base.reads == [(2 * PAGE, 4 * PAGE)]
    assert src.read(3 * PAGE, 2 * PAGE) == DATA[3 * PAGE : 5 * PAGE]
    assert src.read(5 * PAGE + 7, 10) == DATA[5 * PAGE + 7 : 5 * PAGE + 17]
    assert base.reads == [(2 * PAGE, 4 * PAGE)]  # from the pages: the near range was not read
    assert src.read(7 * PAGE, 10) == DATA[7 * PAGE : 7 * PAGE + 10]  # not prefetched: the near range
    assert base.reads[1:] == [(HEAD, 8 * PAGE - HEAD)]


def test_a_prefetch_too_large_or_outside_the_middle_reads_nothing() -> None:
    src, base = cached()
    src.prefetch(2 * PAGE, MAX_PREFETCH + PAGE)
    src.prefetch(0, HEAD)  # the head is read as a whole when asked for
    src.prefetch(SIZE - TAIL, TAIL)
    assert base.reads == []
