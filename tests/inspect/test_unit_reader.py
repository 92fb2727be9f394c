"""UnitReader: a guest read through the container's units, adjacent units in one read of the file."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wizard.inspect.guest import UnitReader
from wizard.inspect.reader import Budget

UNIT = 64


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=1, max_size=24),
    st.lists(st.tuples(st.integers(-5, 24 * UNIT + 5), st.integers(-5, 8 * UNIT)), max_size=20),
)
def test_placed_units_read_as_the_units_do(slots: list[int | None], reads: list[tuple[int, int]]) -> None:
    """Unit i is stored at slot slots[i] of the file (None: zeros); reading through `place` and
    `read_at` gives the bytes `read_unit` gives, in one file read per run of adjacent slots."""
    file = bytes(range(256)) * (41 * UNIT // 256 + 1)
    size = len(slots) * UNIT
    runs: list[tuple[int, int]] = []

    def read_unit(index: int, start: int, length: int) -> bytes:
        slot = slots[index]
        return bytes(length) if slot is None else file[slot * UNIT + start : slot * UNIT + start + length]

    def read_at(offset: int, length: int) -> bytes:
        runs.append((offset, length))
        return file[offset : offset + length]

    def place(index: int) -> int | None:
        slot = slots[index]
        return None if slot is None else slot * UNIT

    plain = UnitReader(size, UNIT, read_unit, Budget())
    placed = UnitReader(size, UNIT, read_unit, Budget(), place, read_at)
    for offset, length in reads:
        runs.clear()
        assert placed.read(offset, length) == plain.read(offset, length)
        end = min(offset + length, size)
        if 0 <= offset < end:
            first, last = offset // UNIT, (end - 1) // UNIT
            at = [(i, slot) for i in range(first, last + 1) if (slot := slots[i]) is not None]
            breaks = sum(1 for (i, s), (j, t) in zip(at, at[1:], strict=False) if j != i + 1 or t != s + 1)
            assert len(runs) == (len(at) and breaks + 1)
