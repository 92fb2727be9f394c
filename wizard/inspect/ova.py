"""OVA: a POSIX tar holding an OVF descriptor (XML) and the disk files it names.

VM Import reads the OVF, then each disk, which must be a whole (not chunked) stream-optimized
VMDK. Only the tar headers, the OVF and the first disk's few needed pieces are read: the first
disk is inspected like any image, through a reader over its byte range inside the tar.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from .reader import CachedReader, Reader, SliceReader, read_exact
from .report import ERROR, INFO, WARNING, Finding, ImageError, ImageReport, OvaDisk, OvaInfo

BLOCK = 512
MAX_MEMBERS = 1000
MAX_OVF = 1024 * 1024
MAX_VOLUMES = 21
STREAM = "#streamoptimized"
UNSUPPORTED_OVA = "Disk validation failed [Unsupported OVA format]"
CHUNKED = "Disk validation failed [OVF file parsing error: OVA with chunked disk files...]"


@dataclass
class Member:
    name: str
    offset: int  # of the data
    size: int


def _octal_or_base256(field: bytes) -> int:
    if field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    return int(field.strip(b"\0 ") or b"0", 8)


def _cstr(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "replace")


def _pax(body: bytes) -> dict[str, str]:
    """pax extended header records: "<length> <key>=<value>\\n"."""
    records = {}
    for m in re.finditer(rb"\d+ ([^=\n]+)=([^\n]*)\n", body):
        records[m[1].decode("utf-8", "replace")] = m[2].decode("utf-8", "replace")
    return records


def tar_members(src: Reader) -> list[Member]:
    """The regular files of the tar, from their headers only (ustar, pax and GNU long names)."""
    members: list[Member] = []
    offset, pax, long_name = 0, {}, ""
    while offset + BLOCK <= src.size and len(members) < MAX_MEMBERS:
        header = read_exact(src, offset, BLOCK, "next tar header")
        if header == bytes(BLOCK):
            break
        if header[257:262] != b"ustar":
            raise ImageError(
                "ova-invalid", f'The tar header at byte {offset} is damaged. VM Import: "{UNSUPPORTED_OVA}".'
            )
        size, kind, data = _octal_or_base256(header[124:136]), header[156:157], offset + BLOCK
        if kind in (b"x", b"L"):
            body = read_exact(src, data, min(size, 64 * 1024), "tar extended header")
            if kind == b"x":
                pax = _pax(body)
            else:
                long_name = _cstr(body)
        elif kind in (b"0", b"\0", b"7"):
            prefix = _cstr(header[345:500])
            name = pax.get("path") or long_name or (prefix + "/" if prefix else "") + _cstr(header[:100])
            size = int(pax.get("size", size))
            if data + size > src.size:
                raise ImageError(
                    "truncated", f"The OVA ends inside {name}: the file was cut short. Upload the complete file."
                )
            members.append(Member(name, data, size))
            pax, long_name = {}, ""
        offset = data + -(-size // BLOCK) * BLOCK
    return members


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _attr(el: ET.Element, name: str) -> str:
    return next((v for k, v in el.attrib.items() if _local(k) == name), "")


def _capacity(value: str, units: str) -> int | None:
    m = re.fullmatch(r"\s*byte\s*(?:\*\s*(\d+)\s*\^\s*(\d+))?\s*", units or "byte")
    if not value.isdigit() or not m:
        return None
    return int(value) * (int(m[1]) ** int(m[2]) if m[1] else 1)


def parse_ovf(data: bytes, members: dict[str, Member]) -> OvaInfo:
    # OVAs come from anyone: refuse DTDs (entity expansion) instead of parsing them
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ImageError("ova-invalid", "The OVF descriptor contains a DTD, which OVF never needs; refused.")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ImageError(
            "ova-invalid", f'The OVF descriptor is not valid XML ({e}). VM Import: "{UNSUPPORTED_OVA}".'
        ) from e
    files = {_attr(f, "id"): f for f in root.iter() if _local(f.tag) == "File"}
    disks = []
    for d in (el for el in root.iter() if _local(el.tag) == "Disk"):
        f = files.get(_attr(d, "fileRef"), ET.Element("File"))  # a missing File has no attributes
        href = _attr(f, "href")
        member = members.get(href)
        disks.append(
            OvaDisk(
                href,
                _attr(d, "format"),
                _capacity(_attr(d, "capacity"), _attr(d, "capacityAllocationUnits")),
                member.size if member else None,
                bool(_attr(f, "chunkSize")) or f"{href}.000000000" in members,
                _attr(f, "compression"),
            )
        )
    firmware = next(
        (_attr(c, "value").lower() for c in root.iter() if _local(c.tag) == "Config" and _attr(c, "key") == "firmware"),
        "",
    )
    os_section = next((el for el in root.iter() if _local(el.tag) == "OperatingSystemSection"), None)
    return OvaInfo(
        "",
        disks,
        "efi" if firmware == "efi" else "bios",
        _attr(os_section, "id") if os_section is not None else "",
        _attr(os_section, "osType") if os_section is not None else "",
    )


def inspect_ova(src: CachedReader, inspect_disk: Callable[[Reader], ImageReport]) -> ImageReport:
    report = ImageReport("OVA", "", None, src.size)
    try:
        _inspect(src, inspect_disk, report)
    except ImageError as e:
        report.findings.append(e.finding())
    return report


def _inspect(src: CachedReader, inspect_disk: Callable[[Reader], ImageReport], report: ImageReport) -> None:
    members = tar_members(src)
    by_name = {posixpath.basename(m.name): m for m in members} | {m.name: m for m in members}
    ovf = next((m for m in members if m.name.lower().endswith(".ovf")), None)
    if ovf is None:
        raise ImageError("ova-invalid", f'The OVA has no .ovf descriptor. VM Import: "{UNSUPPORTED_OVA}".')
    if ovf is not members[0]:
        report.findings.append(
            Finding(
                WARNING,
                "ova-ovf-not-first",
                f"{ovf.name} is not the first file of the OVA, as the OVF standard requires; "
                "re-create the OVA with the .ovf first.",
            )
        )
    if ovf.size > MAX_OVF:
        raise ImageError("ova-invalid", f"The OVF descriptor is {ovf.size} bytes, far larger than any real one.")
    info = parse_ovf(read_exact(src, ovf.offset, ovf.size, "OVF descriptor"), by_name)
    info.ovf_name = ovf.name
    report.ova = info
    if not info.disks:
        raise ImageError("ova-invalid", "The OVF declares no disks, so there is nothing to import.")
    report.findings += _disk_list_findings(info.disks)
    first = info.disks[0]
    member = by_name.get(first.href)
    if member is None:
        if not first.chunked:
            raise ImageError(
                "ova-invalid",
                f'The OVF names the disk file {first.href!r}, which is not in the OVA. VM Import: "{UNSUPPORTED_OVA}".',
            )
        return
    info.first_disk = inspect_disk(SliceReader(src, member.offset, member.size))
    _take_first_disk(report, info, info.first_disk)


def _disk_list_findings(disks: list[OvaDisk]) -> list[Finding]:
    """What the OVF's list of disks shows: their number, chunking, declared formats."""
    findings = []
    if len(disks) > MAX_VOLUMES:
        findings.append(
            Finding(
                ERROR,
                "too-many-volumes",
                f"The OVA has {len(disks)} disks; VM Import takes at most {MAX_VOLUMES} volumes.",
            )
        )
    elif len(disks) > 1:
        findings.append(
            Finding(
                INFO,
                "ova-multiple-disks",
                f"The OVA has {len(disks)} disks; VM Import makes each a volume of the AMI, the first "
                "being the boot volume. Only the first disk was inspected here.",
            )
        )
    for i, disk in enumerate(disks):
        if disk.chunked:
            findings.append(
                Finding(
                    ERROR,
                    "ova-chunked",
                    f'Disk {disk.href} is split into chunks inside the OVA. VM Import fails with "{CHUNKED}". '
                    "Export the OVA again without chunking (ovftool without --chunkSize).",
                )
            )
        elif i > 0 and not disk.format.lower().endswith(STREAM):  # the first disk is judged by its bytes
            findings.append(_not_stream(disk.href, f"declared as {disk.format or 'no format'}"))
    return findings


def _take_first_disk(report: ImageReport, info: OvaInfo, nested: ImageReport) -> None:
    """The OVA's report shows its first disk: layout, boot mode, findings."""
    if nested.format != "VMDK" or nested.subformat.lower() != STREAM[1:]:
        report.findings.append(_not_stream(info.disks[0].href, f"a {nested.format} {nested.subformat}".rstrip()))
    report.findings += [f for f in nested.findings if f.code != "vmdk-not-stream-optimized"]
    report.subformat, report.virtual_size = nested.subformat, nested.virtual_size
    report.partition_table, report.partitions = nested.partition_table, nested.partitions
    report.boot_mode_hint = nested.boot_mode_hint
    wanted = {"uefi": "efi", "legacy-bios": "bios"}.get(nested.boot_mode_hint)
    if wanted and wanted != info.firmware:
        report.findings.append(
            Finding(
                WARNING,
                "ova-firmware-mismatch",
                f"The disk boots with {nested.boot_mode_hint} but the OVF declares {info.firmware.upper()} "
                f"firmware. Set BootMode={nested.boot_mode_hint} in ImportImage, and fix the VM's firmware "
                "setting before the next export.",
            )
        )


def _not_stream(href: str, what: str) -> Finding:
    return Finding(
        ERROR,
        "ova-disk-not-stream-optimized",
        f"Disk {href} of the OVA is {what}, not a stream-optimized VMDK. VM Import fails with "
        '"Disk validation failed [Unsupported VMDK File Format]". Export the OVA with ovftool/vSphere '
        "(they write stream-optimized disks), or convert the disk: qemu-img convert -O vmdk -o "
        "subformat=streamOptimized in.vmdk out.vmdk, and import that VMDK.",
    )
