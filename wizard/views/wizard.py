"""The wizard: seven steps over one draft, saved on every change (htmx) and on Back/Next."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Prefetch, QuerySet, prefetch_related_objects
from django.forms import BaseModelFormSet
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from wizard import targets
from wizard.aws import kms, vmimport
from wizard.aws.errors import AwsError
from wizard.http import AuthenticatedHttpRequest
from wizard.models import DiskContainer, ImportRequest
from wizard.preflight import fixes, preflight
from wizard.requests import acknowledgement, drafts
from wizard.requests.cli_format import to_cli_command, to_cli_json
from wizard.requests.forms import (
    DetailsForm,
    DiskForm,
    DiskFormSet,
    EncryptionForm,
    FinishForm,
    LicenceForm,
    S3SourceForm,
    SnapshotSourceForm,
    StepForm,
    TargetForm,
    UrlSourceForm,
    error_summary,
)
from wizard.requests.steps import INDEX, STEPS, step_states
from wizard.text import shown
from wizard.uploads import sources, uploads

T = TypeVar("T")
FORMS: dict[str, type[StepForm]] = {
    "upload": TargetForm,
    "encryption": EncryptionForm,
    "licence": LicenceForm,
    "details": DetailsForm,
    "finish": FinishForm,
}


def _draft(request: AuthenticatedHttpRequest, pk: int) -> ImportRequest:
    draft = get_object_or_404(ImportRequest, pk=pk, owner=request.user, status__in=drafts.EDITABLE)
    draft.owner = request.user  # the owner is who asks (the query says so): not loaded again
    return draft


def step_url(draft: ImportRequest, name: str) -> str:
    return reverse("wizard-step", args=[draft.pk, name])


@login_required
@permission_required("wizard.add_importrequest", raise_exception=True)
@require_POST
def start(request: AuthenticatedHttpRequest) -> HttpResponse:
    draft = drafts.create_draft(request.user)
    return redirect(step_url(draft, "upload"))


@login_required
def step(request: AuthenticatedHttpRequest, pk: int, name: str) -> HttpResponse:
    if name not in INDEX:
        raise Http404("no such step")
    draft = get_object_or_404(ImportRequest, pk=pk, owner=request.user)
    draft.owner = request.user  # the owner is who asks (the query says so): not loaded again
    if draft.status not in drafts.EDITABLE:
        messages.info(
            request, f"Import #{draft.pk} is {draft.get_status_display().lower()}: it can no longer be edited."
        )
        return redirect(draft)
    if request.method == "POST":
        return _save(request, draft, name)
    drafts.reach_step(draft, INDEX[name])
    if draft.wizard_step != name:
        ImportRequest.objects.filter(pk=draft.pk).update(wizard_step=name)
    return _render(request, draft, name)


def _save(request: AuthenticatedHttpRequest, draft: ImportRequest, name: str) -> HttpResponse:
    """Save the step's fields (compare-and-set on the draft's version), then go where asked."""
    try:
        version = int(request.POST.get("version", ""))
    except ValueError:
        version = -1
    form = formset = None
    values: dict[str, Any] = {}
    also = None
    if name in FORMS:
        form = FORMS[name](request.POST, request=draft)
        if not form.is_valid():
            return _not_saved(request, draft, name, error_summary(form), form=form)
        values = form.values()
    elif name == "disks":
        containers = draft.disk_containers.all()
        tampered = _formset_problem(request.POST, containers)
        if tampered:
            return _not_saved(request, draft, name, tampered)
        formset = DiskFormSet(request.POST, queryset=containers)
        if not formset.is_valid():
            return _not_saved(request, draft, name, _formset_summary(formset), formset=formset)
        move = request.POST.get("move", "")
        if move and not MOVE.fullmatch(move):
            return _not_saved(request, draft, name, f"no disk to move in {shown(move)!r}.", formset=formset)
        also = lambda: _save_disks(draft, formset, move)  # noqa: E731
    was_target = draft.target_id
    # Where the user goes now (an autosave stays): saved as the draft's step with the fields.
    going = name if request.htmx else _target(name, request.POST.get("nav", ""))
    try:
        draft = drafts.save_fields(draft, request.user, version, values, step=going, also=also)
    except drafts.Conflict as conflict:
        if conflict.current.status not in drafts.EDITABLE:  # submitted or deleted meanwhile
            messages.error(request, f"Not saved: import #{draft.pk} is no longer a draft that can be edited.")
            return redirect(conflict.current)
        return _render(request, draft, name, form=form, formset=formset, conflict=_conflict(conflict.current, form))
    # An htmx POST is an autosave: it never navigates, even when it carries a button's `nav` (htmx
    # sends the last focused submit button's value: Tab onto "Back" while a change is saving).
    moved = draft.target_id != was_target
    if moved:  # another account: its images are read (and judged) there now
        preflight.inspect_request(draft)
    if request.htmx:
        response = render(request, "wizard/_save_status.html", {"draft": draft, "note": "Saved"})
        if moved:
            response["HX-Refresh"] = "true"  # the step's disks, findings and pickers are the new target's
        return response
    return redirect(step_url(draft, going))


# The move control's value: "<container id>:up" or "<container id>:down".
MOVE = re.compile(r"([0-9]{1,18}):(up|down)")


def _not_saved(
    request: AuthenticatedHttpRequest, draft: ImportRequest, name: str, why: str, **given: Any
) -> HttpResponse:
    """The step again with its messages next to the fields and what was typed, and a status note
    that says what was wrong (an htmx autosave shows only the note). 400 for a full page; an htmx
    answer stays 200, since htmx shows no 4xx answer."""
    response = _render(request, draft, name, status_note=f"Not saved: {why}", **given)
    response.status_code = 200 if request.htmx else 400
    return response


def _formset_problem(post: QueryDict, containers: QuerySet[DiskContainer]) -> str:
    """Why the posted disk rows are not exactly this draft's disks (a tampered management form,
    another request's disk, a disk added or removed elsewhere), or ""."""
    count = len(containers)
    try:
        total, initial = int(post.get("form-TOTAL_FORMS", "")), int(post.get("form-INITIAL_FORMS", ""))
    except ValueError:
        return "the list of disks was not sent whole; reload the page."
    ids = sorted(post.get(f"form-{i}-id", "") for i in range(min(total, count)))
    if total != count or initial != count or ids != sorted(str(c.pk) for c in containers):
        return f"the disks sent are not the draft's {count} disk(s): did the list change elsewhere? Reload the page."
    return ""


def _formset_summary(formset: BaseModelFormSet[DiskContainer, DiskForm]) -> str:
    parts = [str(e) for e in formset.non_form_errors()]
    for i, form in enumerate(formset.forms):
        summary = error_summary(form)
        if summary:
            parts.append(f"disk {i}: {summary}")
    return "; ".join(parts) or "see the messages below."


def _save_disks(draft: ImportRequest, formset: BaseModelFormSet[DiskContainer, DiskForm], move: str) -> list[str]:
    """Save the rows; `move` is "<id>:up" or "<id>:down" (MOVE). Returns what changed, for the audit log."""
    changed = [f"DiskContainers[{i}]" for i, f in enumerate(formset.forms) if f.has_changed()]
    formset.save()
    if move:
        rows = list(DiskContainer.objects.filter(pk__in=[f.instance.pk for f in formset.forms]))
        rows.sort(key=lambda c: (c.position, c.pk))
        ids = [c.pk for c in rows]
        pk, _, direction = move.partition(":")
        if int(pk) in ids:
            i = ids.index(int(pk))
            j = i - 1 if direction == "up" else i + 1
            if 0 <= j < len(ids):
                ids[i], ids[j] = ids[j], ids[i]
                changed.append("DiskContainers order")
        drafts.renumber(draft, ids)
    return changed


def _target(name: str, nav: str) -> str:
    index = INDEX[name]
    if nav == "next":
        return STEPS[min(index + 1, len(STEPS) - 1)].name
    if nav == "back":
        return STEPS[max(index - 1, 0)].name
    if nav.startswith("goto:") and nav[5:] in INDEX:
        return nav[5:]
    return name


def _conflict(current: ImportRequest, form: StepForm | None) -> dict[str, Any]:
    """What the other tab saved, beside what this one typed, for the fields of this step."""
    rows = []
    if form is not None and form.is_valid():
        theirs = type(form).initial_for(current)
        for field, mine in form.cleaned_data.items():
            if field in theirs and theirs[field] != mine:
                rows.append({"field": form.fields[field].label or field, "mine": mine, "theirs": theirs[field]})
    return {"version": current.version, "updated_at": current.updated_at, "rows": rows}


def review_refused(request: AuthenticatedHttpRequest, draft: ImportRequest, why: str) -> HttpResponse:
    """The review step again, 400, with why the warnings were not acknowledged next to the box."""
    return _with_status(_render(request, draft, "review", acknowledge_error=why), 400)


def _render(
    request: AuthenticatedHttpRequest,
    draft: ImportRequest,
    name: str,
    form: StepForm | None = None,
    formset: BaseModelFormSet[DiskContainer, DiskForm] | None = None,
    conflict: dict[str, Any] | None = None,
    status_note: str = "",
    source_forms: dict[str, forms.Form] | None = None,
    acknowledge_error: str = "",
) -> HttpResponse:
    # The page reads the draft's disks (with their uploads) and its owner's grants once: the
    # findings, the spec, the pickers and the template share them. Nothing below changes them.
    prefetch_related_objects(
        [draft], Prefetch("disk_containers", queryset=DiskContainer.objects.select_related("upload"))
    )
    grants = sources.grants_of(draft.owner)
    findings = preflight.all_findings(draft, check_aws=name in ("encryption", "review"), grants=grants)
    context: dict[str, Any] = {
        "draft": draft,
        "req": draft,
        "step": STEPS[INDEX[name]],
        "states": step_states(findings, draft.furthest_step, name),
        "findings": [f for f in findings if f.step == name],
        "all_findings": findings,
        "blocking": preflight.blocking(findings),
        "field_findings": {f.field: f.message for f in findings if f.step == name},
        "conflict": conflict,
        "status_note": status_note,
        "prev": STEPS[INDEX[name] - 1] if INDEX[name] > 0 else None,
        "next": STEPS[INDEX[name] + 1] if INDEX[name] < len(STEPS) - 1 else None,
        "containers": draft.disk_containers.all(),
    }
    if name in FORMS:
        context["form"] = form or FORMS[name](initial=FORMS[name].initial_for(draft), request=draft)
    if name == "disks":
        formset = formset or DiskFormSet(queryset=draft.disk_containers.all())
        context["formset"] = formset
        context["disk_rows"] = [
            (
                f,
                {
                    pf.field.split("-", 2)[2]: pf.message
                    for pf in context["findings"]
                    if pf.field.startswith(f"disk-{i}-")
                },
            )
            for i, f in enumerate(formset.forms)
        ]
    if name == "details":
        # What was typed, with each row's errors, when the form came back; else what is saved.
        rows = getattr(form, "tag_rows", None) if form is not None and form.is_bound else None
        context["tags"] = (draft.tags if rows is None else rows) + [{"Key": "", "Value": ""}]
    if name == "finish":
        rows = getattr(form, "tag_rows", None) if form is not None and form.is_bound else None
        context["ami_tags"] = (draft.ami_tags if rows is None else rows) + [{"Key": "", "Value": ""}]
        context["delete_source_default"] = settings.DELETE_SOURCE_DEFAULT
        context["region"] = targets.region_of(draft.target)
    if name == "encryption":
        context["keys"], context["keys_error"] = _safe(lambda: kms.list_keys(target=draft.target))
    if name == "upload":
        context["unfinished"] = uploads.unfinished(draft, request.user)
        forms = {"s3": S3SourceForm(), "url": UrlSourceForm(), "snapshot": SnapshotSourceForm(), **(source_forms or {})}
        context.update(s3_form=forms["s3"], url_form=forms["url"], snapshot_form=forms["snapshot"])
        context["snapshots"], context["snapshots_error"] = _safe(
            lambda: sources.permitted_snapshots(request.user, target=draft.target, grants=grants)
        )
    if name in ("licence", "review"):
        context["fixes"] = fixes.suggested(draft)
    if name == "review":
        context.update(acknowledgement.context(draft, findings), acknowledge_error=acknowledge_error)
        spec = draft.to_spec()
        context["cli_json"] = to_cli_json(spec)
        context["cli_command"] = to_cli_command(spec, multiline=True)
    template = "wizard/_save_status.html" if request.htmx and request.method == "POST" else f"wizard/{name}.html"
    if request.htmx and request.method == "POST":
        context["note"] = status_note or ("Not saved: this draft changed elsewhere" if conflict else "")
    return render(request, template, context)


def _safe(lookup: Callable[[], list[T]]) -> tuple[list[T], str]:
    """An AWS look-up for a picker: its result, or a message instead of a broken page."""
    try:
        return lookup(), ""
    except Exception as exc:  # noqa: BLE001 - any AWS failure only empties the picker
        return [], f"Could not list them from AWS ({exc.__class__.__name__}); type the value instead."


SOURCE_FORMS = {"s3": S3SourceForm, "url": UrlSourceForm, "snapshot": SnapshotSourceForm}
# The field a refusal is shown next to.
SOURCE_FIELD = {"s3": "s3_key", "url": "url", "snapshot": "snapshot_id"}


@login_required
@require_POST
def add_source(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Add a disk container from an S3 object, a URL or a snapshot; or remove one.

    A source the user may not import (wizard.uploads.sources) is refused next to its field, with
    what was typed kept: nothing is saved and nothing is read from it."""
    draft = _draft(request, pk)
    kind = request.POST.get("kind", "")
    if kind == "remove":
        container_id = request.POST.get("container", "")
        if not (container_id.isascii() and container_id.isdigit() and len(container_id) <= 18):
            messages.error(request, "Choose one of this draft's disks to remove.")
            return _with_status(_render(request, draft, "upload"), 400)
        removed = draft.disk_containers.filter(pk=int(container_id)).first()
        if removed:
            drafts.remove_container(draft, request.user, removed)
        return redirect(step_url(draft, "upload"))
    if kind not in SOURCE_FORMS:
        raise Http404("no such source")
    form = SOURCE_FORMS[kind](request.POST)
    if form.is_valid():
        try:
            # Its inspection queued with it: the step shows it pending, then its findings.
            drafts.add_container(
                draft, request.user, inspect=True, **{k: v.strip() for k, v in form.cleaned_data.items()}
            )
        except drafts.SourceRefused as refused:
            form.add_error(SOURCE_FIELD[kind], refused.message)
        else:
            return redirect(step_url(draft, "upload"))
    note = "Not added: see the message next to the field."
    return _with_status(_render(request, draft, "upload", source_forms={kind: form}, status_note=note), 400)


@login_required
@require_POST
def apply_fix(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """A one-click fix: set the parameter the boot disk's image settles (wizard.preflight.fixes); the value
    is the image's, never the posted one."""
    draft = _draft(request, pk)
    parameter = request.POST.get("parameter", "")
    back = request.POST.get("step", "licence")
    back = back if back in ("licence", "review") else "licence"
    try:
        fix = fixes.apply(draft, request.user, parameter)
    except fixes.NoSuchFix:
        messages.error(request, "The image suggests no such change (any more): nothing was changed.")
        return _with_status(_render(request, draft, back), 400)
    except drafts.Conflict:
        messages.error(request, "This draft changed elsewhere: nothing was changed. Look again, then apply the fix.")
        return redirect(step_url(draft, back))
    messages.success(request, f"{fix.parameter} set to {fix.value}, as the image requires.")
    return redirect(step_url(draft, back))


def _with_status(response: HttpResponse, status: int) -> HttpResponse:
    response.status_code = status
    return response


@login_required
@require_POST
def dry_run(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    draft = _draft(request, pk)
    if refused := targets.refusal(request.user, draft.target):
        context = {"permitted": False, "message": refused, "error": "Target"}
        return render(request, "wizard/_dry_run.html", context)
    try:
        permitted, message = vmimport.dry_run(draft.to_api_params(), target=draft.target)
        error = ""
    except AwsError as exc:
        permitted, message, error = False, exc.message, exc.code
    except Exception as exc:  # noqa: BLE001 - e.g. the endpoint is unreachable
        permitted, message, error = False, str(exc), exc.__class__.__name__
    return render(request, "wizard/_dry_run.html", {"permitted": permitted, "message": message, "error": error})
