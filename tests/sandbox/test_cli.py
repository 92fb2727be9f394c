"""Conformance with the AWS CLI: `aws ec2 import-image`, `describe-import-image-tasks`,
`cancel-import-task` against the sandbox, every option, every output parsed as JSON and
checked against the shapes of botocore's ec2 model (the CLI's own documentation).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from tests.sandbox import images
from tests.sandbox.conftest import IMPORT_SECONDS, upload
from wizard.sandbox.testing import SandboxProcess

CLI = Path(sys.executable).with_name("aws")
EC2_MODEL = botocore.session.get_session().get_service_model("ec2")
LICENSE = "arn:aws:license-manager:us-east-1:123456789012:license-configuration:lic-0123456789abcdef"


@dataclass
class Done:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


class Aws:
    """Runs `aws --endpoint-url SANDBOX --output json ec2 ARGS...` with dummy credentials.

    `aws(...)` runs the CLI in this process (awscli's own driver, kept between calls: a
    call takes milliseconds, not a second); `aws.binary(...)` runs `.venv/bin/aws` itself.
    """

    def __init__(self, sb: SandboxProcess, home: Path, driver: Any) -> None:
        self.sb = sb
        self.driver = driver
        self.env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": sb.region,
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        }

    def args(self, *args: str) -> list[str]:
        return ["--endpoint-url", self.sb.endpoint, "--output", "json", "ec2", *args]

    def __call__(self, *args: str) -> Done:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = self.driver.main(self.args(*args))
        return Done(code, out.getvalue(), err.getvalue())

    def binary(self, *args: str, env: Mapping[str, str] | None = None) -> Done:
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            **self.env,
            **(env or {}),
        }
        command = [str(CLI), *self.args(*args)]
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
        return Done(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def cli_driver(tmp_path_factory: pytest.TempPathFactory, sandbox_server: SandboxProcess) -> Iterator[Any]:
    """awscli's driver, with this process's AWS_* environment as `Aws.env` while the module runs
    (the CLI reads it at every call)."""
    from awscli.clidriver import create_clidriver

    home = tmp_path_factory.mktemp("aws-cli")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_") and n != "AWS_DATA_PATH"]:
            patch.delenv(name)  # AWS_DATA_PATH is awscli's own, set when it is imported
        for name, value in Aws(sandbox_server, home, None).env.items():
            patch.setenv(name, value)
        driver = create_clidriver()
        driver.home = home
        yield driver


@pytest.fixture
def aws(sb: SandboxProcess, cli_driver: Any) -> Aws:
    return Aws(sb, cli_driver.home, cli_driver)


def conforms(value: Any, shape: Any, path: str = "$") -> None:
    """Assert that `value` (CLI JSON output) has the type and members `shape` documents."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), f"{path}: not an object"
        unknown = set(value) - set(shape.members)
        assert not unknown, f"{path}: undocumented members {sorted(unknown)}"
        for name, member in value.items():
            conforms(member, shape.members[name], f"{path}.{name}")
    elif kind == "list":
        assert isinstance(value, list), f"{path}: not a list"
        for n, item in enumerate(value):
            conforms(item, shape.member, f"{path}[{n}]")
    elif kind == "string":
        assert isinstance(value, str), f"{path}: not a string"
        if shape.enum:
            assert value in shape.enum, f"{path}: {value!r} not one of {shape.enum}"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{path}: not a boolean"
    elif kind in ("double", "float"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: not a number"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: not an integer"
    else:
        raise AssertionError(f"{path}: unexpected shape type {kind}")


def output_of(operation: str, answer: dict[str, Any]) -> dict[str, Any]:
    conforms(answer, EC2_MODEL.operation_model(operation).output_shape)
    return answer


def error_code(done: Done) -> str:
    """The AWS error code in the CLI's message: "An error occurred (Code) when calling ..."."""
    assert done.code == 255, (done.code, done.out, done.err)
    return done.err.split("An error occurred (", 1)[1].split(")", 1)[0]


@pytest.fixture
def images_in_s3(sb: SandboxProcess, s3: Any) -> dict[str, dict[str, Any]]:
    """Two good disks: a stream-optimized VMDK (as a UserBucket) and a fixed VHD (as an s3:// Url)."""
    vmdk = upload(sb, s3, "uploads/root.vmdk", images.vmdk_stream(images.raw_disk(2**20, seed=5)), "VMDK")
    vhd = upload(sb, s3, "uploads/data.vhd", images.vhd_fixed(images.raw_disk(2**20)), "VHD")
    return {"vmdk": vmdk, "vhd": {"Format": "VHD", "Url": f"s3://{sb.bucket}/uploads/data.vhd"}, "vhd_obj": vhd}


def test_import_image_with_every_option(sb: SandboxProcess, aws: Aws, images_in_s3: dict[str, Any]) -> None:
    key = sb.client("kms").create_key()["KeyMetadata"]
    bucket, vmdk_key = images_in_s3["vmdk"]["UserBucket"]["S3Bucket"], images_in_s3["vmdk"]["UserBucket"]["S3Key"]
    answer = output_of(
        "ImportImage",
        aws.binary(
            "import-image",
            "--architecture",
            "x86_64",
            "--client-data",
            "Comment=from the cli,UploadStart=2026-01-01T10:00:00Z,UploadEnd=2026-01-01T10:05:00Z,UploadSize=2.5",
            "--client-token",
            "cli-every-option",
            "--description",
            "web01 from the cli",
            "--disk-containers",
            f"Description=root disk,DeviceName=/dev/sda1,Format=vmdk,UserBucket={{S3Bucket={bucket},S3Key={vmdk_key}}}",
            f"Description=data disk,Format=VHD,Url={images_in_s3['vhd']['Url']}",
            "--no-dry-run",
            "--encrypted",
            "--hypervisor",
            "xen",
            "--kms-key-id",
            key["Arn"],
            "--license-type",
            "BYOL",
            "--platform",
            "Linux",
            "--role-name",
            "vmimport",
            "--license-specifications",
            f"LicenseConfigurationArn={LICENSE}",
            "--tag-specifications",
            "ResourceType=import-image-task,Tags=[{Key=Name,Value=web01},{Key=team,Value=ops}]",
            "--boot-mode",
            "uefi",
        ).json(),
    )
    task_id = answer.pop("ImportTaskId")
    assert task_id.startswith("import-ami-")
    assert answer == {
        "Architecture": "x86_64",
        "Description": "web01 from the cli",
        "Encrypted": True,
        "Hypervisor": "xen",
        "KmsKeyId": key["Arn"],
        "LicenseType": "BYOL",
        "Platform": "Linux",
        "Progress": "2",
        "SnapshotDetails": [
            {
                "Description": "root disk",
                "DeviceName": "/dev/sda1",
                "DiskImageSize": 0.0,
                "Format": "VMDK",
                "UserBucket": {"S3Bucket": bucket, "S3Key": vmdk_key},
            },
            {"Description": "data disk", "DiskImageSize": 0.0, "Format": "VHD", "Url": images_in_s3["vhd"]["Url"]},
        ],
        "Status": "active",
        "StatusMessage": "pending",
        "LicenseSpecifications": [{"LicenseConfigurationArn": LICENSE}],
        "Tags": [{"Key": "Name", "Value": "web01"}, {"Key": "team", "Value": "ops"}],
    }  # no BootMode, no UsageOperation: ImportImage's output has no BootMode; none was given

    sb.advance(IMPORT_SECONDS)
    (task,) = output_of(
        "DescribeImportImageTasks", aws("describe-import-image-tasks", "--import-task-ids", task_id).json()
    )["ImportImageTasks"]
    assert task["Status"] == "completed" and task["ImageId"].startswith("ami-")
    assert task["BootMode"] == "uefi" and task["Hypervisor"] == "xen"
    assert [d["DeviceName"] for d in task["SnapshotDetails"]] == ["/dev/sda1", "/dev/sdb"]
    assert [d["DiskImageSize"] for d in task["SnapshotDetails"]] == [
        sb.client("s3").head_object(Bucket=bucket, Key=k)["ContentLength"] for k in (vmdk_key, "uploads/data.vhd")
    ]

    # The same request with the same token (ClientData and all) is the same task.
    again = aws(
        "import-image",
        "--cli-input-json",
        json.dumps(
            {
                "Architecture": "x86_64",
                "ClientData": {
                    "Comment": "from the cli",
                    "UploadStart": "2026-01-01T10:00:00Z",
                    "UploadEnd": "2026-01-01T10:05:00Z",
                    "UploadSize": 2.5,
                },
                "ClientToken": "cli-every-option",
                "Description": "web01 from the cli",
                "DiskContainers": [
                    {
                        "Description": "root disk",
                        "DeviceName": "/dev/sda1",
                        "Format": "vmdk",
                        "UserBucket": {"S3Bucket": bucket, "S3Key": vmdk_key},
                    },
                    {"Description": "data disk", "Format": "VHD", "Url": images_in_s3["vhd"]["Url"]},
                ],
                "DryRun": False,
                "Encrypted": True,
                "Hypervisor": "xen",
                "KmsKeyId": key["Arn"],
                "LicenseType": "BYOL",
                "Platform": "Linux",
                "RoleName": "vmimport",
                "LicenseSpecifications": [{"LicenseConfigurationArn": LICENSE}],
                "TagSpecifications": [
                    {
                        "ResourceType": "import-image-task",
                        "Tags": [{"Key": "Name", "Value": "web01"}, {"Key": "team", "Value": "ops"}],
                    }
                ],
                "BootMode": "uefi",
            }
        ),
    ).json()
    assert output_of("ImportImage", again)["ImportTaskId"] == task_id
    assert again["Status"] == "completed"


def test_import_image_with_a_usage_operation(sb: SandboxProcess, aws: Aws, images_in_s3: dict[str, Any]) -> None:
    answer = output_of(
        "ImportImage",
        aws(
            "import-image",
            "--disk-containers",
            json.dumps([images_in_s3["vmdk"]]),
            "--platform",
            "Windows",
            "--usage-operation",
            "RunInstances:0002",
            "--no-encrypted",
            "--boot-mode",
            "legacy-bios",
            "--architecture",
            "i386",
        ).json(),
    )
    assert (answer["UsageOperation"], answer["Platform"], answer["Architecture"]) == (
        "RunInstances:0002",
        "Windows",
        "i386",
    )
    assert answer["Encrypted"] is False and "LicenseType" not in answer
    sb.advance(IMPORT_SECONDS)
    (task,) = aws("describe-import-image-tasks", "--import-task-ids", answer["ImportTaskId"]).json()["ImportImageTasks"]
    assert task["Status"] == "completed" and "LicenseType" not in task  # a usage operation instead


def test_client_tokens(aws: Aws, images_in_s3: dict[str, Any]) -> None:
    containers = json.dumps([images_in_s3["vmdk"]])
    first = aws("import-image", "--client-token", "t-1", "--disk-containers", containers).json()["ImportTaskId"]
    assert aws("import-image", "--client-token", "t-1", "--disk-containers", containers).json()["ImportTaskId"] == first
    other = aws("import-image", "--client-token", "t-2", "--disk-containers", containers).json()["ImportTaskId"]
    assert other != first
    mismatch = aws("import-image", "--client-token", "t-1", "--disk-containers", containers, "--description", "changed")
    assert error_code(mismatch) == "IdempotentParameterMismatch"
    listed = aws("describe-import-image-tasks").json()["ImportImageTasks"]
    assert [t["ImportTaskId"] for t in listed] == [first, other]


def test_dry_run_of_every_command(aws: Aws, images_in_s3: dict[str, Any]) -> None:
    containers = json.dumps([images_in_s3["vmdk"]])
    task_id = aws("import-image", "--disk-containers", containers).json()["ImportTaskId"]
    for done in (
        aws("import-image", "--dry-run", "--disk-containers", containers),
        aws("describe-import-image-tasks", "--dry-run"),
        aws("cancel-import-task", "--dry-run", "--import-task-id", task_id),
    ):
        assert error_code(done) == "DryRunOperation"
        assert "Request would have succeeded, but DryRun flag is set." in done.err
    (task,) = aws("describe-import-image-tasks").json()["ImportImageTasks"]
    assert (task["ImportTaskId"], task["Status"]) == (task_id, "active")  # nothing made, nothing cancelled


def test_describe_by_ids_and_filters(sb: SandboxProcess, aws: Aws, ec2: Any, images_in_s3: dict[str, Any]) -> None:
    disk = images_in_s3["vmdk"]
    tagged = [{"ResourceType": "import-image-task", "Tags": [{"Key": "Name", "Value": "web01"}]}]
    done = ec2.import_image(DiskContainers=[disk], TagSpecifications=tagged)["ImportTaskId"]
    sb.advance(IMPORT_SECONDS)
    running = ec2.import_image(DiskContainers=[disk], TagSpecifications=tagged)["ImportTaskId"]
    other = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]

    def ids(*args: str) -> list[str]:
        answer = output_of("DescribeImportImageTasks", aws("describe-import-image-tasks", *args).json())
        return [t["ImportTaskId"] for t in answer["ImportImageTasks"]]

    assert ids("--import-task-ids", other, done) == [other, done]
    assert ids("--filters", "Name=task-state,Values=active") == [running, other]
    assert ids("--filters", "Name=task-state,Values=completed,deleted") == [done]
    assert ids("--filters", "Name=tag:Name,Values=web01", "Name=task-state,Values=active") == [running]
    unknown = aws("describe-import-image-tasks", "--import-task-ids", "import-ami-00000000000000000")
    assert error_code(unknown) == "InvalidConversionTaskId.Malformed"
    assert (
        error_code(aws("describe-import-image-tasks", "--filters", "Name=colour,Values=red")) == "InvalidParameterValue"
    )


def test_describe_pages(aws: Aws, ec2: Any, images_in_s3: dict[str, Any]) -> None:
    all_ids = [ec2.import_image(DiskContainers=[images_in_s3["vmdk"]])["ImportTaskId"] for _ in range(5)]

    def ids(answer: dict[str, Any]) -> list[str]:
        return [t["ImportTaskId"] for t in answer["ImportImageTasks"]]

    # --max-items: the CLI stops after that many and hands out its own NextToken.
    first = aws("describe-import-image-tasks", "--max-items", "2").json()
    assert ids(first) == all_ids[:2] and first["NextToken"]
    second = aws("describe-import-image-tasks", "--max-items", "2", "--starting-token", first["NextToken"]).json()
    assert ids(second) == all_ids[2:4]
    last = aws("describe-import-image-tasks", "--max-items", "2", "--starting-token", second["NextToken"]).json()
    assert ids(last) == all_ids[4:] and "NextToken" not in last
    # --page-size: smaller calls (MaxResults), the CLI joins them.
    assert ids(aws("describe-import-image-tasks", "--page-size", "2").json()) == all_ids
    # --no-paginate: one call; MaxResults and NextToken are the service's own.
    page = output_of(
        "DescribeImportImageTasks", aws("describe-import-image-tasks", "--no-paginate", "--max-results", "3").json()
    )
    assert ids(page) == all_ids[:3]
    rest = aws("describe-import-image-tasks", "--no-paginate", "--next-token", page["NextToken"]).json()
    assert ids(rest) == all_ids[3:] and "NextToken" not in rest


def test_cancel_import_task(sb: SandboxProcess, aws: Aws, ec2: Any, images_in_s3: dict[str, Any]) -> None:
    task_id = ec2.import_image(DiskContainers=[images_in_s3["vmdk"]])["ImportTaskId"]
    answer = output_of(
        "CancelImportTask",
        aws("cancel-import-task", "--import-task-id", task_id, "--cancel-reason", "wrong disk").json(),
    )
    assert answer == {"ImportTaskId": task_id, "PreviousState": "active", "State": "deleting"}
    sb.advance(IMPORT_SECONDS)
    (task,) = aws("describe-import-image-tasks", "--import-task-ids", task_id).json()["ImportImageTasks"]
    assert (task["Status"], task["StatusMessage"]) == ("deleted", "ClientError: Import task cancelled: wrong disk")
    assert error_code(aws("cancel-import-task", "--import-task-id", task_id)) == "IncorrectState"


def test_a_throttled_call_is_retried_by_the_cli_until_it_succeeds(
    sb: SandboxProcess, aws: Aws, images_in_s3: dict[str, Any]
) -> None:
    sb.faults(throttle={"count": 2, "actions": ["ImportImage"]})
    done = aws.binary("--debug", "import-image", "--disk-containers", json.dumps([images_in_s3["vmdk"]]))
    assert done.code == 0, done.err
    answer = output_of("ImportImage", json.loads(done.out))
    assert answer["Status"] == "active"
    assert done.err.count("Retry needed") == 2  # botocore's retry handler, at debug level
    assert sb.fault_status()["throttle"]["injected"] == 2
    assert len(aws("describe-import-image-tasks").json()["ImportImageTasks"]) == 1  # and one task


def test_a_call_throttled_past_the_retries_fails(sb: SandboxProcess, aws: Aws) -> None:
    sb.faults(throttle={"actions": ["DescribeImportImageTasks"]})
    done = aws.binary("describe-import-image-tasks", env={"AWS_MAX_ATTEMPTS": "2"})
    assert error_code(done) == "RequestLimitExceeded"
    assert "reached max retries: 1" in done.err and "Request limit exceeded." in done.err


def test_refusals_are_aws_errors(aws: Aws, images_in_s3: dict[str, Any]) -> None:
    containers = json.dumps([images_in_s3["vmdk"]])
    arm = aws("import-image", "--architecture", "arm64", "--disk-containers", containers)
    assert error_code(arm) == "InvalidParameter" and "architecture=arm64 has an invalid format" in arm.err
    role = aws("import-image", "--role-name", "nosuchrole", "--disk-containers", containers)
    assert error_code(role) == "InvalidParameter" and "The service role nosuchrole" in role.err
