"""Just enough LVM2 to find a guest's logical volumes on its disk: no device-mapper, no library.

A physical volume (PV) has a label in one of its first four sectors (LABELONE, "LVM2 001") with
the PV's UUID, its data area (where the extents start) and its metadata areas. A metadata area
starts with a header (" LVM2 x[5A%r0N*>") whose first raw location points at the current
metadata: text in LVM2's own configuration format, kept in a circular buffer (a text that runs
past the area's end continues right after the header). The text names the volume group (VG),
its PVs by UUID, the extent size, and each logical volume's (LV's) segments.

Linear LVs (`striped` segments with one stripe) are mapped onto their PVs' extents and read
through `ExtentReader`; other kinds (thin, RAID, mirror, snapshot, striped over several PVs)
are named but not read. Every number from the image is checked before use, the text is at most
`MAX_TEXT` bytes, and its parser has bounded depth and size; damage raises `LvmError`.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

from .reader import MAX_READ, Reader

SECTOR = 512
LABEL_MAGIC = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
MDA_MAGIC = b" LVM2 x[5A%r0N*>"
MDA_HEADER = 512
INITIAL_CRC = 0xF597A6CF
MAX_TEXT = 1024 * 1024  # bytes of metadata text (LVM's default metadata area is 1 MiB in all)
MAX_DEPTH = 8  # nesting of sections (a VG's text nests 4 deep)
MAX_TOKENS = 200_000  # tokens of one text
MAX_AREAS = 8  # data or metadata areas listed in a PV label
MAX_PVS = 64  # physical volumes of one VG
MAX_LVS = 256  # logical volumes of one VG
MAX_SEGMENTS = 64  # segments of one LV
MAX_EXTENTS = 1 << 40
MAX_NAME = 128  # LVM's own limit on VG and LV names


class LvmError(ValueError):
    """LVM structures not as they should be: the label, the metadata area or its text."""


def crc(data: bytes, initial: int = INITIAL_CRC) -> int:
    """LVM's calc_crc: CRC-32 (the zlib polynomial) from `initial`, without the final inversion."""
    return zlib.crc32(data, initial ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


# --- the label and the metadata area ---------------------------------------------------------


@dataclass
class Label:
    """A PV's label: where the PV is on the guest disk and what its header lists."""

    start: int  # byte offset of the PV on the guest disk
    size: int  # bytes of the partition holding it
    uuid: str  # 32 characters, without the dashes the text puts in
    device_size: int
    data: list[tuple[int, int]]  # (offset, size) in bytes from the PV's start
    metadata: list[tuple[int, int]]


def label(guest: Reader, start: int, size: int) -> Label | None:
    """The PV label at byte `start` of the guest, or None if there is none."""
    head = guest.read(start, 4 * SECTOR)
    for sector in range(len(head) // SECTOR):
        raw = head[sector * SECTOR : (sector + 1) * SECTOR]
        if raw.startswith(LABEL_MAGIC) and raw[24:32] == LABEL_TYPE:
            break
    else:
        return None
    number, checksum, offset = struct.unpack_from("<QII", raw, 8)
    if number != sector or crc(raw[20:]) != checksum:
        raise LvmError("the PV label's sector number or checksum")
    if not 32 <= offset <= SECTOR - 48:
        raise LvmError("the PV header's offset")
    uuid = raw[offset : offset + 32].decode("ascii", "replace")
    if not re.fullmatch(r"[A-Za-z0-9!#]{32}", uuid):
        raise LvmError("the PV's UUID")
    device_size = struct.unpack_from("<Q", raw, offset + 32)[0]
    at = offset + 40
    lists: list[list[tuple[int, int]]] = [[], []]
    for areas in lists:
        while True:
            if at + 16 > SECTOR:
                raise LvmError("the PV header's area lists")
            where, length = struct.unpack_from("<QQ", raw, at)
            at += 16
            if not where:
                break
            if len(areas) >= MAX_AREAS or where >= size:
                raise LvmError("the PV header's areas")
            areas.append((where, length))
    return Label(start, size, uuid, device_size, lists[0], lists[1])


def metadata_text(guest: Reader, pv: Label) -> str | None:
    """The current metadata text of the PV's first metadata area holding one that is whole (a
    PV may keep a second copy at its end); None if none holds one (--metadatacopies 0)."""
    damage: LvmError | None = None
    for offset, size in pv.metadata:
        try:
            text = _area_text(guest, pv, offset, size)
        except LvmError as e:
            damage = damage or e
            continue
        if text is not None:
            return text
    if damage is not None:
        raise damage
    return None


def _area_text(guest: Reader, pv: Label, offset: int, size: int) -> str | None:
    if size < MDA_HEADER * 2 or offset + size > pv.size:
        raise LvmError("the metadata area's place")
    header = guest.read(pv.start + offset, MDA_HEADER)
    if len(header) < MDA_HEADER or header[4:20] != MDA_MAGIC:
        raise LvmError("the metadata area's header")
    checksum, _, version, start, area = struct.unpack_from("<I16sIQQ", header, 0)
    if crc(header[4:]) != checksum or version != 1 or start != offset or area != size:
        raise LvmError("the metadata area header's checksum or fields")
    where, length, text_crc, flags = struct.unpack_from("<QQII", header, 40)
    if not where or flags & 1:  # no metadata yet, or RAW_LOCN_IGNORED
        return None
    if not MDA_HEADER <= where < size or not 0 < length <= min(MAX_TEXT, size - MDA_HEADER):
        raise LvmError("the metadata text's place")
    first = min(length, size - where)  # the buffer is circular: the rest follows the header
    data = guest.read(pv.start + offset + where, first)
    if first < length:
        data += guest.read(pv.start + offset + MDA_HEADER, length - first)
    if len(data) != length or crc(data) != text_crc:
        raise LvmError("the metadata text's checksum")
    return data.rstrip(b"\0").decode("utf-8", "replace")


# --- the text format -------------------------------------------------------------------------

Value = int | str | list[int | str] | dict[str, "Value"]
TOKEN = re.compile(
    r'\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|[A-Za-z_][A-Za-z0-9_.+\-]*|[A-Za-z0-9_.+\-]+|[=\[\]{},]',
    re.S,
)


def parse(text: str) -> dict[str, Value]:
    """LVM2's configuration text as nested dicts: `name = value` (an integer, a "string" or a
    [list] of them) and `name { ... }` sections. Raises LvmError beyond MAX_TEXT, MAX_DEPTH or
    MAX_TOKENS, or on anything else than that grammar."""
    if len(text) > MAX_TEXT:
        raise LvmError("metadata text too long")
    tokens: list[str] = []
    at = 0
    while at < len(text):
        m = TOKEN.match(text, at)
        if m is None:
            raise LvmError(f"metadata text: unexpected character at {at}")
        at = m.end()
        token = m.group()
        if token[0].isspace() or token[0] == "#":
            continue
        tokens.append(token)
        if len(tokens) > MAX_TOKENS:
            raise LvmError("metadata text has too many tokens")
    tokens.append("")  # the end
    pos = 0

    def scalar(token: str) -> int | str:
        if token.startswith('"'):
            return re.sub(r"\\(.)", r"\1", token[1:-1])
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        if re.fullmatch(r"-?\d+\.\d+", token):
            return token
        raise LvmError(f"metadata text: {token[:20]!r} is no value")

    def section(depth: int) -> dict[str, Value]:
        nonlocal pos
        if depth > MAX_DEPTH:
            raise LvmError("metadata text nests too deep")
        found: dict[str, Value] = {}
        while True:
            name = tokens[pos]
            if name in ("", "}"):
                if (name == "") != (depth == 0):
                    raise LvmError("metadata text: unbalanced braces")
                pos += 1
                return found
            if not re.fullmatch(r"[A-Za-z0-9_.+\-]+", name) or name[0] == "-":
                raise LvmError(f"metadata text: {name[:20]!r} is no name")
            pos += 1
            if tokens[pos] == "{":
                pos += 1
                found[name] = section(depth + 1)
                continue
            if tokens[pos] != "=":
                raise LvmError(f"metadata text: no '=' after {name[:20]!r}")
            pos += 1
            if tokens[pos] == "[":
                pos += 1
                items: list[int | str] = []
                while tokens[pos] != "]":
                    if tokens[pos] in ("", "[", "{", "}", "="):
                        raise LvmError("metadata text: a list not closed")
                    items.append(scalar(tokens[pos]))
                    pos += 1
                    if tokens[pos] == ",":
                        pos += 1
                pos += 1
                found[name] = items
            else:
                found[name] = scalar(tokens[pos])
                pos += 1

    return section(0)


# --- the volume group ------------------------------------------------------------------------


@dataclass
class Segment:
    start: int  # first extent of the LV
    count: int  # extents
    type: str  # striped | thin | raid1 | mirror | snapshot | ...
    stripes: list[tuple[str, int]]  # (PV name in the text, its first extent)


@dataclass
class LogicalVolume:
    name: str
    vg: str
    visible: bool
    segments: list[Segment]
    extents: int  # of the whole LV

    @property
    def mapper(self) -> str:
        """Its /dev/mapper name: VG-LV, with the dashes inside each name doubled."""
        return f"{self.vg.replace('-', '--')}-{self.name.replace('-', '--')}"

    @property
    def kind(self) -> str:
        """ "linear", or what keeps it from being read (thin, raid1, striped over 2 PVs...)."""
        for s in self.segments:
            if s.type != "striped":
                return s.type
            if len(s.stripes) != 1:
                return f"striped over {len(s.stripes)} PVs"
        return "linear"


@dataclass
class PhysicalVolume:
    name: str  # pv0, pv1... in the text
    uuid: str  # without dashes
    pe_start: int  # bytes from the PV's start to its first extent
    pe_count: int
    label: Label | None = None  # where it is on this disk; None if it is not


@dataclass
class VolumeGroup:
    name: str
    id: str
    seqno: int
    extent_size: int  # bytes
    pvs: dict[str, PhysicalVolume]
    lvs: list[LogicalVolume]
    snapshots: set[str] = field(default_factory=set)  # LVs that are snapshots' copy-on-write stores

    @property
    def missing(self) -> list[PhysicalVolume]:
        """The VG's PVs not on this disk."""
        return [pv for pv in self.pvs.values() if pv.label is None]

    def needs(self, lv: LogicalVolume) -> list[PhysicalVolume]:
        """The PVs the LV's data lies on (a name the VG does not list is a PV not here)."""
        names = {name for s in lv.segments for name, _ in s.stripes}
        return [self.pvs.get(n) or PhysicalVolume(n, "", 0, 0) for n in sorted(names)]


def _int(section: dict[str, Value], key: str, low: int = 0, high: int = MAX_EXTENTS) -> int:
    value = section.get(key)
    if not isinstance(value, int) or not low <= value <= high:
        raise LvmError(f"metadata: {key} is {str(value)[:20]!r}")
    return value


def _section(section: dict[str, Value], key: str) -> dict[str, Value]:
    value = section.get(key, {})
    if not isinstance(value, dict):
        raise LvmError(f"metadata: {key} is not a section")
    return value


def volume_group(text: str) -> VolumeGroup:
    """The VG described by one metadata text."""
    top = parse(text)
    groups = [(k, v) for k, v in top.items() if isinstance(v, dict) and "physical_volumes" in v]
    if len(groups) != 1:
        raise LvmError("metadata: not one volume group")
    name, vg = groups[0]
    assert isinstance(vg, dict)
    if len(name) > MAX_NAME:
        raise LvmError("metadata: a volume group name longer than LVM allows")
    extent_size = _int(vg, "extent_size", 1, 1 << 32) * SECTOR  # sectors in the text
    pvs: dict[str, PhysicalVolume] = {}
    for pv_name, pv in list(_section(vg, "physical_volumes").items())[: MAX_PVS + 1]:
        if not isinstance(pv, dict) or len(pvs) >= MAX_PVS:
            raise LvmError("metadata: the physical volumes")
        uuid = str(pv.get("id", "")).replace("-", "")
        pvs[pv_name] = PhysicalVolume(pv_name, uuid, _int(pv, "pe_start") * SECTOR, _int(pv, "pe_count"))
    lvs: list[LogicalVolume] = []
    snapshots: set[str] = set()
    for lv_name, lv in list(_section(vg, "logical_volumes").items())[: MAX_LVS + 1]:
        if not isinstance(lv, dict) or len(lvs) >= MAX_LVS or len(lv_name) > MAX_NAME:
            raise LvmError("metadata: the logical volumes")
        count = _int(lv, "segment_count", 1, MAX_SEGMENTS)
        status = lv.get("status", [])
        segments: list[Segment] = []
        for i in range(1, count + 1):
            seg = _section(lv, f"segment{i}")
            kind = str(seg.get("type", ""))
            raw = seg.get("stripes", []) if kind == "striped" else []
            if not isinstance(raw, list) or len(raw) % 2:
                raise LvmError(f"metadata: the stripes of {lv_name[:40]}")
            stripes = []
            for j in range(0, len(raw), 2):
                on, first = raw[j], raw[j + 1]
                if not isinstance(on, str) or not isinstance(first, int) or not 0 <= first <= MAX_EXTENTS:
                    raise LvmError(f"metadata: the stripes of {lv_name[:40]}")
                stripes.append((on, first))
            if kind == "snapshot":
                snapshots.add(str(seg.get("cow_store", "")))
            segments.append(Segment(_int(seg, "start_extent"), _int(seg, "extent_count", 1), kind, stripes))
        extents = sum(s.count for s in segments)
        visible = isinstance(status, list) and "VISIBLE" in status
        lvs.append(LogicalVolume(lv_name, name, visible, segments, extents))
    return VolumeGroup(name, str(vg.get("id", "")), _int(vg, "seqno"), extent_size, pvs, lvs, snapshots)


def volume_groups(guest: Reader, labels: list[Label]) -> list[VolumeGroup]:
    """The VGs whose PVs are among `labels` (PVs of one disk): for each VG, the newest metadata
    (highest seqno) its PVs hold, with each PV found on this disk tied to its label."""
    newest: dict[str, VolumeGroup] = {}
    for found in labels:
        text = metadata_text(guest, found)
        if text is None:
            continue
        vg = volume_group(text)
        key = vg.id or vg.name
        if key not in newest or vg.seqno > newest[key].seqno:
            newest[key] = vg
    by_uuid = {found.uuid: found for found in labels}
    for vg in newest.values():
        for pv in vg.pvs.values():
            pv.label = by_uuid.get(pv.uuid)
    return list(newest.values())


class ExtentReader:
    """A linear LV read as a disk: each of its segments mapped onto its PV's extents."""

    def __init__(self, guest: Reader, vg: VolumeGroup, lv: LogicalVolume) -> None:
        if lv.kind != "linear":
            raise LvmError(f"{lv.name[:40]} is {lv.kind}, not linear")
        self.guest = guest
        self.size = lv.extents * vg.extent_size
        self.runs: list[tuple[int, int, int]] = []  # (LV byte offset, guest byte offset, bytes)
        for s in sorted(lv.segments, key=lambda s: s.start):
            name, first = s.stripes[0]
            pv = vg.pvs.get(name)
            if pv is None or pv.label is None:
                raise LvmError(f"{lv.name[:40]} lies on a PV not on this disk")
            if first + s.count > pv.pe_count or pv.pe_start + (first + s.count) * vg.extent_size > pv.label.size:
                raise LvmError(f"{lv.name[:40]}'s extents lie beyond its PV")
            self.runs.append(
                (
                    s.start * vg.extent_size,
                    pv.label.start + pv.pe_start + first * vg.extent_size,
                    s.count * vg.extent_size,
                )
            )

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if offset < 0 or offset >= end:
            return b""
        if end - offset > MAX_READ:
            raise LvmError("a read of the logical volume larger than any inspection makes")
        out = bytearray(end - offset)  # extents no segment maps read as zeros
        for lv_at, disk_at, size in self.runs:
            lo, hi = max(offset, lv_at), min(end, lv_at + size)
            if lo < hi:
                data = self.guest.read(disk_at + lo - lv_at, hi - lo)
                out[lo - offset : lo - offset + len(data)] = data
        return bytes(out)
