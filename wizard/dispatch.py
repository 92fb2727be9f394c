"""Dispatch: send an approved request to ImportImage, exactly once."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from wizard import importspec
from wizard.aws import vmimport
from wizard.models import ImportRequest, ImportTask, TaskStatusChange
from wizard.statemachine import change_status

log = logging.getLogger(__name__)

# AWS answers that a later attempt may get past; anything else fails the request at once.
RETRYABLE_CODES = {
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
}


def fail(request: ImportRequest, message: str, *, action: str = "failed", **details) -> None:
    change_status(
        request,
        ImportRequest.Status.FAILED,
        allowed_from=(ImportRequest.Status.APPROVED, ImportRequest.Status.IMPORTING),
        action=action,
        details={"message": message, **details},
        failure_message=message,
    )


def dispatch(request_id: int) -> str | None:
    """Call ImportImage for an approved request; returns the ImportTaskId.

    Safe to run again after a crash at any point: the request's ClientToken was stored
    when the request was made, so AWS answers a repeated call with the same task.
    """
    request = ImportRequest.objects.get(pk=request_id)
    existing = ImportTask.objects.filter(request=request).first()
    if existing is not None or request.status != ImportRequest.Status.APPROVED:
        return existing.import_task_id if existing else None

    spec = request.to_spec()
    findings = importspec.validate(spec)
    if findings:
        fail(request, "; ".join(f"{f.path}: {f.message}" for f in findings), action="failed validation")
        return None
    try:
        answer = vmimport.import_image(importspec.to_api_params(spec))
    except vmimport.ImportCallError as exc:
        if exc.code in RETRYABLE_CODES:
            raise  # django-q2 delivers the task again after `retry`
        fail(request, exc.message, code=exc.code)
        return None

    task_id = answer["ImportTaskId"]
    now = timezone.now()
    with transaction.atomic():
        task = ImportTask.objects.create(
            request=request,
            import_task_id=task_id,
            status=answer.get("Status", "active"),
            status_message=answer.get("StatusMessage", ""),
            progress=_progress(answer),
            snapshot_details=answer.get("SnapshotDetails", []),
            changed_at=now,
        )
        TaskStatusChange.objects.create(
            task=task,
            at=now,
            status=task.status,
            status_message=task.status_message,
            progress=task.progress,
            snapshot_details=task.snapshot_details,
        )
        change_status(
            request,
            ImportRequest.Status.IMPORTING,
            allowed_from=(ImportRequest.Status.APPROVED,),
            action="dispatched",
            details={"import_task_id": task_id, "client_token": request.client_token},
        )
    log.info("request %s dispatched as %s", request.pk, task_id)
    return task_id


def _progress(description: dict) -> int | None:
    value = description.get("Progress")
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None
