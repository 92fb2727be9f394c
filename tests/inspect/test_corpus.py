"""Every format and subformat of the corpus: detected with the right size, table and boot mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wizard.inspect import FileReader, inspect_image

MiB = 1024 * 1024
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

# file: format, subformat, virtual size, error codes
GPT = {
    "gpt.raw": ("RAW", "", 512 * MiB, set()),
    "gpt-flat-flat.vmdk": ("RAW", "", 512 * MiB, set()),  # a flat extent is raw data
    "gpt-stream.vmdk": ("VMDK", "streamOptimized", 512 * MiB, set()),
    "gpt-vmwstream.vmdk": ("VMDK", "streamOptimized", 512 * MiB, set()),
    "gpt-sparse.vmdk": ("VMDK", "monolithicSparse", 512 * MiB, {"vmdk-not-stream-optimized"}),
    "gpt-dyn.vhd": ("VHD", "dynamic", 512 * MiB, set()),
    "gpt-fixed.vhd": ("VHD", "fixed", 512 * MiB, set()),
    "gpt-dyn-chs.vhd": ("VHD", "dynamic", 537255936, set()),  # qemu's CHS rounding
    "gpt-dyn.vhdx": ("VHDX", "dynamic", 512 * MiB, set()),
    "gpt-fixed.vhdx": ("VHDX", "fixed", 512 * MiB, set()),
    "gpt.qcow2": ("QCOW2", "v3", 512 * MiB, {"qcow2"}),
    "gpt.ova": ("OVA", "streamOptimized", 512 * MiB, set()),
}
MBR = {
    name.replace("gpt", "mbr"): (fmt, sub, 256 * MiB, codes)
    for name, (fmt, sub, _, codes) in GPT.items()
    if name not in ("gpt-dyn-chs.vhd", "gpt.ova")
}


def errors(report) -> set[str]:
    return {f.code for f in report.findings if f.severity == "error"}


@pytest.mark.parametrize("name", sorted(GPT))
def test_gpt_images(corpus: Path, name: str) -> None:
    fmt, subformat, size, codes = GPT[name]
    report = inspect_image(FileReader(corpus / name))
    assert (report.format, report.subformat, report.virtual_size) == (fmt, subformat, size)
    assert report.file_size == (corpus / name).stat().st_size
    assert errors(report) == codes
    assert report.partition_table == "gpt"
    esp, root = report.partitions
    assert (esp.index, esp.start, esp.size, esp.type, esp.name, esp.is_esp) == (
        1,
        MiB,
        100 * MiB,
        ESP,
        "EFI System Partition",
        True,
    )
    assert (root.index, root.start, root.type, root.name, root.is_esp) == (2, 101 * MiB, LINUX, "root", False)
    assert root.start + root.size == 512 * MiB - 33 * 512  # up to the backup GPT entries
    assert report.boot_mode_hint == "uefi"
    assert "uefi" in {f.code for f in report.findings if f.severity == "info"}
    assert "esp-no-bootx64" not in {f.code for f in report.findings}  # the ESP has EFI/BOOT/BOOTX64.EFI
    assert report.guest is not None and (report.guest.distribution, report.guest.version) == ("debian", "12.4")
    assert report.ok == (not codes)
    json.dumps(report.to_dict())


@pytest.mark.parametrize("name", sorted(MBR))
def test_mbr_images(corpus: Path, name: str) -> None:
    fmt, subformat, size, codes = MBR[name]
    report = inspect_image(FileReader(corpus / name))
    assert (report.format, report.subformat, report.virtual_size) == (fmt, subformat, size)
    assert errors(report) == codes
    assert report.partition_table == "mbr"
    [part] = report.partitions
    assert (part.index, part.start, part.size, part.type, part.bootable, part.is_esp) == (
        1,
        MiB,
        255 * MiB,
        "0x83",
        True,
        False,
    )
    assert report.boot_mode_hint == "legacy-bios"
    assert not [f for f in report.findings if f.severity == "warning"]
    assert {f.code for f in report.findings if f.severity == "info"} == {
        "os-supported",
        "architecture-x86_64",
        "no-ssm-agent",
    }


@pytest.mark.parametrize("table", ["gpt", "mbr"])
def test_descriptor_only_vmdk(corpus: Path, table: str) -> None:
    report = inspect_image(FileReader(corpus / f"{table}-flat.vmdk"))
    assert (report.format, report.subformat, report.partition_table) == ("VMDK", "monolithicFlat", "unknown")
    assert report.virtual_size == (512 if table == "gpt" else 256) * MiB
    [finding] = report.findings
    assert finding.code == "vmdk-descriptor-only" and f"{table}-flat-flat.vmdk" in finding.message
    assert "Unsupported VMDK File Format" in finding.message


def test_ova_descriptor(corpus: Path) -> None:
    report = inspect_image(FileReader(corpus / "gpt.ova"), "OVA")
    assert report.ok
    ova = report.ova
    assert ova is not None
    assert (ova.ovf_name, ova.firmware, ova.os_id, ova.os_type) == ("vm.ovf", "efi", "96", "debian11_64Guest")
    [disk] = ova.disks
    assert (disk.href, disk.capacity, disk.chunked) == ("disk1.vmdk", 512 * MiB, False)
    assert disk.format.endswith("#streamOptimized")
    assert disk.file_size == (corpus / "gpt-vmwstream.vmdk").stat().st_size
    nested = ova.first_disk
    assert nested is not None
    assert (nested.format, nested.subformat, nested.partition_table, nested.boot_mode_hint) == (
        "VMDK",
        "streamOptimized",
        "gpt",
        "uefi",
    )
    assert json.loads(json.dumps(report.to_dict()))["ova"]["first_disk"]["format"] == "VMDK"
