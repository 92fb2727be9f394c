"""The sandbox server: what it creates at start and after reset, its clock, its exit."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.sandbox.helpers import describe, error_of
from wizard.sandbox.__main__ import config_from_env
from wizard.sandbox.server import SandboxConfig
from wizard.sandbox.testing import SandboxProcess

ORIGIN = "http://127.0.0.1:8000"


def preflight(sb: SandboxProcess, origin: str) -> tuple[int, dict[str, str]]:
    """The browser's CORS preflight for a PUT of an object into the upload bucket."""
    request = urllib.request.Request(
        f"{sb.endpoint}/{sb.bucket}/uploads/part",
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def test_the_upload_bucket_exists_with_cors_for_the_browser(sb: SandboxProcess, s3: Any) -> None:
    assert sb.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    (rule,) = s3.get_bucket_cors(Bucket=sb.bucket)["CORSRules"]
    assert rule["AllowedOrigins"] == [ORIGIN, "http://localhost:8000"]
    assert sorted(rule["AllowedMethods"]) == ["GET", "HEAD", "POST", "PUT"]
    assert rule["AllowedHeaders"] == ["*"]
    assert rule["ExposeHeaders"] == ["ETag"]


def test_cors_answers_come_from_the_bucket_not_a_global_wildcard(sb: SandboxProcess) -> None:
    status, headers = preflight(sb, ORIGIN)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "ETag" in headers["Access-Control-Expose-Headers"]
    status, headers = preflight(sb, "http://elsewhere.example")
    assert status == 403
    assert "Access-Control-Allow-Origin" not in headers


def test_the_vmimport_role_exists_as_the_guide_documents_it(sb: SandboxProcess, iam: Any) -> None:
    role = iam.get_role(RoleName="vmimport")["Role"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "vmie.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"sts:Externalid": "vmimport"}}
    policy = iam.get_role_policy(RoleName="vmimport", PolicyName="vmimport")["PolicyDocument"]
    s3_statement, ec2_statement, kms_statement = policy["Statement"]
    assert "kms:CreateGrant" in kms_statement["Action"] and kms_statement["Resource"] == ["*"]
    assert s3_statement["Action"] == ["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"]
    assert s3_statement["Resource"] == [f"arn:aws:s3:::{sb.bucket}", f"arn:aws:s3:::{sb.bucket}/*"]
    assert set(ec2_statement["Action"]) == {
        "ec2:ModifySnapshotAttribute",
        "ec2:CopySnapshot",
        "ec2:RegisterImage",
        "ec2:Describe*",
    }


def test_reset_forgets_tasks_and_recreates_bucket_and_role(
    sb: SandboxProcess, ec2: Any, s3: Any, iam: Any, disk: dict[str, Any]
) -> None:
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    s3.delete_object(Bucket=sb.bucket, Key="uploads/disk.vmdk")
    s3.delete_bucket(Bucket=sb.bucket)
    iam.delete_role_policy(RoleName="vmimport", PolicyName="vmimport")
    iam.delete_role(RoleName="vmimport")

    sb.reset()

    assert ec2.describe_import_image_tasks()["ImportImageTasks"] == []
    assert error_of(ec2.describe_import_image_tasks, ImportTaskIds=[task_id])["Code"] == (
        "InvalidConversionTaskId.Malformed"
    )
    assert s3.get_bucket_cors(Bucket=sb.bucket)["CORSRules"][0]["AllowedOrigins"][0] == ORIGIN
    assert iam.get_role_policy(RoleName="vmimport", PolicyName="vmimport")["PolicyName"] == "vmimport"


def test_reset_puts_the_clock_back_to_its_configured_speed(sb: SandboxProcess) -> None:
    before = sb.clock()["now"]
    assert sb.clock(speed=3)["speed"] == 3
    sb.reset()
    after = sb.clock()
    assert after["speed"] == 0
    assert after["now"] >= before  # time never goes backwards


def test_the_clock_advances_on_request_and_tasks_follow(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    start = sb.clock()["now"]
    assert sb.advance(2.5) == pytest.approx(start + 2.5)
    assert sb.clock()["now"] == pytest.approx(start + 2.5)  # speed 0: frozen between advances
    assert describe(ec2, task_id)["StatusMessage"] == "converting"


def test_a_running_clock_moves_tasks_without_advances(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sb.clock(speed=1000)  # the import's 10 s in 10 ms; its 7 days of retention in 10 minutes
    time.sleep(0.05)
    assert describe(ec2, task_id)["Status"] == "completed"


@pytest.mark.parametrize("body", [b"{", b'{"advance": -1}', b'{"speed": "fast"}'])
def test_bad_clock_requests_are_400(sb: SandboxProcess, body: bytes) -> None:
    request = urllib.request.Request(f"{sb.endpoint}/_sandbox/clock", data=body)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 400
    assert "error" in json.loads(caught.value.read())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_server_exits_cleanly_on_a_signal(signum: signal.Signals) -> None:
    sb = SandboxProcess(bucket="exit-test-bucket")
    sb.start()
    sb.client("s3").head_bucket(Bucket="exit-test-bucket")
    output = sb.stop(signum)  # asserts exit code 0
    assert sb.returncode == 0
    assert "Traceback" not in output


def test_configuration_comes_from_the_environment() -> None:
    assert config_from_env({}) == SandboxConfig()
    config = config_from_env(
        {
            "SANDBOX_HOST": "0.0.0.0",
            "SANDBOX_PORT": "5999",
            "SANDBOX_REGION": "eu-west-1",
            "SANDBOX_BUCKET": "b",
            "SANDBOX_CORS_ORIGINS": "http://a:1, http://b:2",
            "SANDBOX_IMPORT_SECONDS": "5",
            "SANDBOX_CLOCK_SPEED": "2.5",
        }
    )
    assert config == SandboxConfig("0.0.0.0", 5999, "eu-west-1", "b", ("http://a:1", "http://b:2"), 5.0, 2.5)
