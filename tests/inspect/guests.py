"""Real guest disks for the tests, built without mounting: `mkfs.ext4 -d DIR` into the partitions
of a disk file laid out by sfdisk, then `qemu-img convert` into each container format.

A guest is a dict of files (path -> bytes, or "->target" for a symbolic link). The kernel image
and the init binary only need their headers: a bzImage header with its version string, an ELF
header with its machine (x86_64 or aarch64 are just bytes).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

from .conftest import tool

MiB = 1024 * 1024
ROOT_UUID = "0a6f2c2e-6f0b-4a53-9d51-2f6f1d3c7e01"
BOOT_UUID = "1b7e3d3f-7a1c-4b64-8e62-3a7a2e4d8f12"


def elf(machine: int = 62, bits: int = 64) -> bytes:
    """An ELF executable's header (x86_64 = 62, aarch64 = 183, i386 = 3) and some padding."""
    header = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1, 1]) + bytes(9) + struct.pack("<HH", 2, machine)
    return header + bytes(4096 - len(header))


def bzimage(version: str) -> bytes:
    """The first 4 KiB of an x86 kernel image: "HdrS" at 0x202, the version string where the
    setup header's kernel_version field (0x20E, plus 0x200) points."""
    data = bytearray(4096)
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x20E, 0x300 - 0x200)
    text = f"{version} (builder@example) #1 SMP".encode()
    data[0x300 : 0x300 + len(text)] = text
    return bytes(data)


def os_release(distribution: str, version: str, pretty: str = "") -> bytes:
    return (
        f'ID={distribution}\nVERSION_ID="{version}"\nPRETTY_NAME="{pretty or distribution + " " + version}"\n'.encode()
    )


def fstab(*entries: str) -> bytes:
    return ("# /etc/fstab\n" + "\n".join(entries) + "\n").encode()


def linux(
    distribution: str = "debian",
    version: str = "12",
    kernel: str = "6.1.0-13-amd64",
    machine: int = 62,
    boot: str = "grub",  # grub | bls | bls-default | none
    with_fstab: bool = True,
    separate_boot: bool = False,
    cloud_init: bool = True,
) -> tuple[dict[str, bytes | str], dict[str, bytes | str] | None]:
    """The files of a root file system (and of a separate /boot, if asked)."""
    root: dict[str, bytes | str] = {
        "etc/os-release": os_release(distribution, version),
        "usr/lib/systemd/systemd": elf(machine),
        "sbin": "->usr/sbin",
        "usr/sbin/init": "->../lib/systemd/systemd",
        f"lib/modules/{kernel}/modules.dep": b"",
        "bin/sh": elf(machine),
    }
    if cloud_init:
        root["etc/cloud/cloud.cfg"] = b"datasource_list: [Ec2]\n"
    if distribution == "debian":
        root["etc/debian_version"] = f"{version}.4\n".encode() if "." not in version else f"{version}\n".encode()
    if with_fstab:
        lines = [f"UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1"]
        if separate_boot:
            lines.append(f"UUID={BOOT_UUID} /boot ext4 defaults 0 2")
        root["etc/fstab"] = fstab(*lines)
    files: dict[str, bytes | str] = {f"vmlinuz-{kernel}": bzimage(kernel)}
    if boot == "grub":
        files["grub/grub.cfg"] = (
            f"set default=0\nmenuentry 'Linux' {{\n  linux /vmlinuz-{kernel} root=UUID={ROOT_UUID}\n}}\n".encode()
        )
    elif boot.startswith("bls"):
        files["grub2/grub.cfg"] = b'set default="${saved_entry}"\nload_env -f ${config_directory}/grubenv\nblscfg\n'
        entry = f"abc123-{kernel}"
        files[f"loader/entries/{entry}.conf"] = f"title Linux\nversion {kernel}\nlinux /vmlinuz-{kernel}\n".encode()
        env = f"saved_entry={entry}\n" if boot == "bls-default" else ""
        files["grub2/grubenv"] = ("# GRUB Environment Block\n" + env).encode().ljust(1024, b"#")
    if separate_boot:
        return root, files
    root.update({f"boot/{k}": v for k, v in files.items()})
    return root, None


def write_tree(folder: Path, files: dict[str, bytes | str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("->"):
            os.symlink(content[2:], path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def mkfs(disk: Path, start_mib: int, size_mib: int, files: dict[str, bytes | str], uuid: str, work: Path) -> None:
    tree = work / f"tree-{start_mib}"
    shutil.rmtree(tree, ignore_errors=True)
    write_tree(tree, files)
    _run(
        tool("mkfs.ext4"),
        "-q",
        "-F",
        "-U",
        uuid,
        "-E",
        f"offset={start_mib * MiB}",
        "-d",
        str(tree),
        str(disk),
        f"{size_mib * 1024}k",
    )


def build_disk(
    out: Path,
    root: dict[str, bytes | str],
    boot: dict[str, bytes | str] | None = None,
    table: str = "mbr",
    size_mib: int = 64,
    root_uuid: str = ROOT_UUID,
) -> Path:
    """A raw disk: MBR with an active partition (or GPT with a BIOS boot partition), an optional
    /boot partition of 16 MiB, and the root file system in the rest."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", f"{size_mib}M", str(out)], check=True)
    start = 1
    parts = []
    if table == "gpt":
        parts.append("start=2048,size=2048,type=21686148-6449-6E6F-744E-656564454649")
        start = 2
    if boot is not None:
        parts.append(f"start={start * 2048},size={16 * 2048},type={'83' if table == 'mbr' else 'L'}")
        boot_start, start = start, start + 16
    end = size_mib - (1 if table == "gpt" else 0)
    parts.append(f"start={start * 2048},size={(end - start) * 2048},type={'83' if table == 'mbr' else 'L'}")
    if table == "mbr":
        parts[0] += ",bootable"
    script = f"label: {'dos' if table == 'mbr' else 'gpt'}\n" + "\n".join(parts) + "\n"
    subprocess.run([tool("sfdisk"), "-q", str(out)], input=script.encode(), check=True, capture_output=True)
    work = out.parent / (out.name + ".work")
    if boot is not None:
        mkfs(out, boot_start, 16, boot, BOOT_UUID, work)
    mkfs(out, start, end - start, root, root_uuid, work)
    shutil.rmtree(work, ignore_errors=True)
    return out


FORMATS = {
    "raw": None,
    "vhd": ("vpc", "subformat=dynamic,force_size=on"),
    "vhdx": ("vhdx", "subformat=dynamic"),
    "vmdk": ("vmdk", "subformat=streamOptimized"),
}


def convert(raw: Path, fmt: str) -> Path:
    """The raw disk in container format `fmt` (raw, vhd, vhdx, vmdk)."""
    if fmt == "raw":
        return raw
    driver, options = FORMATS[fmt]  # type: ignore[misc]
    out = raw.with_suffix("." + fmt)
    _run(tool("qemu-img"), "convert", "-f", "raw", "-O", driver, "-o", options, str(raw), str(out))
    return out


def assemble(out: Path, parts: list[tuple[int, Path | None]], size_mib: int = 0) -> Path:
    """An MBR disk whose partitions (1 MiB apart from the start) hold the given partition images,
    (size in MiB, image file or None for an empty partition), the first one active."""
    total = size_mib or 2 + sum(size for size, _ in parts)
    out.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", f"{total}M", str(out)], check=True)
    lines, start = [], 1
    for i, (size, _) in enumerate(parts):
        lines.append(f"start={start * 2048},size={size * 2048},type=83" + (",bootable" if i == 0 else ""))
        start += size
    script = "label: dos\n" + "\n".join(lines) + "\n"
    subprocess.run([tool("sfdisk"), "-q", str(out)], input=script.encode(), check=True, capture_output=True)
    start = 1
    for size, image in parts:
        if image is not None:  # dd keeps the holes of sparse partition images (an XFS needs 300 MiB)
            dd = ["dd", f"if={image}", f"of={out}", "bs=1M", f"seek={start}", f"count={size}", "conv=notrunc,sparse"]
            subprocess.run(dd, check=True, capture_output=True)
        start += size
    return out


def partition_image(path: Path, size_mib: int) -> Path:
    path.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", f"{size_mib}M", str(path)], check=True)
    return path


def lvm_label(path: Path, size_mib: int, pv_uuid: str = "AbCdEf" + "0" * 26) -> Path:
    """A partition image with an LVM physical volume's label (sector 1: LABELONE, LVM2 001)."""
    partition_image(path, size_mib)
    label = bytearray(512)
    label[0:8] = b"LABELONE"
    struct.pack_into("<Q", label, 8, 1)
    struct.pack_into("<I", label, 20, 32)
    label[24:32] = b"LVM2 001"
    label[32:64] = pv_uuid.encode()[:32]
    with open(path, "r+b") as f:
        f.seek(512)
        f.write(label)
    return path


def protofile(tree: Path) -> str:
    """mkfs.xfs's prototype file (-p) for the files under `tree`: directories, files, symlinks."""
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def walk(folder: Path, depth: int) -> None:
        for entry in sorted(folder.iterdir()):
            pad = " " * depth
            if entry.is_symlink():
                lines.append(f"{pad}{entry.name} l--777 0 0 {os.readlink(entry)}")
            elif entry.is_dir():
                lines.append(f"{pad}{entry.name} d--755 0 0")
                walk(entry, depth + 1)
                lines.append(f"{pad}$")
            else:
                lines.append(f"{pad}{entry.name} ---644 0 0 {entry}")

    walk(tree, 1)
    return "\n".join([*lines, "$", ""])


def xfs_disk(out: Path, files: dict[str, bytes | str], boot: dict[str, bytes | str] | None = None) -> Path:
    """An MBR disk whose root is XFS (mkfs.xfs -p), with an optional ext4 /boot before it."""
    work = out.parent / (out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    write_tree(work / "root", files)
    (work / "proto").write_text(protofile(work / "root"))
    root = partition_image(work / "root.part", 300)
    subprocess.run(
        [tool("mkfs.xfs"), "-q", "-f", "-m", f"uuid={ROOT_UUID}", "-p", str(work / "proto"), str(root)],
        check=True,
        capture_output=True,
    )
    parts: list[tuple[int, Path | None]] = []
    if boot is not None:
        disk = build_disk(work / "boot.raw", boot, size_mib=17, root_uuid=BOOT_UUID)
        part = work / "boot.part"
        subprocess.run(
            ["dd", f"if={disk}", f"of={part}", "bs=1M", "skip=1", "count=16"], check=True, capture_output=True
        )
        parts.append((16, part))
    parts.append((300, root))
    assemble(out, parts)
    shutil.rmtree(work, ignore_errors=True)
    return out
