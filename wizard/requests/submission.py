"""Submitting a request: every rule and pre-flight check first, then to review (or straight on)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from wizard.models import ImportRequest
from wizard.preflight import preflight
from wizard.requests.statemachine import change_status


class SubmitRefused(Exception):
    """The request breaks ImportImage rules or its images would fail; `findings` say which and where."""

    def __init__(self, findings: list):
        super().__init__("; ".join(f"{f.path}: {f.message}" for f in findings))
        self.findings = findings


def submit(request: ImportRequest, user: User) -> ImportRequest:
    """Hand a draft (or a rejected request) to the reviewers, or straight to dispatch
    when the installation does not require approval (WIZARD_APPROVAL_REQUIRED=0)."""
    from wizard.requests.review import approve_without_review

    findings = preflight.blocking(preflight.all_findings(request, check_aws=True))
    if findings:
        raise SubmitRefused(findings)
    with transaction.atomic():
        change_status(
            request,
            "submit",
            actor=user,
            action="submitted",
            submitted_at=timezone.now(),
            submitted_by=user,
        )
        if not settings.APPROVAL_REQUIRED:
            approve_without_review(request)
    return request
