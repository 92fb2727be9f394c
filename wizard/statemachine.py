"""The one place where an import request changes status, always with an audit event."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from wizard import audit, notify
from wizard.models import ImportRequest


class TransitionError(Exception):
    """The request is not in a status this change may start from."""


def change_status(
    request: ImportRequest,
    to: str,
    *,
    actor: Any = None,
    allowed_from: Iterable[str],
    action: str,
    details: dict[str, Any] | None = None,
    **fields: Any,
) -> ImportRequest:
    """Move `request` to status `to` if (and only if) it is in one of `allowed_from`.

    The row is locked and re-read, so two concurrent changes cannot both win; other
    `fields` are saved with the status, and the change is written to the audit log.
    """
    allowed = tuple(allowed_from)
    with transaction.atomic():
        fresh = ImportRequest.objects.select_for_update().get(pk=request.pk)
        if fresh.status not in allowed:
            raise TransitionError(
                f"request #{request.pk} is {fresh.get_status_display().lower()}; it cannot be {action} now"
            )
        before = fresh.status
        fresh.status = to
        for name, value in fields.items():
            setattr(fresh, name, value)
        fresh.save(update_fields=["status", "updated_at", *fields])
        audit.record(action, fresh, actor=actor, before={"status": before}, after={"status": to}, details=details)
        transaction.on_commit(lambda: notify.status_changed(fresh.pk, to))
    request.refresh_from_db()
    return request
