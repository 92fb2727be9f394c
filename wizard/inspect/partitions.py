"""The guest's partition table (MBR or GPT) and what it says about the boot mode.

VM Import mounts the guest's partitions to find the OS; a disk without any fails late with
"ClientError: No valid partitions. Not a valid volume." The table also tells whether the disk
boots with UEFI (GPT with an EFI System Partition) or legacy BIOS, which ImportImage's BootMode
must match.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field

from .reader import Reader
from .report import ERROR, INFO, MAX_SIZE, WARNING, Finding, Partition, human

ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
MBR_ESP = 0xEF
NO_PARTITIONS = "ClientError: No valid partitions. Not a valid volume."
MAX_GPT_ENTRIES = 1024
GPT_ENTRY_SIZES = tuple(128 << n for n in range(6))  # 128 * 2^n up to 4 KiB; everyone writes 128


@dataclass
class Table:
    kind: str  # mbr | gpt | none
    partitions: list[Partition] = field(default_factory=list)
    boot_code: bool = False  # legacy boot loader code in the MBR
    findings: list[Finding] = field(default_factory=list)
    alternate_lba: int = 0  # GPT: where the primary header says the backup header is


def read_table(guest: Reader, sector_size: int = 512) -> Table:
    mbr = guest.read(0, 512)
    boot_code = any(mbr[:440])
    entries = (
        [_mbr_entry(i, mbr[446 + 16 * i : 462 + 16 * i], sector_size) for i in range(4)]
        if mbr[510:512] == b"\x55\xaa"
        else []
    )
    gpt = guest.read(sector_size, sector_size)
    if gpt.startswith(b"EFI PART"):
        table = _read_gpt(guest, gpt, sector_size)
        table.boot_code = boot_code
        return table
    if not entries or any(e is None for e in entries):  # no signature, or a boot sector (e.g. a bare FAT)
        return Table("none", boot_code=boot_code)
    return Table("mbr", [e for e in entries if e and e.size], boot_code)


def _mbr_entry(index: int, raw: bytes, sector_size: int) -> Partition | None:
    """An MBR entry; None if it cannot be one (then sector 0 is a boot sector, not a table)."""
    status, ptype = raw[0], raw[4]
    start, sectors = struct.unpack_from("<II", raw, 8)
    if status not in (0, 0x80) or (ptype and sectors and not start):
        return None
    return Partition(
        index + 1,
        start * sector_size,
        sectors * sector_size if ptype else 0,
        f"0x{ptype:02X}",
        "",
        ptype == MBR_ESP,
        status == 0x80,
    )


def _damaged(what: str) -> Finding:
    return Finding(ERROR, "corrupt", f'{what}: the partition table is damaged. VM Import would fail: "{NO_PARTITIONS}"')


def _read_gpt(guest: Reader, header: bytes, sector_size: int) -> Table:
    (size,) = struct.unpack_from("<I", header, 12)
    (crc,) = struct.unpack_from("<I", header, 16)
    (alternate,) = struct.unpack_from("<Q", header, 32)
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", header, 72)
    table = Table("gpt")
    if not 92 <= size <= sector_size or zlib.crc32(header[:16] + bytes(4) + header[20:size]) != crc:
        table.findings.append(_damaged("The GPT header's checksum is wrong"))
        return table
    if count > MAX_GPT_ENTRIES or entry_size not in GPT_ENTRY_SIZES:
        table.findings.append(_damaged(f"The GPT header declares {count} entries of {entry_size} bytes"))
        return table
    if (alternate + 1) * sector_size > MAX_SIZE:
        table.findings.append(_damaged(f"The GPT header puts its backup at sector {alternate}, past any disk"))
        return table
    table.alternate_lba = alternate
    raw = guest.read(entries_lba * sector_size, count * entry_size)
    if zlib.crc32(raw) != entries_crc:
        table.findings.append(_damaged("The checksum of the GPT's partition entries is wrong"))
        return table
    for i in range(count):
        e = raw[i * entry_size : (i + 1) * entry_size]
        if e[:16] == bytes(16):
            continue
        ptype = str(uuid.UUID(bytes_le=e[:16])).upper()
        first, last, attrs = struct.unpack_from("<QQQ", e, 32)
        if last < first or (last + 1) * sector_size > MAX_SIZE:
            if not table.findings:
                table.findings.append(_damaged(f"GPT entry {i + 1} runs from sector {first} to sector {last}"))
            continue
        name = e[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        table.partitions.append(
            Partition(
                i + 1, first * sector_size, (last - first + 1) * sector_size, ptype, name, ptype == ESP, bool(attrs & 4)
            )
        )
    return table


def check_table(guest: Reader, table: Table, sector_size: int, cut_code: str) -> list[Finding]:
    """Findings about the table as a whole: none at all, and partitions past the disk's end.

    `cut_code` names the finding for a disk shorter than its table: "truncated" where the disk
    is the file itself (raw), since then the file was cut, else "partition-outside-disk".
    """
    if table.kind == "none":
        return [
            Finding(
                ERROR,
                "no-partitions",
                "The disk has no partition table (no MBR signature and no GPT): VM Import will "
                f'fail with "{NO_PARTITIONS}" Import a whole disk, not a single partition or '
                "file system; the disk needs an MBR or GPT with the OS's partitions.",
            )
        ]
    findings = list(table.findings)
    if not table.partitions and not findings:
        return [
            Finding(
                ERROR,
                "no-partitions",
                f"The {table.kind.upper()} partition table is empty: VM Import will fail with "
                f'"{NO_PARTITIONS}" The disk needs the partitions of an installed OS.',
            )
        ]
    last_lba = guest.size // sector_size - 1
    end = max([p.start + p.size for p in table.partitions] + [(table.alternate_lba + 1) * sector_size])
    if end > guest.size:
        findings.append(
            Finding(
                ERROR,
                cut_code,
                f"The partition table describes a disk of at least {human(end)}, but the disk is "
                f"{human(guest.size)}: "
                + (
                    "the image file was cut short. Upload the complete file."
                    if cut_code == "truncated"
                    else "its partitions reach past its end, so the OS's file systems are incomplete."
                ),
            )
        )
    elif (
        table.kind == "gpt"
        and table.alternate_lba == last_lba
        and not guest.read(last_lba * sector_size, 8).startswith(b"EFI PART")
    ):
        findings.append(
            Finding(
                WARNING,
                "gpt-backup-missing",
                "The GPT has no backup header in the disk's last sector: the end of the disk was "
                "overwritten or the image was assembled wrongly. Repair it (e.g. sgdisk -e, or gdisk's "
                "verify) before importing.",
            )
        )
    return findings


def boot_mode(table: Table) -> tuple[str, list[Finding]]:
    """The BootMode the disk needs: "uefi", "legacy-bios", or "" (either works, or unknown)."""
    esp = any(p.is_esp for p in table.partitions)
    if table.kind == "gpt":
        bios_partition = any(p.type == BIOS_BOOT for p in table.partitions)
    else:
        bios_partition = any(p.bootable for p in table.partitions)  # an active partition
    bios = table.boot_code or bios_partition
    if esp and not bios:
        return "uefi", [
            Finding(
                INFO,
                "uefi",
                f"The disk boots with UEFI only ({table.kind.upper()} with an EFI System Partition and "
                "no BIOS boot loader). Set BootMode=uefi in ImportImage: the default, "
                "legacy-bios, gives an instance that does not boot.",
                fix={"BootMode": "uefi"},
            )
        ]
    if esp and bios:
        return "", [
            Finding(
                INFO,
                "boot-either",
                "The disk has both an EFI System Partition and a BIOS boot loader: BootMode "
                "legacy-bios (the default) and uefi should both boot.",
            )
        ]
    return ("legacy-bios" if bios else ""), []
