"""An import's way through the stages on the sandbox clock, and the AMI it ends with."""

from __future__ import annotations

from typing import Any

from tests.sandbox import images
from tests.sandbox.conftest import DISK_IMAGE, IMPORT_SECONDS, upload
from tests.sandbox.helpers import describe
from wizard.sandbox.testing import SandboxProcess

# (Status, StatusMessage, Progress) as AWS reports them, in order.
STAGES = [
    ("active", "pending", "2"),
    ("active", "validating", "3"),
    ("active", "validated", "6"),
    ("active", "converting", "28"),
    ("active", "updating", "39"),
    ("active", "booting", "58"),
    ("active", "preparing ami", "80"),
    ("completed", None, None),
]


def walk(sb: SandboxProcess, ec2: Any, task_id: str, step: float) -> list[dict[str, Any]]:
    """Describe the task every `step` sandbox seconds until it ends; one view per change."""
    seen: list[dict[str, Any]] = []
    for _ in range(int(IMPORT_SECONDS / step) + 2):
        task = describe(ec2, task_id)
        key = (task["Status"], task.get("StatusMessage"), task.get("Progress"))
        if not seen or key != (seen[-1]["Status"], seen[-1].get("StatusMessage"), seen[-1].get("Progress")):
            seen.append(task)
        if task["Status"] != "active":
            break
        sb.advance(step)
    return seen


def test_the_stages_come_in_order(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    seen = walk(sb, ec2, task_id, IMPORT_SECONDS / 40)
    assert [(t["Status"], t.get("StatusMessage"), t.get("Progress")) for t in seen] == STAGES


def test_what_each_stage_adds(sb: SandboxProcess, ec2: Any, s3: Any) -> None:
    ova = images.ova(images.raw_disk(2**20, seed=2))
    disk = upload(sb, s3, "uploads/web01.ova", ova, "ova")
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    by_stage = {t.get("StatusMessage", t["Status"]): t for t in walk(sb, ec2, task_id, IMPORT_SECONDS / 40)}
    disks = {stage: task["SnapshotDetails"][0] for stage, task in by_stage.items()}

    assert disks["pending"] == {"DiskImageSize": 0.0, "Format": "OVA", "UserBucket": disk["UserBucket"]}
    assert disks["validating"]["Status"] == "active"
    assert disks["validated"]["DiskImageSize"] == len(ova)  # bytes, as AWS reports it
    assert disks["validated"]["Status"] == "completed"
    assert disks["validated"]["Format"] == "OVA"
    assert disks["converting"]["Format"] == "VMDK"  # an OVA's disk is converted as a VMDK
    assert "DeviceName" not in disks["converting"]
    assert disks["updating"]["DeviceName"] == "/dev/sda1"
    assert {k: by_stage["updating"][k] for k in ("Architecture", "Platform", "LicenseType")} == {
        "Architecture": "x86_64",
        "Platform": "Linux",
        "LicenseType": "BYOL",
    }
    assert "SnapshotId" not in disks["booting"]
    assert disks["preparing ami"]["SnapshotId"].startswith("snap-")
    assert "ImageId" not in by_stage["preparing ami"]
    assert disks["completed"]["SnapshotId"] == disks["preparing ami"]["SnapshotId"]
    assert by_stage["completed"]["ImageId"].startswith("ami-")


def test_a_completed_import_leaves_an_ami_and_its_snapshot(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    task_id = ec2.import_image(Description="web01", DiskContainers=[disk], Platform="Windows", BootMode="uefi")[
        "ImportTaskId"
    ]
    sb.advance(IMPORT_SECONDS)
    task = describe(ec2, task_id)
    snapshot_id = task["SnapshotDetails"][0]["SnapshotId"]

    (image,) = ec2.describe_images(ImageIds=[task["ImageId"]])["Images"]
    assert image["State"] == "available"
    assert image["Name"] == task_id and image["Description"] == "web01"
    assert image["BootMode"] == "uefi" and image["Platform"] == "windows"
    assert image["RootDeviceType"] == "ebs" and image["RootDeviceName"] == "/dev/sda1"
    assert image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == snapshot_id

    (snapshot,) = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert snapshot["State"] == "completed"
    assert snapshot["Description"] == f"Created by AWS-VMImport service for {task_id}"
    assert snapshot["VolumeSize"] == 1  # about 3 MiB, rounded up to whole GiB


def test_the_ami_exists_when_due_even_if_nobody_described_the_task(
    sb: SandboxProcess, ec2: Any, disk: dict[str, Any]
) -> None:
    before = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sb.advance(IMPORT_SECONDS)
    (image,) = [i for i in ec2.describe_images(Owners=["self"])["Images"] if i["ImageId"] not in before]
    assert image["Name"] == task_id
    assert describe(ec2, task_id)["ImageId"] == image["ImageId"]  # and only one AMI


def test_each_disk_gets_a_snapshot_and_a_device(sb: SandboxProcess, ec2: Any, s3: Any, disk: dict[str, Any]) -> None:
    data = upload(sb, s3, "uploads/data.vmdk", b"\0" * 1024, "VMDK")  # too small to be inspected
    elsewhere = {"Format": "VHD", "Url": "https://images.example.com/data.vhd"}  # not in the sandbox's S3
    task_id = ec2.import_image(DiskContainers=[disk, data, elsewhere])["ImportTaskId"]
    sb.advance(IMPORT_SECONDS)
    disks = describe(ec2, task_id)["SnapshotDetails"]
    assert [d["DeviceName"] for d in disks] == ["/dev/sda1", "/dev/sdb", "/dev/sdc"]
    assert [d["DiskImageSize"] for d in disks] == [len(DISK_IMAGE), 1024.0, 0.0]  # no object, no size
    snapshot_ids = [d["SnapshotId"] for d in disks]
    assert len(set(snapshot_ids)) == 3
    found = ec2.describe_snapshots(SnapshotIds=snapshot_ids)["Snapshots"]
    assert sorted(s["SnapshotId"] for s in found) == sorted(snapshot_ids)


def test_an_encrypted_import_makes_encrypted_snapshots(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    kms = sb.client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/imports", TargetKeyId=key["KeyId"])
    task_id = ec2.import_image(DiskContainers=[disk], Encrypted=True, KmsKeyId="alias/imports")["ImportTaskId"]
    sb.advance(IMPORT_SECONDS)
    snapshot_id = describe(ec2, task_id)["SnapshotDetails"][0]["SnapshotId"]
    (snapshot,) = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert snapshot["Encrypted"] is True and snapshot["KmsKeyId"] == key["Arn"]
