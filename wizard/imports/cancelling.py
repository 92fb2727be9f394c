"""Cancel a running import (CancelImportTask); the poller records the end as cancelled."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from wizard.audit import audit
from wizard.aws import vmimport
from wizard.aws.errors import AwsError
from wizard.models import ImportRequest
from wizard.requests import importspec, statemachine


class CancelError(Exception):
    pass


def cancel(request: ImportRequest, user: User, reason: str) -> dict:
    """Ask AWS to cancel the request's task; returns AWS's answer (PreviousState, State)."""
    if not statemachine.can_cancel(request):
        raise CancelError(f"import #{request.pk} is {request.get_status_display().lower()}: there is nothing to cancel")
    reason = reason.strip() or "cancelled by the requester"
    if problem := importspec.cancel_reason_problem(reason):
        # Refused here, never sent: a reason AWS stores but cannot put in its XML answers
        # would break every later DescribeImportImageTasks answer that shows the task.
        raise CancelError(f"Not cancelled, nothing was sent to AWS: {problem}.")
    task_id = request.import_task.import_task_id
    try:
        answer = vmimport.cancel_import_task(task_id, reason, target=request.target)
    except AwsError as exc:
        raise CancelError(f"AWS refused to cancel {task_id}: {exc.message}") from exc
    with transaction.atomic():
        ImportRequest.objects.filter(pk=request.pk).update(cancel_reason=reason)
        audit.record(
            "cancel requested",
            request,
            actor=user,
            details={
                "reason": reason,
                "import_task_id": task_id,
                "PreviousState": answer.get("PreviousState"),
                "State": answer.get("State"),
            },
        )
    from wizard.tasks import kick_poller

    transaction.on_commit(kick_poller)
    return answer
