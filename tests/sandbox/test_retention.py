"""Ended tasks stay visible for 7 days (sandbox clock), then are gone as if never known."""

from __future__ import annotations

from typing import Any

from tests.sandbox.conftest import IMPORT_SECONDS
from tests.sandbox.helpers import describe, error_of
from wizard.sandbox.testing import SandboxProcess

DAY = 24 * 3600
UNKNOWN = "InvalidConversionTaskId.Malformed"


def listed(ec2: Any) -> list[str]:
    return [t["ImportTaskId"] for t in ec2.describe_import_image_tasks()["ImportImageTasks"]]


def test_a_completed_task_is_gone_7_days_after_it_ended(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    task_id = ec2.import_image(DiskContainers=[disk], ClientToken="web01")["ImportTaskId"]
    sb.advance(IMPORT_SECONDS)  # completed just now
    image_id = describe(ec2, task_id)["ImageId"]
    sb.advance(7 * DAY - 1)
    assert describe(ec2, task_id)["Status"] == "completed"
    sb.advance(1)
    error = error_of(ec2.describe_import_image_tasks, ImportTaskIds=[task_id])
    assert error["Code"] == UNKNOWN and task_id in error["Message"]
    assert listed(ec2) == []
    assert error_of(ec2.cancel_import_task, ImportTaskId=task_id)["Code"] == UNKNOWN
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available"  # the AMI stays
    # Its client token is forgotten with it: the same request starts a new task.
    assert ec2.import_image(DiskContainers=[disk], ClientToken="web01")["ImportTaskId"] != task_id


def test_cancelled_and_failed_tasks_count_from_when_they_ended(
    sb: SandboxProcess, ec2: Any, disk: dict[str, Any]
) -> None:
    cancelled = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    ec2.cancel_import_task(ImportTaskId=cancelled)
    sb.faults(fail={"stage": "booting"})
    failed = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sb.advance(IMPORT_SECONDS)
    assert [describe(ec2, t)["Status"] for t in (cancelled, failed)] == ["deleted", "deleted"]
    sb.clear_faults()  # an ended task's failure is history: clearing does not undo it
    # Cancelled: deleted after 5% of the import's time; failed: at the end of "booting" (80%).
    sb.advance(7 * DAY - IMPORT_SECONDS * 0.95)
    assert listed(ec2) == [failed]
    sb.advance(IMPORT_SECONDS * 0.75)
    assert listed(ec2) == []


def test_running_and_stalled_tasks_do_not_expire(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    sb.faults(stall={"stage": "booting"})
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sb.advance(30 * DAY)
    assert describe(ec2, task_id)["StatusMessage"] == "booting"
