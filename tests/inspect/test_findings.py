"""Each finding code, produced by a real image or a small crafted variant of one."""

from __future__ import annotations

import gzip
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from wizard.inspect import FileReader, ImageReport, SliceReader, inspect_image

from .conftest import require_tools, tool
from .crafting import make_ova, ovf, vhd_patches, vhdx_file_parameters_offset, vhdx_header_patches
from .helpers import BytesReader, PatchedReader, ZeroReader

MiB = 1024 * 1024
TiB = 1024**4


def codes(report: ImageReport, severity: str = "error") -> set[str]:
    return {f.code for f in report.findings if f.severity == severity}


def message(report: ImageReport, code: str) -> str:
    return next(f.message for f in report.findings if f.code == code)


def cut(path: Path, size: int) -> SliceReader:
    """The file as if only its first `size` bytes had been copied."""
    return SliceReader(FileReader(path), 0, size)


# --- format-mismatch ---------------------------------------------------------------------------


def test_format_mismatch(corpus: Path) -> None:
    image = FileReader(corpus / "gpt-stream.vmdk")
    report = inspect_image(image, "VHD")
    assert codes(report) == {"format-mismatch"}
    assert "Unsupported specified file format" in message(report, "format-mismatch")
    assert "Set the format to VMDK" in message(report, "format-mismatch")
    assert inspect_image(image, "vmdk").ok
    assert inspect_image(image, None).ok  # not declared yet
    fixed_vhd = inspect_image(FileReader(corpus / "gpt-fixed.vhd"), "RAW")
    assert codes(fixed_vhd) == {"format-mismatch"}


# --- VMDK --------------------------------------------------------------------------------------


def test_sparse_vmdk_is_not_stream_optimized(corpus: Path) -> None:
    report = inspect_image(FileReader(corpus / "mbr-sparse.vmdk"), "VMDK")
    assert codes(report) == {"vmdk-not-stream-optimized"}
    text = message(report, "vmdk-not-stream-optimized")
    assert "Disk validation failed [Unsupported VMDK File Format]" in text
    assert "qemu-img convert -O vmdk -o subformat=streamOptimized" in text


def test_stream_vmdk_with_parent_is_a_delta(corpus: Path) -> None:
    path = corpus / "gpt-stream.vmdk"
    text = FileReader(path).read(512, 1024)
    at = 512 + text.index(b"parentCID=ffffffff") + len(b"parentCID=")
    report = inspect_image(PatchedReader(FileReader(path), {at: b"1234abcd"}))
    assert codes(report) == {"differencing-disk"}
    assert "1234abcd" in message(report, "differencing-disk")
    assert report.partition_table == "unknown"  # the data is partly in the parent


def test_qemu_made_child_vmdk(corpus: Path, tmp_path: Path) -> None:
    child = tmp_path / "child.vmdk"
    subprocess.run(
        [
            tool("qemu-img"),
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            str(corpus / "gpt-sparse.vmdk"),
            "-F",
            "vmdk",
            str(child),
        ],
        check=True,
    )
    assert codes(inspect_image(FileReader(child))) == {"differencing-disk", "vmdk-not-stream-optimized"}


def test_vmfs_sparse_delta() -> None:
    header = b"COWD" + struct.pack("<IIII", 1, 3, 2 * MiB, 1) + bytes(4076)
    report = inspect_image(BytesReader(header))
    assert (report.format, report.subformat, report.virtual_size) == ("VMDK", "vmfsSparse", 1024 * MiB)
    assert codes(report) == {"differencing-disk"}


@pytest.mark.parametrize("name", ["gpt-stream.vmdk", "gpt-vmwstream.vmdk"])
def test_stream_vmdk_cut_short(corpus: Path, name: str) -> None:
    size = (corpus / name).stat().st_size
    for keep in (size // 3, size // 2, size - 100_000):
        report = inspect_image(cut(corpus / name, keep))
        assert codes(report) == {"truncated"}, keep
        assert "cut short" in message(report, "truncated")


def test_stream_vmdk_without_its_last_sector(corpus: Path) -> None:
    """VMware's layout ends with footer + end-of-stream marker: one sector less is a cut file.
    qemu-img pads its streams with zeros after the marker, so there it loses nothing."""
    vmware, qemu = corpus / "gpt-vmwstream.vmdk", corpus / "gpt-stream.vmdk"
    assert codes(inspect_image(cut(vmware, vmware.stat().st_size - 512))) == {"truncated"}
    assert inspect_image(cut(qemu, qemu.stat().st_size - 512)).ok


def test_sparse_vmdk_cut_before_its_grain_directory(corpus: Path) -> None:
    report = inspect_image(cut(corpus / "gpt-sparse.vmdk", 40 * 1024))
    assert codes(report) == {"vmdk-not-stream-optimized", "truncated"}


# --- VHD -------------------------------------------------------------------------------------------


def test_dynamic_vhd_cut_short(corpus: Path) -> None:
    path = corpus / "gpt-dyn.vhd"
    report = inspect_image(cut(path, path.stat().st_size // 2))
    assert (report.format, report.subformat) == ("VHD", "dynamic")
    assert "truncated" in codes(report)


def test_fixed_vhd_cut_short_reads_as_a_cut_raw_disk(corpus: Path) -> None:
    report = inspect_image(cut(corpus / "gpt-fixed.vhd", 300 * MiB), "VHD")
    assert report.format == "RAW"  # the footer went with the end
    assert codes(report) == {"truncated", "format-mismatch"}


def test_fixed_vhd_shorter_than_its_footer_says(corpus: Path) -> None:
    path = corpus / "gpt-fixed.vhd"
    size = path.stat().st_size
    footer = vhd_patches(path, current_size=1024 * MiB)[size - 512]
    report = inspect_image(PatchedReader(FileReader(path), {size - 512: footer}))
    assert (report.subformat, report.virtual_size, report.partition_table) == ("fixed", 1024 * MiB, "unknown")
    assert codes(report) == {"truncated"}


def test_differencing_vhd(corpus: Path) -> None:
    path = corpus / "gpt-dyn.vhd"
    report = inspect_image(PatchedReader(FileReader(path), vhd_patches(path, disk_type=4)))
    assert (report.format, report.subformat, report.partition_table) == ("VHD", "differencing", "unknown")
    assert codes(report) == {"differencing-disk"}


def test_vhd_footer_checksum(corpus: Path) -> None:
    path = corpus / "gpt-fixed.vhd"
    size = path.stat().st_size
    report = inspect_image(PatchedReader(FileReader(path), {size - 512 + 28: b"evil"}))
    assert codes(report) == {"corrupt"}


def test_vhd_smaller_than_its_partition_table(corpus: Path) -> None:
    path = corpus / "gpt-dyn.vhd"
    report = inspect_image(PatchedReader(FileReader(path), vhd_patches(path, current_size=256 * MiB)))
    assert report.virtual_size == 256 * MiB
    assert codes(report) == {"partition-outside-disk"}


# --- VHDX ------------------------------------------------------------------------------------------


def test_vhdx_log_not_replayed(corpus: Path) -> None:
    path = corpus / "gpt-dyn.vhdx"
    report = inspect_image(PatchedReader(FileReader(path), vhdx_header_patches(path, b"\x42" * 16)))
    assert codes(report) == {"vhdx-log-not-replayed"}
    assert report.partition_table == "gpt"


def test_differencing_vhdx(corpus: Path) -> None:
    path = corpus / "gpt-dyn.vhdx"
    at = vhdx_file_parameters_offset(path)
    (flags,) = struct.unpack("<I", FileReader(path).read(at + 4, 4))
    report = inspect_image(PatchedReader(FileReader(path), {at + 4: struct.pack("<I", flags | 2)}))
    assert (report.subformat, report.partition_table) == ("differencing", "unknown")
    assert codes(report) == {"differencing-disk"}


@pytest.mark.parametrize("name", ["gpt-dyn.vhdx", "gpt-fixed.vhdx"])
def test_vhdx_cut_short(corpus: Path, name: str) -> None:
    size = (corpus / name).stat().st_size
    for keep in (size - MiB, size - 4096, 5 * MiB):
        report = inspect_image(cut(corpus / name, keep))
        assert codes(report) == {"truncated"}, keep


def test_vhdx_headers_broken(corpus: Path) -> None:
    path = corpus / "gpt-dyn.vhdx"
    report = inspect_image(PatchedReader(FileReader(path), {64 * 1024 + 100: b"x", 128 * 1024 + 100: b"x"}))
    assert codes(report) == {"corrupt"}


# --- QCOW2, ISO, other formats -------------------------------------------------------------------


def test_qcow2_rejected_with_a_conversion(corpus: Path) -> None:
    report = inspect_image(FileReader(corpus / "mbr.qcow2"), "RAW")
    assert codes(report) == {"qcow2", "format-mismatch"}
    assert "qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized" in message(report, "qcow2")
    assert "cannot import QCOW2 at all" in message(report, "format-mismatch")


def test_compressed_qcow2_still_shows_its_partitions(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.qcow2"
    subprocess.run(
        [tool("qemu-img"), "convert", "-c", "-f", "raw", "-O", "qcow2", str(corpus / "gpt.raw"), str(out)], check=True
    )
    report = inspect_image(FileReader(out))
    assert (report.partition_table, report.boot_mode_hint) == ("gpt", "uefi")
    assert codes(report) == {"qcow2"}


def test_qcow2_with_backing_file(corpus: Path, tmp_path: Path) -> None:
    child = tmp_path / "child.qcow2"
    subprocess.run(
        [tool("qemu-img"), "create", "-q", "-f", "qcow2", "-b", str(corpus / "gpt.qcow2"), "-F", "qcow2", str(child)],
        check=True,
    )
    report = inspect_image(FileReader(child))
    assert report.partition_table == "unknown"
    assert "gpt.qcow2" in message(report, "qcow2")


def test_iso() -> None:
    data = bytearray(64 * 1024)
    data[0x8000:0x8007] = b"\x01CD001\x01"
    data[510:512] = b"\x55\xaa"  # a hybrid ISO's MBR does not make it a disk
    report = inspect_image(BytesReader(bytes(data)))
    assert (report.format, codes(report)) == ("ISO", {"iso"})


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (gzip.compress(bytes(100_000)), "gzip"),
        (bytes(0x40) + b"\x7f\x10\xda\xbe" + bytes(600), "VDI"),
        (b"PK\x03\x04" + bytes(600), "zip"),
    ],
)
def test_other_formats(data: bytes, kind: str) -> None:
    report = inspect_image(BytesReader(data))
    assert (report.format, report.subformat, codes(report)) == ("UNKNOWN", kind, {"unsupported-format"})


# --- sizes -------------------------------------------------------------------------------------------


def test_empty() -> None:
    report = inspect_image(BytesReader(b""))
    assert codes(report) == {"empty"}
    assert not report.ok


def test_too_large_virtual_disk_and_file() -> None:
    report = inspect_image(ZeroReader(8 * TiB))
    assert [f.code for f in report.findings if f.code == "too-large"] == ["too-large", "too-large"]
    assert "under 8 TiB" in report.findings[0].message
    assert "5 TiB" in report.findings[-1].message


def test_too_large_declared_capacity(corpus: Path) -> None:
    patch = {12: struct.pack("<Q", 8 * TiB // 512)}
    report = inspect_image(PatchedReader(FileReader(corpus / "gpt-stream.vmdk"), patch))
    assert report.virtual_size == 8 * TiB
    assert "too-large" in codes(report)


def test_just_under_the_limits() -> None:
    assert "too-large" not in codes(inspect_image(ZeroReader(5 * TiB)))


# --- partition tables and boot mode --------------------------------------------------------------


def test_no_partition_table() -> None:
    report = inspect_image(ZeroReader(10 * MiB))
    assert (report.format, report.partition_table) == ("RAW", "none")
    assert codes(report) == {"no-partitions"}
    assert "ClientError: No valid partitions. Not a valid volume." in message(report, "no-partitions")


def test_empty_partition_table() -> None:
    disk = bytearray(MiB)
    disk[510:512] = b"\x55\xaa"
    report = inspect_image(BytesReader(bytes(disk)))
    assert (report.partition_table, report.partitions, codes(report)) == ("mbr", [], {"no-partitions"})


def test_boot_sector_without_partition_table() -> None:
    disk = bytearray(MiB)
    disk[0:3] = b"\xeb\x3c\x90"
    disk[446:510] = b"\x12" * 64  # boot code where a table would be
    disk[510:512] = b"\x55\xaa"
    assert inspect_image(BytesReader(bytes(disk))).partition_table == "none"


def test_raw_cut_short(corpus: Path) -> None:
    for name in ("gpt.raw", "mbr.raw"):
        report = inspect_image(cut(corpus / name, 200 * MiB))
        assert codes(report) == {"truncated"}, name


def test_gpt_header_checksum(corpus: Path) -> None:
    at = 512 + 56  # the first byte of the disk GUID, random: flipped, never set to a fixed value
    with (corpus / "gpt.raw").open("rb") as f:
        f.seek(at)
        flipped = bytes([f.read(1)[0] ^ 0xFF])
    report = inspect_image(PatchedReader(FileReader(corpus / "gpt.raw"), {at: flipped}))
    assert (report.partition_table, codes(report)) == ("gpt", {"corrupt"})


def test_gpt_backup_missing(corpus: Path) -> None:
    path = corpus / "gpt.raw"
    report = inspect_image(PatchedReader(FileReader(path), {path.stat().st_size - 512: bytes(512)}))
    assert report.ok
    assert codes(report, "warning") == {"gpt-backup-missing"}


def test_esp_without_fallback_loader(corpus: Path, tmp_path: Path) -> None:
    disk = tmp_path / "gpt.raw"
    subprocess.run(["cp", "--sparse=always", str(corpus / "gpt.raw"), str(disk)], check=True)
    subprocess.run([tool("mdel"), "-i", f"{disk}@@{MiB}", "::/EFI/BOOT/BOOTX64.EFI"], check=True)
    report = inspect_image(FileReader(disk))
    assert report.boot_mode_hint == "uefi"
    assert codes(report, "warning") == {"esp-no-bootx64"}


def sgdisk_disk(path: Path, *args: str) -> Path:
    require_tools()
    subprocess.run(["truncate", "-s", "64M", str(path)], check=True)
    subprocess.run([tool("sgdisk"), *args, str(path)], check=True, capture_output=True)
    return path


def test_gpt_with_esp_and_bios_boot_partition_boots_either_way(tmp_path: Path) -> None:
    disk = sgdisk_disk(
        tmp_path / "d.raw", "-n", "1:2048:+1M", "-t", "1:ef02", "-n", "2:0:+32M", "-t", "2:ef00", "-n", "3:0:0"
    )
    report = inspect_image(FileReader(disk))
    assert report.boot_mode_hint == ""
    assert codes(report, "info") == {"boot-either"}
    assert report.ok  # the ESP is not formatted: no claim about its files


def test_gpt_with_bios_boot_partition_only_is_legacy(tmp_path: Path) -> None:
    disk = sgdisk_disk(tmp_path / "d.raw", "-n", "1:2048:+1M", "-t", "1:ef02", "-n", "2:0:0")
    assert inspect_image(FileReader(disk)).boot_mode_hint == "legacy-bios"


def test_mbr_with_esp_and_no_active_partition_is_uefi(tmp_path: Path) -> None:
    require_tools()
    disk = tmp_path / "d.raw"
    subprocess.run(["truncate", "-s", "64M", str(disk)], check=True)
    subprocess.run(
        [tool("sfdisk"), "-q", "--label", "dos", str(disk)], input="2048,32M,ef\n,,83\n", text=True, check=True
    )
    report = inspect_image(FileReader(disk))
    assert [p.type for p in report.partitions] == ["0xEF", "0x83"]
    assert report.boot_mode_hint == "uefi"


# --- OVA -------------------------------------------------------------------------------------------


def test_ova_with_two_disks(corpus: Path, tmp_path: Path) -> None:
    disks = [("disk1.vmdk", "streamOptimized"), ("disk2.vmdk", "streamOptimized")]
    ova = make_ova(
        tmp_path / "two.ova",
        [
            ("vm.ovf", ovf(disks)),
            ("disk1.vmdk", corpus / "gpt-vmwstream.vmdk"),
            ("disk2.vmdk", corpus / "mbr-stream.vmdk"),
        ],
    )
    report = inspect_image(FileReader(ova), "OVA")
    assert report.ok
    assert codes(report, "info") >= {"ova-multiple-disks", "uefi"}
    assert [d.href for d in report.ova.disks] == ["disk1.vmdk", "disk2.vmdk"]
    assert report.ova.disks[1].capacity == 512 * MiB


def test_ova_with_chunked_disk(corpus: Path, tmp_path: Path) -> None:
    data = (corpus / "gpt-vmwstream.vmdk").read_bytes()
    half = len(data) // 2
    members = [
        ("vm.ovf", ovf([("disk1.vmdk", "streamOptimized")], file_attrs=f' ovf:chunkSize="{half}"')),
        ("disk1.vmdk.000000000", data[:half]),
        ("disk1.vmdk.000000001", data[half:]),
    ]
    report = inspect_image(FileReader(make_ova(tmp_path / "chunked.ova", members)))
    assert codes(report) == {"ova-chunked"}
    assert "OVA with chunked disk files" in message(report, "ova-chunked")
    assert report.ova.disks[0].chunked and report.ova.first_disk is None


def test_ova_with_sparse_disks(corpus: Path, tmp_path: Path) -> None:
    disks = [("disk1.vmdk", "streamOptimized"), ("disk2.vmdk", "sparse")]
    members = [
        ("vm.ovf", ovf(disks)),
        ("disk1.vmdk", corpus / "gpt-sparse.vmdk"),
        ("disk2.vmdk", corpus / "gpt-sparse.vmdk"),
    ]
    report = inspect_image(FileReader(make_ova(tmp_path / "sparse.ova", members)))
    assert codes(report) == {"ova-disk-not-stream-optimized"}  # not vmdk-not-stream-optimized as well
    assert [f.message.split()[1] for f in report.findings if f.code == "ova-disk-not-stream-optimized"] == [
        "disk2.vmdk",
        "disk1.vmdk",
    ]


def test_ova_firmware_mismatch(corpus: Path, tmp_path: Path) -> None:
    members = [
        ("vm.ovf", ovf([("disk1.vmdk", "streamOptimized")], firmware="")),
        ("disk1.vmdk", corpus / "gpt-vmwstream.vmdk"),
    ]
    report = inspect_image(FileReader(make_ova(tmp_path / "bios.ova", members)))
    assert report.ova.firmware == "bios" and report.boot_mode_hint == "uefi"
    assert codes(report, "warning") == {"ova-firmware-mismatch"}


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_ova_long_names(corpus: Path, tmp_path: Path, fmt: int) -> None:
    name = "a-disk-name-" + "x" * 120 + ".vmdk"
    members = [("vm.ovf", ovf([(name, "streamOptimized")], firmware="")), (name, corpus / "mbr-vmwstream.vmdk")]
    report = inspect_image(FileReader(make_ova(tmp_path / "long.ova", members, fmt)))
    assert report.ok and not codes(report, "warning")
    assert report.partition_table == "mbr"
    assert report.ova.disks[0].file_size == (corpus / "mbr-vmwstream.vmdk").stat().st_size


def test_ova_ovf_not_first(corpus: Path, tmp_path: Path) -> None:
    members = [
        ("disk1.vmdk", corpus / "mbr-vmwstream.vmdk"),
        ("vm.ovf", ovf([("disk1.vmdk", "streamOptimized")], firmware="")),
    ]
    report = inspect_image(FileReader(make_ova(tmp_path / "late.ova", members)))
    assert codes(report, "warning") == {"ova-ovf-not-first"}
    assert report.ok


@pytest.mark.parametrize(
    "members",
    [
        [("disk1.vmdk", b"x" * 1000)],  # no OVF
        [("vm.ovf", b"<Envelope><unclosed></Envelope>")],
        [("vm.ovf", ovf([("disk1.vmdk", "streamOptimized")], doctype='<!DOCTYPE x [<!ENTITY a "aaaa">]>'))],
        [("vm.ovf", ovf([("missing.vmdk", "streamOptimized")]))],
        [("vm.ovf", ovf([]))],
    ],
)
def test_ova_invalid(tmp_path: Path, members: list[tuple[str, bytes]]) -> None:
    report = inspect_image(FileReader(make_ova(tmp_path / "bad.ova", members)))
    assert (report.format, codes(report)) == ("OVA", {"ova-invalid"})


def test_ova_with_too_many_disks(corpus: Path, tmp_path: Path) -> None:
    disks = [(f"disk{i}.vmdk", "streamOptimized") for i in range(22)]
    members = [("vm.ovf", ovf(disks)), ("disk0.vmdk", corpus / "mbr-vmwstream.vmdk")]
    assert codes(inspect_image(FileReader(make_ova(tmp_path / "many.ova", members)))) == {"too-many-volumes"}


def test_ova_cut_short(corpus: Path) -> None:
    path = corpus / "gpt.ova"
    report = inspect_image(cut(path, path.stat().st_size // 2))
    assert codes(report) == {"truncated"}
