"""What an inspection finds, as plain data: the report, its findings and partitions.

Everything here is JSON-ready through `ImageReport.to_dict()`, so the web app, the CLI and
the sandbox AWS can all show or act on the same result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ERROR = "error"  # VM Import will refuse the image or fail the import
WARNING = "warning"
INFO = "info"


@dataclass
class Finding:
    severity: str
    code: str
    message: str
    # ImportImage parameters the image settles, e.g. {"BootMode": "uefi"}: offered as a one-click fix
    fix: dict[str, str] = field(default_factory=dict)


@dataclass
class Partition:
    """One partition of the guest disk; start and size in bytes."""

    index: int
    start: int
    size: int
    type: str  # MBR type byte as "0x83", or the GPT type GUID (upper case)
    name: str = ""
    is_esp: bool = False
    bootable: bool = False


@dataclass
class OvaDisk:
    """A disk as the OVF descriptor declares it."""

    href: str
    format: str  # the OVF's format URL, e.g. ...vmdk.html#streamOptimized
    capacity: int | None  # bytes
    file_size: int | None  # size of the file inside the tar, if found
    chunked: bool = False
    compression: str = ""


@dataclass
class OvaInfo:
    ovf_name: str
    disks: list[OvaDisk]
    firmware: str  # "efi" or "bios" (VMware's firmware key; absent means BIOS)
    os_id: str  # CIM operating system id from OperatingSystemSection
    os_type: str  # vmw:osType, e.g. debian11_64Guest
    first_disk: ImageReport | None = None  # inspection of the first disk file in the tar


@dataclass
class ImageReport:
    format: str  # OVA | VMDK | VHD | VHDX | RAW | QCOW2 | ISO | UNKNOWN
    subformat: str
    virtual_size: int | None
    file_size: int
    partition_table: str = "unknown"  # mbr | gpt | none | unknown
    partitions: list[Partition] = field(default_factory=list)
    boot_mode_hint: str = ""  # uefi | legacy-bios | "" (unknown, or either works)
    findings: list[Finding] = field(default_factory=list)
    ova: OvaInfo | None = None
    guest: Any = None  # linux.GuestInfo: the guest OS as read from its file systems (None: not read)

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class ImageError(Exception):
    """A structure the inspection needs is missing or broken; it becomes an error finding."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def finding(self) -> Finding:
        return Finding(ERROR, self.code, self.message)


MAX_SIZE = 2**63 - 1  # the largest number a report holds (a signed 64-bit integer in JSON)


def human(n: int) -> str:
    """Bytes in the largest binary unit that keeps one decimal, for messages; any size."""
    if n < 1024:
        return f"{n} bytes"
    if n >= 1024**7:  # more than any disk: no float for it
        return f"about 2^{n.bit_length() - 1} bytes"
    units = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB")
    size, i = n / 1024, 0
    while size >= 1024 and i < len(units) - 1:
        size, i = size / 1024, i + 1
    return f"{size:.1f} {units[i]}"


def short(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters for a message (names and values come from the image)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
