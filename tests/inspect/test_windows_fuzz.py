"""Property tests of the NTFS and registry readers: a real Windows disk and real hives with their
structures mutated (boot sector, MFT records, index blocks, $Bitmap, hive cells). Whatever the
bytes, the readers raise nothing but their own errors, the inspection gives a report (never its
last-resort net) and stays within the read budget."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wizard.inspect import FileReader, inspect_image
from wizard.inspect.ntfs import BITMAP_RECORD, DATA, INDEX_ALLOCATION, Ntfs, NtfsError
from wizard.inspect.reader import Budget, BudgetReader, CachedReader
from wizard.inspect.regf import Hive, RegfError

from .fuzzing import Case, Limits, run_case
from .helpers import BytesReader, PatchedReader
from .windows_guests import Windows, require_windows_tools, windows_disk

SOFTWARE, SYSTEM = "/Windows/System32/config/SOFTWARE", "/Windows/System32/config/SYSTEM"
INTERESTING = [0, 1, 7, 8, 0x7F, 0x80, 0xFF, 0x1000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF8, 0xFFFFFFFF]


@dataclass
class Target:
    disk: Path
    start: int  # the system volume's first byte on the disk
    size: int
    regions: dict[str, tuple[int, int]]  # name -> (disk offset, length)
    software: bytes  # the hive's bytes


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Target:
    require_windows_tools()
    disk = windows_disk(tmp_path_factory.mktemp("winfuzz") / "w.raw", Windows(filler_keys=60), system_mib=256)
    part = inspect_image(FileReader(disk)).partitions[1]
    fs = Ntfs(FileReader(disk), part.start, part.size)
    c = fs.cluster

    def runs(attribute_runs: list[tuple[int, int | None, int]], limit: int = 256 * 1024) -> tuple[int, int]:
        _, lcn, clusters = next(r for r in attribute_runs if r[1] is not None)
        assert lcn is not None
        return part.start + lcn * c, min(clusters * c, limit)

    regions = {
        "boot sector": (part.start, 512),
        "MFT records": (part.start + fs.boot.mft_lcn * c, 40 * fs.record_size),
        "$Bitmap": runs(fs.record(BITMAP_RECORD).find(DATA).runs),  # type: ignore[union-attr]
    }
    for folder in ("/", "/Windows", "/Windows/System32"):
        node = fs.lookup(folder)
        assert node is not None
        allocation = node.find(INDEX_ALLOCATION, "$I30")
        if allocation is not None:
            regions[f"index of {folder}"] = runs(allocation.runs)
    for path in (SOFTWARE, SYSTEM):
        f = fs.open(path)
        assert f is not None
        regions[path] = runs(f.data.runs)
    assert "index of /Windows/System32" in regions  # its 300 files need index blocks
    software = fs.open(SOFTWARE)
    assert software is not None
    return Target(disk, part.start, part.size, regions, software.read(0, software.size))


def patch_strategy(regions: list[str]) -> st.SearchStrategy[list[tuple[str, int, bytes]]]:
    word = st.sampled_from(INTERESTING).map(lambda v: struct.pack("<I", v))
    noise = st.binary(min_size=1, max_size=8)
    return st.lists(
        st.tuples(st.sampled_from(regions), st.integers(0, 1 << 20), st.one_of(word, noise)), min_size=1, max_size=10
    )


def patches_of(t: Target, chosen: list[tuple[str, int, bytes]]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for name, at, data in chosen:
        start, length = t.regions[name]
        out[start + at % max(1, length - len(data))] = data
    return out


REGIONS = [
    "boot sector",
    "MFT records",
    "$Bitmap",
    "index of /",
    "index of /Windows",
    "index of /Windows/System32",
    SOFTWARE,
    SYSTEM,
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=patch_strategy(REGIONS))
def test_mutated_windows_disks_are_inspected_within_the_budget(
    target: Target, chosen: list[tuple[str, int, bytes]]
) -> None:
    chosen = [c for c in chosen if c[0] in target.regions]
    reader = PatchedReader(FileReader(target.disk), patches_of(target, chosen))
    result = run_case(Case(0, repr(chosen), reader), Limits())
    assert result.kind == "ok", result.detail
    assert result.report is not None and result.report["guest"] is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=patch_strategy(REGIONS))
def test_the_ntfs_reader_raises_only_its_own_error(target: Target, chosen: list[tuple[str, int, bytes]]) -> None:
    chosen = [c for c in chosen if c[0] in target.regions]
    budget = Budget()
    reader = CachedReader(
        BudgetReader(PatchedReader(FileReader(target.disk), patches_of(target, chosen)), budget), budget
    )
    try:
        fs = Ntfs(reader, target.start, target.size)
        fs.lookup("/hiberfil.sys")
        fs.free_space()
        for path in (SOFTWARE, SYSTEM):
            f = fs.open(path)
            if f is not None:
                Hive(f).key("Microsoft\\Windows NT\\CurrentVersion")
    except (NtfsError, RegfError):
        pass
    assert budget.exceeded is None and budget.reads <= 64


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chosen=st.lists(
        st.tuples(
            st.integers(0, 1 << 20),
            st.one_of(
                st.sampled_from(INTERESTING).map(lambda v: struct.pack("<I", v)), st.binary(min_size=1, max_size=4)
            ),
        ),
        min_size=1,
        max_size=12,
    ),
    cut=st.one_of(st.none(), st.integers(0, 1 << 20)),
)
def test_the_hive_reader_raises_only_its_own_error(
    target: Target, chosen: list[tuple[int, bytes]], cut: int | None
) -> None:
    data = bytearray(target.software)
    for at, patch in chosen:
        at %= len(data) - len(patch)
        data[at : at + len(patch)] = patch
    if cut is not None:
        data = data[: cut % len(data)]
    reader = BytesReader(bytes(data))
    try:
        hive = Hive(reader)
        key = hive.key("Microsoft\\Windows NT\\CurrentVersion")
        if key is not None:
            hive.values(key)
        hive.value("Microsoft\\Component003", "Version")
    except RegfError:
        return
    assert hive.visits <= 20_000


def test_the_mutations_reach_the_structures(target: Target) -> None:
    """The fuzz is not degenerate: a flip of each region's magic is noticed."""
    for name, at, patch in (
        ("boot sector", 11, b"\x03\x00"),  # 3 bytes per sector
        ("MFT records", 0, b"XXXX"),
        ("index of /Windows/System32", 0, b"XXXX"),
    ):
        start, _ = target.regions[name]
        reader = PatchedReader(FileReader(target.disk), {start + at: patch})
        report = inspect_image(reader)
        assert "guest-unreadable" in {f.code for f in report.findings}, name
    with pytest.raises(RegfError):
        Hive(BytesReader(b"regX" + target.software[4:]))
