"""Storing a requester's acknowledgement of a request's warnings, audited.

The rule (which warnings need it, whether it covers them) is wizard.preflight.acknowledgements;
`submission.submit` checks it and calls `record` in the same transaction as the submission.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from wizard.audit import audit
from wizard.models import ImportRequest, WarningAcknowledgement
from wizard.preflight import acknowledgements
from wizard.preflight.acknowledgements import Key
from wizard.requests.steps import Placed
from wizard.text import shown


class NotAcknowledged(Exception):
    """What was sent does not acknowledge the warnings there are now; `message` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def latest(request: ImportRequest) -> WarningAcknowledgement | None:
    return request.warning_acknowledgements.select_related("by").order_by("-at", "-pk").first()


def acknowledged(request: ImportRequest) -> frozenset[Key]:
    """The warnings the request's latest acknowledgement covers (none: an empty set)."""
    last = latest(request)
    return acknowledgements.from_stored(last.warnings) if last else frozenset()


def _listed(findings: list[Placed], found: frozenset[Key]) -> str:
    shown = []
    for f in acknowledgements.needing(findings):
        if acknowledgements.key_of(f) in found:
            shown.append(f"{f.path}: {f.code}")
    return "; ".join(dict.fromkeys(shown))


def check(findings: list[Placed], sent: frozenset[Key]) -> None:
    """`sent` must be exactly the warnings of `findings`: a page shown before a warning came or
    went (a new image, a re-inspection), or a tampered form, acknowledges nothing."""
    current = acknowledgements.keys(findings)
    if sent == current:
        return
    new, gone = current - sent, sent - current
    parts = []
    if new:
        parts.append(f"new since the page was shown: {_listed(findings, new)}")
    if gone:
        parts.append(f"no longer found: {shown(', '.join(acknowledgements.codes(gone)), 300)}")
    raise NotAcknowledged(
        "The warnings changed since this page was shown (" + "; ".join(parts) + "): nothing was acknowledged. "
        "Read them again below, then tick the box."
    )


def record(request: ImportRequest, user: User, findings: list[Placed]) -> WarningAcknowledgement | None:
    """Store that `user` acknowledged exactly the current warnings of `findings`, and audit it;
    nothing when there are none, or when the latest acknowledgement holds exactly these already.
    Only the request's owner (whoever may edit it); `submission.submit` calls it in the
    transaction that changes the status, so that a request no longer editable keeps nothing."""
    if request.owner_id != user.pk:
        raise NotAcknowledged(f"Only the owner of import #{request.pk} acknowledges its warnings.")
    current = acknowledgements.keys(findings)
    if not current or acknowledged(request) == current:
        return None
    positions = {c.pk: c.position for c in request.disk_containers.all()}
    stored = acknowledgements.as_stored(current)
    ack = WarningAcknowledgement.objects.create(request=request, warnings=stored, by=user, at=timezone.now())
    details = {
        "codes": acknowledgements.codes(current),
        "warnings": [{**w, "position": positions.get(w["disk"])} if w["disk"] else w for w in stored],
    }
    audit.record("warnings acknowledged", request, actor=user, details=details)
    return ack


def context(request: ImportRequest, findings: list[Placed]) -> dict[str, Any]:
    """What the review step and the reviewer's page show: each warning and whether the latest
    acknowledgement covers it, those it does not, that acknowledgement, and the form's token."""
    last = latest(request)
    covered = acknowledgements.from_stored(last.warnings) if last else frozenset()
    return {
        "warnings": [(f, acknowledgements.key_of(f) in covered) for f in acknowledgements.needing(findings)],
        "unacknowledged": acknowledgements.uncovered(findings, covered),
        "acknowledgement": last,
        "acknowledge_token": acknowledgements.token(acknowledgements.keys(findings)),
    }
