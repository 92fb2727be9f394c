"""The reviewer's side: approve (then dispatch) or reject a submitted request.

Four eyes: the reviewer is somebody who had no hand in the request. Nobody approves or
rejects a request they own, they submitted, or that its audit history shows them creating
or changing (a draft made by one person and owned by another, after a duplicate, a CLI
import or an ownership moved by an operator). Holding the reviewer role does not change
that, nor does being a superuser. Every path (review pages, admin action) comes here.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from wizard.models import AuditEvent, ImportRequest
from wizard.requests.statemachine import TransitionError, change_status

# A reviewer's own decisions (e.g. an earlier rejection) do not make them an author.
REVIEW_ACTIONS = ("approved", "rejected")


class ReviewError(Exception):
    pass


def separation_problem(request: ImportRequest, user: User) -> str:
    """Why `user` may not approve or reject `request` under separation of duties ("" if they may)."""
    if request.owner_id == user.pk:
        return "nobody approves or rejects their own request"
    if request.submitted_by_id == user.pk:
        return "nobody approves or rejects a request they submitted"
    if AuditEvent.objects.filter(request=request, actor=user).exclude(action__in=REVIEW_ACTIONS).exists():
        return "nobody approves or rejects a request they created or changed (its history names them)"
    return ""


def _check_reviewer(request: ImportRequest, user: User) -> None:
    if not user.has_perm("wizard.review_importrequest"):
        raise ReviewError("you may not review import requests")
    # Read again: the caller's copy may be older than the row (owner, submitter).
    if problem := separation_problem(ImportRequest.objects.get(pk=request.pk), user):
        raise ReviewError(problem)


def sources_problem(request: ImportRequest) -> str:
    """Why the request may not be approved because of its sources ("" if every disk is one its
    owner may import): a grant revoked since submission, for example (wizard.uploads.sources)."""
    from wizard import targets
    from wizard.uploads import sources

    if refused := targets.refusal(request.owner, request.target, who=f"The owner, {request.owner},"):
        return refused
    refusals = sources.spec_refusals(request.owner, request.to_spec(), target=request.target)
    return "; ".join(f"{f.path}: {f.message}" for f in refusals)


def approve(request: ImportRequest, user: User) -> ImportRequest:
    """Approve and queue the dispatch (after the commit, so the worker sees the approval)."""
    _check_reviewer(request, user)
    if problem := sources_problem(request):
        raise ReviewError(f"not approved: the owner may not import every source in its target. {problem}")
    return _approve(request, user, action="approved", reviewed_by=user, details={"target": request.target_label})


def approve_without_review(request: ImportRequest) -> ImportRequest:
    """The system approves: this installation does not require a reviewer (the log says so)."""
    return _approve(
        request,
        None,
        action="approved",
        details={"reason": "approval not required (WIZARD_APPROVAL_REQUIRED=0)", "target": request.target_label},
    )


def _approve(request: ImportRequest, user: User | None, *, action: str, **fields: Any) -> ImportRequest:
    from wizard.tasks import enqueue_dispatch

    with transaction.atomic():
        try:
            change_status(
                request,
                "approve",
                actor=user,
                action=action,
                reviewed_at=timezone.now(),
                **fields,
            )
        except TransitionError as exc:
            raise ReviewError(str(exc)) from exc
        transaction.on_commit(lambda: enqueue_dispatch(request.pk))
    return request


def reject(request: ImportRequest, user: User, reason: str) -> ImportRequest:
    _check_reviewer(request, user)
    if not reason.strip():
        raise ReviewError("say why the request is rejected; the requester sees the reason")
    try:
        change_status(
            request,
            "reject",
            actor=user,
            action="rejected",
            details={"reason": reason},
            reviewed_by=user,
            reviewed_at=timezone.now(),
            review_reason=reason,
        )
    except TransitionError as exc:
        raise ReviewError(str(exc)) from exc
    return request
