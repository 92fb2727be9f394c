"""The append-only, hash-chained audit log.

Each event stores the hash of the one before it; the hash covers the event's own fields
and that previous hash, so an edit, a deletion or a reordering made directly in the
database breaks the chain at the first event touched (`verify_chain`). Deleting the last
events leaves a whole chain: the checkpoint of the head kept outside the database after each
transaction (wizard.audit.checkpoint) shows that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from wizard.audit import checkpoint as audit_checkpoint
from wizard.imports import bulkwrite
from wizard.models import AuditEvent, ImportRequest

GENESIS = "0" * 64
SYSTEM = "system"


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the event's canonical JSON."""
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


def _hashed_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "actor": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "request": event.request_id,
        "before": event.before,
        "after": event.after,
        "details": event.details,
    }


def _lock_chain() -> None:
    """Serialise appends. SQLite's IMMEDIATE transactions already do; PostgreSQL needs a lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(7355608)")


@dataclass(frozen=True)
class Entry:
    """One system event to append with `record_many`."""

    action: str
    request_id: int | None
    before: Any = None
    after: Any = None
    details: dict[str, Any] | None = None


EVENT_FIELDS = (
    "at",
    "actor_id",
    "actor_name",
    "action",
    "request_id",
    "before",
    "after",
    "details",
    "prev_hash",
    "hash",
)


def record_many(entries: Sequence[Entry]) -> None:
    """Append system events in order, with one statement for all (wizard.imports.bulkwrite).

    The chain is computed here, in Python, from the head read under the lock `record` takes,
    so it is the chain `record` would have made one event at a time (`verify_chain`).
    """
    if not entries:
        return
    with transaction.atomic(savepoint=False):  # as record's
        _lock_chain()
        prev = AuditEvent.objects.order_by("-pk").values_list("hash", flat=True).first() or GENESIS
        at = timezone.now()
        rows = []
        for entry in entries:
            details = entry.details or {}
            fields = {
                "at": at.isoformat(),
                "actor": None,
                "actor_name": SYSTEM,
                "action": entry.action,
                "request": entry.request_id,
                "before": entry.before,
                "after": entry.after,
                "details": details,
            }
            digest = event_hash(prev, fields)
            rows.append(
                (at, None, SYSTEM, entry.action, entry.request_id, entry.before, entry.after, details, prev, digest)
            )
            prev = digest
        bulkwrite.insert_rows(AuditEvent, EVENT_FIELDS, rows)
        audit_checkpoint.schedule()


def record(
    action: str,
    request: ImportRequest | None = None,
    *,
    actor: Any = None,
    before: Any = None,
    after: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. `actor` is a user, or None for the system."""
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    # No savepoint of its own: the event and the change it records commit or roll back together,
    # and on PostgreSQL the chain's lock is held two round trips (SAVEPOINT, RELEASE) less.
    with transaction.atomic(savepoint=False):
        _lock_chain()
        last = AuditEvent.objects.order_by("-pk").values_list("hash", flat=True).first()
        event = AuditEvent(
            at=timezone.now(),
            actor=user,
            actor_name=user.get_username() if user else SYSTEM,
            action=action,
            request=request,
            before=before,
            after=after,
            details=details or {},
            prev_hash=last or GENESIS,
        )
        event.hash = event_hash(event.prev_hash, _hashed_fields(event))
        event.save()
        audit_checkpoint.schedule()
    return event


def verify_chain(events: Iterable[AuditEvent] | None = None) -> AuditEvent | None:
    """The first event at which the chain breaks, or None when it is whole."""
    prev = GENESIS
    for event in events if events is not None else AuditEvent.objects.order_by("pk").iterator():
        if event.prev_hash != prev or event.hash != event_hash(prev, _hashed_fields(event)):
            return event
        prev = event.hash
    return None
