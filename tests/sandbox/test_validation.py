"""Failures AWS finds after the call was accepted: the disk images, their objects, the role, the KMS key.

Each import is accepted (the call succeeds), then the task shows the stage it
fails at and ends with Status "deleted" and a "ClientError: ..." message.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.sandbox import images
from tests.sandbox.conftest import IMPORT_SECONDS, upload
from tests.sandbox.helpers import describe
from wizard.sandbox import imagecheck
from wizard.sandbox.testing import SandboxProcess

NO_ACCESS = "ClientError: Disk validation failed [We do not have access to the given resource. Reason 403 Forbidden]"
WRONG_FORMAT = "ClientError: Disk validation failed [Unsupported specified file format]"
BAD_VMDK = "ClientError: Disk validation failed [Unsupported VMDK File Format]"
NO_PARTITIONS = "ClientError: No valid partitions. Not a valid volume."
RAW = images.raw_disk(2**20)
KIB64 = 64 * 1024


def run(sb: SandboxProcess, ec2: Any, disks: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    """Import, check the call was accepted, run the clock to the end; the task's last view."""
    answer = ec2.import_image(DiskContainers=disks, **params)
    assert (answer["Status"], answer["StatusMessage"]) == ("active", "pending")
    sb.advance(IMPORT_SECONDS)
    return describe(ec2, answer["ImportTaskId"])


def inspect_tag(value: str) -> list[dict[str, Any]]:
    return [{"ResourceType": "import-image-task", "Tags": [{"Key": "sandbox:inspect", "Value": value}]}]


def outcome(task: dict[str, Any]) -> tuple[str, str | None]:
    return task["Status"], task.get("StatusMessage")


@pytest.mark.parametrize(
    "name, body, disk_format",
    [
        ("raw-mbr.img", RAW, "RAW"),
        ("raw-gpt.img", images.raw_disk(2**20, "gpt"), "raw"),
        ("fixed.vhd", images.vhd_fixed(RAW), "VHD"),
        ("stream.vmdk", images.vmdk_stream(images.raw_disk(2**20, seed=3)), "VMDK"),
        ("web01.ova", images.ova(images.raw_disk(2**20, seed=4)), "OVA"),
    ],
)
def test_good_images_import(sb: SandboxProcess, ec2: Any, s3: Any, name: str, body: bytes, disk_format: str) -> None:
    task = run(sb, ec2, [upload(sb, s3, f"uploads/{name}", body, disk_format)], TagSpecifications=inspect_tag("on"))
    assert outcome(task) == ("completed", None)


@pytest.mark.parametrize(
    "name, body, disk_format, stage, message",
    [
        ("raw-as-vhd.vhd", RAW, "VHD", "validating", WRONG_FORMAT),
        ("vmdk-as-raw.img", images.vmdk_stream(RAW), "RAW", "validating", WRONG_FORMAT),
        ("vhd-as-vmdk.vmdk", images.vhd_fixed(RAW), "VMDK", "validating", WRONG_FORMAT),
        ("sparse.vmdk", images.vmdk_sparse(RAW), "VMDK", "validating", BAD_VMDK),
        ("sparse-in.ova", images.ova(RAW, disk=images.vmdk_sparse(RAW)), "OVA", "validating", BAD_VMDK),
        ("zeros.img", images.raw_disk(2**20, None), "RAW", "converting", NO_PARTITIONS),
        ("zeros.vhd", images.vhd_fixed(images.raw_disk(2**20, None)), "VHD", "converting", NO_PARTITIONS),
    ],
)
def test_bad_images_fail_after_the_stage(
    sb: SandboxProcess, ec2: Any, s3: Any, name: str, body: bytes, disk_format: str, stage: str, message: str
) -> None:
    assert len(body) >= KIB64  # inspected without a tag
    task_id = ec2.import_image(DiskContainers=[upload(sb, s3, f"uploads/{name}", body, disk_format)])["ImportTaskId"]
    sb.advance(IMPORT_SECONDS * (0.05 if stage == "validating" else 0.15))
    assert outcome(describe(ec2, task_id)) == ("active", stage)  # the stage shows first
    sb.advance(IMPORT_SECONDS)
    task = describe(ec2, task_id)
    assert outcome(task) == ("deleted", message)
    assert "ImageId" not in task and "Progress" not in task


def test_a_missing_object_or_bucket_is_403(sb: SandboxProcess, ec2: Any) -> None:
    for bucket, key in ((sb.bucket, "uploads/never-uploaded.vmdk"), ("no-such-bucket", "disk.vmdk")):
        disk = {"Format": "VMDK", "UserBucket": {"S3Bucket": bucket, "S3Key": key}}
        assert outcome(run(sb, ec2, [disk])) == ("deleted", NO_ACCESS)
    assert outcome(run(sb, ec2, [{"Format": "VMDK", "Url": f"s3://{sb.bucket}/uploads/gone.vmdk"}])) == (
        "deleted",
        NO_ACCESS,
    )


def test_an_object_the_role_may_not_read_is_403(sb: SandboxProcess, ec2: Any, s3: Any) -> None:
    s3.create_bucket(Bucket="other-team-images")
    s3.put_object(Bucket="other-team-images", Key="disk.vmdk", Body=b"KDMV")
    disk = {"Format": "VMDK", "UserBucket": {"S3Bucket": "other-team-images", "S3Key": "disk.vmdk"}}
    assert outcome(run(sb, ec2, [disk])) == ("deleted", NO_ACCESS)  # vmimport may read only the upload bucket


def test_a_role_gone_since_the_call_fails_the_task(
    sb: SandboxProcess, ec2: Any, iam: Any, disk: dict[str, Any]
) -> None:
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    iam.delete_role_policy(RoleName="vmimport", PolicyName="vmimport")
    iam.delete_role(RoleName="vmimport")
    sb.advance(IMPORT_SECONDS)
    assert outcome(describe(ec2, task_id)) == (
        "deleted",
        "ClientError: The service role vmimport provided does not exist or does not have sufficient permissions",
    )


def test_the_first_failing_disk_decides(sb: SandboxProcess, ec2: Any, s3: Any, disk: dict[str, Any]) -> None:
    zeros = upload(sb, s3, "uploads/zeros.img", images.raw_disk(2**20, None), "RAW")  # fails at converting
    sparse = upload(sb, s3, "uploads/sparse.vmdk", images.vmdk_sparse(RAW), "VMDK")  # fails at validating
    assert outcome(run(sb, ec2, [disk, zeros, sparse])) == ("deleted", BAD_VMDK)


# --- leniency for small dummy files -----------------------------------------------------------


def test_small_objects_are_not_inspected(sb: SandboxProcess, ec2: Any, s3: Any) -> None:
    """The dummy files tests elsewhere upload import as before."""
    dummies = [
        ("uploads/kdmv.vmdk", b"KDMV" + bytes(4092), "VMDK"),
        ("uploads/stack.vmdk", b"KDMV" + bytes(8188), "VMDK"),
        ("uploads/views.vhd", b"x" * 1024, "VHD"),
        ("uploads/just-under.vhd", bytes(KIB64 - 1), "VHD"),
    ]
    for key, body, disk_format in dummies:
        assert outcome(run(sb, ec2, [upload(sb, s3, key, body, disk_format)])) == ("completed", None), key


def test_from_64_kib_objects_are_inspected(sb: SandboxProcess, ec2: Any, s3: Any) -> None:
    disk = upload(sb, s3, "uploads/web01.vhd", bytes(KIB64), "VHD")  # zeros named .vhd
    assert outcome(run(sb, ec2, [disk])) == ("deleted", WRONG_FORMAT)


def test_a_descriptor_only_vmdk(sb: SandboxProcess, ec2: Any, s3: Any) -> None:
    disk = upload(sb, s3, "uploads/descriptor.vmdk", images.vmdk_descriptor_only(), "VMDK")
    assert outcome(run(sb, ec2, [disk], TagSpecifications=inspect_tag("on"))) == ("deleted", BAD_VMDK)


def test_the_sandbox_inspect_tag(sb: SandboxProcess, ec2: Any, s3: Any) -> None:
    small = upload(sb, s3, "uploads/kdmv.vmdk", b"KDMV" + bytes(4092), "VMDK")
    assert outcome(run(sb, ec2, [small], TagSpecifications=inspect_tag("on"))) == ("deleted", BAD_VMDK)
    big = upload(sb, s3, "uploads/zeros.vhd", bytes(2**20), "VHD")
    missing = {"Format": "VMDK", "UserBucket": {"S3Bucket": sb.bucket, "S3Key": "uploads/missing.vmdk"}}
    assert outcome(run(sb, ec2, [big, missing], TagSpecifications=inspect_tag("off"))) == ("completed", None)


# --- the KMS key ------------------------------------------------------------------------------


def test_kms_key_problems_fail_the_task(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    kms = sb.client("kms")
    disabled = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=disabled["KeyId"])
    signing = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]
    elsewhere = sb.client("kms", region_name="eu-west-1").create_key()["KeyMetadata"]
    for key_id, complaint in [
        ("alias/nothing-here", "alias/nothing-here does not exist in us-east-1"),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", "does not exist"),
        (elsewhere["Arn"], "does not exist in us-east-1"),
        (disabled["KeyId"], f"{disabled['KeyId']} is disabled"),
        (signing["Arn"], "is not a symmetric encryption key"),
    ]:
        task = run(sb, ec2, [disk], Encrypted=True, KmsKeyId=key_id)  # accepted: the key is checked later
        assert task["Status"] == "deleted", key_id
        assert task["StatusMessage"].startswith("ClientError: The specified KMS key")
        assert complaint in task["StatusMessage"]


@pytest.mark.parametrize("form", ["KeyId", "Arn", "alias", "alias ARN"])
def test_every_form_of_a_good_kms_key_imports(sb: SandboxProcess, ec2: Any, disk: dict[str, Any], form: str) -> None:
    kms = sb.client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/imports", TargetKeyId=key["KeyId"])
    key_id = {
        "KeyId": key["KeyId"],
        "Arn": key["Arn"],
        "alias": "alias/imports",
        "alias ARN": key["Arn"].split(":key/")[0] + ":alias/imports",
    }[form]
    task = run(sb, ec2, [disk], Encrypted=True, KmsKeyId=key_id)
    assert outcome(task) == ("completed", None)
    assert task["KmsKeyId"] == key_id  # as given
    snapshot = ec2.describe_snapshots(SnapshotIds=[task["SnapshotDetails"][0]["SnapshotId"]])["Snapshots"][0]
    assert snapshot["KmsKeyId"] == key["Arn"]


# --- the reader and the detector, in process --------------------------------------------------


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


def test_the_s3_reader_reads_only_the_ranges_asked() -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bucket-b")
        body = images.raw_disk(4 * 2**20, seed=9)
        s3.put_object(Bucket="bucket-b", Key="k", Body=body)
        reader = imagecheck.open_object("123456789012", "us-east-1", "bucket-b", "k")
        assert reader is not None and reader.size == len(body)
        assert reader.read(1000, 24) == body[1000:1024]
        assert reader.read(len(body) - 4, 100) == body[-4:]
        assert reader.read(len(body), 10) == b""
        assert reader.reads == [(1000, 24), (len(body) - 4, 4)]
        assert imagecheck.open_object("123456789012", "us-east-1", "bucket-b", "nope") is None
        assert imagecheck.open_object("123456789012", "us-east-1", "no-such-bucket", "k") is None


@pytest.mark.parametrize(
    "body, declared, failure",
    [
        (RAW, "RAW", None),
        (RAW, "VHD", ("validating", WRONG_FORMAT)),
        (images.vmdk_sparse(RAW), "VMDK", ("validating", BAD_VMDK)),
        (images.vmdk_descriptor_only(), "VMDK", ("validating", BAD_VMDK)),
        (images.raw_disk(2**20, None), "RAW", ("converting", NO_PARTITIONS)),
        (images.vmdk_stream(RAW), "VMDK", None),
        (images.vmdk_stream(RAW), None, None),  # no Format given: nothing to mismatch
    ],
)
def test_the_content_is_judged_by_the_inspector(
    body: bytes, declared: str | None, failure: tuple[str, str] | None
) -> None:
    assert imagecheck.content_failure(BytesReader(body), declared) == failure


def test_an_inspector_that_breaks_leaves_the_disk_alone(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(reader: Any, declared_format: str | None = None) -> Any:
        raise RuntimeError("bug")

    assert imagecheck.content_failure(BytesReader(RAW), "RAW", broken) is None
    assert "bug" in capsys.readouterr().err


def test_the_role_policy_check() -> None:
    class Role:
        def __init__(self, *statements: dict[str, Any]) -> None:
            self.policies = {"p": json.dumps({"Statement": list(statements)})}
            self.managed_policies: dict[str, Any] = {}

    arn = "arn:aws:s3:::b/k.vmdk"
    allow = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}
    assert imagecheck.role_may(Role(allow), "s3:GetObject", arn)
    assert imagecheck.role_may(Role({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}), "s3:GetObject", arn)
    assert not imagecheck.role_may(Role(allow), "s3:GetObject", "arn:aws:s3:::c/k.vmdk")
    assert not imagecheck.role_may(Role(allow, {**allow, "Effect": "Deny"}), "s3:GetObject", arn)
    assert not imagecheck.role_may(Role(), "s3:GetObject", arn)
