"""The guest operating system, read from its file systems: what VM Import would find, an hour early.

From the partitions' file systems (`filesystems.identify`) and those in LVM logical volumes
(`volumes.logical_volumes`), the root file system (ext2/3/4, read by `ext4.Ext4`, XFS, by
`xfs.Xfs`, or Btrfs, by `btrfs.Files`) gives the distribution and version (/etc/os-release or the older release
files, judged against `supported.LINUX`), the architecture (the ELF header of /sbin/init or the
kernel image), the installed kernels (/boot, /lib/modules and the version inside the kernel
image), the default boot entry (grub.cfg, grubenv's saved_entry, BLS entries) and /etc/fstab,
whose UUID=, LABEL= and /dev/mapper/VG-LV entries must name file systems in the image. Each
problem becomes a finding naming the message VM Import would end with, what it means, and the
fix. A disk whose NTFS volume holds Windows (or with BitLocker volumes) is a Windows guest, read
by `windows.inspect_windows`; NTFS data volumes beside a Linux root leave it a Linux guest.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from . import btrfs, supported
from .ext4 import Ext4, Ext4Error
from .filesystems import MAX_PARTITIONS, FileSystem, identify
from .reader import Reader
from .report import ERROR, INFO, WARNING, Finding, ImageError, Partition, short
from .volumes import Volumes, logical_volumes, subvolume_findings
from .windows import inspect_windows, no_system
from .xfs import Xfs

UNKNOWN_OS = "ClientError: Unknown OS / Missing OS files."
UNSUPPORTED_KERNEL = "ClientError: Unsupported kernel version"
NO_KERNEL = "ClientError: Unable to determine kernel version."
BLS_NO_DEFAULT = "ClientError: BLSC-style GRUB found, but unable to detect default kernel"
RELEASE_FILES = (
    "/etc/redhat-release",
    "/etc/centos-release",
    "/etc/system-release",
    "/etc/SuSE-release",
    "/etc/lsb-release",
    "/etc/debian_version",
    "/etc/alpine-release",
)
ELF_MACHINES = {3: "i386", 62: "x86_64", 183: "arm64", 40: "arm", 243: "riscv64", 21: "ppc64"}
SSM_AGENT = ("/usr/bin/amazon-ssm-agent", "/usr/sbin/amazon-ssm-agent", "/snap/amazon-ssm-agent")
MAX_ENTRIES = 32  # BLS entries, kernels and fstab lines kept in the report


@dataclass
class GuestInfo:
    """What the inspection read of the guest operating system (JSON-ready, in the report)."""

    os: str = ""  # linux | windows | ""
    distribution: str = ""  # os-release ID, e.g. ubuntu; windows-server | windows-client
    version: str = ""  # e.g. 22.04; 2019, 11
    pretty_name: str = ""
    architecture: str = ""  # x86_64 | i386 | arm64 | ...
    language: str = ""  # Windows: InstallLanguage, e.g. 0409 (US English)
    kernels: list[str] = field(default_factory=list)
    default_entry: str = ""
    boot_loader: str = ""  # grub | grub-bls | extlinux | ""
    root: str = ""  # "partition 2 (ext4)"; Windows: its system volume
    separate_boot: bool = False
    fstab: list[str] = field(default_factory=list)  # "UUID=... / ext4"
    filesystems: list[dict[str, object]] = field(default_factory=list)
    # LVM: {"name", "id", "pvs": PV UUIDs, "missing": those not on this disk, "lvs"}, so that the
    # disks of one import can be matched by PV UUID
    volume_groups: list[dict[str, object]] = field(default_factory=list)


def _finding(severity: str, code: str, message: str, **fix: str) -> Finding:
    return Finding(severity, code, message, fix=dict(fix))


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines()[:200]:
        key, eq, value = line.strip().partition("=")
        if eq and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            values[key] = value.strip().strip("\"'")[:200]
    return values


def elf_architecture(head: bytes) -> str:
    """ "x86_64", "i386", "arm64"... from an ELF header; "" if it is none."""
    if len(head) < 20 or not head.startswith(b"\x7fELF") or head[4] not in (1, 2) or head[5] not in (1, 2):
        return ""
    machine = struct.unpack_from("<H" if head[5] == 1 else ">H", head, 18)[0]
    name = ELF_MACHINES.get(machine, f"machine {machine}")
    return f"{name} (32-bit)" if head[4] == 1 and name in ("x86_64", "arm64") else name


def kernel_image(head: bytes) -> tuple[str, int | None]:
    """(architecture, offset of the version string or None) of a Linux kernel image's header."""
    if head[0x202:0x206] == b"HdrS" and len(head) >= 0x210:
        return "x86", struct.unpack_from("<H", head, 0x20E)[0] + 0x200
    if head[0x38:0x3C] == b"ARM\x64":
        return "arm64", None
    return "", None


FS = Ext4 | Xfs | btrfs.Files  # the file systems read: the same lookup, file and listdir


@dataclass
class _Guest:
    root: FS
    root_fs: FileSystem
    boot: FS | None  # a separate /boot
    boot_fs: FileSystem | None

    def boot_file(self, name: str, length: int = 64 * 1024) -> bytes | None:
        """A file under /boot, wherever /boot is."""
        if self.boot is not None:
            data = self.boot.file("/" + name, length)
            if data is not None:
                return data
        return self.root.file("/boot/" + name, length)

    def boot_list(self, name: str) -> list[str] | None:
        if self.boot is not None:
            found = self.boot.listdir("/" + name if name else "/")
            if found is not None:
                return found
        return self.root.listdir("/boot/" + name if name else "/boot")


def _open(guest: Reader, fs: FileSystem) -> FS | None:
    try:
        disk = fs.reader or guest  # an LVM logical volume's, or the guest disk
        if fs.type == "btrfs":  # the subvolume holding /etc, if any
            return btrfs.root_files(btrfs.read(disk, fs.start, fs.size))
        return Xfs(disk, fs.start, fs.size) if fs.type == "xfs" else Ext4(disk, fs.start, fs.size)
    except Ext4Error:  # XfsError and BtrfsError too
        return None


def inspect_linux(guest: Reader, partitions: list[Partition]) -> tuple[GuestInfo | None, list[Finding]]:
    """The guest's OS and its findings; (None, []) when no partition holds a file system at all
    (the partition findings say enough then)."""
    systems = [identify(guest, p.index, p.start, p.size) for p in partitions[:MAX_PARTITIONS] if p.size > 0]
    volumes = logical_volumes(guest, systems)
    systems += volumes.systems
    info = GuestInfo(
        filesystems=[
            {"partition": s.partition, "type": s.type, "uuid": s.uuid, "label": short(s.label, 64)}
            | ({"volume": s.volume} if s.volume else {})
            for s in systems
            if s.type
        ]
    )
    info.volume_groups = volumes.summary()
    findings = _volume_findings(guest, systems) + volumes.findings + _dynamic_disk(partitions)
    ntfs = any(s.type in ("ntfs", "bitlocker") for s in systems)
    if ntfs:
        windows = inspect_windows(guest, systems, partitions, info)
        if windows is not None:
            return info, findings + windows
    roots: list[tuple[FS, FileSystem]] = []
    boots: list[tuple[FS, FileSystem]] = []
    unreadable: list[FileSystem] = []
    opened: list[FileSystem] = []
    for s in systems:
        if not s.type.startswith("ext") and s.type not in ("xfs", "btrfs"):
            continue
        fs = _open(guest, s)
        if fs is None:
            continue
        opened.append(s)
        try:
            if fs.lookup("/etc") is not None:
                roots.append((fs, s))
            elif fs.lookup("/grub") or fs.lookup("/grub2") or fs.lookup("/loader") or _kernels_in(fs.listdir("/")):
                boots.append((fs, s))
        except Ext4Error as e:
            unreadable.append(s)
            findings.append(_unreadable(s, e))
    if not roots:
        findings += volumes.missing(None, root_found=False)
        read = [s for s in systems if s.type == "lvm" or (s.type == "btrfs" and any(s is o for o in opened))]
        findings += [] if unreadable or volumes.unread else [no_system()] if ntfs else _no_root(systems, read)
        return (info if info.filesystems else None), findings
    root, root_fs = roots[0]
    g = _Guest(root, root_fs, *(boots[0] if boots else (None, None)))
    info.os, info.root, info.separate_boot = "linux", f"{root_fs.where} ({root_fs.type})", bool(boots)
    try:
        findings += _release(g, info)
        findings += _architecture(g, info)
        findings += _kernels(g, info)
        findings += _boot_entry(g, info)
        findings += _fstab(g, info, systems, volumes)
        findings += _network(g)
    except Ext4Error as e:
        findings.append(_unreadable(root_fs, e))
    root_spec = next((line.split()[0] for line in info.fstab if line.split()[1:2] == ["/"]), None)
    findings += volumes.missing(root_spec, root_found=True)
    if g.boot_fs is not None:
        findings.append(
            _finding(
                INFO,
                "separate-boot",
                f"/boot is a separate file system ({g.boot_fs.where}, {g.boot_fs.type}); VM Import "
                "supports that as long as /etc/fstab mounts it by UUID.",
            )
        )
    return info, findings


def _unreadable(fs: FileSystem, error: Exception) -> Finding:
    if isinstance(error, btrfs.Compressed):
        return _finding(
            WARNING,
            "btrfs-compressed",
            f"The Btrfs of {fs.where} keeps some files compressed ({short(str(error), 100)}; the compress= mount "
            "option): this check reads only uncompressed and zlib files, so the checks of the OS stop there. VM "
            "Import's guide does not say whether it reads compressed files; to be sure, rewrite them uncompressed "
            "(btrfs filesystem defragment -r -c none, or mount without compress and copy) before exporting.",
        )
    return _finding(
        WARNING,
        "guest-unreadable",
        f"The file system of {fs.where} ({fs.type}) could not be read to the end ({short(str(error), 100)}): "
        "the checks of the OS on it stop there. It may be damaged (VM Import would then fail too); run fsck on it "
        "before exporting the image again.",
    )


def _kernels_in(names: list[str] | None) -> list[str]:
    return [n for n in names or [] if n.startswith(("vmlinuz-", "vmlinux-", "kernel-"))]


def _volume_findings(guest: Reader, systems: list[FileSystem]) -> list[Finding]:
    found: list[Finding] = []
    for s in systems:
        where = s.where[0].upper() + s.where[1:]
        if s.type == "luks":
            found.append(
                _finding(
                    ERROR,
                    "luks",
                    f"{where} is encrypted with LUKS ({s.detail}). VM Import cannot read encrypted volumes and fails "
                    f'with "{UNKNOWN_OS}" or a disk validation error. Decrypt the volume (cryptsetup reencrypt '
                    "--decrypt) before exporting; use EBS encryption (Encrypted, KmsKeyId) for the AMI instead.",
                )
            )
        elif s.type == "bitlocker":
            found.append(
                _finding(
                    ERROR,
                    "bitlocker",
                    f"{where} is encrypted with BitLocker. VM Import cannot import encrypted volumes. Turn BitLocker "
                    "off (manage-bde -off C:) and wait for the decryption to finish before exporting the image; use "
                    "EBS encryption (Encrypted, KmsKeyId) instead.",
                )
            )
        elif s.type == "lvm":
            found.append(
                _finding(
                    INFO,
                    "lvm",
                    f"{where} is an LVM physical volume{f' of {s.detail}' if s.detail else ''}. VM Import supports "
                    "LVM, but every physical volume of a volume group must be in the same import (one volume group "
                    "spanning disks needs all its disks as DiskContainers). "
                    + (
                        "Its linear logical volumes were read like partitions."
                        if s.detail
                        else "Its logical volumes were not read (see the other findings)."
                    ),
                )
            )
        elif s.type == "btrfs":
            found += subvolume_findings(guest, s)
    return found


LDM = {"0X42", "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3", "AF9B60A0-1431-4F62-BC68-3311714A69AD"}


def _dynamic_disk(partitions: list[Partition]) -> list[Finding]:
    """A Windows dynamic disk (LDM): MBR type 0x42, or GPT's LDM metadata or data partitions."""
    if not any(p.type.upper() in LDM for p in partitions):
        return []
    return [
        _finding(
            ERROR,
            "dynamic-disk",
            "The disk is a Windows dynamic disk (Logical Disk Manager partitions). VM Import does not support "
            "dynamic disks: convert it to a basic disk (Disk Management, or diskpart's convert basic after "
            "backing up its volumes) before exporting the image.",
        )
    ]


def _no_root(systems: list[FileSystem], read: list[FileSystem] | None = None) -> list[Finding]:
    if any(s.type in ("lvm", "luks", "btrfs") and not any(s is r for r in read or []) for s in systems):
        return []  # the root is where this check does not read: the volume findings say so
    if not any(s.type for s in systems):
        return []  # nothing recognisable at all (a blank or synthetic disk): nothing to say of an OS
    kinds = ", ".join(sorted({s.type for s in systems if s.type})) or "no file system this check recognises"
    return [
        _finding(
            ERROR,
            "no-os",
            f"No partition holds a Linux root file system (/etc was not found; the partitions hold: {kinds}). VM "
            f'Import looks for the OS on the disk and fails with "{UNKNOWN_OS}" Import the disk of an installed '
            "system (the boot disk first), not a data disk or a single partition.",
        )
    ]


def _release(g: _Guest, info: GuestInfo) -> list[Finding]:
    values = parse_os_release(_text(g.root.file("/etc/os-release") or g.root.file("/usr/lib/os-release")))
    info.distribution = values.get("ID", "").lower()
    info.version = values.get("VERSION_ID", "")
    info.pretty_name = values.get("PRETTY_NAME", "")
    older = {path: g.root.file(path, 4096) for path in RELEASE_FILES}
    if info.distribution == "debian" and older["/etc/debian_version"]:
        info.version = _text(older["/etc/debian_version"]).strip()[:40] or info.version  # 12.4, finer than "12"
    if not info.distribution:
        info.distribution, info.version = _older_release(older)
    if not info.distribution:
        return [
            _finding(
                ERROR,
                "unknown-os",
                f"The root file system ({g.root_fs.where}) has no /etc/os-release and none of the older "
                f'release files, so VM Import cannot tell the distribution and fails with "{UNKNOWN_OS}" Restore '
                "/etc/os-release (it belongs to the base-files, system-release or equivalent package).",
            )
        ]
    name = info.pretty_name or f"{info.distribution} {info.version}".strip()
    verdict = supported.judge(info.distribution, info.version)
    source = f"(the VM Import guide's list, read {supported.RETRIEVED})"
    if verdict.status == "unsupported-os":
        return [
            _finding(
                ERROR,
                "unsupported-os",
                f"The guest is {short(name, 80)}, which VM Import does not support {source}; the import would fail "
                f'with "{UNKNOWN_OS}" Import a supported distribution, or import the disk as a snapshot '
                "(ImportSnapshot) and register the AMI yourself (no OS checks, no changes by AWS).",
            )
        ]
    if verdict.status == "unsupported-version":
        return [
            _finding(
                WARNING,
                "unsupported-os-version",
                f"The guest is {short(name, 80)}; {verdict.distribution} {short(info.version, 20)} is not among the "
                f'versions VM Import lists {source}. The import may fail with "{UNSUPPORTED_KERNEL}" or '
                f'"{UNKNOWN_OS}" Upgrade to a listed version, or import as a snapshot and register the AMI yourself.',
            )
        ]
    if verdict.status == "not-checked":
        return [
            _finding(
                INFO,
                "os-not-checked",
                f"The guest is {short(name, 80)}. The stored copy of the VM Import guide lists {verdict.distribution} "
                f"only up to {verdict.read_up_to}, "
                f"so this version was not checked: see {supported.SOURCE}.",
                Platform="Linux",
            )
        ]
    return [
        _finding(
            INFO,
            "os-supported",
            f"The guest is {short(name, 80)}, a version VM Import supports {source}.",
            Platform="Linux",
        )
    ]


def _older_release(files: dict[str, bytes | None]) -> tuple[str, str]:
    text = {k: _text(v) for k, v in files.items() if v}
    if "/etc/alpine-release" in text:
        return "alpine", text["/etc/alpine-release"].strip()[:40]
    for path in ("/etc/centos-release", "/etc/redhat-release", "/etc/system-release"):
        if path in text:
            line = text[path].strip().splitlines()[0] if text[path].strip() else ""
            m = re.search(r"release\s+([0-9.]+)", line)
            version = m.group(1) if m else ""
            low = line.lower()
            dist = (
                "centos"
                if "centos" in low
                else "ol"
                if "oracle" in low
                else "amzn"
                if "amazon" in low
                else "fedora"
                if "fedora" in low
                else "rhel"
                if "red hat" in low
                else "rocky"
                if "rocky" in low
                else low.split(" ")[0][:20]
            )
            return dist, version
    if "/etc/SuSE-release" in text:
        m = re.search(r"VERSION\s*=\s*(\d+)", text["/etc/SuSE-release"])
        p = re.search(r"PATCHLEVEL\s*=\s*(\d+)", text["/etc/SuSE-release"])
        return "sles", (m.group(1) if m else "") + (f".{p.group(1)}" if p else "")
    if "/etc/lsb-release" in text:
        values = parse_os_release(text["/etc/lsb-release"])
        return values.get("DISTRIB_ID", "").lower(), values.get("DISTRIB_RELEASE", "")
    if "/etc/debian_version" in text:
        return "debian", text["/etc/debian_version"].strip()[:40]
    return "", ""


def _architecture(g: _Guest, info: GuestInfo) -> list[Finding]:
    arch = ""
    for path in ("/sbin/init", "/usr/lib/systemd/systemd", "/bin/sh", "/usr/bin/bash", "/bin/busybox"):
        arch = elf_architecture(g.root.file(path, 64) or b"")
        if arch:
            break
    info.architecture = arch
    if not arch:
        return []
    if arch == "arm64":
        return [
            _finding(
                ERROR,
                "arm64",
                "The guest is built for ARM64 (aarch64; the ELF header of its init). VM Import supports only x86 "
                '(i386, x86_64) images: ImportImage refuses "architecture=arm64" and an x86_64 import fails. Build '
                "or export an x86_64 image, or on Graviton launch an AWS-provided ARM64 AMI and migrate the data.",
            )
        ]
    if arch in ("i386", "x86_64 (32-bit)"):
        return [
            _finding(
                ERROR,
                "linux-32-bit",
                "The guest is a 32-bit Linux (its init is a 32-bit ELF). VM Import supports only 64-bit Linux: "
                f'the import fails with "{UNKNOWN_OS}" or does not boot. Move to the 64-bit build of the distribution.',
            )
        ]
    if arch != "x86_64":
        return [
            _finding(
                ERROR,
                "architecture",
                f"The guest is built for {short(arch, 40)}; VM Import supports only x86_64 Linux images.",
            )
        ]
    return [
        _finding(
            INFO, "architecture-x86_64", "The guest is x86_64 (from its init's ELF header).", Architecture="x86_64"
        )
    ]


def _kernels(g: _Guest, info: GuestInfo) -> list[Finding]:
    names = _kernels_in(g.boot_list(""))
    modules = g.root.listdir("/lib/modules") or []
    versions: list[str] = []
    archs: set[str] = set()
    for name in names[:8]:
        head = g.boot_file(name, 0x400) or b""
        arch, at = kernel_image(head)
        if arch:
            archs.add(arch)
        version = ""
        if at is not None and at < 0x10000:
            raw = g.boot_file(name, at + 128) or b""
            version = _text(raw[at : at + 128].split(b"\0", 1)[0]).split(" ", 1)[0]
        versions.append(version or name.split("-", 1)[1])
    for m in modules[:MAX_ENTRIES]:
        if m not in versions:
            versions.append(m)
    info.kernels = [short(v, 80) for v in versions[:MAX_ENTRIES]]
    found: list[Finding] = []
    if "arm64" in archs and info.architecture != "arm64":
        info.architecture = info.architecture or "arm64"
        if not info.architecture.startswith("x86"):
            found += _architecture_of_kernel()
    if not versions:
        found.append(
            _finding(
                ERROR,
                "no-kernel",
                "No kernel was found in the guest (no /boot/vmlinuz-* and no /lib/modules/*): VM Import fails with "
                f'"{NO_KERNEL}" Install the distribution\'s standard kernel package (and make sure /boot is in the '
                "image, on the root file system or its own partition).",
            )
        )
        return found
    verdict = supported.judge(info.distribution, info.version)
    if (
        verdict.status == "supported"
        and verdict.row is not None
        and not any(supported.kernel_listed(verdict.row, v) for v in versions)
    ):
        found.append(
            _finding(
                WARNING,
                "unsupported-kernel",
                f"The guest's kernels ({short(', '.join(versions), 120)}) are not among those VM Import lists for "
                f"{verdict.distribution} {short(info.version, 20)} ({', '.join(verdict.row.kernels)}); the import "
                f'may fail with "{UNSUPPORTED_KERNEL}". Install the distribution\'s standard kernel and boot it '
                "by default.",
            )
        )
    return found


def _architecture_of_kernel() -> list[Finding]:
    return [
        _finding(
            ERROR,
            "arm64",
            "The guest's kernel image is an ARM64 kernel. VM Import supports only x86 images: build or export an "
            "x86_64 image instead.",
        )
    ]


def _grubenv(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines()[:100]:
        if line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if eq:
            values[key.strip()] = value.strip()[:200]
    return values


def _boot_entry(g: _Guest, info: GuestInfo) -> list[Finding]:
    cfg = ""
    env: dict[str, str] = {}
    for folder in ("grub", "grub2"):
        text = g.boot_file(f"{folder}/grub.cfg")
        if text is not None:
            cfg = _text(text)
            env = _grubenv(_text(g.boot_file(f"{folder}/grubenv", 4096)))
            break
    entries = sorted(n[: -len(".conf")] for n in g.boot_list("loader/entries") or [] if n.endswith(".conf"))
    extlinux = g.boot_file("extlinux/extlinux.conf") or g.boot_file("syslinux/syslinux.cfg")
    saved = env.get("saved_entry", "")
    if entries and (not cfg or "blscfg" in cfg):
        info.boot_loader = "grub-bls"
        default = _grub_default(cfg)
        info.default_entry = short(saved or ("" if default.startswith("${") else default), 120)
        if not saved and (not default or default.startswith("${")):
            return [
                _finding(
                    ERROR,
                    "bls-no-default",
                    f"The guest boots with GRUB and Boot Loader Specification entries (/boot/loader/entries: "
                    f"{short(', '.join(entries[:4]), 200)}{'...' if len(entries) > 4 else ''}) but grubenv has no "
                    f'saved_entry, so no default kernel can be told: VM Import fails with "{BLS_NO_DEFAULT}". Set '
                    f"it: grub2-set-default {short(entries[-1], 100)} (or grub2-editenv - set saved_entry=...), "
                    "then export the image again.",
                )
            ]
        if saved and not saved.isdigit() and saved not in entries:
            return [
                _finding(
                    ERROR,
                    "bls-no-default",
                    f"grubenv's saved_entry is {short(saved, 100)}, but no BLS entry of that name is in "
                    f'/boot/loader/entries: VM Import fails with "{BLS_NO_DEFAULT}". Point it at an installed '
                    f"kernel: grub2-set-default {short(entries[-1], 100)}.",
                )
            ]
        return []
    if cfg:
        info.boot_loader = "grub"
        info.default_entry = short(saved or _grub_default(cfg) or "0", 120)
        if "menuentry" not in cfg and "linux" not in cfg:
            return [
                _finding(
                    WARNING,
                    "grub-no-entries",
                    "grub.cfg has no menu entry for a kernel: VM Import may fail with "
                    f'"{NO_KERNEL}" Regenerate it (update-grub, or grub2-mkconfig -o /boot/grub2/grub.cfg).',
                )
            ]
        return []
    if extlinux is not None:
        info.boot_loader = "extlinux"
        return [
            _finding(
                WARNING,
                "extlinux",
                "The guest boots with extlinux/syslinux, not GRUB. VM Import edits GRUB's configuration to find and "
                f'boot the kernel and may fail with "{NO_KERNEL}" Install GRUB (grub-pc or grub2) before exporting.',
            )
        ]
    return [
        _finding(
            WARNING,
            "no-boot-config",
            "No boot loader configuration was found (no grub/grub.cfg, grub2/grub.cfg, loader/entries or extlinux "
            "under /boot). VM Import reads it to find the default kernel and may fail with "
            f'"{NO_KERNEL}" Install and configure GRUB (update-grub, or grub2-mkconfig).',
        )
    ]


def _grub_default(cfg: str) -> str:
    m = re.search(r'^\s*set\s+default\s*=\s*"?([^"\n]*)"?', cfg, re.M)
    return m.group(1).strip() if m else ""


def _fstab(g: _Guest, info: GuestInfo, systems: list[FileSystem], volumes: Volumes | None = None) -> list[Finding]:
    data = g.root.file("/etc/fstab")
    if data is None:
        return [
            _finding(
                ERROR,
                "fstab-missing",
                "The guest has no /etc/fstab. VM Import reads it to find and rewrite the guest's mounts and fails "
                'without it ("ClientError: Invalid configuration - Could not read fstab"). Create it, with the root '
                "file system by UUID: "
                f"UUID={g.root_fs.uuid} / {g.root_fs.type} defaults 0 1.",
            )
        ]
    uuids = {s.uuid.lower() for s in systems if s.uuid}
    labels = {s.label for s in systems if s.label}
    found: list[Finding] = []
    lines = 0
    for line in _text(data).splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#") or len(fields) < 2:
            continue
        lines += 1
        if lines > 200:
            break
        spec, mount = fields[0], fields[1]
        kind = fields[2] if len(fields) > 2 else ""
        options = fields[3] if len(fields) > 3 else ""
        if len(info.fstab) < MAX_ENTRIES:
            info.fstab.append(short(f"{spec} {mount} {kind}", 160))
        name, _, value = spec.partition("=")
        missing = (
            (name == "UUID" and value.strip('"').lower() not in uuids)
            or (name == "LABEL" and value.strip('"') not in labels)
            or (volumes is not None and volumes.resolves(spec) is False)
        )
        if missing:
            root = mount == "/"
            found.append(
                _finding(
                    ERROR if root else WARNING,
                    "fstab-unresolved",
                    f"/etc/fstab mounts {short(mount, 80)} from {short(spec, 80)}, but "
                    + (
                        f"no file system in the image has that {name}. "
                        if name in ("UUID", "LABEL")
                        else "no LVM logical volume of that name is in the image. "
                    )
                    + (
                        "The root file system would not be found at boot. "
                        if root
                        else "VM Import adds nofail to such entries (or comments them out), so it is not mounted. "
                    )
                    + "Correct the entry, or import the disk that holds it in the same import.",
                )
            )
        if kind == "btrfs" and mount in ("/", "/boot") and re.search(r"subvol(id)?=", options):
            found.append(
                _finding(
                    ERROR,
                    "btrfs-subvolume",
                    f"/etc/fstab mounts {mount} from a Btrfs subvolume ({short(options, 80)}). VM Import does not "
                    "support Btrfs subvolumes: move the root to a plain file system (ext4 or XFS) before exporting.",
                )
            )
    return found


def _network(g: _Guest) -> list[Finding]:
    """Static network configuration, cloud-init and the SSM Agent: what VM Import changes, or what the
    instance needs (warnings and notes, never errors)."""
    static: list[str] = []
    for name in (g.root.listdir("/etc/sysconfig/network-scripts") or [])[:MAX_ENTRIES]:
        if name.startswith("ifcfg-") and name != "ifcfg-lo":
            text = _text(g.root.file(f"/etc/sysconfig/network-scripts/{name}", 8192))
            if re.search(r"^\s*BOOTPROTO\s*=\s*[\"']?(static|none)", text, re.M | re.I):
                static.append(f"/etc/sysconfig/network-scripts/{name}")
    for name in (g.root.listdir("/etc/netplan") or [])[:MAX_ENTRIES]:
        text = _text(g.root.file(f"/etc/netplan/{name}", 16384))
        if re.search(r"^\s*addresses\s*:", text, re.M) and not re.search(r"dhcp4\s*:\s*(true|yes)", text):
            static.append(f"/etc/netplan/{name}")
    interfaces = _text(g.root.file("/etc/network/interfaces", 16384))
    if re.search(r"^\s*iface\s+(?!lo\b)\S+\s+inet\s+static", interfaces, re.M):
        static.append("/etc/network/interfaces")
    found: list[Finding] = []
    if static:
        found.append(
            _finding(
                WARNING,
                "static-network",
                f"The guest configures static IP addresses ({short(', '.join(static), 200)}). VM Import rewrites "
                "known network scripts to DHCP, but a configuration it does not rewrite leaves the instance "
                'unreachable ("FirstBootFailure: ... failed to boot and establish network connectivity"). Switch '
                "the interfaces to DHCP before exporting.",
            )
        )
    if g.root.lookup("/etc/cloud/cloud.cfg") is None:
        found.append(
            _finding(
                INFO,
                "no-cloud-init",
                "The guest has no cloud-init (/etc/cloud/cloud.cfg): instances from the AMI will not take their "
                "SSH key, user data or host name from EC2. Install cloud-init before exporting if you need them.",
            )
        )
    if not any(g.root.lookup(path) is not None for path in SSM_AGENT):
        found.append(
            _finding(
                INFO,
                "no-ssm-agent",
                "The guest has no SSM Agent (amazon-ssm-agent). VM Import installs it during the import where the "
                "distribution allows; the instances are then managed by Systems Manager once they have an instance "
                "profile with AmazonSSMManagedInstanceCore and can reach its endpoints. Nothing to do unless you do "
                "not want it (remove it after the import) or the guest cannot take it (install it yourself).",
            )
        )
    return found


def inspect_guest(guest: Reader, partitions: list[Partition]) -> tuple[GuestInfo | None, list[Finding]]:
    """`inspect_linux`, with any damage that its own checks let through made a warning."""
    try:
        return inspect_linux(guest, partitions)
    except ImageError as e:  # the read budget: the guest asked for more than any real one needs
        return None, [
            _finding(WARNING, "guest-unreadable", f"The guest's file systems were not read to the end: {e.message}")
        ]
    except (Ext4Error, struct.error, ValueError, IndexError, UnicodeError) as e:
        return None, [
            _finding(
                WARNING,
                "guest-unreadable",
                f"The guest's file systems could not be read ({type(e).__name__}): the checks of the OS were "
                "skipped. The file systems may be damaged; run fsck before exporting the image again.",
            )
        ]
