"""The inspection reads little: the head, the tail and a few pages, whatever the image's size."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from wizard.inspect import FileReader, inspect_image
from wizard.inspect.reader import HEAD, PAGE, TAIL

from .conftest import require_tools, tool
from .helpers import CountingReader

MiB = 1024 * 1024
GiB = 1024 * MiB
CORPUS = [
    "gpt.raw",
    "mbr.raw",
    "gpt-stream.vmdk",
    "mbr-stream.vmdk",
    "gpt-vmwstream.vmdk",
    "gpt-sparse.vmdk",
    "gpt-flat.vmdk",
    "gpt-dyn.vhd",
    "gpt-fixed.vhd",
    "gpt-dyn-chs.vhd",
    "gpt-dyn.vhdx",
    "gpt-fixed.vhdx",
    "mbr-dyn.vhdx",
    "gpt.qcow2",
    "gpt.ova",
]


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_images_are_read_little(corpus: Path, name: str) -> None:
    reader = CountingReader(FileReader(corpus / name))
    inspect_image(reader)
    # with the guest's file systems read too (os-release, fstab, kernels, GRUB): measured at most
    # 19 reads and 793 KiB (qemu's stream-optimized VMDK, whose grains are each read on their own)
    assert reader.total < 1 * MiB
    assert len(reader.reads) <= 24
    assert max(length for _, length in reader.reads) <= HEAD


def test_huge_sparse_file_reads_only_head_and_tail(tmp_path: Path) -> None:
    path = tmp_path / "huge.raw"
    subprocess.run(["truncate", "-s", "100G", str(path)], check=True)
    reader = CountingReader(FileReader(path))
    report = inspect_image(reader)
    assert (report.virtual_size, report.partition_table) == (100 * GiB, "none")
    assert sorted(reader.reads) == [(0, HEAD), (100 * GiB - TAIL, TAIL)]


def test_huge_gpt_disk_reads_head_tail_and_a_page(tmp_path: Path) -> None:
    require_tools()
    path = tmp_path / "huge.raw"
    subprocess.run(["truncate", "-s", "100G", str(path)], check=True)
    subprocess.run(
        [tool("sgdisk"), "-n", "1:2048:+100M", "-t", "1:ef00", "-n", "2:0:0", str(path)],
        check=True,
        capture_output=True,
    )
    reader = CountingReader(FileReader(path))
    report = inspect_image(reader)
    assert (report.partition_table, report.boot_mode_hint, len(report.partitions)) == ("gpt", "uefi", 2)
    assert reader.reads[:2] == [(0, HEAD), (100 * GiB - TAIL, TAIL)]
    # each partition's first page (the ESP's boot sector: not FAT; no file system magic) and the
    # page of the Btrfs superblock at 64 KiB: nothing else of a 100 GiB disk
    starts = [p.start for p in report.partitions]
    assert reader.reads[2:] == [(start + at, PAGE) for start in starts for at in (0, 64 * 1024)]
