"""History pages: a request's timeline, and the audit log with filters and CSV export."""

from __future__ import annotations

import csv

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.safestring import mark_safe

from wizard.forms import TextFields
from wizard.models import ImportRequest, TaskStatusChange
from wizard.selectors import visible_events, visible_requests
from wizard.timeline import progress_svg, stage_durations

PAGE_SIZE = 50


@login_required
def request_history(request: HttpRequest, pk: int) -> HttpResponse:
    req = get_object_or_404(visible_requests(request.user), pk=pk)
    changes = list(TaskStatusChange.objects.filter(task__request=req).order_by("at", "pk"))
    task = getattr(req, "import_task", None)
    stages = stage_durations(
        [(c.at, c.status_message or c.status) for c in changes], timezone.now(), final=bool(task and task.is_final)
    )
    points = [(c.at, c.progress if c.progress is not None else 100) for c in changes]
    return render(
        request,
        "history/request.html",
        {
            "req": req,
            "events": req.audit_events.select_related("actor").order_by("pk"),
            "stages": stages,
            "chart": mark_safe(progress_svg(points)),  # built from numbers only; labels escaped
        },
    )


class AuditFilter(TextFields, forms.Form):
    user = forms.CharField(required=False, max_length=150, label="User")
    action = forms.CharField(required=False, max_length=64)
    request = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, label="Request #")
    status = forms.ChoiceField(required=False, choices=[("", "any")] + list(ImportRequest.Status.choices))
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    # Form field -> the AuditEvent lookup it filters on.
    LOOKUPS = {
        "user": "actor_name",
        "action": "action",
        "request": "request_id",
        "status": "request__status",
        "since": "at__date__gte",
        "until": "at__date__lte",
    }

    def filter(self, events):
        wanted = {
            lookup: self.cleaned_data[name] for name, lookup in self.LOOKUPS.items() if self.cleaned_data.get(name)
        }
        return events.filter(**wanted)


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilter(request.GET or None)
    events = visible_events(request.user).select_related("request").order_by("-pk")
    if form.is_bound and form.is_valid():
        events = form.filter(events)
    elif form.is_bound:
        events = events.none()
    if request.GET.get("format") == "csv":
        return _csv(events)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "history/audit_log.html", {"form": form, "page": page, "query": query.urlencode()})


def _csv(events) -> HttpResponse:
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
    writer = csv.writer(response)
    writer.writerow(["id", "at", "actor", "action", "request", "before", "after", "details", "hash"])
    for e in events.iterator():
        writer.writerow(
            [e.pk, e.at.isoformat(), e.actor_name, e.action, e.request_id or "", e.before, e.after, e.details, e.hash]
        )
    return response
