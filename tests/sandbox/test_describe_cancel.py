"""DescribeImportImageTasks (ids, filters, pages) and CancelImportTask."""

from __future__ import annotations

from typing import Any

from tests.sandbox.conftest import IMPORT_SECONDS
from tests.sandbox.helpers import describe, error_of
from wizard.sandbox.testing import SandboxProcess


def start(ec2: Any, disk: dict[str, Any], n: int, **params: Any) -> list[str]:
    return [ec2.import_image(DiskContainers=[disk], **params)["ImportTaskId"] for _ in range(n)]


def test_describe_many_ids_in_the_order_asked(ec2: Any, disk: dict[str, Any]) -> None:
    ids = start(ec2, disk, 3)
    asked = [ids[2], ids[0]]
    tasks = ec2.describe_import_image_tasks(ImportTaskIds=asked)["ImportImageTasks"]
    assert [t["ImportTaskId"] for t in tasks] == asked
    assert [t["ImportTaskId"] for t in ec2.describe_import_image_tasks()["ImportImageTasks"]] == ids


def test_an_unknown_id_is_an_error_naming_it(ec2: Any, disk: dict[str, Any]) -> None:
    (known,) = start(ec2, disk, 1)
    error = error_of(ec2.describe_import_image_tasks, ImportTaskIds=[known, "import-ami-00000000000000000"])
    assert error["Code"] == "InvalidConversionTaskId.Malformed"
    assert "import-ami-00000000000000000" in error["Message"]


def test_filter_by_task_state(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    (done,) = start(ec2, disk, 1)
    sb.advance(IMPORT_SECONDS)
    running, cancelled = start(ec2, disk, 2)
    ec2.cancel_import_task(ImportTaskId=cancelled)

    def ids(*states: str) -> list[str]:
        filters = [{"Name": "task-state", "Values": list(states)}]
        return [t["ImportTaskId"] for t in ec2.describe_import_image_tasks(Filters=filters)["ImportImageTasks"]]

    assert ids("active") == [running]
    assert ids("completed") == [done]
    assert ids("deleting") == [cancelled]
    assert ids("active", "completed") == [done, running]
    sb.advance(IMPORT_SECONDS)
    assert ids("deleted") == [cancelled]


def test_filter_by_tag(ec2: Any, disk: dict[str, Any]) -> None:
    spec = [{"ResourceType": "import-image-task", "Tags": [{"Key": "Name", "Value": "web01"}]}]
    (tagged,) = start(ec2, disk, 1, TagSpecifications=spec)
    start(ec2, disk, 1)
    filters = [{"Name": "tag:Name", "Values": ["web01"]}]
    tasks = ec2.describe_import_image_tasks(Filters=filters)["ImportImageTasks"]
    assert [t["ImportTaskId"] for t in tasks] == [tagged]


def test_an_unknown_filter_is_an_error(ec2: Any) -> None:
    error = error_of(ec2.describe_import_image_tasks, Filters=[{"Name": "colour", "Values": ["red"]}])
    assert error["Code"] == "InvalidParameterValue"


def test_pages_of_max_results_and_the_paginator(ec2: Any, disk: dict[str, Any]) -> None:
    ids = start(ec2, disk, 5)
    first = ec2.describe_import_image_tasks(MaxResults=2)
    assert [t["ImportTaskId"] for t in first["ImportImageTasks"]] == ids[:2]
    second = ec2.describe_import_image_tasks(MaxResults=2, NextToken=first["NextToken"])
    assert [t["ImportTaskId"] for t in second["ImportImageTasks"]] == ids[2:4]

    pages = list(ec2.get_paginator("describe_import_image_tasks").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["ImportImageTasks"]) for p in pages] == [2, 2, 1]
    assert "NextToken" not in pages[-1]
    assert [t["ImportTaskId"] for p in pages for t in p["ImportImageTasks"]] == ids


def test_a_bad_next_token_is_an_error(ec2: Any, disk: dict[str, Any]) -> None:
    start(ec2, disk, 1)
    error = error_of(ec2.describe_import_image_tasks, NextToken="not-a-token")
    assert error["Code"] == "InvalidPaginationToken"


def test_dry_run_describe_and_cancel(ec2: Any, disk: dict[str, Any]) -> None:
    (task_id,) = start(ec2, disk, 1)
    assert error_of(ec2.describe_import_image_tasks, 412, DryRun=True)["Code"] == "DryRunOperation"
    assert error_of(ec2.cancel_import_task, 412, ImportTaskId=task_id, DryRun=True)["Code"] == "DryRunOperation"
    assert describe(ec2, task_id)["Status"] == "active"


def test_cancel_an_active_task(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    (task_id,) = start(ec2, disk, 1)
    sb.advance(IMPORT_SECONDS / 4)  # converting
    answer = ec2.cancel_import_task(ImportTaskId=task_id, CancelReason="wrong disk")
    answer.pop("ResponseMetadata")
    assert answer == {"ImportTaskId": task_id, "PreviousState": "active", "State": "deleting"}

    task = describe(ec2, task_id)
    assert (task["Status"], task["StatusMessage"]) == ("deleting", "ClientError: Import task cancelled: wrong disk")
    assert "Progress" not in task
    sb.advance(IMPORT_SECONDS)
    task = describe(ec2, task_id)
    assert task["Status"] == "deleted" and "wrong disk" in task["StatusMessage"]
    assert "ImageId" not in task


def test_cancel_while_preparing_the_ami_removes_its_snapshots(
    sb: SandboxProcess, ec2: Any, disk: dict[str, Any]
) -> None:
    (task_id,) = start(ec2, disk, 1)
    sb.advance(IMPORT_SECONDS * 0.9)
    snapshot_id = describe(ec2, task_id)["SnapshotDetails"][0]["SnapshotId"]
    ec2.cancel_import_task(ImportTaskId=task_id)
    sb.advance(IMPORT_SECONDS)
    task = describe(ec2, task_id)
    assert task["Status"] == "deleted" and "SnapshotId" not in task["SnapshotDetails"][0]
    assert error_of(ec2.describe_snapshots, SnapshotIds=[snapshot_id])["Code"] == "InvalidSnapshot.NotFound"


def test_a_finished_task_cannot_be_cancelled(sb: SandboxProcess, ec2: Any, disk: dict[str, Any]) -> None:
    done, cancelled = start(ec2, disk, 2)
    ec2.cancel_import_task(ImportTaskId=cancelled)
    for task_id in (cancelled, done):  # deleting, then completed
        error = error_of(ec2.cancel_import_task, ImportTaskId=task_id)
        assert error["Code"] == "IncorrectState" and task_id in error["Message"]
        sb.advance(IMPORT_SECONDS)
    error = error_of(ec2.cancel_import_task, ImportTaskId=cancelled)  # deleted
    assert error["Code"] == "IncorrectState"


def test_cancel_an_unknown_task(ec2: Any) -> None:
    error = error_of(ec2.cancel_import_task, ImportTaskId="import-ami-00000000000000000")
    assert error["Code"] == "InvalidConversionTaskId.Malformed"
