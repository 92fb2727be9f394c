"""Reviewer pages: the queue of requests waiting for review, and approve / reject."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Prefetch, prefetch_related_objects
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from wizard.http import AuthenticatedHttpRequest
from wizard.models import AuditEvent, DiskContainer, ImportRequest
from wizard.preflight import preflight
from wizard.requests import acknowledgement, review
from wizard.requests.cli_format import to_cli_json
from wizard.requests.forms import DecideForm, error_summary
from wizard.uploads import sources

REVIEW_PERM = "wizard.review_importrequest"


@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def queue(request: AuthenticatedHttpRequest) -> HttpResponse:
    waiting = (
        ImportRequest.objects.filter(status=ImportRequest.Status.SUBMITTED)
        .select_related("owner")
        .order_by("submitted_at", "pk")
    )
    return render(request, "review/queue.html", {"waiting": waiting})


@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    req = get_object_or_404(ImportRequest.objects.select_related("owner"), pk=pk)
    # The disks (with their uploads) and the owner's grants are read once, for the spec, the
    # findings, the acknowledgement, the provenance and the template (as the wizard's steps).
    prefetch_related_objects(
        [req], Prefetch("disk_containers", queryset=DiskContainer.objects.select_related("upload"))
    )
    grants = sources.grants_of(req.owner)
    prefetch_related_objects(grants, "groups")  # the provenance names the groups of each grant
    spec = req.to_spec()
    submitted = AuditEvent.objects.filter(request=req, action="submitted").select_related("actor").last()
    findings = preflight.all_findings(req, check_aws=True, viewer=request.user, grants=grants)
    return render(
        request,
        "review/detail.html",
        {
            **acknowledgement.context(req, findings),
            "req": req,
            "containers": req.disk_containers.all(),
            "provenance": sources.provenances(req, grants=grants),
            "findings": findings,
            "api_json": to_cli_json(spec),
            "submitted": submitted,
            "own": req.owner_id == request.user.pk,
        },
    )


@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
@require_POST
def decide(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    req = get_object_or_404(ImportRequest, pk=pk)
    form = DecideForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not decided: {error_summary(form)}.")
        return redirect("review-detail", pk=req.pk)
    try:
        if form.cleaned_data["decision"] == "approve":
            review.approve(req, request.user)
            messages.success(request, f"Approved #{req.pk}; it is being dispatched.")
        else:
            review.reject(req, request.user, form.cleaned_data["reason"])
            messages.success(request, f"Rejected #{req.pk}; the requester sees your reason.")
    except review.ReviewError as exc:
        messages.error(request, str(exc))
        return redirect("review-detail", pk=req.pk)
    return redirect("review-queue")
