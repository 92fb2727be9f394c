"""The guest on Btrfs: file systems made by mkfs.btrfs --rootdir (no subvolumes) and
btrfs-convert (a real subvolume, ext2_saved: this btrfs-progs has no mkfs.btrfs --subvol and
offline tools make no other); the default subvolume, compression and several devices as
patches of those real images; and the reader on mutated bytes."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import pytest

from wizard.inspect import FileReader, inspect_image
from wizard.inspect import btrfs as b
from wizard.inspect.reader import NEAR, Reader

from . import guests
from . import volume_guests as vg
from .conftest import require_tools
from .helpers import CountingReader, PatchedReader

MiB = 1024 * 1024
KERNEL = "5.3.18-57-default"
UUID = "5e1f0c2a-8d3b-4c7e-9f1a-2b3c4d5e6f70"
OS_RELEASE = guests.os_release("sles", "15.3") + b"# " + b"-" * 200 + b"\n"  # long enough to compress


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    vg.require(vg.BTRFS_TOOLS, "btrfs-progs")
    return tmp_path_factory.mktemp("btrfs")


def codes(report) -> dict[str, str]:
    return {f.code: f.severity for f in report.findings}


def sles(fstab_line: str = f"UUID={UUID} / btrfs defaults 0 0") -> dict[str, bytes | str]:
    root, _ = guests.linux("sles", "15.3", KERNEL)
    root["etc/os-release"] = OS_RELEASE
    root["etc/fstab"] = guests.fstab(fstab_line)
    root["etc/big.conf"] = bytes(range(256)) * 40  # 10 KiB: a regular extent, not inline
    return root


def disk_of(work: Path, name: str, fs: Path) -> Path:
    return guests.assemble(work / f"{name}.raw", [(120, fs)])


@pytest.fixture(scope="module")
def plain(work: Path) -> Path:
    fs = vg.btrfs_image(work / "plain.btrfs", sles(), uuid=UUID)
    return disk_of(work, "plain", fs)


@pytest.fixture(scope="module")
def converted(work: Path) -> Path:
    fs = vg.btrfs_converted(work / "converted.btrfs", sles(), uuid=UUID)
    return disk_of(work, "converted", fs)


def everywhere(reader: Reader, old: bytes, new: bytes) -> PatchedReader:
    """`reader` with every copy of `old` (metadata is DUP: two of each node) replaced by `new`."""
    data = reader.read(0, reader.size)
    patches, at = {}, data.find(old)
    while at >= 0:
        patches[at] = new
        at = data.find(old, at + 1)
    assert patches, "pattern not found"
    return PatchedReader(reader, patches)


def test_btrfs_root_without_subvolumes_is_read_like_ext4(plain: Path) -> None:
    report = inspect_image(FileReader(plain))
    g = report.guest
    assert report.ok, report.findings
    assert (g.distribution, g.version, g.architecture, g.kernels) == ("sles", "15.3", "x86_64", [KERNEL])
    assert g.root == "partition 1 (btrfs)" and g.boot_loader == "grub"
    assert g.fstab == [f"UUID={UUID} / btrfs"] and "fstab-unresolved" not in codes(report)
    assert codes(report)["btrfs"] == "info"
    fs = b.read(FileReader(plain), MiB, 120 * MiB)
    files = b.root_files(fs)
    assert files is not None and files.subvolume == b.FS_TREE
    assert files.file("/etc/big.conf") == bytes(range(256)) * 40
    assert files.file("/boot/vmlinuz-" + KERNEL) == guests.bzimage(KERNEL)
    assert files.lookup("/sbin/init") is not None  # two symbolic links, relative and absolute


def test_btrfs_is_read_in_few_reads(plain: Path) -> None:
    reader = CountingReader(FileReader(plain))
    inspect_image(reader)
    # measured: 7 reads, 4.3 MiB (the first 4 MiB, tail, the chunk, root and fs tree nodes, file data)
    assert len(reader.reads) <= 24 and reader.total < NEAR + 1 * MiB


def test_a_subvolume_is_a_warning_naming_it(converted: Path) -> None:
    report = inspect_image(FileReader(converted))
    assert codes(report)["btrfs-subvolumes"] == "warning"
    assert "ext2_saved" in next(f.message for f in report.findings if f.code == "btrfs-subvolumes")
    assert report.guest.distribution == "sles"  # the OS in the top level is read all the same
    fs = b.read(FileReader(converted), MiB, 120 * MiB)
    assert [(s.id, s.name, s.parent) for s in fs.subvolumes] == [(256, "ext2_saved", b.FS_TREE)]
    assert fs.default == b.FS_TREE


def test_a_default_subvolume_makes_the_root_a_subvolume(converted: Path) -> None:
    """`btrfs subvolume set-default` needs a mount: the root tree's "default" entry is patched
    to point at ext2_saved (256), as that command writes it."""
    location = struct.pack("<QBQ", b.FS_TREE, b.ROOT_ITEM, 2**64 - 1)
    reader = everywhere(FileReader(converted), location, struct.pack("<QBQ", 256, b.ROOT_ITEM, 2**64 - 1))
    assert b.read(reader, MiB, 120 * MiB).default == 256
    report = inspect_image(reader)
    assert codes(report)["btrfs-subvolume"] == "error" and not report.ok
    assert "default subvolume is ext2_saved" in next(f.message for f in report.findings if f.code == "btrfs-subvolume")


def test_fstab_mounting_the_root_from_a_subvolume_is_an_error(work: Path) -> None:
    fs = vg.btrfs_image(work / "subvol.btrfs", sles(f"UUID={UUID} / btrfs subvol=@,compress=zstd 0 0"), uuid=UUID)
    report = inspect_image(FileReader(disk_of(work, "subvol", fs)))
    assert codes(report)["btrfs-subvolume"] == "error"
    assert "subvol=@" in next(f.message for f in report.findings if f.code == "btrfs-subvolume")


def compressed(plain: Path, kind: int, data: bytes) -> PatchedReader:
    """The plain disk with /etc/os-release's inline extent marked compressed (1 zlib, 3 zstd)
    and holding `data` (padded to the item's size: zlib ignores what follows its stream)."""
    text = OS_RELEASE
    assert len(data) <= len(text)
    inline = struct.pack("<QBBHB", len(text), 0, 0, 0, 0)  # ram_bytes, compression, encryption, encoding, type
    patched = struct.pack("<QBBHB", len(text), kind, 0, 0, 0) + data.ljust(len(text), b"\0")
    return everywhere(FileReader(plain), inline + text, patched)


def test_a_zlib_compressed_file_is_read(plain: Path) -> None:
    report = inspect_image(compressed(plain, 1, zlib.compress(OS_RELEASE, 9)))
    assert report.ok and report.guest.distribution == "sles" and report.guest.version == "15.3"


def test_a_zstd_compressed_file_is_named_not_read(plain: Path) -> None:
    report = inspect_image(compressed(plain, 3, b"\x28\xb5\x2f\xfd"))  # a zstd frame's magic
    assert codes(report)["btrfs-compressed"] == "warning"
    assert "zstd" in next(f.message for f in report.findings if f.code == "btrfs-compressed")
    damaged = compressed(plain, 1, b"not zlib at all")
    assert "guest-unreadable" in codes(inspect_image(damaged))


def test_a_btrfs_without_an_os_is_no_os(work: Path) -> None:
    fs = vg.btrfs_image(work / "data.btrfs", {"srv/data": b"x"})
    report = inspect_image(FileReader(disk_of(work, "data", fs)))
    assert codes(report)["no-os"] == "error" and codes(report)["btrfs"] == "info"
    assert "btrfs" in next(f.message for f in report.findings if f.code == "no-os")


def test_several_devices_are_a_warning(plain: Path) -> None:
    base = FileReader(plain)
    sb = base.read(MiB + b.SUPERBLOCK, 4096)
    reader = PatchedReader(base, {MiB + b.SUPERBLOCK + 0x88: struct.pack("<Q", 2)})
    assert struct.unpack_from("<Q", sb, 0x88)[0] == 1
    report = inspect_image(reader)
    assert codes(report)["btrfs-multi-device"] == "warning"
    assert "no-os" not in codes(report)


def test_mutated_btrfs_bytes_raise_only_btrfs_error(converted: Path) -> None:
    """A bounded fuzz: bytes of the superblock and of the chunk, root and fs tree nodes changed;
    reading the subvolumes and the OS's files either works or raises BtrfsError."""
    base = FileReader(converted)
    fs = b.read(base, MiB, 120 * MiB)
    files = b.root_files(fs)
    assert fs.reader is not None and files is not None and files.file("/etc/os-release")  # its nodes read
    nodes = [MiB + fs.reader.physical(logical, fs.reader.nodesize) for logical in fs.reader.cache]
    regions = [(MiB + b.SUPERBLOCK, 0x32B + 200), *((n, 4096) for n in nodes)]
    rng = random.Random(2013)
    outcomes = {"read": 0, "error": 0}
    for _ in range(300):
        patches = {}
        for _ in range(rng.randint(1, 8)):
            start, length = rng.choice(regions)
            at = start + rng.randrange(length)
            patches[at] = bytes([rng.randrange(256)]) if rng.random() < 0.7 else struct.pack("<Q", rng.choice(EXTREMES))
        reader = PatchedReader(base, patches)
        try:
            files = b.root_files(b.read(reader, MiB, 120 * MiB))
            if files is not None:
                files.file("/etc/os-release")
                files.listdir("/boot")
            outcomes["read"] += 1
        except b.BtrfsError:
            outcomes["error"] += 1
    assert outcomes["read"] > 20 and outcomes["error"] > 20, outcomes


EXTREMES = [0, 1, 2**16, 2**32 - 1, 2**63, 2**64 - 1, 120 * MiB, 16384]
