"""Polling: follow every active import task with batched DescribeImportImageTasks calls."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from wizard import audit, audit_checkpoint, dispatch_queue
from wizard.aws import vmimport
from wizard.dispatch import _progress, fail
from wizard.models import ImportRequest, ImportTask, TaskStatusChange
from wizard.statemachine import change_status

log = logging.getLogger(__name__)

LOST_MESSAGE = (
    "AWS no longer knows this import task (in the sandbox: it was restarted and forgot it). "
    "Import again with these settings."
)


def active_tasks() -> list[ImportTask]:
    return list(ImportTask.objects.exclude(status__in=ImportTask.FINAL_STATES).select_related("request"))


@audit_checkpoint.batched()  # one audit checkpoint per cycle, not one per task that changed
def poll_once() -> int:
    """Describe every active task, record what changed; returns how many are still active."""
    dispatch_queue.kick()  # tasks that ended free their places: let the queue dispatch the next
    tasks = active_tasks()
    if not tasks:
        return 0
    found = _describe({t.import_task_id for t in tasks})
    still_active = 0
    unchanged: list[int] = []
    for task in tasks:
        description = found.get(task.import_task_id)
        if description is None:
            _mark_lost(task)
            continue
        if _changed(task, description):
            apply_description(task, description)
        else:
            unchanged.append(task.pk)
        still_active += not task.is_final
    # Most tasks have not changed since the last poll: one UPDATE for them, not one each.
    now = timezone.now()
    for start in range(0, len(unchanged), 500):
        ImportTask.objects.filter(pk__in=unchanged[start : start + 500]).update(polled_at=now)
    return still_active


def _describe(ids: set[str]) -> dict[str, dict[str, Any]]:
    """All of `ids` in batched calls; ids AWS does not know are left out of the answer."""
    ordered = sorted(ids)
    try:
        return {d["ImportTaskId"]: d for d in vmimport.describe_import_image_tasks(ordered)}
    except vmimport.ImportCallError as exc:
        if not _names_unknown_task(exc):
            raise  # throttled, 5xx, or not about task ids (e.g. AuthFailure): nothing is marked lost
        log.warning("batch describe failed (%s); describing batch by batch", exc)
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ordered), vmimport.DESCRIBE_BATCH):
        found.update(_describe_batch(ordered[start : start + vmimport.DESCRIBE_BATCH]))
    return found


def _names_unknown_task(exc: vmimport.ImportCallError) -> bool:
    """AWS's answer when an id is unknown (or expired, 7 days after its task ended)."""
    return exc.code.startswith("InvalidConversionTaskId") or exc.code == "InvalidParameterValue"


def _describe_batch(ids: list[str]) -> dict[str, dict[str, Any]]:
    try:
        return {d["ImportTaskId"]: d for d in vmimport.describe_import_image_tasks(ids)}
    except vmimport.ImportCallError as exc:
        if not _names_unknown_task(exc):
            raise
        if len(ids) == 1:
            log.warning("task %s is unknown: %s", ids[0], exc)
            return {}
        # One unknown id spoils a batch: halve it to find which, in a few calls, not one per task.
        log.warning("describing %d tasks failed (%s); halving the batch", len(ids), exc)
        half = len(ids) // 2
        return {**_describe_batch(ids[:half]), **_describe_batch(ids[half:])}


def apply_description(task: ImportTask, d: dict[str, Any]) -> bool:
    """Store one DescribeImportImageTasks entry; returns True if anything changed."""
    now = timezone.now()
    status, message, progress, snapshots = _observed(task, d)
    changed = _changed(task, d)
    with transaction.atomic():
        task.polled_at = now
        if not changed:
            task.save(update_fields=["polled_at"])
            return False
        before = {"Status": task.status, "StatusMessage": task.status_message, "Progress": task.progress}
        task.status, task.status_message, task.progress = status, message, progress
        task.snapshot_details = snapshots
        task.image_id = d.get("ImageId", task.image_id)
        task.changed_at = now
        task.save()
        TaskStatusChange.objects.create(
            task=task, at=now, status=status, status_message=message, progress=progress, snapshot_details=snapshots
        )
        audit.record(
            "aws status changed",
            task.request,
            before=before,
            after={"Status": status, "StatusMessage": message, "Progress": progress},
            details={"import_task_id": task.import_task_id},
        )
        if status == "completed":
            change_status(
                task.request,
                ImportRequest.Status.COMPLETED,
                allowed_from=(ImportRequest.Status.IMPORTING,),
                action="completed",
                details={"image_id": task.image_id, "import_task_id": task.import_task_id},
            )
        elif status == "deleted":
            request = ImportRequest.objects.get(pk=task.request_id)
            if request.cancel_reason:
                change_status(
                    request,
                    ImportRequest.Status.CANCELLED,
                    allowed_from=(ImportRequest.Status.IMPORTING,),
                    action="cancelled",
                    details={"reason": request.cancel_reason, "import_task_id": task.import_task_id},
                    failure_message=message,
                )
            else:
                fail(request, message or "the import task was deleted", import_task_id=task.import_task_id)
    return True


def _observed(task: ImportTask, d: dict[str, Any]) -> tuple[str, str, int | None, list]:
    """Status, StatusMessage, Progress and SnapshotDetails of a DescribeImportImageTasks entry."""
    return d.get("Status", task.status), d.get("StatusMessage", ""), _progress(d), d.get("SnapshotDetails", [])


def _changed(task: ImportTask, d: dict[str, Any]) -> bool:
    return _observed(task, d) != (task.status, task.status_message, task.progress, task.snapshot_details)


def _mark_lost(task: ImportTask) -> None:
    with transaction.atomic():
        task.status, task.status_message, task.changed_at = "deleted", LOST_MESSAGE, timezone.now()
        task.save()
        fail(task.request, LOST_MESSAGE, action="task lost", import_task_id=task.import_task_id)
