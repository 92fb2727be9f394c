"""The htmx partial of one disk's image inspection: "Inspecting…" while the worker runs it, then the report."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from wizard.http import AuthenticatedHttpRequest
from wizard.models import DiskContainer
from wizard.preflight import preflight
from wizard.selectors import visible_requests


@login_required
@require_GET
def container_inspection(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Polled every 2 s while the inspection is pending; the final answer has no trigger, so the
    polling stops, and its HX-Trigger "inspection-done" lets the page refresh what depends on it.
    One that waited too long (its task lost with a worker) is queued again, harmlessly.
    Only the request's owner and those who see every request (reviewers, auditors) get it: 404."""
    container = get_object_or_404(
        DiskContainer.objects.select_related("request"), pk=pk, request__in=visible_requests(request.user)
    )
    preflight.requeue_if_stale(container)
    context = {"c": container, "with_findings": request.GET.get("findings") == "1"}
    response = render(request, "wizard/_inspection.html", context)
    if container.inspection_status != preflight.PENDING:
        response["HX-Trigger"] = "inspection-done"
    return response
