"""Real Windows guest disks for the tests, built without mounting and without Windows.

Registry hives: an empty hive made here byte by byte (a base block, one bin: the root key and
its security cell), then filled with keys and values by `hivexregedit --merge` (libwin-hivex-perl,
over libhivex), a real writer of the format. NTFS: `mkntfs` on a partition file, directories made through
libntfs-3g's own ntfs_create (ctypes: ntfs-3g ships no mkdir tool, and FUSE is not there in CI),
files copied in with `ntfscp`. Disks: sfdisk lays out MBR (System Reserved + C:) or GPT (ESP +
MSR + C:), `dd` puts the partitions in, `qemu-img convert` wraps them (guests.convert).
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import tool

MiB = 1024 * 1024
HiveValue = str | int | list[str] | bytes


def _cell(data: bytes) -> bytes:
    """An allocated cell: its negative size (8-byte aligned) and its data."""
    size = -(-(len(data) + 4) // 8) * 8
    return struct.pack("<i", -size) + data + bytes(size - 4 - len(data))


def empty_hive(name: str = "SOFTWARE") -> bytes:
    """A registry hive with a root key and nothing else, as Windows' own empty hives are laid out."""
    root_at = 0x20
    sid = bytes([1, 2, 0, 0, 0, 0, 0, 5]) + struct.pack("<II", 32, 544)  # S-1-5-32-544
    descriptor = struct.pack("<BBHIIII", 1, 0, 0x8000, 20, 20 + len(sid), 0, 0) + sid + sid
    root_name = b"ROOT"
    nk = bytearray(76 + len(root_name))
    nk[0:2] = b"nk"
    struct.pack_into("<H", nk, 2, 0x2C)  # KEY_HIVE_ENTRY | KEY_NO_DELETE | KEY_COMP_NAME
    struct.pack_into("<IIIIIIIII", nk, 16, 0, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF, 0, 0xFFFFFFFF)
    struct.pack_into("<HH", nk, 72, len(root_name), 0)
    nk[76:] = root_name
    root = bytearray(_cell(bytes(nk)))
    sk_at = root_at + len(root)
    struct.pack_into("<I", root, 4 + 44, sk_at)  # the root's security cell
    sk = _cell(b"sk" + struct.pack("<HIIII", 0, sk_at, sk_at, 1, len(descriptor)) + descriptor)
    used = bytes(root) + sk
    free = 4096 - 0x20 - len(used)
    hbin = b"hbin" + struct.pack("<III", 0, 4096, 0) + bytes(16) + used + struct.pack("<i", free) + bytes(free - 4)
    base = bytearray(4096)
    base[0:4] = b"regf"
    struct.pack_into("<IIQIIIIIII", base, 4, 1, 1, 0, 1, 3, 0, 1, root_at, 4096, 1)
    label = name.encode("utf-16-le")[:64]
    base[48 : 48 + len(label)] = label
    checksum = 0
    for (word,) in struct.iter_unpack("<I", bytes(base[:508])):
        checksum ^= word
    struct.pack_into("<I", base, 508, checksum)
    return bytes(base) + hbin


def _reg_value(value: HiveValue) -> str:
    """A value as a .reg file writes it: "text", dword:0000000a, hex(7):... (REG_MULTI_SZ), hex:..."""
    if isinstance(value, bool) or not isinstance(value, (str, int, list, bytes)):
        raise TypeError(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int):
        return f"dword:{value:08x}"
    if isinstance(value, list):
        data = "".join(s + "\0" for s in value).encode("utf-16-le") + b"\0\0"
        return "hex(7):" + ",".join(f"{b:02x}" for b in data)
    return "hex:" + ",".join(f"{b:02x}" for b in value)


def hive(path: Path, keys: dict[str, dict[str, HiveValue]], name: str = "SOFTWARE") -> Path:
    """A hive file with these keys (backslash paths from the root) and values: the empty hive,
    then a .reg file merged into it by hivexregedit (libwin-hivex-perl)."""
    path.write_bytes(empty_hive(name))
    prefix = f"HKEY_LOCAL_MACHINE\\{name}"
    lines = ["Windows Registry Editor Version 5.00", ""]
    made: set[str] = set()
    for key, values in keys.items():
        parts = [p for p in key.split("\\") if p]
        for depth in range(1, len(parts)):
            parent = "\\".join(parts[:depth])
            if parent.upper() not in made:
                made.add(parent.upper())
                lines += [f"[{prefix}\\{parent}]", ""]
        made.add(key.upper())
        lines.append(f"[{prefix}\\{key}]")
        lines += [f'"{value_name}"={_reg_value(value)}' for value_name, value in values.items()]
        lines.append("")
    reg = path.with_suffix(".reg")
    reg.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    done = subprocess.run(
        ["hivexregedit", "--merge", "--prefix", prefix, str(path), str(reg)],
        capture_output=True,
        text=True,
        check=False,
    )
    reg.unlink()
    if done.returncode:
        raise RuntimeError(f"hivexregedit failed: {done.stderr[-2000:]}")
    return path


def pe_header(machine: int = 0x8664) -> bytes:
    """The first 4 KiB of a PE executable (ntoskrnl.exe): MZ, e_lfanew, PE signature, machine."""
    data = bytearray(4096)
    data[0:2] = b"MZ"
    struct.pack_into("<I", data, 0x3C, 0x100)
    data[0x100:0x104] = b"PE\0\0"
    struct.pack_into("<H", data, 0x104, machine)
    return bytes(data)


class Ntfs3g:
    """libntfs-3g, through ctypes: directories (and empty files) made in an unmounted volume."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libntfs-3g.so.89")
        lib.ntfs_mount.restype = ctypes.c_void_p
        lib.ntfs_mount.argtypes = [ctypes.c_char_p, ctypes.c_ulong]
        lib.ntfs_pathname_to_inode.restype = ctypes.c_void_p
        lib.ntfs_pathname_to_inode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
        lib.ntfs_create.restype = ctypes.c_void_p
        lib.ntfs_create.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint8, ctypes.c_uint32]
        lib.ntfs_inode_close.argtypes = [ctypes.c_void_p]
        lib.ntfs_umount.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.ntfs_attr_open.restype = ctypes.c_void_p
        lib.ntfs_attr_open.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32]
        lib.ntfs_attr_pwrite.restype = ctypes.c_int64
        lib.ntfs_attr_pwrite.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_char_p]
        lib.ntfs_attr_close.argtypes = [ctypes.c_void_p]
        lib.ntfs_delete.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_uint8,
        ]
        self.lib = lib
        self.unnamed = ctypes.addressof(ctypes.c_uint16.in_dll(lib, "AT_UNNAMED"))

    def _write(self, vol: int, name: str, data: bytes) -> bool:
        """A new file `name` in the root, written 4 KiB at a time; False when the volume is full."""
        lib = self.lib
        root = lib.ntfs_pathname_to_inode(vol, None, b"/")
        ni = lib.ntfs_create(root, 0, name.encode("utf-16-le"), len(name), 0o100000)
        lib.ntfs_inode_close(root)
        if not ni:
            return False
        na = lib.ntfs_attr_open(ni, 0x80, self.unnamed, 0)
        written = True
        for at in range(0, len(data), 4096):
            piece = data[at : at + 4096]
            if lib.ntfs_attr_pwrite(na, at, len(piece), piece) != len(piece):
                written = False
                break
        lib.ntfs_attr_close(na)
        lib.ntfs_inode_close(ni)
        return written

    def fragmented(self, volume: Path, name: str, seed: int = 1) -> bytes:
        """Fills the volume with one-cluster files, deletes every other one, then writes `name`
        into the holes: a file of hundreds of runs, its $DATA spread over extension records
        ($ATTRIBUTE_LIST). Returns what the file holds."""
        lib = self.lib
        vol = lib.ntfs_mount(str(volume).encode(), 0)
        if not vol:
            raise RuntimeError(f"ntfs_mount {volume} failed")
        try:
            made = 0
            while made < 100_000 and self._write(vol, f"h{made:05d}", b"\1" * 4096):
                made += 1
            for i in range(0, made, 2):
                path, root = f"/h{i:05d}", lib.ntfs_pathname_to_inode(vol, None, b"/")
                ni = lib.ntfs_pathname_to_inode(vol, None, path.encode())
                if lib.ntfs_delete(vol, path.encode(), ni, root, path[1:].encode("utf-16-le"), len(path) - 1):
                    raise RuntimeError(f"ntfs_delete {path} failed")
            data = random.Random(seed).randbytes(4096 * (made // 2 - 20))
            if not self._write(vol, name, data):
                raise RuntimeError(f"writing {name} failed")
            return data
        finally:
            if lib.ntfs_umount(vol, 0):
                raise RuntimeError("ntfs_umount failed")

    def create(self, volume: Path, paths: list[tuple[str, bool]]) -> None:
        """Each (path, is a directory), parents first."""
        lib = self.lib
        vol = lib.ntfs_mount(str(volume).encode(), 0)
        if not vol:
            raise RuntimeError(f"ntfs_mount {volume} failed")
        try:
            for path, directory in paths:
                parent, _, name = path.rpartition("/")
                dir_ni = lib.ntfs_pathname_to_inode(vol, None, (parent or "/").encode())
                if not dir_ni:
                    raise RuntimeError(f"no directory {parent}")
                ni = lib.ntfs_create(
                    dir_ni, 0, name.encode("utf-16-le"), len(name), 0o040000 if directory else 0o100000
                )
                lib.ntfs_inode_close(dir_ni)
                if not ni:
                    raise RuntimeError(f"ntfs_create {path} failed")
                lib.ntfs_inode_close(ni)
        finally:
            if lib.ntfs_umount(vol, 0):
                raise RuntimeError("ntfs_umount failed")


def ntfs_volume(out: Path, size_mib: int, files: dict[str, bytes], fillers: dict[str, int] | None = None) -> Path:
    """An NTFS partition image (mkntfs) holding `files` (absolute paths; directories are made for
    them) and, in each folder of `fillers`, that many empty files (so that its index has blocks)."""
    out.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", f"{size_mib}M", str(out)], check=True)
    subprocess.run([tool("mkntfs"), "-q", "-F", "-f", "-L", "Windows", str(out)], check=True, capture_output=True)
    folders: list[str] = []
    for path in [*files, *(f"{folder}/x" for folder in fillers or {})]:
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:depth])
            if folder not in folders:
                folders.append(folder)
    made = [(folder, True) for folder in folders]
    for folder, count in (fillers or {}).items():
        made += [(f"{folder}/filler{i:04d}.dll", False) for i in range(count)]
    Ntfs3g().create(out, made)
    work = out.with_suffix(".files")
    work.mkdir(exist_ok=True)
    for i, (path, content) in enumerate(files.items()):
        source = work / f"f{i}"
        source.write_bytes(content)
        subprocess.run([tool("ntfscp"), "-q", str(out), str(source), path], check=True, capture_output=True)
    shutil.rmtree(work)
    return out


@dataclass
class Windows:
    """What a test Windows installation says of itself."""

    product: str = "Windows Server 2019 Datacenter"
    edition: str = "ServerDatacenter"
    installation: str = "Server"
    build: str = "17763"
    display: str = ""
    language: str = "0409"
    architecture: str = "AMD64"  # PROCESSOR_ARCHITECTURE; "" for none (ntoskrnl.exe's PE header then)
    machine: int = 0x8664
    hibernation: bool = False
    filler_keys: int = 40  # sibling keys under SOFTWARE\Microsoft
    big: int = 0  # bytes of other values in SOFTWARE (a real one is 50-100 MiB)
    control_set: int = 1  # Select\Current; another than 1 leaves a US English ControlSet001 behind
    extra: dict[str, bytes] = field(default_factory=dict)


def software(path: Path, w: Windows) -> Path:
    version = {
        "ProductName": w.product,
        "EditionID": w.edition,
        "InstallationType": w.installation,
        "CurrentBuild": w.build,
        "CurrentBuildNumber": w.build,
        "CurrentVersion": "6.3",
        "SystemRoot": "C:\\Windows",
        "CurrentMajorVersionNumber": 10,
    }
    if w.display:
        version["DisplayVersion"] = w.display
    keys: dict[str, dict[str, HiveValue]] = {f"Classes\\.{i:03d}": {} for i in range(10)}
    for i in range(w.filler_keys):
        keys[f"Microsoft\\Component{i:03d}"] = {"Version": f"1.{i}", "Path": "C:\\Program Files"}
    chunk = 64 * 1024
    for i in range(w.big // chunk):
        keys[f"Microsoft\\Big\\Blob{i:04d}"] = {"Data": bytes([i % 251]) * chunk}
    keys["Microsoft\\Windows\\CurrentVersion"] = {"ProgramFilesDir": "C:\\Program Files"}
    keys["Microsoft\\Windows NT\\CurrentVersion"] = version
    keys["Microsoft\\Windows NT\\CurrentVersion\\Winlogon"] = {"Shell": "explorer.exe"}
    keys["Policies\\Microsoft"] = {}
    return hive(path, keys, "SOFTWARE")


def system(path: Path, w: Windows) -> Path:
    n = w.control_set
    keys: dict[str, dict[str, HiveValue]] = {
        "Select": {"Current": n, "Default": n, "LastKnownGood": n},
        "ControlSet001\\Control\\Nls\\Language": {"InstallLanguage": w.language if n == 1 else "0409"},
        f"ControlSet{n:03d}\\Control\\Nls\\Language": {"InstallLanguage": w.language, "Default": w.language},
        f"ControlSet{n:03d}\\Services\\Tcpip": {"Start": 1},
    }
    if w.architecture:
        keys[f"ControlSet{n:03d}\\Control\\Session Manager\\Environment"] = {
            "PROCESSOR_ARCHITECTURE": w.architecture,
            "Path": "%SystemRoot%\\system32",
        }
    return hive(path, keys, "SYSTEM")


def system_volume(out: Path, w: Windows, size_mib: int) -> Path:
    work = out.with_suffix(".hives")
    work.mkdir(exist_ok=True)
    files = {
        "/Windows/System32/config/SOFTWARE": software(work / "SOFTWARE", w).read_bytes(),
        "/Windows/System32/config/SYSTEM": system(work / "SYSTEM", w).read_bytes(),
        "/Windows/System32/ntoskrnl.exe": pe_header(w.machine),
        "/Windows/explorer.exe": pe_header(w.machine),
        "/pagefile.sys": bytes(4096),
        **w.extra,
    }
    if w.hibernation:
        files["/hiberfil.sys"] = b"HIBR" + bytes(8188)
    shutil.rmtree(work)
    return ntfs_volume(out, size_mib, files, {"/Windows/System32": 300, "/Windows": 60})


def copy_sparse(source: Path, target: Path, at: int) -> None:
    """`source` written into `target` at byte `at`, its data extents only (SEEK_DATA/SEEK_HOLE):
    a 7 GiB NTFS partition holds a few dozen MiB."""
    with open(source, "rb") as src, open(target, "r+b") as dst:
        end, offset = os.fstat(src.fileno()).st_size, 0
        while offset < end:
            try:
                offset = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(src.fileno(), offset, os.SEEK_HOLE)
            while offset < hole:
                src.seek(offset)
                chunk = src.read(min(hole - offset, 8 * MiB))
                dst.seek(at + offset)
                dst.write(chunk)
                offset += len(chunk)


BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
MSR = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def _esp(out: Path, size_mib: int) -> Path:
    out.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", f"{size_mib}M", str(out)], check=True)
    subprocess.run([tool("mkfs.vfat"), "-F", "32", str(out)], check=True, capture_output=True)
    loader = out.with_suffix(".efi")
    loader.write_bytes(pe_header())
    for folder in ("::/EFI", "::/EFI/BOOT", "::/EFI/Microsoft", "::/EFI/Microsoft/Boot"):
        subprocess.run(["mmd", "-i", str(out), folder], check=True, capture_output=True)
    for target in ("::/EFI/BOOT/BOOTX64.EFI", "::/EFI/Microsoft/Boot/bootmgfw.efi"):
        subprocess.run(["mcopy", "-i", str(out), str(loader), target], check=True, capture_output=True)
    loader.unlink()
    return out


def windows_disk(out: Path, w: Windows, firmware: str = "bios", system_mib: int = 7 * 1024) -> Path:
    """A Windows disk: "bios" is MBR with an active System Reserved partition and C:; "uefi" GPT
    with an ESP, an MSR and C:; "gpt-bios" GPT with only C: (no ESP)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / (out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    c = system_volume(work / "c.part", w, system_mib)
    if firmware == "bios":
        parts = [
            (50, ntfs_volume(work / "reserved.part", 50, {"/bootmgr": pe_header()}), "7", True),
            (system_mib, c, "7", False),
        ]
        label = "dos"
    elif firmware == "uefi":
        parts = [
            (100, _esp(work / "esp.part", 100), ESP, False),
            (16, None, MSR, False),
            (system_mib, c, BASIC_DATA, False),
        ]
        label = "gpt"
    else:
        parts = [(system_mib, c, BASIC_DATA, False)]
        label = "gpt"
    total = 2 + sum(size for size, *_ in parts)
    out.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", f"{total}M", str(out)], check=True)
    lines, start = [], 1
    for size, _, kind, active in parts:
        lines.append(f"start={start * 2048},size={size * 2048},type={kind}" + (",bootable" if active else ""))
        start += size
    script = f"label: {label}\n" + "\n".join(lines) + "\n"
    subprocess.run([tool("sfdisk"), "-q", str(out)], input=script.encode(), check=True, capture_output=True)
    start = 1
    for size, image, *_ in parts:
        if image is not None:
            copy_sparse(image, out, start * MiB)
        start += size
    shutil.rmtree(work, ignore_errors=True)
    return out


TOOLS = ("mkntfs", "ntfscp", "hivexregedit", "mkfs.vfat", "mmd", "mcopy", "sfdisk", "qemu-img")
PACKAGES = "ntfs-3g libwin-hivex-perl dosfstools mtools fdisk qemu-utils"


def require_windows_tools() -> None:
    """Fails (in CI) or skips, naming the packages, when a tool of these images is missing."""
    missing = [t for t in TOOLS if not Path(tool(t)).exists()]
    try:
        ctypes.CDLL("libntfs-3g.so.89")
    except OSError:
        missing.append("libntfs-3g.so.89")
    if not missing:
        return
    message = f"tools of the Windows test images missing ({', '.join(missing)}): apt-get install {PACKAGES}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
