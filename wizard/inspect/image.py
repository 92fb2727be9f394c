"""`inspect_image`: the whole inspection of one image, as VM Import would judge it.

Detect the format, open the container into the guest's disk, read the partition table and
the boot mode from it, and turn every problem into a finding before any import runs.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable
from dataclasses import asdict

from .detect import ADVICE, detect
from .fat import has_file
from .guest import Disk
from .linux import inspect_guest
from .ova import inspect_ova
from .partitions import boot_mode, check_table, read_table
from .qcow2 import open_qcow2
from .reader import PAGE, Budget, BudgetReader, CachedReader, Reader, ReadFailed
from .report import ERROR, MAX_SIZE, WARNING, Finding, ImageError, ImageReport, human
from .vhd import open_vhd
from .vhdx import open_vhdx
from .vmdk import open_vmdk

TiB = 1024**4
MAX_VIRTUAL_SIZE = 8 * TiB  # ImportImage takes disks under 8 TiB
MAX_OBJECT_SIZE = 5 * TiB  # the largest S3 object
IMPORTABLE = ("OVA", "VMDK", "VHD", "VHDX", "RAW")
OPENERS: dict[str, Callable[[CachedReader], Disk]] = {
    "VMDK": open_vmdk,
    "VHD": open_vhd,
    "VHDX": open_vhdx,
    "QCOW2": open_qcow2,
}
BOOT_LOADER = "EFI/BOOT/BOOTX64.EFI"
log = logging.getLogger(__name__)


def inspect_image(reader: Reader, declared_format: str | None = "", guest: bool = True) -> ImageReport:
    """Inspects the image behind `reader`; `declared_format` is the Format the import will
    name (OVA, VMDK, VHD, VHDX, RAW; empty or None: not known yet), checked against what the
    file really is. `guest=False` stops after the container, the partition table and the
    ESP's boot loader, without the guest's operating system (`linux.inspect_guest`).

    Whatever bytes the image holds, this returns a report (JSON-ready, no number over 2^63)
    within the inspection's read budget (`reader.Budget`); it raises only what `reader.read`
    itself raises (S3 or file system errors: the image could not be read at all).
    """
    budget = Budget()
    try:
        report = _inspect(BudgetReader(reader, budget), budget, guest=guest)
        _check(report)
    except ReadFailed as e:
        raise e.error from None
    except Exception as e:  # the last line: a structure no check above foresaw
        log.warning("inspecting an image of %s bytes failed: %r", reader.size, e, exc_info=True)
        report = ImageReport(
            "UNKNOWN",
            "",
            None,
            reader.size if 0 <= reader.size <= MAX_SIZE else 0,
            findings=[
                Finding(
                    ERROR,
                    "corrupt",
                    "The image's structures are damaged in a way this check cannot read "
                    f"({type(e).__name__}); VM Import would most likely fail on it too. Export the image again.",
                )
            ],
        )
    report.findings = list({(f.severity, f.code, f.message): f for f in report.findings}.values())
    if report.file_size > MAX_OBJECT_SIZE:
        report.findings.append(
            Finding(
                ERROR,
                "too-large",
                f"The file is {human(report.file_size)}; an S3 object can be at most 5 TiB, so it cannot be "
                "uploaded for import. Use a sparse format that stores only the used data (stream-optimized "
                "VMDK, dynamic VHDX).",
            )
        )
    declared = (declared_format or "").strip().upper()
    if declared and declared != report.format and (report.format != "UNKNOWN" or report.subformat):
        fix = (
            f"Set the format to {report.format}."
            if report.format in IMPORTABLE
            else f"VM Import cannot import {report.format} at all (see the other findings)."
        )
        report.findings.append(
            Finding(
                ERROR,
                "format-mismatch",
                f"The import names the format {declared} but the file is {report.format}"
                f"{' (' + report.subformat + ')' if report.subformat else ''}. VM Import fails with "
                f'"Unsupported specified file format". {fix}',
            )
        )
    return report


def _check(report: ImageReport) -> None:
    """The report is JSON and its numbers fit in 64 bits (every size was checked where it was
    read: this only makes sure of it)."""

    def numbers(value: object) -> list[int]:
        if isinstance(value, dict):
            return [n for v in value.values() for n in numbers(v)]
        if isinstance(value, list):
            return [n for v in value for n in numbers(v)]
        return [value] if isinstance(value, int) else []

    data = asdict(report)
    json.dumps(data)
    if any(not -MAX_SIZE - 1 <= n <= MAX_SIZE for n in numbers(data)):
        raise ValueError("a number in the report does not fit in 64 bits")


def _inspect(reader: Reader, budget: Budget, nested: bool = False, guest: bool = True) -> ImageReport:
    """The inspection without the checks that only make sense for the uploaded file as a whole
    (its S3 size and declared format): also used for the disk inside an OVA (`nested`)."""
    src = CachedReader(reader, budget)
    if src.size == 0:
        return ImageReport(
            "UNKNOWN",
            "",
            None,
            0,
            "none",
            findings=[
                Finding(
                    ERROR,
                    "empty",
                    "The file is empty (0 bytes): the upload or the export did not complete. "
                    "Upload the disk image again.",
                )
            ],
        )
    try:
        fmt, kind = detect(src)
    except ImageError as e:
        return ImageReport("UNKNOWN", "", None, src.size, findings=[e.finding()])
    if fmt == "OVA" and nested:
        return ImageReport(
            "OVA",
            "",
            None,
            src.size,
            findings=[
                Finding(
                    ERROR,
                    "ova-nested",
                    "The OVA's disk file is itself an OVA (a tar archive). VM Import reads only "
                    "stream-optimized VMDK disks inside an OVA, not OVAs inside an OVA: put the disk's "
                    "VMDK into the OVA itself.",
                )
            ],
        )
    try:
        if fmt == "OVA":
            return inspect_ova(src, lambda disk: _inspect(disk, budget, nested=True, guest=guest))
        return _inspect_disk(src, fmt, kind, guest)
    except (struct.error, ValueError) as e:  # a structure too short or malformed to parse
        return ImageReport(
            fmt,
            "",
            None,
            src.size,
            findings=[
                Finding(
                    ERROR,
                    "corrupt",
                    f"The {fmt} image's structures are damaged ({e}); VM Import would fail on it too. Export it again.",
                )
            ],
        )


def _inspect_disk(src: CachedReader, fmt: str, kind: str, guest: bool) -> ImageReport:
    try:
        disk = _open(src, fmt, kind)
    except ImageError as e:
        disk = Disk(fmt, "", None, None, [e.finding()])
    if disk.virtual_size is not None and not 0 <= disk.virtual_size <= MAX_SIZE:
        disk = Disk(
            disk.format,
            disk.subformat,
            None,
            None,
            [
                *disk.findings,
                Finding(
                    ERROR,
                    "corrupt",
                    f"The {disk.format} header declares a disk of {human(disk.virtual_size)}, more than any disk "
                    "can be: the header is damaged. Export the image again.",
                ),
            ],
        )
    report = ImageReport(disk.format, disk.subformat, disk.virtual_size, src.size, findings=list(disk.findings))
    if disk.virtual_size is not None and disk.virtual_size >= MAX_VIRTUAL_SIZE:
        report.findings.append(
            Finding(
                ERROR,
                "too-large",
                f"The virtual disk is {human(disk.virtual_size)}; ImportImage takes disks under 8 TiB. "
                "Shrink the disk (and its last partition) below 8 TiB, or move data to separate volumes.",
            )
        )
    if disk.guest is not None:
        try:
            _read_guest(src, disk, report, guest)
        except ImageError as e:
            report.partition_table, report.partitions, report.boot_mode_hint = "unknown", [], ""
            report.findings.append(e.finding())
    return report


def _open(src: CachedReader, fmt: str, kind: str) -> Disk:
    if fmt == "RAW":
        return Disk("RAW", "", src.size, src)
    if fmt == "ISO":
        return Disk(
            "ISO",
            "",
            src.size,
            None,
            [
                Finding(
                    ERROR,
                    "iso",
                    "This is an ISO 9660 (CD/DVD) image, not the disk of an installed system. VM Import cannot "
                    "import installer ISOs: install the OS into a VM, then export its disk (OVA or "
                    "stream-optimized VMDK) and import that.",
                )
            ],
        )
    if fmt == "UNKNOWN":
        return Disk(
            "UNKNOWN",
            kind,
            None,
            None,
            [
                Finding(
                    ERROR,
                    "unsupported-format",
                    f"This is a {kind} file, not a disk image VM Import reads (OVA, VMDK, VHD, VHDX or RAW): "
                    f"{ADVICE[kind]}.",
                )
            ],
        )
    return OPENERS[fmt](src)


def _read_guest(src: CachedReader, disk: Disk, report: ImageReport, guest_os: bool) -> None:
    assert disk.guest is not None
    if disk.read_ahead:
        # the guest's first bytes (the partition table, mostly the ESP's FAT, the first file
        # system's superblock) read at once, where the container keeps them outside the file's head
        disk.guest = CachedReader(disk.guest, src.budget, head=disk.read_ahead, near=0, tail=PAGE)
    table = read_table(disk.guest, disk.sector_size)
    report.partition_table, report.partitions = table.kind, table.partitions
    cut_code = "truncated" if disk.format == "RAW" else "partition-outside-disk"  # raw: the disk is the file
    report.findings += check_table(disk.guest, table, disk.sector_size, cut_code)
    report.boot_mode_hint, findings = boot_mode(table)
    report.findings += findings
    esp = next((p for p in table.partitions if p.is_esp), None)
    if esp is not None and has_file(disk.guest, esp.start, BOOT_LOADER) is False:
        report.findings.append(
            Finding(
                WARNING,
                "esp-no-bootx64",
                f"The EFI System Partition has no {BOOT_LOADER}. VM Import boots UEFI guests through this "
                "fallback loader, so the import fails or the instance does not boot. Install it (e.g. "
                "grub-install --removable, or copy the distribution's shimx64.efi/grubx64.efi there).",
            )
        )
    if guest_os and table.partitions and not any(f.severity == ERROR for f in table.findings):
        report.guest, findings = inspect_guest(disk.guest, table.partitions)
        report.findings += findings
