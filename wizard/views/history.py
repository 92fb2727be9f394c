"""History pages: a request's timeline, and the audit log with filters and CSV export."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from wizard.audit import events as sentences
from wizard.audit.timeline import progress_svg, stage_durations
from wizard.batches.batches import visible_batches
from wizard.http import AuthenticatedHttpRequest
from wizard.models import AuditEvent, ImportRequest, TaskStatusChange
from wizard.requests.forms import TextFields
from wizard.selectors import visible_events, visible_requests

PAGE_SIZE = 50


@login_required
def request_history(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
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
            "events": described(request.user, list(req.audit_events.order_by("pk"))),
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

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        wanted = {
            lookup: self.cleaned_data[name] for name, lookup in self.LOOKUPS.items() if self.cleaned_data.get(name)
        }
        return events.filter(**wanted)


@login_required
def audit_log(request: AuthenticatedHttpRequest) -> HttpResponse:
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
    context = {
        "form": form,
        "page": page,
        "rows": described(request.user, page.object_list),
        "query": query.urlencode(),
    }
    return render(request, "history/audit_log.html", context)


def described(user: User, events: Iterable[AuditEvent]) -> list[dict[str, Any]]:
    """Each event with its sentence (HTML, ids linked where `user` may follow them) and its raw JSON."""
    parts = [sentences.describe_event(e) for e in events]
    link = linker(user, [r for p in parts for r in sentences.refs(p)])
    return [
        {"event": e, "sentence": mark_safe(sentences.as_html(p, link)), "raw": sentences.raw(e)}  # as_html escapes
        for e, p in zip(events, parts, strict=True)
    ]


def linker(user: User, refs: list[sentences.Ref]) -> sentences.Link:
    """Where each id links: a request's (or its task's) page and a batch's only if `user` may see
    them; AMIs and snapshots to the EC2 console on real AWS (nothing to show in the sandbox).
    Two queries, whatever the number of ids."""
    request_ids = {int(r.value) for r in refs if r.kind == "request"} | {
        r.request for r in refs if r.kind == "task" and r.request
    }
    batch_ids = {int(r.value) for r in refs if r.kind == "batch"}
    may_see = (
        set(visible_requests(user).filter(pk__in=request_ids).values_list("pk", flat=True)) if request_ids else set()
    )
    batches = set(visible_batches(user).filter(pk__in=batch_ids).values_list("pk", flat=True)) if batch_ids else set()
    console = None if settings.AWS_SANDBOX else sentences.console_links(settings.AWS_REGION)

    def link(ref: sentences.Ref) -> str | None:
        if ref.kind == "request" and int(ref.value) in may_see:
            return reverse("request-detail", args=[int(ref.value)])
        if ref.kind == "task" and ref.request in may_see:
            return reverse("request-detail", args=[ref.request]) + "#import-task-id"
        if ref.kind == "batch" and int(ref.value) in batches:
            return reverse("batch-detail", args=[int(ref.value)])
        return console(ref) if console else None

    return link


def _csv(events: QuerySet[AuditEvent]) -> HttpResponse:
    """The raw fields (before, after and details as JSON) and the sentence."""
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
    writer = csv.writer(response)
    writer.writerow(["id", "at", "actor", "action", "request", "before", "after", "details", "hash", "sentence"])
    for e in events.iterator():
        text = sentences.as_text(sentences.describe_event(e))
        writer.writerow(
            [
                e.pk,
                e.at.isoformat(),
                e.actor_name,
                e.action,
                e.request_id or "",
                _json(e.before),
                _json(e.after),
                _json(e.details),
                e.hash,
                _no_formula(text),
            ]
        )
    return response


def _json(value: Any) -> str:
    return "" if value is None else sentences.json_text(value)


def _no_formula(text: str) -> str:
    """A spreadsheet would run a cell starting with = + - @ as a formula (CSV injection): quote it."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
