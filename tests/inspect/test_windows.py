"""Windows guests, read from real NTFS volumes and registry hives (tests/inspect/windows_guests.py)
and wrapped by qemu-img into the containers VM Import takes."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wizard.inspect import FileReader, inspect_image, ntfs, supported
from wizard.inspect.ntfs import Ntfs
from wizard.inspect.reader import NEAR
from wizard.inspect.report import ImageReport
from wizard.inspect.windows import pe_architecture, version_of

from . import guests
from .conftest import tool
from .helpers import CountingReader
from .windows_guests import Windows, ntfs_volume, pe_header, require_windows_tools, system_volume, windows_disk

MiB = 1024 * 1024
SERVER_2022 = Windows("Windows Server 2022 Standard", "ServerStandard", "Server", "20348", "21H2")
WINDOWS_11 = Windows("Windows 11 Enterprise", "Enterprise", "Client", "22631", "23H2")
# Windows 11 keeps "Windows 10" in ProductName: the build tells it
WINDOWS_11_AS_10 = Windows("Windows 10 Pro", "Professional", "Client", "22621", "22H2")
GERMAN_10 = Windows("Windows 10 Pro", "Professional", "Client", "19045", "22H2", language="0407")


def codes(report: ImageReport) -> dict[str, str]:
    return {f.code: f.severity for f in report.findings}


def finding(report: ImageReport, code: str) -> tuple[str, str, dict[str, str]]:
    f = next(f for f in report.findings if f.code == code)
    return f.severity, f.message, f.fix


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The Windows disks of these tests, each built once (about a second each: sparse files)."""
    require_windows_tools()
    work = tmp_path_factory.mktemp("windows")
    made = {
        "server-2019": windows_disk(work / "server-2019.raw", Windows()),
        "server-2022": windows_disk(work / "server-2022.raw", SERVER_2022),
        "windows-11-uefi": windows_disk(work / "windows-11-uefi.raw", WINDOWS_11, "uefi"),
        "windows-11-bios": windows_disk(work / "windows-11-bios.raw", WINDOWS_11_AS_10, "bios"),
        "windows-11-gpt-no-esp": windows_disk(work / "windows-11-gpt.raw", WINDOWS_11, "gpt-bios"),
        "german-10": windows_disk(work / "german-10.raw", GERMAN_10),
        "german-10-set-2": windows_disk(work / "german-10-2.raw", replace(GERMAN_10, control_set=2)),
        "german-server": windows_disk(work / "german-server.raw", Windows(language="0407")),
        "hibernated": windows_disk(work / "hibernated.raw", Windows(hibernation=True)),
        "small": windows_disk(work / "small.raw", Windows(), system_mib=1024),
        "no-environment": windows_disk(work / "no-env.raw", Windows(architecture="", machine=0xAA64)),
        "big-software": windows_disk(work / "big.raw", Windows(big=8 * MiB, filler_keys=400)),
    }
    return made


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vmdk"])
@pytest.mark.parametrize(
    ("name", "version", "product"),
    [
        ("server-2019", "2019", "Windows Server 2019 Datacenter"),
        ("server-2022", "2022", "Windows Server 2022 Standard"),
    ],
)
def test_windows_server_on_bios_mbr(disks: dict[str, Path], fmt: str, name: str, version: str, product: str) -> None:
    report = inspect_image(FileReader(guests.convert(disks[name], fmt)))
    assert report.ok, report.findings
    g = report.guest
    assert (g.os, g.distribution, g.version, g.architecture, g.language) == (
        "windows",
        "windows-server",
        version,
        "x86_64",
        "0409",
    )
    assert g.pretty_name.startswith(product) and g.root == "partition 2 (ntfs)"
    assert (report.partition_table, report.boot_mode_hint) == ("mbr", "legacy-bios")
    severity, message, fix = finding(report, "windows")
    assert severity == "info" and f"Windows Server {version}" in message and fix == {"Platform": "Windows"}
    assert finding(report, "architecture")[2] == {"Platform": "Windows", "Architecture": "x86_64"}
    assert not {"windows-hibernation", "windows-free-space", "windows-language", "windows-11-bios"} & set(codes(report))


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vmdk"])
def test_windows_11_with_uefi(disks: dict[str, Path], fmt: str) -> None:
    report = inspect_image(FileReader(guests.convert(disks["windows-11-uefi"], fmt)))
    assert report.ok, report.findings
    g = report.guest
    assert (g.distribution, g.version, g.root) == ("windows-client", "11", "partition 3 (ntfs)")
    assert (report.partition_table, report.boot_mode_hint) == ("gpt", "uefi")
    severity, message, fix = finding(report, "windows-11-uefi")
    assert severity == "info" and fix == {"BootMode": "uefi"} and "BootMode=uefi" in message
    assert "esp-no-bootx64" not in codes(report)


def test_windows_11_on_bios_is_an_error_whatever_its_product_name(disks: dict[str, Path]) -> None:
    report = inspect_image(FileReader(disks["windows-11-bios"]))
    assert not report.ok
    assert report.guest.version == "11" and report.guest.pretty_name.startswith("Windows 10 Pro")
    severity, message, fix = finding(report, "windows-11-bios")
    assert (severity, fix) == ("error", {"BootMode": "uefi"})
    assert "build 22621" in message and "MBR" in message and "mbr2gpt" in message


def test_windows_11_on_gpt_without_an_esp_is_an_error(disks: dict[str, Path]) -> None:
    report = inspect_image(FileReader(disks["windows-11-gpt-no-esp"]))
    severity, message, _ = finding(report, "windows-11-bios")
    assert severity == "error" and "without an EFI System Partition" in message


def test_a_german_client_edition_is_an_error_a_german_server_is_not(disks: dict[str, Path]) -> None:
    report = inspect_image(FileReader(disks["german-10"]))
    assert (report.guest.version, report.guest.language) == ("10", "0407") and not report.ok
    severity, message, _ = finding(report, "windows-language")
    assert severity == "error" and "German" in message and "0407" in message and "US English" in message
    in_set_2 = inspect_image(FileReader(disks["german-10-set-2"]))  # Select\Current = 2: ControlSet002 counts
    assert finding(in_set_2, "windows-language")[0] == "error"
    server = inspect_image(FileReader(disks["german-server"]))
    assert server.ok and "windows-language" not in codes(server)


def test_a_hibernation_file_is_a_warning(disks: dict[str, Path]) -> None:
    report = inspect_image(FileReader(guests.convert(disks["hibernated"], "vhdx")))
    severity, message, _ = finding(report, "windows-hibernation")
    assert severity == "warning" and "powercfg /h off" in message
    assert report.ok


def test_too_little_free_space_is_an_error(disks: dict[str, Path]) -> None:
    report = inspect_image(FileReader(disks["small"]))
    severity, message, _ = finding(report, "windows-free-space")
    assert severity == "error" and "6.0 GiB" in message
    assert re.search(r"has 10\d\d\.\d MiB free", message)  # a 1 GiB volume, its metadata and files taken


def test_free_space_is_what_ntfsinfo_counts(tmp_path: Path) -> None:
    require_windows_tools()
    part = system_volume(tmp_path / "c.part", Windows(), 1024)
    done = subprocess.run([tool("ntfsinfo"), "-m", str(part)], capture_output=True, text=True, check=True)
    clusters = int(re.search(r"Free Clusters: (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    fs = Ntfs(FileReader(part), 0, part.stat().st_size)
    assert fs.free_space() == (clusters * 4096, True)
    assert fs.free_space(enough=1) == (clusters * 4096, True)  # a small volume's $Bitmap is one chunk


def test_architecture_from_ntoskrnl_when_the_registry_does_not_say(disks: dict[str, Path]) -> None:
    report = inspect_image(FileReader(disks["no-environment"]))
    assert report.guest.architecture == "arm64"
    assert finding(report, "arm64")[0] == "error"


def test_an_ntfs_data_disk_has_no_windows(tmp_path: Path) -> None:
    require_windows_tools()
    part = ntfs_volume(tmp_path / "data.part", 64, {"/Data/readme.txt": b"data"})
    report = inspect_image(FileReader(guests.assemble(tmp_path / "data.raw", [(64, part)])))
    assert report.guest.os == ""  # no OS found: neither Windows nor a Linux root
    severity, message, _ = finding(report, "windows-no-system")
    assert severity == "error" and "Unknown OS" in message


def test_a_windows_inspection_reads_a_few_dozen_small_pieces(disks: dict[str, Path]) -> None:
    """A SOFTWARE hive of 8 MiB and 400 sibling keys: only the cells on the paths are read."""
    for fmt in ("raw", "vmdk"):
        reader = CountingReader(FileReader(guests.convert(disks["big-software"], fmt)))
        report = inspect_image(reader)
        assert report.ok and report.guest.version == "2019"
        # measured: raw 12 reads / 4.75 MiB (the first 4 MiB, the tail and 64 KiB pages), VMDK 3
        # reads / 1.7 MiB: beyond the image's first 4 MiB, only small pieces
        assert len(reader.reads) <= 40, (fmt, len(reader.reads))
        assert reader.total < NEAR + 2 * MiB, (fmt, reader.total)


def test_free_space_stops_once_enough_is_found_from_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_windows_tools()
    part = ntfs_volume(tmp_path / "d.part", 1024, {"/a.txt": b"a"})
    fs = Ntfs(CountingReader(FileReader(part)), 0, part.stat().st_size)
    monkeypatch.setattr(ntfs, "BITMAP_CHUNK", 4096)  # 32768 clusters of 4 KiB: 128 MiB per chunk
    # the volume has 262143 clusters (the last sector is the boot sector's backup): the last
    # chunk covers 32767 of them, all free
    assert fs.free_space(enough=100 * MiB) == (128 * MiB - 4096, False)
    monkeypatch.setattr(ntfs, "MAX_BITMAP", 8192)
    assert fs.free_space() == (256 * MiB - 4096, False)


@pytest.mark.parametrize(
    ("kind", "build", "product", "version", "verdict"),
    [
        ("windows-server", 3790, "Microsoft Windows Server 2003 R2", "2003", "supported"),
        ("windows-server", 7601, "Windows Server 2008 R2 Standard", "2008 R2", "supported"),
        ("windows-server", 20348, "Windows Server 2022 Datacenter", "2022", "supported"),
        ("windows-server", 26100, "Windows Server 2025 Standard", "2025", "not-listed"),
        ("windows-server", 2195, "Windows 2000 Server", "2000", "unsupported"),
        ("windows-server", 99999, "Windows Server Insider", "", "unknown"),
        ("windows-client", 2600, "Microsoft Windows XP", "XP", "unsupported"),
        ("windows-client", 7601, "Windows 7 Professional", "7", "supported"),
        ("windows-client", 9600, "Windows 8.1 Pro", "8.1", "supported"),
        ("windows-client", 19045, "Windows 10 Enterprise", "10", "supported"),
        ("windows-client", 22000, "Windows 10 Pro", "11", "supported"),
        ("windows-client", 0, "Windows 8 Pro", "8", "supported"),  # no build: the product name's words
    ],
)
def test_versions_from_builds_judged_against_the_table(
    kind: str, build: int, product: str, version: str, verdict: str
) -> None:
    assert version_of(kind, build, product) == version
    assert supported.judge_windows(kind, version) == verdict


def test_pe_headers() -> None:
    assert pe_architecture(pe_header(0x8664)) == "x86_64" and pe_architecture(pe_header(0xAA64)) == "arm64"
    assert pe_architecture(pe_header(0x14C)) == "i386" and pe_architecture(b"MZ" + bytes(100)) == ""
    assert pe_architecture(b"\x7fELF" + bytes(100)) == ""


def test_an_ntfs_data_volume_beside_a_linux_root_leaves_a_linux_guest(tmp_path: Path) -> None:
    require_windows_tools()
    root, _ = guests.linux("debian", "12")
    linux_disk = guests.build_disk(tmp_path / "linux.raw", root, size_mib=64)
    linux_part = tmp_path / "linux.part"
    dd = ["dd", f"if={linux_disk}", f"of={linux_part}", "bs=1M", "skip=1", "count=63"]
    subprocess.run(dd, check=True, capture_output=True)
    data = ntfs_volume(tmp_path / "data.part", 64, {"/Shared/readme.txt": b"data"})
    report = inspect_image(FileReader(guests.assemble(tmp_path / "both.raw", [(63, linux_part), (64, data)])))
    assert (report.guest.os, report.guest.distribution) == ("linux", "debian")
    assert report.ok, report.findings
    assert not {c for c in codes(report) if c.startswith("windows")}


def test_the_reads_are_the_same_for_a_64_gib_system_volume(tmp_path: Path, disks: dict[str, Path]) -> None:
    """The free space is counted from the end of $Bitmap and stops once 6 GiB are found: a
    bigger volume costs no more reads (measured: 11 and 12 reads for 7 GiB and 64 GiB, 4.7 and
    5.1 MiB with the first 4 MiB; the one more is where a record falls across a 64 KiB page)."""
    small = CountingReader(FileReader(disks["server-2019"]))
    inspect_image(small)
    big = CountingReader(FileReader(windows_disk(tmp_path / "big.raw", Windows(), system_mib=64 * 1024)))
    report = inspect_image(big)
    assert report.ok and report.guest.version == "2019"
    assert len(small.reads) <= len(big.reads) <= len(small.reads) + 1 <= 20
    assert big.total - small.total <= 512 * 1024  # at most one chunk of $Bitmap more


def test_an_edition_the_guide_does_not_list_is_a_warning_nano_server_an_error(tmp_path: Path) -> None:
    require_windows_tools()
    web_2016 = Windows("Windows Server 2016 Standard", "ServerWeb", "Server", "14393")
    report = inspect_image(FileReader(windows_disk(tmp_path / "web-2016.raw", web_2016)))
    severity, message, _ = finding(report, "windows-edition")
    assert severity == "warning" and "Web Server" in message and "Standard, Datacenter" in message
    assert "windows" in codes(report)  # the version itself is supported

    nano = Windows("Windows Server 2016 Datacenter", "ServerDatacenterNano", "Nano Server", "14393")
    report = inspect_image(FileReader(windows_disk(tmp_path / "nano.raw", nano)))
    assert codes(report)["windows-nano-server"] == "error" and "windows-edition" not in codes(report)

    home_10 = Windows("Windows 10 Home", "Core", "Client", "19045", "22H2")
    report = inspect_image(FileReader(windows_disk(tmp_path / "home-10.raw", home_10)))
    assert "windows-edition" not in codes(report)  # the guide lists Home for Windows 10
    home_81 = Windows("Windows 8.1", "Core", "Client", "9600")
    assert codes(inspect_image(FileReader(windows_disk(tmp_path / "home-81.raw", home_81))))["windows-edition"] == (
        "warning"
    )


@given(st.text(max_size=60), st.sampled_from(sorted({d for d, _ in supported.WINDOWS_EDITIONS})), st.text(max_size=20))
def test_editions_judged_on_any_text(edition_id: str, distribution: str, version: str) -> None:
    name = supported.windows_edition(edition_id)
    assert name == "" or name in set(supported.EDITION_IDS.values())
    assert supported.edition_listed(distribution, version, name) in (None, True, False)
    if name == "":
        assert supported.edition_listed(distribution, version, name) is None
