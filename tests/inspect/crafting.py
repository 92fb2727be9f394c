"""Crafted variants of real images, for findings the corpus has no image for."""

from __future__ import annotations

import io
import struct
import tarfile
import uuid
from pathlib import Path

from wizard.inspect import FileReader
from wizard.inspect.vhdx import crc32c

KiB = 1024
STREAM_URL = "http://www.vmware.com/interfaces/specifications/vmdk.html#"


def vhd_footer(footer: bytes, **fields: int) -> bytes:
    """A VHD footer with `disk_type` or `current_size` changed and its checksum redone."""
    f = bytearray(footer)
    if "disk_type" in fields:
        f[60:64] = struct.pack(">I", fields["disk_type"])
    if "current_size" in fields:
        f[48:56] = struct.pack(">Q", fields["current_size"])
    f[64:68] = bytes(4)
    f[64:68] = struct.pack(">I", ~sum(f) & 0xFFFF_FFFF)
    return bytes(f)


def vhd_patches(path: Path, **fields: int) -> dict[int, bytes]:
    """Patches for both footer copies of a dynamic VHD."""
    r = FileReader(path)
    footer = vhd_footer(r.read(r.size - 512, 512), **fields)
    return {0: footer, r.size - 512: footer}


def vhdx_header_patches(path: Path, log_guid: bytes) -> dict[int, bytes]:
    """Both VHDX headers with a log GUID set (as a crashed Hyper-V host leaves them)."""
    r = FileReader(path)
    patches = {}
    for offset in (64 * KiB, 128 * KiB):
        h = bytearray(r.read(offset, 4 * KiB))
        h[48:64] = log_guid
        h[4:8] = bytes(4)
        h[4:8] = struct.pack("<I", crc32c(bytes(h)))
        patches[offset] = bytes(h)
    return patches


def vhdx_file_parameters_offset(path: Path) -> int:
    """Where the File Parameters metadata item (block size, flags) is in a VHDX."""
    return vhdx_item_offset(path, uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B"))


def vhdx_item_offset(path: Path, item: uuid.UUID) -> int:
    """Where a metadata item (File Parameters, Virtual Disk Size...) is in a VHDX."""
    r = FileReader(path)
    table = r.read(192 * KiB, 64 * KiB)
    metadata_region = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
    (count,) = struct.unpack_from("<I", table, 8)
    start = next(
        struct.unpack_from("<Q", table, 32 + 32 * i)[0]
        for i in range(count)
        if uuid.UUID(bytes_le=table[16 + 32 * i : 32 + 32 * i]) == metadata_region
    )
    meta = r.read(start, 64 * KiB)
    (items,) = struct.unpack_from("<H", meta, 10)
    for i in range(items):
        entry = meta[32 + 32 * i : 64 + 32 * i]
        if uuid.UUID(bytes_le=entry[:16]) == item:
            return start + struct.unpack_from("<I", entry, 16)[0]
    raise AssertionError(f"no metadata item {item}")


def ovf(disks: list[tuple[str, str]], firmware: str = "efi", file_attrs: str = "", doctype: str = "") -> bytes:
    """An OVF naming `disks` as (href, VMDK subformat), each 512 MiB."""
    files = "".join(f'<File ovf:id="file{i}" ovf:href="{href}"{file_attrs}/>' for i, (href, _) in enumerate(disks))
    disk_list = "".join(
        f'<Disk ovf:diskId="vmdisk{i}" ovf:fileRef="file{i}" ovf:capacity="512" '
        f'ovf:capacityAllocationUnits="byte * 2^20" ovf:format="{STREAM_URL}{sub}"/>'
        for i, (_, sub) in enumerate(disks)
    )
    config = f'<vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="{firmware}"/>' if firmware else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>{doctype}
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>{files}</References>
  <DiskSection><Info>Virtual disks</Info>{disk_list}</DiskSection>
  <VirtualSystem ovf:id="vm"><Info>A VM</Info>
    <OperatingSystemSection ovf:id="101" vmw:osType="otherLinux64Guest"><Info>OS</Info></OperatingSystemSection>
    <VirtualHardwareSection><Info>hw</Info>{config}</VirtualHardwareSection>
  </VirtualSystem>
</Envelope>""".encode()


def make_ova(path: Path, members: list[tuple[str, bytes | Path]], fmt: int = tarfile.USTAR_FORMAT) -> Path:
    """A tar of `members` (name, content or file) in that order."""
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, content in members:
            if isinstance(content, Path):
                tar.add(content, arcname=name)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path
