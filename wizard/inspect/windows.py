"""A Windows guest, read from its NTFS system volume and registry hives: what VM Import would find.

The system volume is the NTFS partition that holds \\Windows\\System32\\config\\SOFTWARE (read by
`ntfs.Ntfs`). Its SOFTWARE hive (read by `regf.Hive`, lazily) gives Microsoft\\Windows NT\\
CurrentVersion: ProductName, EditionID, InstallationType, CurrentBuild(Number), DisplayVersion;
its SYSTEM hive the control set in use (Select\\Current), the installation language
(Control\\Nls\\Language InstallLanguage) and PROCESSOR_ARCHITECTURE (Control\\Session
Manager\\Environment); failing that, the architecture comes from the PE header of
\\Windows\\System32\\ntoskrnl.exe. Judged against `supported.WINDOWS`: the version, the language
of client editions, Windows 11 (build 22000 or later) and UEFI, a hibernation file (Fast
Startup) and the free space of the system volume. Each finding names the message VM Import
would end with where one is known, what it means, and the fix.
"""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING

from . import supported
from .filesystems import FileSystem
from .ntfs import Ntfs, NtfsError
from .reader import Reader
from .regf import Hive, RegfError, Value
from .report import ERROR, INFO, WARNING, Finding, Partition, human, short

if TYPE_CHECKING:
    from .linux import GuestInfo

UNKNOWN_OS = "ClientError: Unknown OS / Missing OS files."
CONFIG = "/Windows/System32/config"
CURRENT_VERSION = "Microsoft\\Windows NT\\CurrentVersion"
PE_MACHINES = {0x8664: "x86_64", 0x14C: "i386", 0xAA64: "arm64", 0x1C4: "arm", 0x200: "ia64"}
ARCHITECTURES = {"AMD64": "x86_64", "X86": "i386", "ARM64": "arm64", "IA64": "ia64"}
SERVER_BUILDS = {  # build -> Windows Server version (Microsoft's release builds)
    2195: "2000",
    3790: "2003",
    6001: "2008",
    6002: "2008",
    6003: "2008",
    7600: "2008 R2",
    7601: "2008 R2",
    9200: "2012",
    9600: "2012 R2",
    14393: "2016",
    17763: "2019",
    20348: "2022",
    26100: "2025",
}
CLIENT_BUILDS = {2600: "XP", 6000: "Vista", 6001: "Vista", 6002: "Vista", 7600: "7", 7601: "7", 9200: "8", 9600: "8.1"}
LANGUAGES = {"0409": "English (United States)", "0407": "German", "040C": "French", "0411": "Japanese"}


def _finding(severity: str, code: str, message: str, **fix: str) -> Finding:
    return Finding(severity, code, message, fix=dict(fix))


def _text(value: Value | None) -> str:
    return short(value.strip(), 120) if isinstance(value, str) else ""


def pe_architecture(head: bytes) -> str:
    """ "x86_64", "i386", "arm64"... from a PE executable's header; "" if it is none."""
    if len(head) < 64 or head[:2] != b"MZ":
        return ""
    at = struct.unpack_from("<I", head, 0x3C)[0]
    if at + 6 > len(head) or head[at : at + 4] != b"PE\0\0":
        return ""
    machine = struct.unpack_from("<H", head, at + 4)[0]
    return PE_MACHINES.get(machine, f"machine {machine:#x}")


def version_of(kind: str, build: int, product: str) -> str:
    """The Windows version ("2019", "11", "8.1") from the build, or the product name's words."""
    if kind == "windows-client":
        if build >= supported.WINDOWS_11_BUILD:
            return "11"
        if build >= 10240:
            return "10"
        if build in CLIENT_BUILDS:
            return CLIENT_BUILDS[build]
        m = re.search(r"Windows (XP|Vista|7|8\.1|8|10|11)\b", product)
        return m.group(1) if m else ""
    if build in SERVER_BUILDS:
        return SERVER_BUILDS[build]
    m = re.search(r"Windows Server (\d{4}(?: R2)?)", product)
    return m.group(1) if m else ""


def inspect_windows(
    guest: Reader, systems: list[FileSystem], partitions: list[Partition], info: GuestInfo
) -> list[Finding] | None:
    """Fills `info` from the Windows system volume and gives its findings; None when every NTFS
    volume was read and none holds Windows (data volumes: the guest may be Linux then)."""
    findings: list[Finding] = []
    volume: tuple[Ntfs, FileSystem] | None = None
    for s in systems:
        if s.type != "ntfs":
            continue
        try:
            fs = Ntfs(guest, s.start, s.size)
            if fs.lookup(CONFIG + "/SOFTWARE") is not None:
                volume = fs, s
                break
        except NtfsError as e:
            findings.append(_unreadable(s, e))
    if volume is None:
        if findings or any(s.type == "bitlocker" for s in systems):
            info.os = "windows"  # unreadable or encrypted: its findings say so
            return findings
        return None
    info.os = "windows"
    fs, system = volume
    info.root = f"partition {system.partition} (ntfs)"
    try:
        findings += _read(fs, info, partitions)
    except (NtfsError, RegfError) as e:
        findings.append(_unreadable(system, e))
    return findings


def no_system() -> Finding:
    """NTFS volumes, but neither Windows on them nor a Linux root elsewhere."""
    return _finding(
        ERROR,
        "windows-no-system",
        "The disk holds NTFS volumes, but none has \\Windows\\System32\\config\\SOFTWARE (and no partition holds "
        "a Linux root): it is not the disk of an installed system. VM Import looks for the OS and fails with "
        f'"{UNKNOWN_OS}" Import the system (C:) disk first, or a data disk as a snapshot (ImportSnapshot).',
    )


def _unreadable(fs: FileSystem, error: Exception) -> Finding:
    return _finding(
        WARNING,
        "guest-unreadable",
        f"Partition {fs.partition}'s NTFS volume or its registry could not be read to the end "
        f"({short(str(error), 100)}): the checks of Windows stop there. The volume may be damaged (VM Import "
        "would then fail too): run chkdsk /f on it and shut Windows down cleanly before exporting the image again.",
    )


def _hive(fs: Ntfs, name: str) -> Hive | None:
    f = fs.open(f"{CONFIG}/{name}")
    return None if f is None else Hive(f)


def _read(fs: Ntfs, info: GuestInfo, partitions: list[Partition]) -> list[Finding]:
    software = _hive(fs, "SOFTWARE")
    assert software is not None  # the system volume was chosen for having it
    names = {"ProductName", "EditionID", "InstallationType", "CurrentBuild", "CurrentBuildNumber", "DisplayVersion"}
    key = software.key(CURRENT_VERSION)
    values = software.values(key, names) if key is not None else {}
    if key is None or not values:
        return [
            _finding(
                ERROR,
                "unknown-os",
                f"The SOFTWARE hive has no {CURRENT_VERSION} key (or no values in it): VM Import cannot tell the "
                f'Windows version and fails with "{UNKNOWN_OS}" The hive may be damaged; repair the installation '
                "(sfc /scannow, DISM /Online /Cleanup-Image /RestoreHealth) before exporting.",
            )
        ]
    product, edition, installation = (_text(values.get(n)) for n in ("ProductName", "EditionID", "InstallationType"))
    digits = re.match(r"\d{1,6}", _text(values.get("CurrentBuildNumber")) or _text(values.get("CurrentBuild")))
    build = int(digits.group(0)) if digits else 0
    server = "server" in (installation or product).lower()  # InstallationType: Client, Server, Server Core
    info.distribution = "windows-server" if server else "windows-client"
    info.version = version_of(info.distribution, build, product)
    info.pretty_name = " ".join(
        part
        for part in (product, f"({edition})" if edition else "", _text(values.get("DisplayVersion")), f"build {build}")
        if part
    )
    language, found = _system(fs, info)
    info.language = short(language, 8)
    found += _version(info, product, build)
    found += _edition(info, edition, installation)
    if not server and language and language.upper() not in supported.WINDOWS_CLIENT_LANGUAGES:
        found.append(
            _finding(
                ERROR,
                "windows-language",
                f"The guest is a Windows client edition installed in "
                f"{LANGUAGES.get(language.upper(), 'another language than US English')} "
                f"(InstallLanguage {short(language, 8)}). VM Import supports client editions (Windows 7 to 11) only "
                f"in US English (0409) {_source()}, and the import fails. Install the US English edition (other "
                "display languages can be added to it as language packs), or use Windows Server.",
            )
        )
    if build >= supported.WINDOWS_11_BUILD and not server:
        found += _windows_11(partitions, product, build)
    if fs.lookup("/hiberfil.sys") is not None:
        found.append(
            _finding(
                WARNING,
                "windows-hibernation",
                "The system volume has \\hiberfil.sys: hibernation or Fast Startup is on, so the volume may have been "
                "left hibernated rather than shut down, and VM Import's changes to it are then lost or the instance "
                "does not boot. Turn them off in the guest (powercfg /h off, as administrator), shut down, and export "
                "the image again.",
            )
        )
    found += _free_space(fs)
    return found


def _source() -> str:
    return f"(the VM Import guide, as read {supported.WINDOWS_RETRIEVED})"


def _system(fs: Ntfs, info: GuestInfo) -> tuple[str, list[Finding]]:
    """The installation language and the architecture, from the SYSTEM hive (or ntoskrnl.exe)."""
    language = arch = ""
    hive = _hive(fs, "SYSTEM")
    if hive is not None:
        current = hive.value("Select", "Current")
        control_set = f"ControlSet{current:03d}" if isinstance(current, int) and 0 < current < 1000 else "ControlSet001"
        language = _text(hive.value(f"{control_set}\\Control\\Nls\\Language", "InstallLanguage"))
        environment = f"{control_set}\\Control\\Session Manager\\Environment"
        arch = ARCHITECTURES.get(_text(hive.value(environment, "PROCESSOR_ARCHITECTURE")).upper(), "")
    if not arch:
        arch = pe_architecture(fs.file("/Windows/System32/ntoskrnl.exe", 4096) or b"")
    info.architecture = arch
    if arch == "arm64":
        return language, [
            _finding(
                ERROR,
                "arm64",
                "The guest is Windows for ARM64. VM Import supports only x86 images (i386, x86_64): the import "
                "fails. Use an x86_64 installation of Windows.",
            )
        ]
    if arch in ("x86_64", "i386"):
        return language, [
            _finding(INFO, "architecture", f"The guest is {arch} Windows.", Platform="Windows", Architecture=arch)
        ]
    return language, []


def _version(info: GuestInfo, product: str, build: int) -> list[Finding]:
    name = short(info.pretty_name, 120)
    kind = "Windows Server" if info.distribution == "windows-server" else "Windows"
    verdict = supported.judge_windows(info.distribution, info.version)
    if verdict == "supported":
        return [_finding(INFO, "windows", f"The guest is {name}: {kind} {info.version}.", Platform="Windows")]
    first, last = supported.WINDOWS[info.distribution]
    listed = f"{kind} {first} to {last}"
    if verdict == "unsupported":
        return [
            _finding(
                ERROR,
                "unsupported-os",
                f"The guest is {name} ({kind} {info.version}); VM Import supports {listed} {_source()}, so the "
                f'import fails (typically with "{UNKNOWN_OS}"). Upgrade to a supported version, or import the '
                "disk as a snapshot (ImportSnapshot) and register the AMI yourself.",
                Platform="Windows",
            )
        ]
    return [
        _finding(
            WARNING,
            "unsupported-os-version",
            f"The guest is {name}; {kind} {short(info.version or product or 'of this build', 40)} is not among the "
            f"versions VM Import lists ({listed}, {_source()[1:-1]}). The import may fail with "
            f'"{UNKNOWN_OS}" Check the current guide ({supported.WINDOWS_SOURCE}): it may list it by now.',
            Platform="Windows",
        )
    ]


def _edition(info: GuestInfo, edition_id: str, installation: str) -> list[Finding]:
    """Nano Server is not supported; an edition the guide does not list for this version is a warning."""
    if installation.strip().lower() == "nano server":
        return [
            _finding(
                ERROR,
                "windows-nano-server",
                f"The guest is a Nano Server installation; VM Import does not support Nano Server {_source()} and "
                "the import fails. Import a Server Core or Desktop Experience installation instead.",
            )
        ]
    edition = supported.windows_edition(edition_id)
    listed = supported.edition_listed(info.distribution, info.version, edition)
    if listed is not False:
        return []
    kind = "Windows Server" if info.distribution == "windows-server" else "Windows"
    editions = ", ".join(supported.WINDOWS_EDITIONS[(info.distribution, info.version)])
    return [
        _finding(
            WARNING,
            "windows-edition",
            f"The guest is {kind} {info.version} {edition} (EditionID {short(edition_id, 40)}); for {kind} "
            f"{info.version} the VM Import guide lists only {editions} {_source()}. The import may fail, or the "
            "instance may not activate with AWS's licence. Import a listed edition, or check the current guide "
            f"({supported.WINDOWS_SOURCE}).",
        )
    ]


def _windows_11(partitions: list[Partition], product: str, build: int) -> list[Finding]:
    gpt = any("-" in p.type for p in partitions)  # GPT type GUIDs; MBR types are "0x07"
    esp = any(p.is_esp for p in partitions)
    named = f" (whatever its ProductName, {short(product, 60)}, says)" if "11" not in product else ""
    if gpt and esp:
        return [
            _finding(
                INFO,
                "windows-11-uefi",
                f"The guest is Windows 11 (build {build}){named}: VM Import imports it only with BootMode=uefi, and "
                "the default (legacy-bios) fails. The disk has an EFI System Partition, so set BootMode=uefi.",
                BootMode="uefi",
            )
        ]
    layout = "an MBR disk" if not gpt else "a GPT disk without an EFI System Partition"
    return [
        _finding(
            ERROR,
            "windows-11-bios",
            f"The guest is Windows 11 (build {build}){named} on {layout}: it boots with legacy BIOS, but VM "
            "Import supports Windows 11 only with UEFI boot (BootMode=uefi), and the import fails. Convert the "
            "disk in the guest (mbr2gpt /convert /allowFullOS), switch the VM's firmware to UEFI and check that it "
            "boots, export the image again, and import it with BootMode=uefi.",
            BootMode="uefi",
        )
    ]


def _free_space(fs: Ntfs) -> list[Finding]:
    need = supported.WINDOWS_MIN_FREE
    free, complete = fs.free_space(enough=need)
    if free >= need:
        return []
    if not complete:
        return [
            _finding(
                INFO,
                "windows-free-space-not-checked",
                f"The free space of the system volume was not counted to the end (at least {human(free)} free in "
                f"the part read); VM Import needs {human(need)} free on it.",
            )
        ]
    return [
        _finding(
            ERROR,
            "windows-free-space",
            f"The system volume has {human(free)} free; VM Import needs at least {human(need)} free on it to install "
            "its drivers and fails the import without it. Free space in the guest (Disk Cleanup, or move data off "
            "C:), or extend the partition and its volume, then export the image again.",
        )
    ]
