"""What an import task makes in moto: the disks' sizes, the EBS snapshots and the AMI.

The task store (`wizard.sandbox.taskstore`) calls these when a task is first
seen at or past the stage that brings them: disk sizes are read from moto's S3
at "validated" (DiskImageSize is in bytes, as AWS reports it despite the API
reference saying GiB), EBS snapshots are created in moto's EC2 at "preparing
ami" (encrypted if the request says Encrypted, with its KmsKeyId named by ARN
if it gives one), and the AMI is registered at "completed". A task that fails
or is cancelled has its snapshots deleted and no AMI.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami
from moto.ec2.utils import random_ami_id

from wizard.sandbox import imagecheck

if TYPE_CHECKING:
    from wizard.sandbox.taskstore import ImportTask

GIB = 2**30
# Size of a snapshot whose source size the sandbox cannot see (a Url or SnapshotId source).
UNKNOWN_DISK_GIB = 8


def disk_size(task: ImportTask, disk: dict[str, Any]) -> float | None:
    """The size in bytes of the disk's S3 object (UserBucket or s3:// Url), if it is in moto's S3."""
    location = imagecheck.s3_location(disk)
    if location is None:
        return None
    reader = imagecheck.open_object(task.account, task.region, *location)
    return float(reader.size) if reader is not None else None


def create_snapshots(task: ImportTask) -> list[str]:
    """One EBS snapshot per disk, sized like the disk, as VM Import makes them."""
    backend = ec2_backends[task.account][task.region]
    encrypted = bool(task.params.get("Encrypted"))
    key_id = task.params.get("KmsKeyId") if encrypted else None
    if key_id:  # snapshots name their key by ARN, however the request named it
        key = imagecheck.kms_key(task.account, task.region, key_id)
        key_id = key.arn if key is not None else key_id
    ids = []
    for size in task.disk_sizes or [None] * len(task.disks):
        volume = backend.create_volume(
            size=max(1, math.ceil(size / GIB)) if size else UNKNOWN_DISK_GIB,
            zone_name=f"{task.region}a",
            encrypted=encrypted,
            kms_key_id=key_id,
        )
        snapshot = backend.create_snapshot(volume.id, f"Created by AWS-VMImport service for {task.task_id}")
        snapshot.kms_key_id = volume.kms_key_id  # moto's create_snapshot drops it
        backend.delete_volume(volume.id)
        ids.append(snapshot.id)
    return ids


def delete_snapshots(task: ImportTask) -> None:
    """Delete the snapshots an import made (it was cancelled or failed)."""
    backend = ec2_backends[task.account][task.region]
    for snapshot_id in task.snapshot_ids:
        backend.delete_snapshot(snapshot_id)
    task.snapshot_ids = []


def register_image(task: ImportTask) -> str:
    """Register the AMI of a completed task, its root device on the first snapshot."""
    backend = ec2_backends[task.account][task.region]
    params = task.params
    ami = Ami(
        backend,
        random_ami_id(),
        name=task.task_id,
        description=params.get("Description"),
        architecture=params.get("Architecture") or "x86_64",
        platform="windows" if params.get("Platform") == "Windows" else None,
        virtualization_type="hvm",
        hypervisor="xen",
        root_device_type="ebs",
        boot_mode=params.get("BootMode") or "legacy-bios",
        region_name=f"{task.region}a",
    )
    # moto's Ami makes its own 15 GiB snapshot; the import's root snapshot replaces it.
    backend.delete_snapshot(ami.ebs_snapshot.id)
    ami.ebs_snapshot = backend.get_snapshot(task.snapshot_ids[0])
    ami.ebs_snapshot.from_ami = ami.id
    backend.amis[ami.id] = ami
    return ami.id
