"""The EC2 image calls the finishing makes, over HTTP: what moto does, and what the sandbox adds
(CopyImage's ClientToken, encryption and pending state, ImdsSupport, EnableImageDeprecation),
with its call faults applying to them."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from tests.sandbox.conftest import IMPORT_SECONDS
from tests.sandbox.helpers import describe, error_of
from wizard.sandbox.testing import SandboxProcess

OTHER_ACCOUNT = "222233334444"


def imported_ami(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> str:
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sb.advance(IMPORT_SECONDS + 1)
    task = describe(ec2, task_id)
    assert task["Status"] == "completed"
    return task["ImageId"]


def image(ec2: Any, ami: str) -> dict[str, Any]:
    (found,) = ec2.describe_images(ImageIds=[ami])["Images"]
    return found


def test_copy_image_is_idempotent_by_client_token_and_pending_until_its_time(
    sb: SandboxProcess, ec2: Any, disk: dict[str, Any]
) -> None:
    source = imported_ami(sb, ec2, disk)
    first = ec2.copy_image(SourceImageId=source, SourceRegion=sb.region, Name="web-01", ClientToken="tok-1")
    again = ec2.copy_image(SourceImageId=source, SourceRegion=sb.region, Name="web-01", ClientToken="tok-1")
    assert again["ImageId"] == first["ImageId"]
    named = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["web-01"]}])["Images"]
    assert [i["ImageId"] for i in named] == [first["ImageId"]]
    assert image(ec2, first["ImageId"])["State"] == "pending"
    sb.advance(IMPORT_SECONDS)
    assert image(ec2, first["ImageId"])["State"] == "available"
    # Another parameter under the same token, and a name already used, are refused as EC2 does.
    mismatch = error_of(
        ec2.copy_image, SourceImageId=source, SourceRegion=sb.region, Name="web-02", ClientToken="tok-1"
    )
    assert mismatch["Code"] == "IdempotentParameterMismatch"
    duplicate = error_of(ec2.copy_image, SourceImageId=source, SourceRegion=sb.region, Name="web-01")
    assert duplicate["Code"] == "InvalidAMIName.Duplicate"


def test_copy_to_another_region_is_encrypted_with_the_key_asked(
    sb: SandboxProcess, ec2: Any, disk: dict[str, Any]
) -> None:
    source = imported_ami(sb, ec2, disk)
    west = sb.client("ec2", region_name="eu-west-1")
    copy = west.copy_image(
        SourceImageId=source, SourceRegion=sb.region, Name="web-01", Encrypted=True, KmsKeyId="alias/west"
    )
    sb.advance(IMPORT_SECONDS)
    found = image(west, copy["ImageId"])
    assert found["State"] == "available"
    snapshot_id = found["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    (snapshot,) = west.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert snapshot["Encrypted"] is True and snapshot["KmsKeyId"] == "alias/west"
    assert not ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["web-01"]}])["Images"]


def test_imds_support_deprecation_tags_and_shares(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    ami = imported_ami(sb, ec2, disk)
    ec2.modify_image_attribute(ImageId=ami, ImdsSupport={"Value": "v2.0"})
    assert error_of(ec2.modify_image_attribute, ImageId=ami, ImdsSupport={"Value": "v1.0"})["Code"] == (
        "InvalidParameterValue"
    )
    ec2.enable_image_deprecation(ImageId=ami, DeprecateAt="2030-01-02T03:04:59Z")
    ec2.create_tags(Resources=[ami], Tags=[{"Key": "team", "Value": "web"}])
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": OTHER_ACCOUNT}]})
    snapshot_id = image(ec2, ami)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    ec2.modify_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission", OperationType="add", UserIds=[OTHER_ACCOUNT]
    )
    found = image(ec2, ami)
    assert found["ImdsSupport"] == "v2.0"
    assert found["DeprecationTime"] == "2030-01-02T03:04:00.000Z"
    assert found["Tags"] == [{"Key": "team", "Value": "web"}]
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="imdsSupport")["ImdsSupport"] == {"Value": "v2.0"}
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"] == [
        {"UserId": OTHER_ACCOUNT}
    ]
    volume = ec2.describe_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission")
    assert volume["CreateVolumePermissions"] == [{"UserId": OTHER_ACCOUNT}]
    ec2.deregister_image(ImageId=ami)
    ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert not ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])[
        "Snapshots"
    ]


def test_faults_apply_to_the_new_calls(sb: SandboxProcess, disk: dict[str, Any]) -> None:
    ec2 = sb.client("ec2", config=Config(retries={"max_attempts": 1}))
    ami = imported_ami(sb, ec2, disk)
    sb.faults(throttle={"every": 1, "actions": ["EnableImageDeprecation", "CopyImage"]})
    assert error_of(ec2.enable_image_deprecation, 503, ImageId=ami, DeprecateAt="2030-01-01T00:00:00Z")["Code"] == (
        "RequestLimitExceeded"
    )
    assert error_of(ec2.copy_image, 503, SourceImageId=ami, SourceRegion=sb.region, Name="x-1")["Code"] == (
        "RequestLimitExceeded"
    )
    sb.clear_faults()
    ec2.enable_image_deprecation(ImageId=ami, DeprecateAt="2030-01-01T00:00:00Z")


def test_assume_role_reaches_another_account(sb: SandboxProcess) -> None:
    sts = sb.client("sts")
    answer = sts.assume_role(
        RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/importer", RoleSessionName="wizard", ExternalId="ext-1"
    )
    creds = answer["Credentials"]
    other = boto3.client(
        "sts",
        endpoint_url=sb.endpoint,
        region_name=sb.region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    assert other.get_caller_identity()["Account"] == OTHER_ACCOUNT
