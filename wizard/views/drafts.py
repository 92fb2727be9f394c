"""My drafts (resume, duplicate, delete), and drafts made from an AWS CLI document."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from wizard.http import AuthenticatedHttpRequest
from wizard.models import ImportRequest
from wizard.preflight import preflight
from wizard.requests import drafts
from wizard.requests.cli_format import parse_cli_input
from wizard.requests.forms import CliImportForm
from wizard.requests.importspec import Finding
from wizard.requests.statemachine import TransitionError
from wizard.requests.steps import INDEX, STEPS
from wizard.selectors import visible_requests
from wizard.views.wizard import step_url


@login_required
def my_drafts(request: AuthenticatedHttpRequest) -> HttpResponse:
    rows = []
    for draft in request.user.import_requests.filter(status__in=drafts.EDITABLE).prefetch_related("disk_containers"):
        findings = preflight.blocking(preflight.all_findings(draft))
        rows.append({"draft": draft, "step": STEPS[INDEX.get(draft.wizard_step, 0)], "problems": findings})
    return render(request, "drafts/list.html", {"rows": rows})


@login_required
@permission_required("wizard.add_importrequest", raise_exception=True)
@require_POST
def duplicate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """A new draft with the settings of any request the user may see ("import again")."""
    original = get_object_or_404(visible_requests(request.user), pk=pk)
    copy, not_copied = drafts.duplicate(original, request.user)
    messages.success(request, f"Draft #{copy.pk} made with the settings of #{original.pk}.")
    for sentence in not_copied:
        messages.warning(request, sentence)
    return redirect(step_url(copy, "review"))


@login_required
def delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    draft = get_object_or_404(ImportRequest, pk=pk, owner=request.user, status=ImportRequest.Status.DRAFT)
    if request.method == "POST":
        try:
            drafts.delete_draft(draft, request.user)
        except TransitionError:  # submitted (or deleted) by another tab meanwhile
            draft.refresh_from_db()
            messages.error(request, f"Not deleted: import #{pk} is {draft.get_status_display().lower()}.")
            return redirect(draft)
        messages.success(request, f"Draft #{pk} deleted.")
        return redirect("my-drafts")
    return render(request, "drafts/confirm_delete.html", {"draft": draft})


@login_required
@permission_required("wizard.add_importrequest", raise_exception=True)
def cli_import(request: AuthenticatedHttpRequest) -> HttpResponse:
    """A --cli-input-json / --cli-input-yaml document becomes a draft; nothing is saved if it has errors."""
    form = CliImportForm(request.POST or None, request.FILES or None)
    errors: list[Finding] = []
    if request.method == "POST" and form.is_valid():
        spec, errors = parse_cli_input(form.cleaned_data["document"], form.cleaned_data["format"])
        if spec is not None and not errors:
            try:
                draft = drafts.draft_from_spec(request.user, spec, source=f"cli-input-{form.cleaned_data['format']}")
            except drafts.SourceRefused as refused:
                errors = refused.findings
            else:
                messages.success(request, f"Draft #{draft.pk} made from the document.")
                return redirect(step_url(draft, "review"))
    return render(request, "drafts/cli_import.html", {"form": form, "errors": errors})
