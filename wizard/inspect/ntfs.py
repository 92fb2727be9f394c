"""Just enough NTFS to read a Windows guest's registry hives by path: no mount, no library.

The boot sector, MFT records (found through $MFT's own runlist, update-sequence fixups
applied, extension records through $ATTRIBUTE_LIST), directories' $I30 indexes (INDEX_ROOT
and INDEX_ALLOCATION: a B+ tree descended by name, case-insensitive, long (Win32) names, so
that finding one file in a directory of thousands reads a few index blocks, not the directory),
and files' $DATA, resident or by runlist (sparse runs and the bytes past the initialized size
read as zeros). Files are read lazily by range (`NtfsFile` is a `Reader`): a SOFTWARE hive of
100 MiB costs only the pieces its reader asks for. Free space is counted from $Bitmap, from the
end of the volume backwards (where the free clusters of a Windows volume usually are), and
only until enough is found or `MAX_BITMAP` bytes were read.

Every number read from the volume is checked before use (sizes, counts, offsets, run lengths);
every read goes through the inspection's budgeted reader; damaged structures raise `NtfsError`.
Compressed and encrypted files are not read (registry hives are neither).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .ext4 import S_IFDIR, S_IFREG, Ext4Error
from .reader import Reader

MFT_RECORD, ROOT_RECORD, BITMAP_RECORD = 0, 5, 6
SECTOR = 512  # the stride of update-sequence fixups, whatever the volume's sector size
MAX_RECORD = 64 * 1024  # MFT and index record sizes (1 KiB and 4 KiB in practice)
MAX_CLUSTER = 2 * 1024 * 1024
MAX_RUNS = 4096  # runs of one attribute (a fragmented 100 MiB hive has hundreds)
MAX_ATTRIBUTES = 64  # attributes in one record
MAX_EXTENSIONS = 32  # extension records of one file (through $ATTRIBUTE_LIST)
MAX_ATTRIBUTE_LIST = 256 * 1024
MAX_DEPTH = 8  # levels of a directory's index B+ tree
MAX_ENTRIES = 4096  # entries scanned in one index node
MAX_PARTS = 32  # components of a path
MAX_FILE_READ = 4 * 1024 * 1024  # the most one read of a file returns
MAX_BITMAP = 4 * 1024 * 1024  # bytes of $Bitmap read to count free clusters (128 GiB at 4 KiB clusters)
BITMAP_CHUNK = 512 * 1024
DATA, INDEX_ROOT, INDEX_ALLOCATION, ATTRIBUTE_LIST, FILE_NAME = 0x80, 0x90, 0xA0, 0x20, 0x30
END = 0xFFFFFFFF
DOS_NAMESPACE = 2
COMPRESSED, ENCRYPTED = 0x0001, 0x4000


class NtfsError(Ext4Error):
    """NTFS structures not as they should be (a subclass, so callers catch one error for all)."""


@dataclass
class Attribute:
    type: int
    name: str
    flags: int
    resident: bool
    value: bytes = b""  # a resident attribute's value
    size: int = 0  # the data size (resident: len(value))
    initialized: int = 0  # bytes past this read as zeros
    runs: list[tuple[int, int | None, int]] = field(default_factory=list)  # (vcn, lcn or None: sparse, clusters)
    first_vcn: int = 0


@dataclass
class Record:
    number: int
    flags: int  # 0x1 in use, 0x2 a directory
    attributes: list[Attribute]

    @property
    def kind(self) -> int:
        return S_IFDIR if self.flags & 0x2 else S_IFREG

    def find(self, type_: int, name: str = "") -> Attribute | None:
        """The attribute of `type_` and `name`; its pieces (one per extension record) joined."""
        pieces = sorted((a for a in self.attributes if a.type == type_ and a.name == name), key=lambda a: a.first_vcn)
        if not pieces:
            return None
        first = pieces[0]
        if first.resident or len(pieces) == 1:
            return first
        runs = [run for piece in pieces if not piece.resident for run in piece.runs]
        if len(runs) > MAX_RUNS:
            raise NtfsError("too many runs")
        return Attribute(type_, name, first.flags, False, size=first.size, initialized=first.initialized, runs=runs)


def _u(data: bytes, fmt: str, at: int) -> int:
    if at < 0 or at + struct.calcsize(fmt) > len(data):
        raise NtfsError(f"a field at {at} past the end of its structure")
    value: int = struct.unpack_from(fmt, data, at)[0]
    return value


def fixup(data: bytes, magic: bytes, what: str) -> bytes:
    """An MFT or index record with its update-sequence array applied: the last two bytes of each
    512-byte sector are checked against the sequence number and given back their real value."""
    if data[:4] != magic:
        raise NtfsError(f"{what}: no {magic.decode()} magic")
    usa, count = _u(data, "<H", 4), _u(data, "<H", 6)
    if count < 1 or (count - 1) * SECTOR > len(data) or usa + 2 * count > len(data) or usa < 8:
        raise NtfsError(f"{what}: update sequence array out of range")
    out = bytearray(data)
    usn = data[usa : usa + 2]
    for i in range(1, count):
        at = i * SECTOR - 2
        if out[at : at + 2] != usn:
            raise NtfsError(f"{what}: torn write (update sequence mismatch in sector {i})")
        out[at : at + 2] = data[usa + 2 * i : usa + 2 * i + 2]
    return bytes(out)


def runlist(data: bytes, at: int, first_vcn: int, clusters: int) -> list[tuple[int, int | None, int]]:
    """A non-resident attribute's runs from its mapping pairs at `at`; every run inside the volume."""
    runs: list[tuple[int, int | None, int]] = []
    vcn, lcn = first_vcn, 0
    while at < len(data) and data[at]:
        header = data[at]
        nlen, noff = header & 0xF, header >> 4
        if not 1 <= nlen <= 8 or noff > 8 or at + 1 + nlen + noff > len(data):
            raise NtfsError("mapping pairs out of range")
        length = int.from_bytes(data[at + 1 : at + 1 + nlen], "little")
        if length <= 0 or length > clusters:
            raise NtfsError(f"a run of {length} clusters")
        if noff:
            lcn += int.from_bytes(data[at + 1 + nlen : at + 1 + nlen + noff], "little", signed=True)
            if lcn < 0 or lcn + length > clusters:
                raise NtfsError(f"a run at cluster {lcn} outside the volume")
            runs.append((vcn, lcn, length))
        else:
            runs.append((vcn, None, length))
        if len(runs) > MAX_RUNS:
            raise NtfsError("too many runs")
        vcn += length
        at += 1 + nlen + noff
    return runs


@dataclass
class Boot:
    cluster: int
    clusters: int
    mft_lcn: int
    record_size: int
    index_size: int
    serial: int


def boot_sector(head: bytes, size: int) -> Boot:
    if len(head) < 512 or head[3:11] != b"NTFS    ":
        raise NtfsError("no NTFS boot sector")
    bps, spc = _u(head, "<H", 11), head[13]
    if bps not in (256, 512, 1024, 2048, 4096):
        raise NtfsError(f"{bps} bytes per sector")
    spc = 1 << (256 - spc) if spc > 0x80 else spc
    cluster = bps * spc
    if not spc or spc & (spc - 1) or cluster > MAX_CLUSTER:
        raise NtfsError(f"clusters of {cluster} bytes")
    total = _u(head, "<Q", 40) * bps // cluster
    clusters = min(total, size // cluster)
    mft_lcn = _u(head, "<Q", 48)

    def record(raw: int) -> int:
        signed = raw - 256 if raw > 127 else raw
        n = 1 << -signed if signed < 0 and -signed < 31 else signed * cluster
        if not 256 <= n <= MAX_RECORD or n & (n - 1) or n % SECTOR:
            raise NtfsError(f"records of {n} bytes")
        return n

    boot = Boot(cluster, clusters, mft_lcn, record(head[64]), record(head[68]), _u(head, "<Q", 72))
    if not 0 < mft_lcn < clusters:
        raise NtfsError(f"$MFT at cluster {mft_lcn}, outside the volume")
    return boot


class Ntfs:
    """One NTFS volume of `size` bytes at byte `start` of `guest`."""

    def __init__(self, guest: Reader, start: int, size: int) -> None:
        self.guest, self.start, self.size = guest, start, size
        self.boot = boot_sector(guest.read(start, 512), size)
        self.cluster = self.boot.cluster
        self.record_size = self.boot.record_size
        self._mft: Attribute | None = None
        first = self._record_at(self.boot.mft_lcn * self.cluster, MFT_RECORD)  # $MFT, from the boot sector
        self._mft = first.find(DATA)
        if self._mft is None or self._mft.resident:
            raise NtfsError("$MFT has no non-resident $DATA")
        self._mft = self._joined(first, DATA)
        if self._mft is None or self._mft.resident:
            raise NtfsError("$MFT has no non-resident $DATA")

    # --- clusters, attributes and records ---------------------------------------------------

    def _read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise NtfsError(f"a read at {offset} beyond the volume")
        data = self.guest.read(self.start + offset, length)
        if len(data) < length:
            raise NtfsError("the volume is cut short")
        return data

    def read_attribute(self, attr: Attribute, offset: int, length: int) -> bytes:
        """`length` bytes (fewer at its end) of an attribute's data from `offset`."""
        end = min(attr.size, offset + min(length, MAX_FILE_READ))
        if offset < 0 or offset >= end:
            return b""
        if attr.resident:
            return attr.value[offset:end]
        if attr.flags & (COMPRESSED | ENCRYPTED):
            raise NtfsError("a compressed or encrypted attribute")
        out = bytearray()
        at, c = offset, self.cluster
        for vcn, lcn, clusters in attr.runs:
            lo, hi = vcn * c, (vcn + clusters) * c
            if hi <= at:
                continue
            if lo > at:
                break  # a gap in the runlist: the rest reads as zeros
            n = min(hi, end) - at
            if lcn is None or at >= attr.initialized:
                out += bytes(n)
            else:
                keep = min(n, attr.initialized - at)
                out += self._read(lcn * c + (at - lo), keep) + bytes(n - keep)
            at += n
            if at >= end:
                break
        out += bytes(end - offset - len(out))
        return bytes(out)

    def _record_at(self, offset: int, number: int) -> Record:
        return self._parse(fixup(self._read(offset, self.record_size), b"FILE", f"MFT record {number}"), number)

    def record(self, number: int) -> Record:
        """MFT record `number`, with the attributes of its extension records."""
        base = self._raw(number)
        if not base.flags & 0x1:
            raise NtfsError(f"MFT record {number} is not in use")
        if any(a.type == ATTRIBUTE_LIST for a in base.attributes):
            base.attributes += self._extensions(base)
        return base

    def _raw(self, number: int) -> Record:
        assert self._mft is not None
        if not 0 <= number < self._mft.size // self.record_size:
            raise NtfsError(f"MFT record {number} outside $MFT")
        data = self.read_attribute(self._mft, number * self.record_size, self.record_size)
        if len(data) < self.record_size:
            raise NtfsError(f"MFT record {number} cut short")
        return self._parse(fixup(data, b"FILE", f"MFT record {number}"), number)

    def _joined(self, first: Record, type_: int) -> Attribute | None:
        """$MFT's own attribute, extension records read through the runs known so far."""
        if any(a.type == ATTRIBUTE_LIST for a in first.attributes):
            first.attributes += self._extensions(first)
        return first.find(type_)

    def _extensions(self, base: Record) -> list[Attribute]:
        listing = base.find(ATTRIBUTE_LIST)
        assert listing is not None
        if listing.size > MAX_ATTRIBUTE_LIST:
            raise NtfsError("an attribute list too long")
        data = self.read_attribute(listing, 0, listing.size)
        numbers: list[int] = []
        at = 0
        while at + 26 <= len(data):
            length = _u(data, "<H", at + 4)
            if length < 26:
                raise NtfsError("attribute list entry")
            number = _u(data, "<Q", at + 16) & 0xFFFF_FFFF_FFFF
            if number != base.number and number not in numbers:
                numbers.append(number)
                if len(numbers) > MAX_EXTENSIONS:
                    raise NtfsError("too many extension records")
            at += length
        found: list[Attribute] = []
        for number in numbers:
            found += self._raw(number).attributes
        return [a for a in found if a.type != ATTRIBUTE_LIST]

    def _parse(self, data: bytes, number: int) -> Record:
        flags, first = _u(data, "<H", 22), _u(data, "<H", 20)
        used = min(_u(data, "<I", 24), len(data))
        attributes: list[Attribute] = []
        at = first
        while at + 8 <= used:
            type_ = _u(data, "<I", at)
            if type_ == END:
                break
            length = _u(data, "<I", at + 4)
            if length < 24 or at + length > used or length % 8:
                raise NtfsError(f"MFT record {number}: attribute of {length} bytes")
            if len(attributes) >= MAX_ATTRIBUTES:
                raise NtfsError(f"MFT record {number}: too many attributes")
            attributes.append(self._attribute(data[at : at + length], type_))
            at += length
        return Record(number, flags, attributes)

    def _attribute(self, raw: bytes, type_: int) -> Attribute:
        non_resident, name_len, name_at, flags = raw[8], raw[9], _u(raw, "<H", 10), _u(raw, "<H", 12)
        if name_at + 2 * name_len > len(raw):
            raise NtfsError("attribute name out of range")
        name = raw[name_at : name_at + 2 * name_len].decode("utf-16-le", "replace")
        if not non_resident:
            size, at = _u(raw, "<I", 16), _u(raw, "<H", 20)
            if at + size > len(raw):
                raise NtfsError("resident value out of range")
            value = raw[at : at + size]
            return Attribute(type_, name, flags, True, value, size, size)
        if len(raw) < 64:
            raise NtfsError("non-resident attribute header")
        first_vcn, runs_at = _u(raw, "<Q", 16), _u(raw, "<H", 32)
        size, initialized = _u(raw, "<Q", 48), _u(raw, "<Q", 56)
        if size > self.size or initialized > size or first_vcn > self.boot.clusters:
            raise NtfsError("attribute sizes out of range")
        runs = runlist(raw, runs_at, first_vcn, self.boot.clusters)
        return Attribute(type_, name, flags, False, b"", size, initialized, runs, first_vcn)

    # --- directories and paths --------------------------------------------------------------

    def find(self, directory: Record, name: str) -> int | None:
        """The record number of `name` in `directory` (case-insensitive), by the $I30 B+ tree."""
        root = directory.find(INDEX_ROOT, "$I30")
        if root is None:
            raise NtfsError(f"record {directory.number}: a directory without $I30")
        value = root.value
        block = _u(value, "<I", 8)
        if not 256 <= block <= MAX_RECORD or block % SECTOR:
            raise NtfsError(f"index blocks of {block} bytes")
        allocation = directory.find(INDEX_ALLOCATION, "$I30")
        key = name.upper()
        node, base, depth = value, 16, 0
        while True:
            found, child = self._search(node, base, key)
            if found is not None or child is None:
                return found
            depth += 1
            if depth > MAX_DEPTH or allocation is None:
                raise NtfsError("index tree too deep, or without INDEX_ALLOCATION")
            unit = self.cluster if block >= self.cluster else SECTOR  # index VCNs count 512-byte units then
            raw = self.read_attribute(allocation, child * unit, block)
            if len(raw) < block:
                raise NtfsError(f"index block at VCN {child} outside INDEX_ALLOCATION")
            node, base = fixup(raw, b"INDX", f"index block at VCN {child}"), 24

    def _search(self, node: bytes, header: int, key: str) -> tuple[int | None, int | None]:
        """(record number of `key`, None) if the node has it; else (None, VCN of the child to
        descend into, or None if there is none)."""
        start, end = header + _u(node, "<I", header), header + _u(node, "<I", header + 4)
        if end > len(node) or start < header + 16:
            raise NtfsError("index header out of range")
        at = start
        for _ in range(MAX_ENTRIES):
            if at + 16 > end:
                raise NtfsError("index entries run past their node")
            length, key_len, flags = _u(node, "<H", at + 8), _u(node, "<H", at + 10), _u(node, "<H", at + 12)
            if length < 16 or at + length > end:
                raise NtfsError("index entry out of range")
            child = _u(node, "<Q", at + length - 8) if flags & 1 else None
            if flags & 2:  # the last entry: no key, only the child of what sorts after all keys
                return None, child
            if key_len < 66 or 16 + key_len > length:
                raise NtfsError("index entry's file name out of range")
            name_len, namespace = node[at + 16 + 64], node[at + 16 + 65]
            if 66 + 2 * name_len > key_len:
                raise NtfsError("index entry's file name out of range")
            entry = node[at + 16 + 66 : at + 16 + 66 + 2 * name_len].decode("utf-16-le", "replace").upper()
            if entry == key and namespace != DOS_NAMESPACE:  # short (8.3) names only sort, never match
                return _u(node, "<Q", at) & 0xFFFF_FFFF_FFFF, None
            if key < entry:
                return None, child
            at += length
        raise NtfsError("too many entries in an index node")

    def lookup(self, path: str) -> Record | None:
        """The record at absolute `path` ("/Windows/System32/config/SOFTWARE"), None if some
        component does not exist or is not a directory."""
        parts = [p for p in path.replace("\\", "/").split("/") if p]
        if len(parts) > MAX_PARTS:
            raise NtfsError("path too long")
        node = self.record(ROOT_RECORD)
        for part in parts:
            if node.kind != S_IFDIR:
                return None
            number = self.find(node, part)
            if number is None:
                return None
            node = self.record(number)
        return node

    def open(self, path: str) -> NtfsFile | None:
        """The file at `path` (its unnamed $DATA) as a lazy reader; None if there is none."""
        node = self.lookup(path)
        if node is None or node.kind != S_IFREG:
            return None
        data = node.find(DATA)
        return None if data is None else NtfsFile(self, data)

    def file(self, path: str, length: int = 64 * 1024) -> bytes | None:
        f = self.open(path)
        return None if f is None else f.read(0, length)

    # --- free space ----------------------------------------------------------------------------

    def free_space(self, enough: int | None = None) -> tuple[int, bool]:
        """(free bytes counted, whether the whole $Bitmap was counted). Counts from the end of
        the volume backwards and stops once `enough` bytes are free or MAX_BITMAP bytes read."""
        bitmap = self.record(BITMAP_RECORD).find(DATA)
        if bitmap is None:
            raise NtfsError("$Bitmap has no $DATA")
        size = min(bitmap.size, -(-self.boot.clusters // 8))
        free, end, done = 0, size, 0
        while end > 0:
            if done >= MAX_BITMAP or (enough is not None and free * self.cluster >= enough):
                return free * self.cluster, False
            start = max(0, end - BITMAP_CHUNK)
            chunk = self.read_attribute(bitmap, start, end - start)
            bits = (end - start) * 8
            if end == size and self.boot.clusters < size * 8:  # the last byte's bits past the volume
                bits -= size * 8 - self.boot.clusters
            used = int.from_bytes(chunk, "little") & ((1 << bits) - 1)
            free += bits - used.bit_count()
            done += end - start
            end = start
        return free * self.cluster, True


class NtfsFile:
    """A file's data as a `Reader`: each read maps to the few clusters it covers."""

    def __init__(self, volume: Ntfs, data: Attribute) -> None:
        self.volume, self.data, self.size = volume, data, data.size

    def read(self, offset: int, length: int) -> bytes:
        return self.volume.read_attribute(self.data, offset, length)
