"""Small but well-formed disk images for the sandbox's validation tests.

Each builder returns bytes: a raw disk with an MBR or GPT partition table, a
fixed VHD, a stream-optimized VMDK (as ESX writes it: deflated grains with
markers, the grain directory at the end), a monolithicSparse VMDK, an OVA.
"""

from __future__ import annotations

import io
import math
import random
import struct
import tarfile
import time
import uuid
import zlib

SECTOR = 512
GRAIN_SECTORS = 128  # 64 KiB grains
GTES_PER_GT = 512
GD_AT_END = 0xFFFFFFFFFFFFFFFF


def raw_disk(size: int = 2**20, table: str | None = "mbr", seed: int | None = None) -> bytes:
    """A raw disk of `size` bytes: zeros (or seeded random bytes) under a partition table.

    `table` is "mbr" (one Linux partition to the end of the disk), "gpt" (protective MBR,
    header and one entry) or None (no partition table at all).
    """
    data = bytearray(random.Random(seed).randbytes(size) if seed is not None else bytes(size))
    data[: 34 * SECTOR] = bytes(34 * SECTOR)
    data[-34 * SECTOR :] = bytes(34 * SECTOR)
    sectors = size // SECTOR
    if table == "mbr":
        start = 2048 if sectors > 4096 else 63  # 1 MiB-aligned where there is room
        entry = struct.pack("<B3sB3sII", 0x80, b"\0\0\0", 0x83, b"\0\0\0", start, sectors - start)
        data[446:462] = entry
        data[510:512] = b"\x55\xaa"
    elif table == "gpt":
        entry = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0xEE, b"\0\0\0", 1, sectors - 1)
        data[446:462] = entry
        data[510:512] = b"\x55\xaa"
        disk_guid = uuid.uuid4().bytes_le
        linux = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4").bytes_le
        name = "root".encode("utf-16-le").ljust(72, b"\0")
        part = linux + uuid.uuid4().bytes_le + struct.pack("<QQQ", 34, sectors - 34, 0) + name
        entries = part.ljust(128 * 128, b"\0")
        for mine, other, entries_at in ((1, sectors - 1, 2), (sectors - 1, 1, sectors - 33)):
            header = bytearray(
                struct.pack(
                    "<8sIIIIQQQQ16sQIII",
                    b"EFI PART",
                    0x00010000,
                    92,
                    0,
                    0,
                    mine,
                    other,
                    34,
                    sectors - 34,
                    disk_guid,
                    entries_at,
                    128,
                    128,
                    zlib.crc32(entries),
                )
            )
            struct.pack_into("<I", header, 16, zlib.crc32(bytes(header)))
            data[mine * SECTOR : mine * SECTOR + len(header)] = header
            data[entries_at * SECTOR : entries_at * SECTOR + len(entries)] = entries
    elif table is not None:
        raise ValueError(table)
    return bytes(data)


def vhd_fixed(raw: bytes) -> bytes:
    """A fixed VHD: the raw disk followed by its 512-byte footer."""
    size = len(raw)
    cylinders = min(65535, size // (16 * 63 * SECTOR))
    footer = bytearray(
        struct.pack(
            ">8sIIQI4sI4sQQHBBII16sB",
            b"conectix",
            2,
            0x00010000,
            0xFFFFFFFFFFFFFFFF,
            int(time.time()) - 946684800,
            b"wizd",
            0x00010000,
            b"Wi2k",
            size,
            size,
            cylinders,
            16,
            63,
            2,
            0,
            uuid.uuid4().bytes,
            0,
        )
    ).ljust(SECTOR, b"\0")
    struct.pack_into(">I", footer, 64, ~sum(footer) & 0xFFFFFFFF)
    return raw + bytes(footer)


def _vmdk_header(
    version: int, flags: int, capacity: int, desc_sectors: int, gd: int, rgd: int, overhead: int, compress: int
) -> bytes:
    return struct.pack(
        "<4sIIQQQQIQQQB4sH",
        b"KDMV",
        version,
        flags,
        capacity,
        GRAIN_SECTORS,
        1,
        desc_sectors,
        GTES_PER_GT,
        rgd,
        gd,
        overhead,
        0,
        b"\n \r\n",
        compress,
    ).ljust(SECTOR, b"\0")


def _descriptor(create_type: str, capacity: int, name: str = "disk.vmdk") -> bytes:
    return (
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
        f'createType="{create_type}"\n\n# Extent description\nRW {capacity} SPARSE "{name}"\n\n'
        '# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\n'
        f'ddb.geometry.cylinders = "{max(1, capacity // (255 * 63))}"\n'
        'ddb.geometry.heads = "255"\nddb.geometry.sectors = "63"\nddb.virtualHWVersion = "4"\n'
    ).encode()


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % SECTOR)


def _marker(sectors: int, kind: int) -> bytes:
    return struct.pack("<QII", sectors, 0, kind).ljust(SECTOR, b"\0")


def vmdk_stream(raw: bytes) -> bytes:
    """A stream-optimized VMDK of the raw disk (all-zero grains are left out)."""
    capacity = math.ceil(len(raw) / SECTOR)
    grains = math.ceil(capacity / GRAIN_SECTORS)
    tables = math.ceil(grains / GTES_PER_GT)
    flags = 0x1 | 0x10000 | 0x20000  # newline test, compressed grains, markers
    out = bytearray(_vmdk_header(3, flags, capacity, 1, GD_AT_END, 0, 128, 1))
    out += _pad(_descriptor("streamOptimized", capacity))
    out += bytes(128 * SECTOR - len(out))
    offsets = [0] * (tables * GTES_PER_GT)
    grain_bytes = GRAIN_SECTORS * SECTOR
    for n in range(grains):
        chunk = raw[n * grain_bytes : (n + 1) * grain_bytes]
        if not any(chunk):
            continue
        chunk = chunk.ljust(grain_bytes, b"\0")
        offsets[n] = len(out) // SECTOR
        packed = zlib.compress(chunk)
        out += _pad(struct.pack("<QI", n * GRAIN_SECTORS, len(packed)) + packed)
    gt_sectors = GTES_PER_GT * 4 // SECTOR
    directory = []
    for t in range(tables):
        out += _marker(gt_sectors, 1)
        directory.append(len(out) // SECTOR)
        out += struct.pack(f"<{GTES_PER_GT}I", *offsets[t * GTES_PER_GT : (t + 1) * GTES_PER_GT])
    gd_sectors = math.ceil(tables * 4 / SECTOR)
    out += _marker(gd_sectors, 2)
    gd = len(out) // SECTOR
    out += _pad(struct.pack(f"<{tables}I", *directory))
    out += _marker(1, 3)
    out += _vmdk_header(3, flags, capacity, 1, gd, 0, 128, 1)
    out += bytes(SECTOR)  # end-of-stream marker
    return bytes(out)


def vmdk_sparse(raw: bytes) -> bytes:
    """A monolithicSparse VMDK (as Workstation writes it): hosted, not stream-optimized."""
    capacity = math.ceil(len(raw) / SECTOR)
    grains = math.ceil(capacity / GRAIN_SECTORS)
    tables = math.ceil(grains / GTES_PER_GT)
    gt_sectors = GTES_PER_GT * 4 // SECTOR
    gd_sectors = math.ceil(tables * 4 / SECTOR)
    desc = _pad(_descriptor("monolithicSparse", capacity))
    desc_sectors = len(desc) // SECTOR
    rgd = 1 + desc_sectors
    rgt = rgd + gd_sectors
    gd = rgt + tables * gt_sectors
    gt = gd + gd_sectors
    overhead = math.ceil((gt + tables * gt_sectors) / GRAIN_SECTORS) * GRAIN_SECTORS
    offsets, grain_data = [0] * (tables * GTES_PER_GT), bytearray()
    grain_bytes = GRAIN_SECTORS * SECTOR
    for n in range(grains):
        chunk = raw[n * grain_bytes : (n + 1) * grain_bytes]
        if any(chunk):
            offsets[n] = overhead + len(grain_data) // SECTOR
            grain_data += chunk.ljust(grain_bytes, b"\0")
    out = bytearray(_vmdk_header(1, 0x3, capacity, desc_sectors, gd, rgd, overhead, 0))
    out += desc
    for directory_at, tables_at in ((rgd, rgt), (gd, gt)):
        assert len(out) == directory_at * SECTOR
        out += _pad(struct.pack(f"<{tables}I", *[tables_at + t * gt_sectors for t in range(tables)]))
        for t in range(tables):
            out += struct.pack(f"<{GTES_PER_GT}I", *offsets[t * GTES_PER_GT : (t + 1) * GTES_PER_GT])
    out += bytes(overhead * SECTOR - len(out))
    return bytes(out + grain_data)


def vmdk_descriptor_only(capacity_bytes: int = 2**30) -> bytes:
    """The text descriptor of a monolithicFlat VMDK, without its -flat extent."""
    capacity = capacity_bytes // SECTOR
    return (
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\n\n# Extent description\n'
        f'RW {capacity} FLAT "disk-flat.vmdk" 0\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\n'
    ).encode()


OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-1" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:vmw="http://www.vmware.com/schema/ovf"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References>
    <File ovf:href="{name}-disk1.vmdk" ovf:id="file1" ovf:size="{file_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="debian11_64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType></System>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def ova(raw: bytes, name: str = "web01", disk: bytes | None = None) -> bytes:
    """An OVA (tar: the OVF descriptor first, then its disk: by default the raw disk as a
    stream-optimized VMDK)."""
    disk = vmdk_stream(raw) if disk is None else disk
    descriptor = OVF.format(name=name, file_size=len(disk), capacity=len(raw)).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in ((f"{name}.ovf", descriptor), (f"{name}-disk1.vmdk", disk)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
