"""The guest's view of a container: what the virtual machine would see as its disk.

Each format module opens its container into a `Disk`; the partition table is then read from
`Disk.guest` the same way for every format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .reader import Budget, Reader
from .report import Finding


@dataclass
class Disk:
    format: str
    subformat: str
    virtual_size: int | None
    guest: Reader | None  # None when the guest cannot be read from this file alone
    findings: list[Finding] = field(default_factory=list)
    sector_size: int = 512
    read_ahead: int = 0  # bytes of the guest's start to read at once (where the file's head lacks them)


class UnitReader:
    """A guest disk made of equal units (grains, blocks, clusters) the container maps.

    `read_unit(index, start, length)` returns exactly `length` bytes of unit `index` from
    `start` within it, zeros where the container stores nothing. A container whose units are
    stored whole and uncompressed may give `place(index)` instead (the unit's offset in the
    file, None for zeros) and `read_at(offset, length)`: units that lie one after the other in
    the file are then read in one read. Every read and every unit read counts against the
    inspection's budget, so a huge read fails before any allocation.
    """

    def __init__(
        self,
        size: int,
        unit: int,
        read_unit: Callable[[int, int, int], bytes],
        budget: Budget,
        place: Callable[[int], int | None] | None = None,
        read_at: Callable[[int, int], bytes] | None = None,
    ) -> None:
        self.size = size
        self.unit = unit
        self.read_unit = read_unit
        self.budget = budget
        self.place = place
        self.read_at = read_at

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if offset < 0 or offset >= end:
            return b""
        self.budget.call(end - offset)
        parts = []
        run_start = run_end = 0  # a run of the file to read, made of adjacent units
        while offset < end:
            self.budget.call(0)
            index, start = divmod(offset, self.unit)
            n = min(self.unit - start, end - offset)
            if self.place is None or self.read_at is None:
                parts.append(self.read_unit(index, start, n))
            else:
                at = self.place(index)
                if at is not None and run_end > run_start and at + start == run_end:
                    run_end += n
                else:
                    if run_end > run_start:
                        parts.append(self.read_at(run_start, run_end - run_start))
                    run_start = run_end = 0
                    if at is None:
                        parts.append(bytes(n))
                    else:
                        run_start, run_end = at + start, at + start + n
            offset += n
        if run_end > run_start:
            assert self.read_at is not None
            parts.append(self.read_at(run_start, run_end - run_start))
        return b"".join(parts)
