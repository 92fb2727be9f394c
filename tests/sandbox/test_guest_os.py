"""The sandbox judges the guest OS with the application's inspector, as AWS does: an unsupported
distribution or BLS entries without a default kernel fail the task with AWS's own message, at
the stage where AWS fails it; a supported guest imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.inspect import guests
from tests.inspect.conftest import require_tools
from tests.sandbox.conftest import IMPORT_SECONDS, upload
from tests.sandbox.helpers import describe
from wizard.sandbox.imagecheck import BLS_NO_DEFAULT, UNKNOWN_OS
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
    return disks


def test_supported_guest_imports(sb: SandboxProcess, ec2: Any, s3: Any, guest_disks: dict[str, bytes]) -> None:
    disk = upload(sb, s3, "uploads/debian.vmdk", guest_disks["debian"], "VMDK")
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sb.advance(IMPORT_SECONDS)
    assert describe(ec2, task_id)["Status"] == "completed"


@pytest.mark.parametrize(
    "name, stage, message",
    [("alpine", "converting", UNKNOWN_OS), ("bls", "updating", BLS_NO_DEFAULT)],
)
def test_unsupported_guest_fails_at_the_stage_aws_fails_it(
    sb: SandboxProcess, ec2: Any, s3: Any, guest_disks: dict[str, bytes], name: str, stage: str, message: str
) -> None:
    disk = upload(sb, s3, f"uploads/{name}.vmdk", guest_disks[name], "VMDK")
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sb.advance(IMPORT_SECONDS * (0.2 if stage == "converting" else 0.5))
    task = describe(ec2, task_id)
    assert (task["Status"], task["StatusMessage"]) == ("active", stage)  # the stage shows first
    sb.advance(IMPORT_SECONDS)
    task = describe(ec2, task_id)
    assert (task["Status"], task["StatusMessage"]) == ("deleted", message)
