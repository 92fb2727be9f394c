"""OVA: a POSIX tar holding an OVF descriptor (XML) and the disk files it names.

VM Import reads the OVF, then each disk, which must be a whole (not chunked) stream-optimized
VMDK. Only the tar headers, the OVF and the first disk's few needed pieces are read: the first
disk is inspected like any image, through a reader over its byte range inside the tar.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from .reader import CachedReader, Reader, SliceReader, read_exact
from .report import ERROR, INFO, MAX_SIZE, WARNING, Finding, ImageError, ImageReport, OvaDisk, OvaInfo, human, short

BLOCK = 512
MAX_HEADERS = 1000  # tar headers (files, directories, pax and GNU headers): a real OVA has a few
MAX_OVF = 1024 * 1024
MAX_ELEMENTS = 20_000  # XML elements of the OVF: real ones have hundreds
MAX_DEPTH = 64  # nesting of the OVF's elements: real ones go 6 or 7 deep
MAX_LISTED_DISKS = 64  # disks kept in the report (more than VM Import takes); all are counted
MAX_TEXT = 4096  # characters kept of a name or value the OVF gives (a path is at most 4096)
MAX_EXTENDED = 64 * 1024  # bytes of a pax or GNU long-name header read
MAX_VOLUMES = 21
STREAM = "#streamoptimized"
UNSUPPORTED_OVA = "Disk validation failed [Unsupported OVA format]"
CHUNKED = "Disk validation failed [OVF file parsing error: OVA with chunked disk files...]"


@dataclass
class Member:
    name: str
    offset: int  # of the data
    size: int


def _octal_or_base256(field: bytes, offset: int) -> int:
    if field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip(b" ")
    if not re.fullmatch(rb"[0-7]*", digits):
        raise _bad_header(offset)
    return int(digits or b"0", 8)


def _bad_header(offset: int) -> ImageError:
    return ImageError("ova-invalid", f'The tar header at byte {offset} is damaged. VM Import: "{UNSUPPORTED_OVA}".')


def _cstr(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "replace")


def _pax(body: bytes) -> dict[str, str]:
    """pax extended header records: "<length> <key>=<value>\\n", each `length` bytes long."""
    records, at = {}, 0
    while at < len(body):
        space = body.find(b" ", at, at + 21)
        if space < 0 or not body[at:space].isdigit():
            break
        end = at + int(body[at:space])
        if end <= space or end > len(body) or body[end - 1 : end] != b"\n":
            break
        key, _, value = body[space + 1 : end - 1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        at = end
    return records


def tar_members(src: Reader) -> list[Member]:
    """The regular files of the tar, from their headers only (ustar, pax and GNU long names)."""
    members: list[Member] = []
    offset, pax, long_name = 0, {}, ""
    for _ in range(MAX_HEADERS):
        if offset + BLOCK > src.size:
            return members
        header = read_exact(src, offset, BLOCK, "next tar header")
        if header == bytes(BLOCK):
            return members
        if header[257:262] != b"ustar":
            raise _bad_header(offset)
        size, kind, data = _octal_or_base256(header[124:136], offset), header[156:157], offset + BLOCK
        if kind in (b"x", b"L"):
            if data + size > src.size:
                raise ImageError("truncated", "The OVA ends inside a tar header: the file was cut short.")
            body = read_exact(src, data, min(size, MAX_EXTENDED), "tar extended header")
            if kind == b"x":
                pax = _pax(body)
            else:
                long_name = _cstr(body)
        elif kind in (b"0", b"\0", b"7"):
            prefix = _cstr(header[345:500])
            name = pax.get("path") or long_name or (prefix + "/" if prefix else "") + _cstr(header[:100])
            if "size" in pax:
                if not re.fullmatch(r"[0-9]{1,20}", pax["size"]):
                    raise ImageError(
                        "ova-invalid",
                        f"The tar's pax header gives {short(name)!r} the size {short(pax['size'], 40)!r}, "
                        f'which is no size. VM Import: "{UNSUPPORTED_OVA}".',
                    )
                size = int(pax["size"])
            if data + size > src.size:
                raise ImageError(
                    "truncated",
                    f"The OVA ends inside {short(name)}: the file was cut short. Upload the complete file.",
                )
            members.append(Member(name, data, size))
            pax, long_name = {}, ""
        offset = data + -(-size // BLOCK) * BLOCK
    raise ImageError(
        "ova-invalid",
        f"The OVA's tar has more than {MAX_HEADERS} entries; an OVA holds its descriptor, a manifest and its "
        f'disks. VM Import: "{UNSUPPORTED_OVA}".',
    )


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _attr(el: ET.Element, name: str) -> str:
    return next((v for k, v in el.attrib.items() if _local(k) == name), "")


class CapacityError(ValueError):
    pass


def _capacity(value: str, units: str) -> int | None:
    """The capacity in bytes: `value` in `units` ("byte", "byte * 2^30", "byte * 1024^3"); None
    if either is not understood. Raises CapacityError for a capacity over 2^63 bytes, found
    without computing the power (10^30000000 would take hours, and 10^4300 has no JSON)."""
    m = re.fullmatch(r"\s*byte\s*(?:\*\s*([0-9]{1,5})\s*\^\s*([0-9]{1,9}))?\s*", units[:100] or "byte")
    if not re.fullmatch(r"[0-9]{1,30}", value) or not m:
        return None
    number, base, exponent = int(value), int(m[1] or 1), int(m[2] or 0)
    if base > 1 and exponent * (base.bit_length() - 1) + number.bit_length() > 64:
        raise CapacityError(f"{short(value, 30)} * {base}^{exponent}")
    capacity: int = number * base**exponent
    if capacity > MAX_SIZE:
        raise CapacityError(f"{short(value, 30)} * {base}^{exponent}")
    return capacity


def _parse_xml(data: bytes) -> ET.Element:
    """The OVF's tree, refused past MAX_ELEMENTS elements or MAX_DEPTH levels."""
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(("start", "end"))
    depth = elements = 0
    root: ET.Element | None = None
    for at in range(0, len(data), 8 * 1024):  # in small pieces, so that the limits stop it early
        parser.feed(data[at : at + 8 * 1024])
        # only "start" and "end" were asked for: each event is (name, element)
        for event, el in cast("Iterator[tuple[str, ET.Element]]", parser.read_events()):
            if event == "end":
                depth -= 1
                continue
            root = el if root is None else root
            depth, elements = depth + 1, elements + 1
            if depth > MAX_DEPTH or elements > MAX_ELEMENTS:
                raise ImageError(
                    "ova-invalid",
                    f"The OVF descriptor has more than {MAX_ELEMENTS} elements or is nested more than "
                    f'{MAX_DEPTH} levels deep, unlike any real OVF. VM Import: "{UNSUPPORTED_OVA}".',
                )
    parser.close()
    if root is None:
        raise ET.ParseError("no element found")
    return root


def parse_ovf(data: bytes, members: dict[str, Member]) -> tuple[OvaInfo, int]:
    """The OVF's information, with the first MAX_LISTED_DISKS disks, and the number of its disks."""
    # OVAs come from anyone: refuse DTDs (entity expansion) instead of parsing them
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ImageError("ova-invalid", "The OVF descriptor contains a DTD, which OVF never needs; refused.")
    try:
        root = _parse_xml(data)
    except ET.ParseError as e:
        raise ImageError(
            "ova-invalid", f'The OVF descriptor is not valid XML ({e}). VM Import: "{UNSUPPORTED_OVA}".'
        ) from e
    files = {_attr(f, "id"): f for f in root.iter() if _local(f.tag) == "File"}
    disks: list[OvaDisk] = []
    count = 0
    for d in (el for el in root.iter() if _local(el.tag) == "Disk"):
        count += 1
        if len(disks) >= MAX_LISTED_DISKS:
            continue
        f = files.get(_attr(d, "fileRef"), ET.Element("File"))  # a missing File has no attributes
        href = _attr(f, "href")
        member = members.get(href)
        try:
            capacity = _capacity(_attr(d, "capacity"), _attr(d, "capacityAllocationUnits"))
        except CapacityError as e:
            raise ImageError(
                "ova-invalid",
                f"The OVF declares disk {short(href)!r} with a capacity of {e} bytes, more than any disk can be "
                f'(over 2^63 bytes): the descriptor is damaged. VM Import: "{UNSUPPORTED_OVA}".',
            ) from e
        disks.append(
            OvaDisk(
                short(href, MAX_TEXT),
                short(_attr(d, "format"), MAX_TEXT),
                capacity,
                member.size if member else None,
                bool(_attr(f, "chunkSize")) or f"{href}.000000000" in members,
                short(_attr(f, "compression"), MAX_TEXT),
            )
        )
    firmware = next(
        (_attr(c, "value").lower() for c in root.iter() if _local(c.tag) == "Config" and _attr(c, "key") == "firmware"),
        "",
    )
    os_section = next((el for el in root.iter() if _local(el.tag) == "OperatingSystemSection"), None)
    info = OvaInfo(
        "",
        disks,
        "efi" if firmware == "efi" else "bios",
        short(_attr(os_section, "id"), MAX_TEXT) if os_section is not None else "",
        short(_attr(os_section, "osType"), MAX_TEXT) if os_section is not None else "",
    )
    return info, count


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
                f"{short(ovf.name)} is not the first file of the OVA, as the OVF standard requires; "
                "re-create the OVA with the .ovf first.",
            )
        )
    if ovf.size > MAX_OVF:
        raise ImageError(
            "ova-invalid", f"The OVF descriptor is {human(ovf.size)}, far larger than any real one: refused."
        )
    info, count = parse_ovf(read_exact(src, ovf.offset, ovf.size, "OVF descriptor"), by_name)
    info.ovf_name = short(ovf.name, MAX_TEXT)
    report.ova = info
    if not info.disks:
        raise ImageError("ova-invalid", "The OVF declares no disks, so there is nothing to import.")
    report.findings += _disk_list_findings(info.disks, count)
    first = info.disks[0]
    member = by_name.get(first.href)
    if member is None:
        if not first.chunked:
            raise ImageError(
                "ova-invalid",
                f"The OVF names the disk file {short(first.href)!r}, which is not in the OVA. "
                f'VM Import: "{UNSUPPORTED_OVA}".',
            )
        return
    info.first_disk = inspect_disk(SliceReader(src, member.offset, member.size))
    _take_first_disk(report, info, info.first_disk)


def _disk_list_findings(disks: list[OvaDisk], count: int) -> list[Finding]:
    """What the OVF's list of disks shows: their number (`count`), chunking, declared formats."""
    findings = []
    if count > MAX_VOLUMES:
        findings.append(
            Finding(
                ERROR,
                "too-many-volumes",
                f"The OVA has {count} disks; VM Import takes at most {MAX_VOLUMES} volumes.",
            )
        )
    elif count > 1:
        findings.append(
            Finding(
                INFO,
                "ova-multiple-disks",
                f"The OVA has {count} disks; VM Import makes each a volume of the AMI, the first "
                "being the boot volume. Only the first disk was inspected here.",
            )
        )
    for i, disk in enumerate(disks):
        if disk.chunked:
            findings.append(
                Finding(
                    ERROR,
                    "ova-chunked",
                    f'Disk {short(disk.href)} is split into chunks inside the OVA. VM Import fails with "{CHUNKED}". '
                    "Export the OVA again without chunking (ovftool without --chunkSize).",
                )
            )
        elif i > 0 and not disk.format.lower().endswith(STREAM):  # the first disk is judged by its bytes
            findings.append(_not_stream(disk.href, f"declared as {disk.format or 'no format'}"))
    return findings


def _take_first_disk(report: ImageReport, info: OvaInfo, nested: ImageReport) -> None:
    """The OVA's report shows its first disk: layout, boot mode, findings."""
    if "ova-nested" in {f.code for f in nested.findings}:
        pass  # that finding says it all
    elif nested.format != "VMDK" or nested.subformat.lower() != STREAM[1:]:
        report.findings.append(_not_stream(info.disks[0].href, f"a {nested.format} {nested.subformat}".rstrip()))
    report.findings += [f for f in nested.findings if f.code != "vmdk-not-stream-optimized"]
    report.subformat, report.virtual_size = nested.subformat, nested.virtual_size
    report.partition_table, report.partitions = nested.partition_table, nested.partitions
    report.boot_mode_hint = nested.boot_mode_hint
    report.guest = nested.guest  # the guest OS is the first disk's
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
        f"Disk {short(href)} of the OVA is {what}, not a stream-optimized VMDK. VM Import fails with "
        '"Disk validation failed [Unsupported VMDK File Format]". Export the OVA with ovftool/vSphere '
        "(they write stream-optimized disks), or convert the disk: qemu-img convert -O vmdk -o "
        "subformat=streamOptimized in.vmdk out.vmdk, and import that VMDK.",
    )
