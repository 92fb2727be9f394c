"""Faults on demand: throttling, internal errors, slow answers, stalled and failing tasks."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.config import Config

from tests.sandbox.conftest import IMPORT_SECONDS
from tests.sandbox.helpers import describe, error_of
from wizard.sandbox.__main__ import config_from_env
from wizard.sandbox.testing import SandboxProcess

NO_RETRIES = Config(retries={"total_max_attempts": 1})
UNKNOWN_OS = "ClientError: Unknown OS / Missing OS files."


def start(ec2: Any, disk: dict[str, Any]) -> str:
    return ec2.import_image(DiskContainers=[disk])["ImportTaskId"]


def control(sb: SandboxProcess, method: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """A raw request to /_sandbox/faults: (HTTP status, JSON answer)."""
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"{sb.endpoint}/_sandbox/faults", data=data, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --- the control endpoint ---------------------------------------------------------------------


def test_no_faults_by_default(sb: SandboxProcess) -> None:
    assert control(sb, "GET") == (200, {"tasks": {}})


def test_set_show_merge_remove_and_clear(sb: SandboxProcess) -> None:
    throttle = {"rate": 0.3, "actions": ["ImportImage", "DescribeImportImageTasks"]}
    status, shown = control(sb, "POST", {"throttle": throttle})
    assert status == 200
    assert shown == {"throttle": {**throttle, "matched": 0, "injected": 0}, "tasks": {}}

    shown = sb.faults(slow={"seconds": 0.1}, fail={"stage": "booting", "message": UNKNOWN_OS})
    assert set(shown) == {"throttle", "slow", "fail", "tasks"}  # merged
    assert shown["fail"] == {"stage": "booting", "message": UNKNOWN_OS, "applied": 0}
    assert set(sb.faults(throttle=None)) == {"slow", "fail", "tasks"}  # null removes a kind
    assert sb.clear_faults() == {"tasks": {}}


@pytest.mark.parametrize(
    "body, complaint",
    [
        (b"{", "not JSON"),
        ([1], "JSON object"),
        ({"meteor": {}}, "unknown fault kind 'meteor'"),
        ({"throttle": 1}, "object or null"),
        ({"throttle": {"rate": 1.5}}, "throttle.rate must be between 0.0 and 1.0"),
        ({"throttle": {"rate": 0.5, "every": 2}}, "rate or every"),
        ({"throttle": {"every": 0}}, "throttle.every must be >= 1"),
        ({"throttle": {"actions": "ImportImage"}}, "list of EC2 action names"),
        ({"throttle": {"colour": "red"}}, "unknown field(s) colour"),
        ({"slow": {}}, "slow.seconds is required"),
        ({"stall": {"stage": "sleeping"}}, "stall.stage must be one of pending, validating"),
        ({"stall": {"stage": "completed"}}, "stall.stage must be one of"),
        ({"fail": {"stage": "booting", "message": ""}}, "non-empty string"),
        ({"fail": {"stage": "booting", "task_id": "import-ami-00000000000000000"}}, "no task import-ami-0000"),
    ],
)
def test_a_bad_fault_is_400_and_changes_nothing(sb: SandboxProcess, body: Any, complaint: str) -> None:
    sb.faults(internal_error={"every": 3})
    status, answer = control(sb, "POST", body)
    assert status == 400
    assert complaint in answer["error"]
    assert set(sb.fault_status()) == {"internal_error", "tasks"}


def test_reset_clears_the_faults(sb: SandboxProcess) -> None:
    sb.faults(throttle={"rate": 1.0}, stall={"stage": "updating"})
    sb.reset()
    assert sb.fault_status() == {"tasks": {}}


# --- call faults ------------------------------------------------------------------------------


def test_throttling_answers_as_ec2_does(sb: SandboxProcess) -> None:
    """503 and EC2's error XML, which botocore's retry logic knows as throttling."""
    sb.faults(throttle={"actions": ["DescribeImportImageTasks"]})
    # The sandbox reads the action from the body; the signature is not checked (nor by moto).
    request = urllib.request.Request(
        sb.endpoint + "/",
        data=b"Action=DescribeImportImageTasks&Version=2016-11-15",
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=0",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 503
    assert caught.value.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(caught.value.read())
    assert root.tag == "Response"
    assert root.findtext("Errors/Error/Code") == "RequestLimitExceeded"
    assert root.findtext("Errors/Error/Message") == "Request limit exceeded."
    assert root.findtext("RequestID")


def test_every_nth_matching_call_is_throttled(sb: SandboxProcess, disk: dict[str, Any]) -> None:
    ec2 = sb.client("ec2", config=NO_RETRIES)
    sb.faults(throttle={"every": 2, "actions": ["DescribeImportImageTasks"]})
    outcomes = []
    for _ in range(4):
        start(ec2, disk)  # not a matching action: never throttled
        try:
            ec2.describe_import_image_tasks()
            outcomes.append("ok")
        except ec2.exceptions.ClientError as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert error.response["Error"] == {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}
            outcomes.append("throttled")
    assert outcomes == ["ok", "throttled", "ok", "throttled"]
    counters = sb.fault_status()["throttle"]
    assert (counters["matched"], counters["injected"]) == (4, 2)
    assert len(ec2.describe_import_image_tasks()["ImportImageTasks"]) == 4  # calls that ran did run


def test_a_rate_is_the_same_every_time_for_a_seed(sb: SandboxProcess) -> None:
    ec2 = sb.client("ec2", config=NO_RETRIES)

    def pattern() -> list[bool]:
        hits = []
        for _ in range(20):
            try:
                ec2.describe_import_image_tasks()
                hits.append(False)
            except ec2.exceptions.ClientError:
                hits.append(True)
        return hits

    sb.faults(throttle={"rate": 0.3, "seed": 42})
    first = pattern()
    sb.faults(throttle={"rate": 0.3, "seed": 42})  # set again: the generator starts over
    assert pattern() == first
    draws = random.Random(42)
    assert first == [draws.random() < 0.3 for _ in range(20)]
    assert 0 < sum(first) < 20


def test_boto3_retries_a_throttled_call_and_succeeds(sb: SandboxProcess, disk: dict[str, Any]) -> None:
    sb.faults(throttle={"count": 1, "actions": ["ImportImage"]})
    for mode in ("legacy", "standard"):
        ec2 = sb.client("ec2", config=Config(retries={"mode": mode}))
        answer = ec2.import_image(DiskContainers=[disk])
        assert answer["ResponseMetadata"]["RetryAttempts"] == 1
        sb.faults(throttle={"count": 1, "actions": ["ImportImage"]})
    assert len(ec2.describe_import_image_tasks()["ImportImageTasks"]) == 2  # the throttled calls made nothing


def test_count_spends_the_fault(sb: SandboxProcess) -> None:
    ec2 = sb.client("ec2", config=NO_RETRIES)
    sb.faults(internal_error={"count": 2})
    for _ in range(2):
        error = error_of(ec2.describe_import_image_tasks, 500)
        assert error == {"Code": "InternalError", "Message": "An internal error has occurred."}
    ec2.describe_import_image_tasks()
    assert sb.fault_status()["internal_error"]["injected"] == 2


def test_only_ec2_calls_are_touched(sb: SandboxProcess) -> None:
    sb.faults(throttle={}, internal_error={})
    sb.client("s3").list_buckets()
    sb.client("iam").get_role(RoleName="vmimport")
    assert sb.fault_status()["throttle"]["matched"] == 0


def test_slow_answers(sb: SandboxProcess, ec2: Any) -> None:
    sb.faults(slow={"seconds": 0.6, "actions": ["DescribeImportImageTasks"]})
    began = time.monotonic()
    ec2.describe_import_image_tasks()
    assert time.monotonic() - began >= 0.6
    ec2.describe_images(Owners=["self"])  # not a matching action: not delayed
    slow = sb.fault_status()["slow"]
    assert (slow["matched"], slow["injected"]) == (1, 1)


# --- task faults ------------------------------------------------------------------------------


def test_a_stall_holds_new_tasks_at_the_stage_until_cleared(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    before = start(ec2, disk)
    sb.faults(stall={"stage": "updating"})
    stalled = start(ec2, disk)
    sb.advance(IMPORT_SECONDS * 10)
    assert describe(ec2, before)["Status"] == "completed"
    task = describe(ec2, stalled)
    assert (task["Status"], task["StatusMessage"], task["Progress"]) == ("active", "updating", "39")
    assert sb.fault_status()["tasks"] == {stalled: {"stall": {"stage": "updating"}}}

    sb.clear_faults()  # it goes on from the start of "updating" (45% of the way)
    sb.advance(IMPORT_SECONDS * 0.54)
    assert describe(ec2, stalled)["StatusMessage"] == "preparing ami"
    sb.advance(IMPORT_SECONDS * 0.02)
    assert describe(ec2, stalled)["Status"] == "completed"


def test_a_stall_for_one_task(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    held, free = start(ec2, disk), start(ec2, disk)
    sb.advance(IMPORT_SECONDS * 0.5)  # both "updating"
    sb.faults(stall={"stage": "converting", "task_id": held})  # already past it: stops where it is
    sb.advance(IMPORT_SECONDS)
    assert describe(ec2, held)["StatusMessage"] == "updating"
    assert describe(ec2, free)["Status"] == "completed"


def test_a_fail_fault_ends_the_task_at_the_stage(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    sb.faults(fail={"stage": "booting", "message": UNKNOWN_OS})
    task_id = start(ec2, disk)
    sb.advance(IMPORT_SECONDS * 0.7)
    assert describe(ec2, task_id)["StatusMessage"] == "booting"  # the stage shows first
    sb.advance(IMPORT_SECONDS * 0.1)  # where "preparing ami" would begin
    task = describe(ec2, task_id)
    assert (task["Status"], task["StatusMessage"]) == ("deleted", UNKNOWN_OS)
    assert "Progress" not in task and "ImageId" not in task
    sb.advance(IMPORT_SECONDS)
    assert describe(ec2, task_id)["Status"] == "deleted"
    assert ec2.describe_images(Owners=["self"])["Images"] == []
    filters = [{"Name": "task-state", "Values": ["deleted"]}]
    assert [t["ImportTaskId"] for t in ec2.describe_import_image_tasks(Filters=filters)["ImportImageTasks"]] == [
        task_id
    ]


def test_a_fail_at_preparing_ami_removes_the_snapshots(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    sb.faults(fail={"stage": "preparing ami"})
    task_id = start(ec2, disk)
    sb.advance(IMPORT_SECONDS * 0.9)
    snapshot_id = describe(ec2, task_id)["SnapshotDetails"][0]["SnapshotId"]
    sb.advance(IMPORT_SECONDS)
    task = describe(ec2, task_id)
    assert (task["Status"], task["StatusMessage"]) == ("deleted", "ClientError: Sandbox fault at preparing ami")
    assert "SnapshotId" not in task["SnapshotDetails"][0]
    assert error_of(ec2.describe_snapshots, SnapshotIds=[snapshot_id])["Code"] == "InvalidSnapshot.NotFound"
    assert ec2.describe_images(Owners=["self"])["Images"] == []


def test_a_fail_for_one_task_and_for_the_next_one_only(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    doomed, spared = start(ec2, disk), start(ec2, disk)
    sb.faults(fail={"stage": "validating", "message": "ClientError: one", "task_id": doomed})
    sb.faults(fail={"stage": "converting", "message": "ClientError: next", "count": 1})
    nxt, after = start(ec2, disk), start(ec2, disk)
    assert sb.fault_status()["fail"]["applied"] == 1
    sb.advance(IMPORT_SECONDS)
    assert [describe(ec2, t).get("StatusMessage") for t in (doomed, spared, nxt, after)] == [
        "ClientError: one",
        None,
        "ClientError: next",
        None,
    ]


def test_a_fault_for_a_task_that_ended_is_refused(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    task_id = start(ec2, disk)
    sb.advance(IMPORT_SECONDS)
    status, answer = control(sb, "POST", {"stall": {"stage": "booting", "task_id": task_id}})
    assert status == 400 and "has ended" in answer["error"]


def test_clearing_drops_pending_fault_failures(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    sb.faults(fail={"stage": "booting"})
    task_id = start(ec2, disk)
    assert sb.fault_status()["tasks"] == {
        task_id: {"fail": {"stage": "booting", "message": "ClientError: Sandbox fault at booting"}}
    }
    sb.clear_faults()
    sb.advance(IMPORT_SECONDS)
    assert describe(ec2, task_id)["Status"] == "completed"


# --- faults from the start --------------------------------------------------------------------


def test_sandbox_faults_from_the_environment_and_back_after_reset() -> None:
    faults = {"throttle": {"every": 1, "actions": ["DescribeImportImageTasks"]}}
    with SandboxProcess(clock_speed=0, faults=faults) as sb:
        ec2 = sb.client("ec2", config=NO_RETRIES)
        assert error_of(ec2.describe_import_image_tasks, 503)["Code"] == "RequestLimitExceeded"
        sb.clear_faults()
        ec2.describe_import_image_tasks()
        sb.reset()  # the configured faults come back, as the configured clock speed does
        assert sb.fault_status()["throttle"]["every"] == 1


def test_bad_sandbox_faults_stop_the_start() -> None:
    with pytest.raises(ValueError, match="SANDBOX_FAULTS: unknown fault kind 'meteor'"):
        config_from_env({"SANDBOX_FAULTS": '{"meteor": {}}'})
    with pytest.raises(RuntimeError, match="SANDBOX_FAULTS: not JSON"):
        SandboxProcess(env={"SANDBOX_FAULTS": "{"}).start()


# --- faults for one task's answers --------------------------------------------------------------


def test_a_corrupt_task_breaks_every_answer_that_shows_it_until_cleared(
    sb: SandboxProcess, ec2: Any, disk: dict[str, Any]
) -> None:
    from botocore.parsers import ResponseParserError

    bad, good = start(ec2, disk), start(ec2, disk)
    assert sb.faults(corrupt={"task_id": bad})["tasks"] == {bad: {"corrupt": {}}}
    ec2 = sb.client("ec2", config=NO_RETRIES)
    for ids in ([bad], [good, bad], []):
        with pytest.raises(ResponseParserError, match="not well-formed"):
            ec2.describe_import_image_tasks(ImportTaskIds=ids)
    assert describe(ec2, good)["StatusMessage"] == "pending"  # an answer without it is fine
    sb.clear_faults()
    assert describe(ec2, bad)["StatusMessage"] == "pending"


def test_a_finished_task_can_be_corrupt_too(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    from botocore.parsers import ResponseParserError

    task_id = start(ec2, disk)
    sb.advance(IMPORT_SECONDS)
    sb.faults(corrupt={"task_id": task_id})
    with pytest.raises(ResponseParserError):
        sb.client("ec2", config=NO_RETRIES).describe_import_image_tasks(ImportTaskIds=[task_id])


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ({}, "corrupt.task_id is required"),
        ({"task_id": "import-ami-00000000000000000"}, "no task import-ami-0000"),
        ({"task_id": "x", "stage": "booting"}, "unknown field(s) stage"),
    ],
)
def test_a_bad_corrupt_fault_is_400(sb: SandboxProcess, spec: dict[str, Any], complaint: str) -> None:
    status, answer = control(sb, "POST", {"corrupt": spec})
    assert status == 400 and complaint in answer["error"]


def test_a_call_fault_for_some_tasks_hits_only_the_calls_naming_them(
    sb: SandboxProcess, ec2: Any, disk: dict[str, Any]
) -> None:
    one, two, three = (start(ec2, disk) for _ in range(3))
    sb.faults(internal_error={"task_ids": [two], "actions": ["DescribeImportImageTasks", "CancelImportTask"]})
    ec2 = sb.client("ec2", config=NO_RETRIES)
    assert len(ec2.describe_import_image_tasks(ImportTaskIds=[one, three])["ImportImageTasks"]) == 2
    assert error_of(ec2.describe_import_image_tasks, 500, ImportTaskIds=[one, two])["Code"] == "InternalError"
    assert error_of(ec2.cancel_import_task, 500, ImportTaskId=two)["Code"] == "InternalError"
    assert ec2.cancel_import_task(ImportTaskId=one)["State"] == "deleting"
    assert sb.fault_status()["internal_error"]["injected"] == 2
    status, answer = control(sb, "POST", {"throttle": {"task_ids": []}})
    assert status == 400 and "throttle.task_ids must be a non-empty list" in answer["error"]
