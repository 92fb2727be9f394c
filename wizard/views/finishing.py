"""Finishing the AMI: retrying a failed step (the requester or a reviewer)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from wizard.http import AuthenticatedHttpRequest
from wizard.imports import finishing
from wizard.models import FinishingStep
from wizard.selectors import visible_requests


@login_required
@require_POST
def retry_step(request: AuthenticatedHttpRequest, pk: int, step: int) -> HttpResponse:
    import_request = get_object_or_404(visible_requests(request.user), pk=pk)
    if import_request.owner_id != request.user.pk and not request.user.has_perm("wizard.review_importrequest"):
        raise PermissionDenied("only the requester or a reviewer may retry a step")
    finishing_step = get_object_or_404(FinishingStep, pk=step, request=import_request)
    try:
        finishing.retry(import_request, finishing_step, request.user)
        messages.success(request, f"“{finishing_step.title}” is tried again.")
    except finishing.RetryRefused as exc:
        messages.error(request, f"Not retried: {exc}.")
    return redirect(import_request)
