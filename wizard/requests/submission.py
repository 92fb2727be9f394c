"""Submitting a request: every rule and pre-flight check first, then to review (or straight on)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from wizard import targets
from wizard.models import ImportRequest
from wizard.preflight import acknowledgements, preflight
from wizard.preflight.acknowledgements import Key
from wizard.requests import acknowledgement
from wizard.requests.statemachine import change_status
from wizard.text import shown


class SubmitRefused(Exception):
    """The request breaks ImportImage rules or its images would fail; `findings` say which and where."""

    def __init__(self, findings: list):
        super().__init__("; ".join(f"{f.path}: {f.message}" for f in findings))
        self.findings = findings


class WarningsNotAcknowledged(SubmitRefused):
    """Warnings stand that the requester has not acknowledged (`findings`), or what was sent to
    acknowledge them is not the warnings there are now (`stale`: why)."""

    def __init__(self, findings: list, stale: str = ""):
        super().__init__(findings)
        self.stale = stale


def submit(
    request: ImportRequest,
    user: User,
    acknowledge: frozenset[Key] | None = None,
    acknowledge_codes: list[str] | None = None,
) -> ImportRequest:
    """Hand a draft (or a rejected request) to the reviewers, or straight to dispatch
    when the installation does not require approval (WIZARD_APPROVAL_REQUIRED=0).

    Errors refuse it; warnings need an acknowledgement (wizard.preflight.acknowledgements): the
    latest stored one, or the one sent, stored and audited with the submission: `acknowledge`,
    exactly the warnings there are now (the review step's box), or `acknowledge_codes`, the
    codes of every warning there is now (the API), none that is not."""
    from wizard.requests.review import approve_without_review

    found = preflight.all_findings(request, check_aws=True)
    findings = preflight.blocking(found)
    if findings:
        raise SubmitRefused(findings)
    covered = acknowledgement.acknowledged(request)
    if acknowledge_codes is not None:
        acknowledge, unknown = acknowledgements.from_codes(found, acknowledge_codes)
        if unknown:
            stale = f"Not warnings of this request (now): {shown(', '.join(unknown), 300)}; nothing was acknowledged."
            raise WarningsNotAcknowledged(acknowledgements.needing(found), stale=stale)
        covered = acknowledge
    elif acknowledge is not None:
        try:
            acknowledgement.check(found, acknowledge)
        except acknowledgement.NotAcknowledged as exc:
            raise WarningsNotAcknowledged(acknowledgements.needing(found), stale=exc.message) from exc
        covered = acknowledge
    if missing := acknowledgements.uncovered(found, covered):
        raise WarningsNotAcknowledged(missing)
    with transaction.atomic():
        if acknowledge:
            try:
                acknowledgement.record(request, user, found)
            except acknowledgement.NotAcknowledged as exc:
                raise WarningsNotAcknowledged(acknowledgements.needing(found), stale=exc.message) from exc
        change_status(
            request,
            "submit",
            actor=user,
            action="submitted",
            details={"target": targets.label(request.target)},
            submitted_at=timezone.now(),
            submitted_by=user,
        )
        if not settings.APPROVAL_REQUIRED:
            approve_without_review(request)
    return request
