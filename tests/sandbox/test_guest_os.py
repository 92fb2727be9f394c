"""The sandbox judges the guest OS with the application's inspector, as AWS does: an unsupported
distribution or BLS entries without a default kernel fail the task with AWS's own message, at
the stage where AWS fails it; a supported guest imports. Windows too: a Windows 11 on BIOS fails
at its first boot, a Windows Server 2022 imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.inspect import guests
from tests.inspect.conftest import require_tools
from tests.inspect.windows_guests import Windows, require_windows_tools, windows_disk
from tests.sandbox.conftest import IMPORT_SECONDS, upload
from tests.sandbox.helpers import describe
from wizard.sandbox.imagecheck import BLS_NO_DEFAULT, FIRST_BOOT, UNKNOWN_OS
from wizard.sandbox.testing import SandboxProcess


@pytest.fixture(scope="module")
def guest_disks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    require_tools()
    out = tmp_path_factory.mktemp("sandbox-guests")
    kinds = {
        "debian": guests.linux("debian", "12"),
        "alpine": guests.linux("alpine", "3.19", "6.6.8-0-lts"),
        "bls": guests.linux("centos", "8", "4.18.0-193.el8.x86_64", boot="bls"),
    }
    disks = {}
    for name, (root, boot) in kinds.items():
        raw = guests.build_disk(out / f"{name}.raw", root, boot, size_mib=40)
        disks[name] = Path(guests.convert(raw, "vmdk")).read_bytes()
    require_windows_tools()
    windows = {
        "server-2022": (Windows("Windows Server 2022 Standard", "ServerStandard", "Server", "20348", "21H2"), "bios"),
        "windows-11-bios": (Windows("Windows 10 Pro", "Professional", "Client", "22621", "22H2"), "bios"),
    }
    for name, (w, firmware) in windows.items():
        raw = windows_disk(out / f"{name}.raw", w, firmware)
        disks[name] = Path(guests.convert(raw, "vmdk")).read_bytes()  # stream-optimized: the zeros take no room
    return disks


@pytest.mark.parametrize("name", ["debian", "server-2022"])
def test_supported_guest_imports(
    sb: SandboxProcess, ec2: Any, s3: Any, guest_disks: dict[str, bytes], name: str
) -> None:
    disk = upload(sb, s3, f"uploads/{name}.vmdk", guest_disks[name], "VMDK")
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sb.advance(IMPORT_SECONDS)
    assert describe(ec2, task_id)["Status"] == "completed"


@pytest.mark.parametrize(
    "name, stage, message",
    [
        ("alpine", "converting", UNKNOWN_OS),
        ("bls", "updating", BLS_NO_DEFAULT),
        ("windows-11-bios", "booting", FIRST_BOOT),
    ],
)
def test_unsupported_guest_fails_at_the_stage_aws_fails_it(
    sb: SandboxProcess, ec2: Any, s3: Any, guest_disks: dict[str, bytes], name: str, stage: str, message: str
) -> None:
    disk = upload(sb, s3, f"uploads/{name}.vmdk", guest_disks[name], "VMDK")
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sb.advance(IMPORT_SECONDS * {"converting": 0.2, "updating": 0.5, "booting": 0.7}[stage])
    task = describe(ec2, task_id)
    assert (task["Status"], task["StatusMessage"]) == ("active", stage)  # the stage shows first
    sb.advance(IMPORT_SECONDS)
    task = describe(ec2, task_id)
    assert (task["Status"], task["StatusMessage"]) == ("deleted", message)
