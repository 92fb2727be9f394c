"""Dispatch: send an approved request to ImportImage, exactly once."""

from __future__ import annotations

import logging
from typing import NoReturn

from botocore.exceptions import BotoCoreError, ParamValidationError
from django.db import transaction
from django.utils import timezone

from wizard import targets
from wizard.aws import vmimport
from wizard.aws.errors import AwsError
from wizard.imports import polling
from wizard.imports.polling import fail
from wizard.models import ImportRequest, ImportTask, TaskStatusChange
from wizard.requests import importspec
from wizard.requests.statemachine import change_status

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


class RetryLater(Exception):
    """AWS throttled ImportImage or did not answer: django-q2 delivers the dispatch again.

    Its text is "Code: message", which `give_up` reads back from django-q2's record of the
    last attempt (wizard.tasks.dispatch_attempted, the task's hook)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def dispatch(request_id: int) -> str | None:
    """Call ImportImage for an approved request; returns the ImportTaskId.

    Safe to run again after a crash at any point: the request's ClientToken was stored
    when the request was made, so AWS answers a repeated call with the same task. Killed
    before the call: nothing happened. Killed after AWS made the task but before our
    commit: the next delivery gets the same task and records it. Killed after the commit:
    the next delivery finds the task row and calls nothing.

    The task a later delivery gets may have ended meanwhile (completed, or failed). Its row
    is then made as a task still to follow (never final without its ImageId), the request
    goes importing, and the task is described at once and recorded through the poller's own
    path (`polling.apply_description`: ImageId, SnapshotDetails, StatusMessage), which
    finishes the request. If that describe fails, the poller takes it from there.
    """
    request = ImportRequest.objects.select_related("target").get(pk=request_id)
    existing = ImportTask.objects.filter(request=request).first()
    if existing is not None or request.status != ImportRequest.Status.APPROVED:
        return existing.import_task_id if existing else None

    spec = request.to_spec()
    findings = importspec.validate(spec)
    if findings:
        fail(request, "; ".join(f"{f.path}: {f.message}" for f in findings), action="failed validation")
        return None
    # The owner may still use the target (a group may have been taken from them since review);
    # nothing is asked in a target's account for someone who may not.
    if refused_target := targets.refusal(request.owner, request.target, who=f"The owner, {request.owner},"):
        fail(request, refused_target, action="failed target check", target=targets.label(request.target))
        return None
    # The owner may still import every disk (a grant may have been revoked since review).
    from wizard.uploads.sources import spec_refusals

    refused = spec_refusals(request.owner, spec, target=request.target)
    if refused:
        fail(request, "; ".join(f"{f.path}: {f.message}" for f in refused), action="failed source check")
        return None
    # The account again (a role or policy may have changed since review). A missing role is left
    # to ImportImage, which refuses it at once; the rest AWS would find only an hour into the task.
    from wizard.preflight.preflight import account_problems

    problems = [p for p in account_problems(request, fresh=True) if p.severity == "error" and not p.missing_role]
    if problems:
        fail(request, "; ".join(f"{p.path}: {p.message}" for p in problems), action="failed account check")
        return None
    try:
        answer = vmimport.import_image(importspec.to_api_params(spec), target=request.target)
    except AwsError as exc:
        if exc.code not in RETRYABLE_CODES:
            fail(request, exc.message, code=exc.code)
            return None
        _retry_later(request, exc.code, exc.message)
    except ParamValidationError as exc:  # botocore refused the parameters: no retry fixes that
        fail(request, str(exc), code="ParamValidationError")
        return None
    except BotoCoreError as exc:  # no answer at all (connection refused, read timeout)
        _retry_later(request, type(exc).__name__, str(exc))

    task_id = answer["ImportTaskId"]
    ended = answer.get("Status") in ImportTask.FINAL_STATES
    first = {} if ended else answer  # an ended task is recorded from DescribeImportImageTasks below
    now = timezone.now()
    with transaction.atomic():
        # A second delivery may have got here first (the same token gave it the same task).
        ImportRequest.objects.select_for_update().get(pk=request.pk)
        recorded = ImportTask.objects.filter(request=request).first()
        if recorded is not None:
            return recorded.import_task_id
        task = ImportTask.objects.create(
            request=request,
            import_task_id=task_id,
            status=first.get("Status", "active"),
            status_message=first.get("StatusMessage", ""),
            progress=polling.progress_of(first),
            snapshot_details=first.get("SnapshotDetails", []),
            changed_at=now,
        )
        if not ended:
            TaskStatusChange.objects.create(
                task=task,
                at=now,
                status=task.status,
                status_message=task.status_message,
                progress=task.progress,
                snapshot_details=task.snapshot_details,
            )
        details = {
            "import_task_id": task_id,
            "client_token": request.client_token,
            "target": targets.label(request.target),
        }
        if ended:
            details["Status"] = answer.get("Status")  # the task had ended before this delivery
        change_status(
            request,
            "dispatch",
            action="dispatched",
            details=details,
        )
    log.info("request %s dispatched as %s", request.pk, task_id)
    if ended:
        _record_ended(task)
    return task_id


def _record_ended(task: ImportTask) -> None:
    """The task had ended before ImportImage answered this delivery: record how, as the poller does.

    ImportImage's answer for an existing task need not carry the ImageId, so the task is
    described first; if that fails, the row stays a task to follow and the poller records it.
    """
    try:
        target = ImportRequest.objects.select_related("target").get(pk=task.request_id).target
        (description,) = list(vmimport.describe_import_image_tasks([task.import_task_id], target=target))
    except (*polling.FAILURES, ValueError) as exc:  # ValueError: not exactly one answer
        log.warning("task %s had ended; describing it failed (%s): the poller will record it", task.import_task_id, exc)
        return
    task.request = ImportRequest.objects.get(pk=task.request_id)
    polling.apply_description(task, description)


def _retry_later(request: ImportRequest, code: str, message: str) -> NoReturn:
    log.warning("dispatch of request %s: %s: %s (django-q2 delivers it again)", request.pk, code, message)
    raise RetryLater(code, message)


def give_up(request_id: int, last_error: str, attempts: int) -> None:
    """django-q2 made its last attempt (`max_attempts`) and AWS still did not take the import:
    fail the request with AWS's message, so it does not wait for a dispatch that never comes.

    `last_error` is the last attempt's RetryLater ("Code: message"). A request that got its task
    meanwhile, or is no longer approved, is left alone. A worker killed outright is not an
    attempt django-q2 counts, so it never leads here."""
    request = ImportRequest.objects.get(pk=request_id)
    if request.status != ImportRequest.Status.APPROVED or ImportTask.objects.filter(request=request).exists():
        return
    code, _, message = last_error.partition(": ")
    fail(request, f"AWS did not take the import after {attempts} attempts: {message or code}", code=code)
