"""The inspection reads little: the head, the tail and a few pages, whatever the image's size."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from wizard.inspect import FileReader, inspect_image, vmdk
from wizard.inspect.reader import HEAD, MAX_READ, NEAR, PAGE, TAIL
from wizard.inspect.vhdx import READ_AHEAD

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
DESCRIPTOR_ONLY = ("gpt-flat.vmdk",)  # its data is in another file: nothing past the descriptor is read


@pytest.mark.parametrize("name", CORPUS)
def test_container_and_partitions_take_at_most_4_reads(corpus: Path, name: str) -> None:
    """Issue 12's target for the container, the partition table and the ESP's boot loader: the
    head (1 MiB: VHDX headers and regions, QCOW2 tables, GPT), the rest of the first 4 MiB if
    asked for (the ESP's FAT) or a VHDX's BAT and metadata, a VHDX guest's first 4 MiB, the tail
    (footers, the backup GPT) or a page."""
    reader = CountingReader(FileReader(corpus / name))
    report = inspect_image(reader, guest=False)
    assert report.partition_table == ("unknown" if name in DESCRIPTOR_ONLY else name[:3])
    assert report.guest is None
    assert len(reader.reads) <= 4, reader.reads
    assert reader.total <= NEAR + READ_AHEAD + TAIL + PAGE


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_images_are_read_little(corpus: Path, name: str) -> None:
    reader = CountingReader(FileReader(corpus / name))
    report = inspect_image(reader)
    assert name in DESCRIPTOR_ONLY or (report.guest is not None and report.guest.distribution == "debian")
    # with the guest's file systems read too (os-release, fstab, kernels, GRUB): issue 12's target
    # is 64 reads and 16 MiB; measured at most 8 reads and 6.4 MiB (a VHDX: its head, its BAT and
    # metadata, the guest's first 4 MiB in block 0 at 8 MiB, the tail, the ext4's pages)
    assert reader.total <= 16 * MiB
    assert len(reader.reads) <= 16, reader.reads
    assert max(length for _, length in reader.reads) <= MAX_READ


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
    assert reader.reads[:3] == [(0, HEAD), (100 * GiB - TAIL, TAIL), (HEAD, NEAR - HEAD)]
    # the ESP lies in the first 4 MiB (its boot sector: not FAT); the other partition's first page
    # (no file system magic) and the page of the Btrfs superblock at 64 KiB: nothing else of 100 GiB
    (start,) = [p.start for p in report.partitions if p.start >= NEAR]
    assert reader.reads[3:] == [(start, PAGE), (start + 64 * 1024, PAGE)]


@pytest.mark.parametrize("name", ["gpt-stream.vmdk", "gpt-vmwstream.vmdk", "mbr-stream.vmdk"])
def test_a_stream_vmdks_grains_are_each_inflated_once(corpus: Path, name: str, monkeypatch) -> None:
    """The file systems' reads go back and forth between a few grains: each is inflated once,
    not once per read (qemu's layout took 20 reads of the same grain before they were kept)."""
    inflated: list[int] = []
    inflate = vmdk._Grains._inflate

    def counted(self: vmdk._Grains, index: int, offset: int) -> bytes:
        inflated.append(index)
        return inflate(self, index, offset)

    monkeypatch.setattr(vmdk._Grains, "_inflate", counted)
    reader = CountingReader(FileReader(corpus / name))
    report = inspect_image(reader)
    assert report.guest is not None and report.guest.distribution == "debian"
    assert inflated and len(inflated) == len(set(inflated))
    assert len(reader.reads) <= 4


def test_a_vhdx_of_1_mib_blocks_reads_the_guests_start_at_once(corpus: Path, tmp_path: Path) -> None:
    """Hyper-V's recommended block size for Linux guests: the guest's first 4 MiB are four
    blocks, one after the other in the file, read in one read."""
    path = tmp_path / "gpt-1m.vhdx"
    options = "subformat=dynamic,block_size=1M"
    subprocess.run(
        [tool("qemu-img"), "convert", "-O", "vhdx", "-o", options, str(corpus / "gpt.raw"), str(path)], check=True
    )
    reader = CountingReader(FileReader(path))
    report = inspect_image(reader, guest=False)
    assert (report.format, report.partition_table, report.boot_mode_hint) == ("VHDX", "gpt", "uefi")
    assert "esp-no-bootx64" not in {f.code for f in report.findings}
    assert len(reader.reads) <= 4, reader.reads
