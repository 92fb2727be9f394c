"""The EC2 and S3 calls that finish an imported AMI (wizard.imports.finishing), each safe to repeat.

Throttling and 5xx answers are retried by botocore (wizard.aws.clients.RETRY_CONFIG); what is
left is raised as `AwsError` with AWS's code and message. Every call here can be made
again after a worker died half-way with the same outcome: CopyImage by its ClientToken,
deregistering and deleting by checking first, the rest because EC2 adds what is already there
without a change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from wizard.aws.clients import TargetLike, client
from wizard.aws.errors import AwsError

GONE = {"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidSnapshot.NotFound", "NoSuchKey"}


_raise_from = AwsError.from_client_error


def _call(
    service: str, method: str, region: str | None = None, target: TargetLike | None = None, **params: Any
) -> dict[str, Any]:
    try:
        return getattr(client(service, region=region, target=target), method)(**params)
    except ClientError as exc:
        raise _raise_from(exc) from exc


def describe_image(image_id: str, region: str | None = None, target: TargetLike | None = None) -> dict[str, Any] | None:
    """The AMI, or None when it is not there (deregistered, or never made)."""
    try:
        found = _call("ec2", "describe_images", region, target, ImageIds=[image_id]).get("Images", [])
    except AwsError as exc:
        if exc.code in GONE:
            return None
        raise
    return found[0] if found else None


def find_by_name(name: str, region: str | None = None) -> dict[str, Any] | None:
    """The account's AMI of that name in the region, if there is one (names are unique there)."""
    images = _call("ec2", "describe_images", region, Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]).get(
        "Images", []
    )
    return images[0] if images else None


def snapshot_ids(image: dict[str, Any]) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]


def copy_image(
    *,
    source_image_id: str,
    source_region: str,
    name: str,
    description: str,
    client_token: str,
    region: str | None = None,
    kms_key_id: str = "",
    target: TargetLike | None = None,
) -> str:
    """CopyImage into `region` (default: the application's); the same ClientToken answers the
    same ImageId however often it is asked."""
    params: dict[str, Any] = {
        "SourceImageId": source_image_id,
        "SourceRegion": source_region,
        "Name": name,
        "ClientToken": client_token,
    }
    if description:
        params["Description"] = description
    if kms_key_id:
        params.update(Encrypted=True, KmsKeyId=kms_key_id)
    return _call("ec2", "copy_image", region, target, **params)["ImageId"]


def deregister_with_snapshots(image_id: str, snapshots: Iterable[str], target: TargetLike | None = None) -> list[str]:
    """DeregisterImage (if the AMI is still there), then DeleteSnapshot of each of `snapshots`
    still there; returns what was deleted."""
    if describe_image(image_id, target=target) is not None:
        try:
            _call("ec2", "deregister_image", target=target, ImageId=image_id)
        except AwsError as exc:
            if exc.code not in GONE:
                raise
    deleted = []
    for snapshot_id in snapshots:
        try:
            _call("ec2", "delete_snapshot", target=target, SnapshotId=snapshot_id)
            deleted.append(snapshot_id)
        except AwsError as exc:
            if exc.code not in GONE:
                raise
    return deleted


def create_tags(
    resources: list[str], tags: list[dict[str, str]], region: str | None = None, target: TargetLike | None = None
) -> None:
    _call("ec2", "create_tags", region, target, Resources=resources, Tags=tags)


def require_imdsv2(image_id: str, region: str | None = None, target: TargetLike | None = None) -> None:
    _call("ec2", "modify_image_attribute", region, target, ImageId=image_id, ImdsSupport={"Value": "v2.0"})


def add_launch_permission(
    image_id: str,
    *,
    user_ids: list[str],
    organization_arns: list[str],
    organizational_unit_arns: list[str],
    region: str | None = None,
    target: TargetLike | None = None,
) -> None:
    add = (
        [{"UserId": u} for u in user_ids]
        + [{"OrganizationArn": a} for a in organization_arns]
        + [{"OrganizationalUnitArn": a} for a in organizational_unit_arns]
    )
    _call("ec2", "modify_image_attribute", region, target, ImageId=image_id, LaunchPermission={"Add": add})


def add_create_volume_permission(
    snapshot_id: str, user_ids: list[str], region: str | None = None, target: TargetLike | None = None
) -> None:
    _call(
        "ec2",
        "modify_snapshot_attribute",
        region,
        target,
        SnapshotId=snapshot_id,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=user_ids,
    )


def enable_deprecation(
    image_id: str, when: datetime, region: str | None = None, target: TargetLike | None = None
) -> None:
    _call("ec2", "enable_image_deprecation", region, target, ImageId=image_id, DeprecateAt=when)


def delete_object(bucket: str, key: str, target: TargetLike | None = None) -> None:
    """DeleteObject: deleting what is not there is no error in S3."""
    _call("s3", "delete_object", target=target, Bucket=bucket, Key=key)
