"""The reviewer's side: approve (then dispatch) or reject a submitted request."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from wizard.models import ImportRequest
from wizard.statemachine import TransitionError, change_status


class ReviewError(Exception):
    pass


def _check_reviewer(request: ImportRequest, user) -> None:
    if not user.has_perm("wizard.review_importrequest"):
        raise ReviewError("you may not review import requests")
    if request.owner_id == user.pk:
        raise ReviewError("nobody approves or rejects their own request")


def approve(request: ImportRequest, user) -> ImportRequest:
    """Approve and queue the dispatch (after the commit, so the worker sees the approval)."""
    _check_reviewer(request, user)
    return _approve(request, user, action="approved", reviewed_by=user)


def approve_without_review(request: ImportRequest) -> ImportRequest:
    """The system approves: this installation does not require a reviewer (the log says so)."""
    return _approve(
        request, None, action="approved", details={"reason": "approval not required (WIZARD_APPROVAL_REQUIRED=0)"}
    )


def _approve(request: ImportRequest, user, *, action: str, **fields) -> ImportRequest:
    from wizard.tasks import enqueue_dispatch

    with transaction.atomic():
        try:
            change_status(
                request,
                ImportRequest.Status.APPROVED,
                actor=user,
                allowed_from=(ImportRequest.Status.SUBMITTED,),
                action=action,
                reviewed_at=timezone.now(),
                **fields,
            )
        except TransitionError as exc:
            raise ReviewError(str(exc)) from exc
        transaction.on_commit(lambda: enqueue_dispatch(request.pk))
    return request


def reject(request: ImportRequest, user, reason: str) -> ImportRequest:
    _check_reviewer(request, user)
    if not reason.strip():
        raise ReviewError("say why the request is rejected; the requester sees the reason")
    try:
        change_status(
            request,
            ImportRequest.Status.REJECTED,
            actor=user,
            allowed_from=(ImportRequest.Status.SUBMITTED,),
            action="rejected",
            details={"reason": reason},
            reviewed_by=user,
            reviewed_at=timezone.now(),
            review_reason=reason,
        )
    except TransitionError as exc:
        raise ReviewError(str(exc)) from exc
    return request
