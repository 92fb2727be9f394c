"""The NTFS reader on volumes made by mkntfs and filled by libntfs-3g and ntfscp."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from wizard.inspect.ntfs import ATTRIBUTE_LIST, DATA, INDEX_ALLOCATION, Ntfs, NtfsError
from wizard.inspect.reader import FileReader

from .conftest import tool
from .helpers import CountingReader, PatchedReader
from .windows_guests import Ntfs3g, ntfs_volume, require_windows_tools

CONTENT = random.Random(7).randbytes(3 * 1024 * 1024 + 123)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_windows_tools()
    files = {
        "/Program Files/A Long Folder Name/Some Long File Name.txt": b"long names\n",
        "/Windows/System32/config/SOFTWARE": CONTENT,
        "/small.ini": b"[boot]\n",
        "/grown.bin": b"x" * 8192,
    }
    part = ntfs_volume(tmp_path_factory.mktemp("ntfs") / "v.part", 128, files, {"/Windows/System32": 500})
    fs = Ntfs(FileReader(part), 0, part.stat().st_size)
    grown = fs.lookup("/grown.bin")
    assert grown is not None  # grown to 1 MiB by ntfstruncate: the rest is not initialized, reads as zeros
    subprocess.run([tool("ntfstruncate"), "-f", str(part), str(grown.number), str(1024 * 1024)], check=True)
    return part


def open_volume(part: Path) -> Ntfs:
    return Ntfs(FileReader(part), 0, part.stat().st_size)


def test_paths_are_found_whatever_their_case(volume: Path) -> None:
    fs = open_volume(volume)
    assert fs.file("/program files/a long folder name/SOME LONG FILE NAME.TXT") == b"long names\n"
    assert fs.file("\\Small.INI") == b"[boot]\n"
    assert fs.lookup("/Program Files/Nope") is None and fs.lookup("/small.ini/below") is None
    assert fs.open("/Windows") is None  # a directory, not a file


def test_a_big_directory_is_searched_through_its_index_blocks(volume: Path) -> None:
    fs = open_volume(volume)
    folder = fs.lookup("/Windows/System32")
    assert folder is not None and folder.find(INDEX_ALLOCATION, "$I30") is not None
    for name in ("filler0000.dll", "FILLER0250.DLL", "filler0499.dll", "config"):
        assert fs.find(folder, name) is not None, name
    assert (
        fs.find(folder, "filler0500.dll") is None and fs.find(folder, "aaa") is None and fs.find(folder, "zzz") is None
    )


def test_files_are_read_by_range_without_reading_the_rest(volume: Path) -> None:
    reader = CountingReader(FileReader(volume))
    fs = Ntfs(reader, 0, volume.stat().st_size)
    f = fs.open("/Windows/System32/config/SOFTWARE")
    assert f is not None and f.size == len(CONTENT)
    before = reader.total
    for offset, length in ((0, 4096), (1_000_003, 5000), (len(CONTENT) - 10, 100), (2 * 1024 * 1024, 1)):
        assert f.read(offset, length) == CONTENT[offset : offset + length]
    assert reader.total - before < 64 * 1024  # each read covers the clusters it needs, no more
    assert f.read(len(CONTENT), 10) == b""


def test_bytes_past_the_initialized_size_read_as_zeros(volume: Path) -> None:
    f = open_volume(volume).open("/grown.bin")
    assert f is not None and f.size == 1024 * 1024
    assert f.data.initialized < f.size
    assert f.read(0, 8192) == b"x" * 8192 and f.read(8192, 4096) == bytes(4096)
    assert f.read(f.size - 4096, 8192) == bytes(4096)


def test_a_torn_mft_record_is_the_readers_error(volume: Path) -> None:
    fs = open_volume(volume)
    at = fs.boot.mft_lcn * fs.cluster + 5 * fs.record_size + 510  # the root's first sector's last bytes
    damaged = Ntfs(PatchedReader(FileReader(volume), {at: b"\x00\x00"}), 0, volume.stat().st_size)
    with pytest.raises(NtfsError, match="torn write"):
        damaged.lookup("/small.ini")


@pytest.mark.parametrize(
    ("at", "patch", "error"),
    [
        (3, b"NTFX", "no NTFS boot sector"),
        (11, b"\x00\x00", "bytes per sector"),
        (48, (1 << 40).to_bytes(8, "little"), "outside the volume"),
        (64, b"\x05", "records of"),
    ],
)
def test_a_damaged_boot_sector_is_the_readers_error(volume: Path, at: int, patch: bytes, error: str) -> None:
    with pytest.raises(NtfsError, match=error):
        Ntfs(PatchedReader(FileReader(volume), {at: patch}), 0, volume.stat().st_size)


def test_a_fragmented_file_is_read_through_its_attribute_list(tmp_path: Path) -> None:
    require_windows_tools()
    part = tmp_path / "frag.part"
    subprocess.run(["truncate", "-s", "32M", str(part)], check=True)
    subprocess.run([tool("mkntfs"), "-q", "-F", "-f", str(part)], check=True, capture_output=True)
    content = Ntfs3g().fragmented(part, "SOFTWARE")
    reader = CountingReader(FileReader(part))
    fs = Ntfs(reader, 0, part.stat().st_size)
    record = fs.lookup("/software")
    assert record is not None and any(a.type == ATTRIBUTE_LIST for a in record.attributes)
    pieces = [a for a in record.attributes if a.type == DATA]
    assert len(pieces) >= 2 and pieces[1].first_vcn > 0  # $DATA continues in extension records
    f = fs.open("/SOFTWARE")
    assert f is not None and f.size == len(content) and len(f.data.runs) > 300
    for offset in range(0, len(content), 3 * 1024 * 1024):
        assert f.read(offset, 3 * 1024 * 1024) == content[offset : offset + 3 * 1024 * 1024]
    boundary = pieces[1].first_vcn * fs.cluster  # a read across the pieces' boundary
    assert f.read(boundary - 100, 200) == content[boundary - 100 : boundary + 100]
