"""The request's life cycle: one table of transitions, and the one place a status changes.

Every service moves a request with `change_status(request, transition, ...)`, naming a row
of `TRANSITIONS` (from which statuses, to which status); the audit log gets an event for
each change. "Can this still be edited", "can this be cancelled", "is this over" are each
one function here, used by services, views and templates alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from wizard import notify
from wizard.audit import audit
from wizard.models import ImportRequest

S = ImportRequest.Status


@dataclass(frozen=True)
class Transition:
    sources: tuple[str, ...]  # the statuses it may start from
    target: str


TRANSITIONS: dict[str, Transition] = {
    "submit": Transition((S.DRAFT, S.REJECTED), S.SUBMITTED),
    "approve": Transition((S.SUBMITTED,), S.APPROVED),
    "reject": Transition((S.SUBMITTED,), S.REJECTED),
    "dispatch": Transition((S.APPROVED,), S.IMPORTING),
    "finish": Transition((S.IMPORTING,), S.FINISHING),  # imported: the AMI is named, tagged, shared...
    "complete": Transition((S.IMPORTING, S.FINISHING), S.COMPLETED),
    "cancel": Transition((S.IMPORTING,), S.CANCELLED),
    "withdraw": Transition((S.SUBMITTED, S.APPROVED), S.CANCELLED),  # taken out before dispatch (batches)
    "fail": Transition((S.APPROVED, S.IMPORTING), S.FAILED),
    "delete": Transition((S.DRAFT,), S.DELETED),
}

# A draft, or a rejected request being mended, is edited by its owner; nothing else is.
EDITABLE: tuple[str, ...] = TRANSITIONS["submit"].sources
FINAL: tuple[str, ...] = ImportRequest.FINAL_STATUSES


class TransitionError(Exception):
    """The request is not in a status this change may start from."""


def allowed(status: str, transition: str) -> bool:
    return status in TRANSITIONS[transition].sources


def is_editable(request: ImportRequest) -> bool:
    return request.status in EDITABLE


def can_cancel(request: ImportRequest) -> bool:
    """Whether the import can still be cancelled: its task runs (CancelImportTask)."""
    task = getattr(request, "import_task", None)
    return allowed(request.status, "cancel") and task is not None and not task.is_final


def change_status(
    request: ImportRequest,
    transition: str,
    *,
    actor: Any = None,
    action: str = "",
    details: dict[str, Any] | None = None,
    **fields: Any,
) -> ImportRequest:
    """Make `transition` (a key of TRANSITIONS) if (and only if) the request is in one of its
    source statuses; `action` names the audit event (default: the transition's target, e.g.
    "submitted").

    The row is locked and re-read, so two concurrent changes cannot both win; other
    `fields` are saved with the status, and the change is written to the audit log.
    """
    move = TRANSITIONS[transition]
    action = action or move.target
    with transaction.atomic():
        fresh = ImportRequest.objects.select_for_update().get(pk=request.pk)
        if fresh.status not in move.sources:
            raise TransitionError(
                f"request #{request.pk} is {fresh.get_status_display().lower()}; it cannot be {action} now"
            )
        before = fresh.status
        fresh.status = move.target
        for name, value in fields.items():
            setattr(fresh, name, value)
        fresh.save(update_fields=["status", "updated_at", *fields])
        audit.record(
            action, fresh, actor=actor, before={"status": before}, after={"status": move.target}, details=details
        )
        transaction.on_commit(lambda: notify.status_changed(fresh.pk, move.target))
    request.refresh_from_db()
    return request
