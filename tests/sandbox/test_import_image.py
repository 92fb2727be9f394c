"""ImportImage: the answer's shape, idempotency, and what is refused at once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.helpers import describe, error_of
from wizard.sandbox.testing import SandboxProcess

TASK_ID = re.compile(r"^import-ami-[0-9a-f]{17}$")
LICENSE = "arn:aws:license-manager:us-east-1:123456789012:license-configuration:lic-1"


def test_the_answer_has_the_shape_aws_gives(ec2: Any, disk: dict[str, Any]) -> None:
    answer = ec2.import_image(
        Description="web01",
        DiskContainers=[{**disk, "Description": "root disk", "DeviceName": "/dev/sda1"}],
        Architecture="x86_64",
        Platform="Linux",
        LicenseType="BYOL",
        BootMode="uefi",
        Encrypted=True,
        KmsKeyId="alias/imports",
        LicenseSpecifications=[{"LicenseConfigurationArn": LICENSE}],
        TagSpecifications=[{"ResourceType": "import-image-task", "Tags": [{"Key": "Name", "Value": "web01"}]}],
    )
    answer.pop("ResponseMetadata")
    assert TASK_ID.match(answer.pop("ImportTaskId"))
    assert answer == {
        "Status": "active",
        "StatusMessage": "pending",
        "Progress": "2",
        "Description": "web01",
        "Architecture": "x86_64",
        "Platform": "Linux",
        "LicenseType": "BYOL",
        "Encrypted": True,
        "KmsKeyId": "alias/imports",
        "LicenseSpecifications": [{"LicenseConfigurationArn": LICENSE}],
        "Tags": [{"Key": "Name", "Value": "web01"}],
        "SnapshotDetails": [
            {
                "DiskImageSize": 0.0,
                "Format": "VMDK",
                "UserBucket": disk["UserBucket"],
                "Description": "root disk",
                "DeviceName": "/dev/sda1",
            }
        ],
    }  # no BootMode: ImportImage's answer has no such member; Describe shows it


def test_a_minimal_answer_echoes_only_what_was_given(ec2: Any) -> None:
    answer = ec2.import_image(DiskContainers=[{"Url": "s3://elsewhere/disk.raw"}])
    assert answer["SnapshotDetails"] == [{"DiskImageSize": 0.0, "Url": "s3://elsewhere/disk.raw"}]
    assert answer["Tags"] == []
    assert not {"Architecture", "Platform", "LicenseType", "Description", "ImageId"} & set(answer)


def test_the_same_client_token_and_parameters_give_the_same_task(ec2: Any, disk: dict[str, Any]) -> None:
    first = ec2.import_image(DiskContainers=[disk], ClientToken="request-42")["ImportTaskId"]
    again = ec2.import_image(DiskContainers=[disk], ClientToken="request-42")["ImportTaskId"]
    other = ec2.import_image(DiskContainers=[disk], ClientToken="request-43")["ImportTaskId"]
    assert again == first != other
    assert len(ec2.describe_import_image_tasks()["ImportImageTasks"]) == 2


def test_the_same_client_token_with_other_parameters_is_a_mismatch(ec2: Any, disk: dict[str, Any]) -> None:
    ec2.import_image(DiskContainers=[disk], ClientToken="request-42")
    error = error_of(ec2.import_image, DiskContainers=[disk], ClientToken="request-42", Description="changed")
    assert error["Code"] == "IdempotentParameterMismatch"


def test_a_retry_with_its_token_still_answers_after_the_role_is_gone(ec2: Any, iam: Any, disk: dict[str, Any]) -> None:
    first = ec2.import_image(DiskContainers=[disk], ClientToken="t")["ImportTaskId"]
    iam.delete_role_policy(RoleName="vmimport", PolicyName="vmimport")
    iam.delete_role(RoleName="vmimport")
    assert ec2.import_image(DiskContainers=[disk], ClientToken="t")["ImportTaskId"] == first


def test_dry_run_says_it_would_have_succeeded_and_creates_nothing(ec2: Any, disk: dict[str, Any]) -> None:
    error = error_of(ec2.import_image, 412, DiskContainers=[disk], DryRun=True)  # as EC2 answers it
    assert error["Code"] == "DryRunOperation"
    assert ec2.describe_import_image_tasks()["ImportImageTasks"] == []


def test_arm64_is_refused(ec2: Any, disk: dict[str, Any]) -> None:
    error = error_of(ec2.import_image, DiskContainers=[disk], Architecture="arm64")
    assert error == {"Code": "InvalidParameter", "Message": "architecture=arm64 has an invalid format"}


def test_uefi_preferred_is_refused(ec2: Any, disk: dict[str, Any]) -> None:
    error = error_of(ec2.import_image, DiskContainers=[disk], BootMode="uefi-preferred")
    assert error["Code"] == "InvalidParameter"


@pytest.mark.parametrize(
    "containers",
    [
        [],
        [{"Format": "VMDK"}],
        [{"Format": "VMDK", "UserBucket": {"S3Bucket": "b"}}],
        [{"Url": "s3://b/k", "SnapshotId": "snap-0123456789abcdef0"}],
    ],
    ids=["no disk", "no source", "no key", "two sources"],
)
def test_a_disk_needs_exactly_one_source(ec2: Any, containers: list[dict[str, Any]]) -> None:
    assert error_of(ec2.import_image, DiskContainers=containers)["Code"] == "InvalidParameter"


def test_a_tag_specification_must_be_for_the_task(ec2: Any, disk: dict[str, Any]) -> None:
    specs = [{"ResourceType": "image", "Tags": [{"Key": "a", "Value": "b"}]}]
    assert error_of(ec2.import_image, DiskContainers=[disk], TagSpecifications=specs)["Code"] == "InvalidParameter"


def test_a_role_that_does_not_exist_is_refused(ec2: Any, disk: dict[str, Any]) -> None:
    error = error_of(ec2.import_image, DiskContainers=[disk], RoleName="nosuchrole")
    assert error == {
        "Code": "InvalidParameter",
        "Message": "The service role nosuchrole provided does not exist or does not have sufficient permissions",
    }


def test_without_the_default_role_imports_are_refused(ec2: Any, iam: Any, disk: dict[str, Any]) -> None:
    iam.delete_role_policy(RoleName="vmimport", PolicyName="vmimport")
    iam.delete_role(RoleName="vmimport")
    error = error_of(ec2.import_image, DiskContainers=[disk])
    assert "The service role vmimport provided does not exist" in error["Message"]


def test_a_role_that_does_not_trust_vm_import_is_refused(ec2: Any, iam: Any, disk: dict[str, Any]) -> None:
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    iam.create_role(RoleName="ec2role", AssumeRolePolicyDocument=json.dumps(trust))
    error = error_of(ec2.import_image, DiskContainers=[disk], RoleName="ec2role")
    assert "The service role ec2role provided" in error["Message"]


def test_the_aws_cli_imports_describes_and_cancels(sb: SandboxProcess, disk: dict[str, Any], tmp_path: Path) -> None:
    def aws_json(*args: str) -> dict[str, Any]:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": sb.region,
            "AWS_CONFIG_FILE": str(tmp_path / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        }
        cli = Path(sys.executable).with_name("aws")
        command = [str(cli), "--endpoint-url", sb.endpoint, "--output", "json", "ec2", *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    bucket, key = disk["UserBucket"]["S3Bucket"], disk["UserBucket"]["S3Key"]
    answer = aws_json(
        "import-image",
        "--description",
        "from the cli",
        "--disk-containers",
        f"Format=vmdk,UserBucket={{S3Bucket={bucket},S3Key={key}}}",
    )
    assert TASK_ID.match(answer["ImportTaskId"])
    assert (answer["Status"], answer["StatusMessage"], answer["Progress"]) == ("active", "pending", "2")
    assert answer["Description"] == "from the cli"
    assert answer["SnapshotDetails"] == [
        {"DiskImageSize": 0.0, "Format": "VMDK", "UserBucket": {"S3Bucket": bucket, "S3Key": key}}
    ]
    second = sb.client("ec2").import_image(DiskContainers=[{"Url": f"s3://{bucket}/{key}"}])["ImportTaskId"]

    # The CLI pages through DescribeImportImageTasks by itself: here two pages of one.
    listed = aws_json("describe-import-image-tasks", "--page-size", "1")["ImportImageTasks"]
    assert [t["ImportTaskId"] for t in listed] == [answer["ImportTaskId"], second]

    cancelled = aws_json("cancel-import-task", "--import-task-id", second, "--cancel-reason", "not needed")
    assert cancelled == {"ImportTaskId": second, "PreviousState": "active", "State": "deleting"}

    sb.advance(10)
    tasks = aws_json("describe-import-image-tasks")["ImportImageTasks"]
    assert [(t["Status"], t.get("ImageId", "")[:4]) for t in tasks] == [("completed", "ami-"), ("deleted", "")]


def test_describe_shows_boot_mode(ec2: Any, disk: dict[str, Any]) -> None:
    task_id = ec2.import_image(DiskContainers=[disk], BootMode="legacy-bios")["ImportTaskId"]
    assert describe(ec2, task_id)["BootMode"] == "legacy-bios"
