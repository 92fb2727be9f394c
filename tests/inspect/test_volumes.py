"""Volumes the guest check cannot or need not read into: LUKS, LVM, Btrfs, XFS, swap, made by
the real tools (cryptsetup luksFormat, mkfs.btrfs --rootdir, mkfs.xfs, mkswap) on partition
files, assembled into a disk."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from wizard.inspect import FileReader, inspect_image

from . import guests
from .conftest import require_tools, tool

TOOLS = ("cryptsetup", "mkfs.xfs", "mkfs.btrfs", "mkswap")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    missing = [t for t in TOOLS if not Path(tool(t)).exists() and not shutil.which(t)]
    if missing:
        import os

        message = f"missing {missing}: apt-get install cryptsetup-bin xfsprogs btrfs-progs util-linux"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return tmp_path_factory.mktemp("volumes")


def codes(report) -> dict[str, str]:
    return {f.code: f.severity for f in report.findings}


def test_luks_volume_is_an_error(work: Path) -> None:
    part = guests.partition_image(work / "luks.part", 20)
    fast = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]
    luks = [tool("cryptsetup"), "luksFormat", "-q", "--type", "luks2", *fast, "--key-file", "-", str(part)]
    subprocess.run(luks, input=b"secret", check=True, capture_output=True)
    report = inspect_image(FileReader(guests.assemble(work / "luks.raw", [(20, part)])))
    assert codes(report)["luks"] == "error"
    assert report.guest.filesystems[0]["type"] == "luks"
    assert "cryptsetup reencrypt --decrypt" in next(f.message for f in report.findings if f.code == "luks")


def test_btrfs_root_and_xfs_data_are_named_not_misjudged(work: Path) -> None:
    tree = work / "tree"
    guests.write_tree(tree, {"etc/os-release": guests.os_release("opensuse-leap", "15.5")})
    btrfs = guests.partition_image(work / "btrfs.part", 120)
    subprocess.run(
        [tool("mkfs.btrfs"), "-q", "-f", "--rootdir", str(tree), str(btrfs)], check=True, capture_output=True
    )
    xfs = guests.partition_image(work / "xfs.part", 300)
    subprocess.run([tool("mkfs.xfs"), "-q", "-f", "-L", "data", str(xfs)], check=True, capture_output=True)
    report = inspect_image(FileReader(guests.assemble(work / "btrfs-xfs.raw", [(120, btrfs), (300, xfs)])))
    found = codes(report)
    assert found["btrfs"] == "info"  # no subvolumes (tests/inspect/test_btrfs.py reads them)
    assert report.guest.root == "partition 1 (btrfs)" and report.guest.distribution == "opensuse-leap"
    assert "no-os" not in found
    kinds = [(s["type"], s["label"]) for s in report.guest.filesystems]
    assert kinds == [("btrfs", ""), ("xfs", "data")]


def test_lvm_physical_volume(work: Path) -> None:
    pv = guests.lvm_label(work / "pv.part", 8)
    report = inspect_image(FileReader(guests.assemble(work / "lvm.raw", [(8, pv)])))
    assert codes(report)["lvm"] == "info"
    assert report.guest.filesystems[0]["type"] == "lvm"


def test_fstab_names_swap_by_uuid(work: Path) -> None:
    swap = guests.partition_image(work / "swap.part", 8)
    uuid = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    subprocess.run([tool("mkswap"), "-U", uuid, str(swap)], check=True, capture_output=True)
    root, _ = guests.linux()
    root["etc/fstab"] = guests.fstab(f"UUID={guests.ROOT_UUID} / ext4 defaults 0 1", f"UUID={uuid} none swap sw 0 0")
    disk = guests.build_disk(work / "root.raw", root, size_mib=40)
    rootfs = work / "root.part"
    subprocess.run(["dd", f"if={disk}", f"of={rootfs}", "bs=1M", "skip=1", "count=39"], check=True, capture_output=True)
    report = inspect_image(FileReader(guests.assemble(work / "swap.raw", [(39, rootfs), (8, swap)])))
    assert report.ok, report.findings
    assert [s["type"] for s in report.guest.filesystems] == ["ext4", "swap"]


@pytest.mark.parametrize("separate_boot", [True, False])
def test_rhel_like_guest_on_xfs_with_bls(work: Path, separate_boot: bool) -> None:
    kernel = "4.18.0-372.9.1.el8_6.x86_64"
    root, boot = guests.linux("rhel", "8.6", kernel, boot="bls", separate_boot=separate_boot)
    disk = guests.xfs_disk(work / f"rhel-{separate_boot}.raw", root, boot)
    report = inspect_image(FileReader(guests.convert(disk, "vhdx")))
    g = report.guest
    assert (g.distribution, g.version, g.architecture, g.boot_loader) == ("rhel", "8.6", "x86_64", "grub-bls")
    assert g.root.endswith("(xfs)") and g.separate_boot == separate_boot and g.kernels == [kernel]
    assert codes(report)["bls-no-default"] == "error"
    assert "xfs" not in codes(report)  # read, so no "not checked" note


def test_rhel_like_guest_on_xfs_with_a_default_entry(work: Path) -> None:
    root, _ = guests.linux("rhel", "8.6", "4.18.0-372.9.1.el8_6.x86_64", boot="bls-default")
    report = inspect_image(FileReader(guests.xfs_disk(work / "rhel-ok.raw", root)))
    assert report.ok, report.findings
    assert report.guest.default_entry == "abc123-4.18.0-372.9.1.el8_6.x86_64"


def test_windows_dynamic_disk_and_ntfs(work: Path) -> None:
    ntfs = guests.partition_image(work / "ntfs.part", 8)
    with open(ntfs, "r+b") as f:  # an NTFS boot sector's OEM id is what identifies it
        f.write(b"\xebR\x90NTFS    " + bytes(499) + b"\x55\xaa")
    disk = guests.assemble(work / "ntfs.raw", [(8, ntfs)])
    report = inspect_image(FileReader(disk))
    # a boot sector with nothing behind it: Windows, its volume unreadable (tests/inspect/test_windows.py
    # reads real ones)
    assert report.guest.os == "windows" and codes(report)["guest-unreadable"] == "warning"
    with open(disk, "r+b") as f:  # the partition's MBR type made 0x42: a dynamic disk
        f.seek(446 + 4)
        f.write(b"\x42")
    assert codes(inspect_image(FileReader(disk)))["dynamic-disk"] == "error"
