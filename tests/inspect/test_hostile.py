"""Hostile images, one per class of failure the fuzzer found: each finishes within its limits
(no hang, exception or memory error; reads within the budget; a JSON report with 64-bit
numbers) and says what is wrong. Each runs under the fuzzer's watchdog (`run_isolated`), since
a hang inside C code (a giant `int ** int`) cannot be interrupted in-process."""

from __future__ import annotations

import logging
import struct
import uuid
from pathlib import Path

import pytest

from wizard.inspect import FileReader, inspect_image
from wizard.inspect import image as image_module
from wizard.inspect.reader import HEAD, MAX_READ, MAX_READS, NEAR, Budget, BudgetExceeded, BudgetReader, CachedReader

from .crafting import vhd_footer, vhdx_item_offset
from .fuzzing import (
    ConcatReader,
    Corpus,
    RepeatReader,
    Result,
    ZerosReader,
    _fix_guards,
    nested_ova,
    ova_with_disk,
    ovf_text,
    pax_member,
    run_isolated,
    tar_header,
    tar_member,
)
from .helpers import BytesReader, PatchedReader, ZeroReader

MiB, TiB = 1024 * 1024, 1024**4
STREAM = "gpt-vmwstream.vmdk"


def within_limits(result: Result, *codes: str) -> dict:
    """The case passed every check of the fuzzer; its report has (at least) `codes`."""
    assert result.kind == "ok", f"{result.kind}: {result.detail}"
    assert result.report is not None
    assert set(codes) <= set(result.codes), result.codes
    return result.report


def message(report: dict, code: str) -> str:
    return next(f["message"] for f in report["findings"] if f["code"] == code)


def ova(corpus: Path, ovf: bytes) -> ConcatReader:
    return ova_with_disk(ovf, FileReader(corpus / STREAM))


# --- OVF capacity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "units"),
    [
        ("1", "byte * 10^30000000"),  # computing the power takes hours
        ("0", "byte * 10^30000000"),
        ("512", "byte * 10^4300"),  # a number Python will not turn into a string (JSON)
        ("1", "byte * 2^64"),  # over 2^63: no 64-bit integer holds it
        ("18446744073709551616", "byte"),
    ],
)
def test_ovf_capacity_beyond_any_disk(corpus: Path, capacity: str, units: str) -> None:
    result = run_isolated(lambda: ova(corpus, ovf_text([("disk1.vmdk", capacity, units)])))
    report = within_limits(result, "ova-invalid")
    assert "capacity" in message(report, "ova-invalid")


def test_ovf_capacity_units_that_are_fine(corpus: Path) -> None:
    for units, capacity in [("byte * 2^30", 512 * 2**30), ("byte * 1024^3", 512 * 2**30), ("byte", 512)]:
        report = inspect_image(ova(corpus, ovf_text([("disk1.vmdk", "512", units)])))
        assert report.ova.disks[0].capacity == capacity


# --- OVA structure -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [2, 400])
def test_ova_inside_an_ova(corpus: Path, depth: int) -> None:
    report = within_limits(run_isolated(lambda: nested_ova(depth, FileReader(corpus / STREAM))), "ova-nested")
    assert report["ova"]["first_disk"]["format"] == "OVA"
    assert report["ova"]["first_disk"]["ova"] is None  # not read further
    assert "not OVAs inside an OVA" in message(report, "ova-nested")


def test_ova_with_millions_of_tar_entries(corpus: Path) -> None:
    def make() -> ConcatReader:
        directories = RepeatReader(tar_header("dir/", 0, b"5"), 10_000_000)
        return ConcatReader([directories, BytesReader(tar_member("vm.ovf", ovf_text([])) + bytes(1024))])

    result = run_isolated(make)
    report = within_limits(result, "ova-invalid")
    assert "more than 1000 entries" in message(report, "ova-invalid")
    assert result.reads <= 40


@pytest.mark.parametrize("size", ["9" * 5000, "-512", "0x10"])
def test_pax_header_with_a_size_that_is_none(corpus: Path, size: str) -> None:
    disk = FileReader(corpus / STREAM)
    ovf = ovf_text([("disk1.vmdk", "512", "byte * 2^20")])
    head = tar_member("vm.ovf", ovf) + pax_member({"size": size}) + tar_header("disk1.vmdk", disk.size)
    result = run_isolated(lambda: ConcatReader([BytesReader(head), disk, BytesReader(bytes(-disk.size % 512 + 1024))]))
    report = within_limits(result)
    assert {"ova-invalid", "truncated"} & set(result.codes), result.codes
    assert report["ova"] is None


def test_pax_header_of_records_without_end(corpus: Path) -> None:
    """64 KiB of '1 1 1 ...': a regular expression over it took quadratic time."""
    body = b"1 " * 32 * 1024
    head = tar_member("PaxHeader", body, b"x") + tar_member("vm.ovf", ovf_text([("disk1.vmdk", "512", "byte")]))
    disk = FileReader(corpus / STREAM)
    parts = [BytesReader(head + tar_header("disk1.vmdk", disk.size)), disk, BytesReader(bytes(-disk.size % 512 + 1024))]
    report = within_limits(run_isolated(lambda: ConcatReader(parts)))
    assert report["ova"]["disks"][0]["href"] == "disk1.vmdk"


def test_ovf_nested_deep(corpus: Path) -> None:
    deep = ovf_text([("disk1.vmdk", "512", "byte")], extra="<a>" * 100_000 + "</a>" * 100_000)
    report = within_limits(run_isolated(lambda: ova(corpus, deep)), "ova-invalid")
    assert "nested more than 64 levels" in message(report, "ova-invalid")


def test_ovf_with_thousands_of_disks(corpus: Path) -> None:
    disks = [(f"disk{i}.vmdk", "512", "byte * 2^20") for i in range(4000)]
    ovf = ovf_text(disks)
    result = run_isolated(lambda: ova_with_disk(ovf, FileReader(corpus / STREAM), "disk0.vmdk"))
    report = within_limits(result, "too-many-volumes")
    assert len(report["ova"]["disks"]) == 64
    assert "4000 disks" in message(report, "too-many-volumes")


# --- header fields of disk images ----------------------------------------------------------------


@pytest.mark.parametrize("grain", [0, 2**24 + 16, 2**32 - 1, 2**63 - 1, 2**64 - 1])
def test_vmdk_with_a_huge_grain_size(corpus: Path, grain: int) -> None:
    patch = {20: struct.pack("<Q", grain)}
    result = run_isolated(lambda: PatchedReader(FileReader(corpus / "gpt-stream.vmdk"), patch))
    report = within_limits(result, "corrupt")
    assert (report["virtual_size"], report["partition_table"]) == (512 * MiB, "unknown")
    assert "grains of" in message(report, "corrupt")


def test_vmdk_with_a_huge_grain_table_size(corpus: Path) -> None:
    patch = {44: struct.pack("<I", 2**32 - 1)}
    report = within_limits(run_isolated(lambda: PatchedReader(FileReader(corpus / "gpt-stream.vmdk"), patch)))
    assert "corrupt" in {f["code"] for f in report["findings"]}


def test_vmdk_with_a_huge_descriptor(corpus: Path) -> None:
    """descriptorSize 2^40 sectors in a sparse VMDK that looks 1 TiB long: the descriptor read
    asked for the whole file at once."""

    def make() -> ConcatReader:
        sparse = FileReader(corpus / "gpt-sparse.vmdk")
        return ConcatReader([PatchedReader(sparse, {36: struct.pack("<Q", 2**40)}), ZerosReader(TiB)])

    result = run_isolated(make)
    report = within_limits(result, "vmdk-not-stream-optimized")
    assert report["partition_table"] == "gpt"
    assert result.largest_read <= MAX_READ


def _vhdx_size_patch(path: Path, size: int) -> dict[int, bytes]:
    return {vhdx_item_offset(path, uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")): struct.pack("<Q", size)}


def _vhd_size_patch(path: Path, size: int) -> dict[int, bytes]:
    r = FileReader(path)
    footer = vhd_footer(r.read(r.size - 512, 512), current_size=size)
    return {0: footer, r.size - 512: footer}


@pytest.mark.parametrize(
    ("name", "patches"),
    [
        ("gpt-stream.vmdk", lambda p, n: {12: struct.pack("<Q", n // 512)}),
        ("gpt-dyn.vhd", _vhd_size_patch),
        ("gpt-dyn.vhdx", _vhdx_size_patch),
        ("gpt.qcow2", lambda p, n: {24: struct.pack(">Q", n)}),
    ],
)
def test_virtual_size_over_2_to_the_63(corpus: Path, name: str, patches) -> None:
    path = corpus / name
    patch = patches(path, 2**64 - 1)
    result = run_isolated(lambda: PatchedReader(FileReader(path), patch))
    report = within_limits(result, "corrupt")
    assert report["virtual_size"] is None
    assert "more than any disk" in message(report, "corrupt")


def _gpt(corpus: Path, fields: dict[int, bytes]) -> PatchedReader:
    """gpt.raw with GPT fields changed and both GPT checksums made right again."""
    c = Corpus(corpus)
    base = c.reader("gpt.raw")
    patches = dict(fields)
    _fix_guards(base, patches, c.guards("gpt.raw"))
    return PatchedReader(base, patches)


@pytest.mark.parametrize("entry_size", [2**31 - 1, 2**32 - 128, 129])
def test_gpt_with_a_huge_entry_size(corpus: Path, entry_size: int) -> None:
    result = run_isolated(lambda: _gpt(corpus, {512 + 84: struct.pack("<I", entry_size)}))
    report = within_limits(result, "corrupt")
    assert f"entries of {entry_size} bytes" in message(report, "corrupt")
    assert result.peak_memory < 3 * HEAD  # the head, and the patching test reader's copies of it


@pytest.mark.parametrize(("first", "last"), [(2048, 2**64 - 1), (2**63, 2**63 + 10), (4096, 2048)])
def test_gpt_entry_past_any_disk(corpus: Path, first: int, last: int) -> None:
    entry2 = 1024 + 128
    result = run_isolated(lambda: _gpt(corpus, {entry2 + 32: struct.pack("<QQ", first, last)}))
    report = within_limits(result, "corrupt")
    assert [p["index"] for p in report["partitions"]] == [1]
    assert "GPT entry 2 runs from" in message(report, "corrupt")


# --- the reader, the budget and the last-resort net -----------------------------------------------


def test_file_reader_before_the_start(corpus: Path) -> None:
    assert FileReader(corpus / "gpt-flat.vmdk").read(-512, 100) == b""


def test_reads_beyond_the_budget_become_a_finding() -> None:
    budget = Budget()
    src = CachedReader(BudgetReader(ZeroReader(TiB), budget), budget)
    for page in range(MAX_READS):
        src.read(NEAR + MiB * page, 8)  # each in a page of its own, past the first 4 MiB
    with pytest.raises(BudgetExceeded) as e:
        src.read(TiB // 2, 8)
    assert e.value.code == "corrupt" and "more than 128 separate reads" in e.value.message
    with pytest.raises(BudgetExceeded):
        src.read(0, 1)  # and it stays exceeded
    with pytest.raises(BudgetExceeded) as e:
        CachedReader(BudgetReader(ZeroReader(TiB), Budget()), Budget()).read(MiB, 64 * MiB)
    assert "a read of 64.0 MiB at once" in e.value.message


def test_an_unforeseen_error_is_a_finding_and_logged(monkeypatch, caplog) -> None:
    def broken(src):
        raise ZeroDivisionError("no")

    monkeypatch.setattr(image_module, "detect", broken)
    with caplog.at_level(logging.WARNING, logger="wizard.inspect"):
        report = inspect_image(BytesReader(bytes(4096)), "VMDK")
    assert [(f.severity, f.code) for f in report.findings] == [("error", "corrupt")]
    assert "ZeroDivisionError" in report.findings[0].message
    assert caplog.records and caplog.records[0].exc_info[0] is ZeroDivisionError


def test_the_readers_own_errors_are_raised() -> None:
    """S3 or file system errors are not the image's: the caller reports them (preflight's
    "cannot be read" finding), so they pass through."""

    class Failing:
        size = 10 * MiB

        def read(self, offset: int, length: int) -> bytes:
            raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        inspect_image(Failing())
