"""Requester pages: my imports, a new import, a request's page and its live progress."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from wizard import submission
from wizard.cli_format import to_cli_command, to_cli_json
from wizard.forms import NewImportForm
from wizard.models import ImportRequest
from wizard.selectors import visible_requests
from wizard.statemachine import TransitionError


POLLING_STATUSES = (ImportRequest.Status.SUBMITTED, ImportRequest.Status.APPROVED, ImportRequest.Status.IMPORTING)


@login_required
def my_imports(request: HttpRequest) -> HttpResponse:
    imports = request.user.import_requests.exclude(status=ImportRequest.Status.DELETED).select_related("import_task")
    return render(request, "imports/my_imports.html", {"imports": imports})


@login_required
@permission_required("wizard.add_importrequest", raise_exception=True)
def new_import(request: HttpRequest) -> HttpResponse:
    form = NewImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        import_request = submission.create_from_upload(
            request.user, form.cleaned_data["image"], form.cleaned_data["format"], form.cleaned_data["description"]
        )
        if "submit" in request.POST:
            return submit_request(request, import_request.pk)
        return redirect(import_request)
    return render(request, "imports/new.html", {"form": form})


@login_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    import_request = get_object_or_404(visible_requests(request.user), pk=pk)
    return render(request, "imports/detail.html", _progress_context(import_request))


@login_required
def request_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The htmx partial polled by the request's page; reads only the database, never AWS."""
    import_request = get_object_or_404(visible_requests(request.user), pk=pk)
    return render(request, "imports/_progress.html", _progress_context(import_request))


@login_required
@require_POST
def submit_request(request: HttpRequest, pk: int) -> HttpResponse:
    import_request = get_object_or_404(ImportRequest, pk=pk, owner=request.user)
    try:
        submission.submit(import_request, request.user)
        messages.success(request, "Submitted for review." if settings.APPROVAL_REQUIRED else "Submitted and approved.")
    except submission.SubmitRefused as exc:
        messages.error(request, f"Not submitted: {len(exc.findings)} problem(s) to fix first, listed below.")
        return redirect("wizard-step", pk=import_request.pk, name="review")
    except TransitionError as exc:
        messages.error(request, str(exc))
    return redirect(import_request)


def _progress_context(import_request: ImportRequest) -> dict[str, object]:
    task = getattr(import_request, "import_task", None)
    spec = import_request.to_spec()
    return {
        "cli_json": to_cli_json(spec),
        "cli_command": to_cli_command(spec, multiline=True),
        "req": import_request,
        "task": task,
        "containers": import_request.disk_containers.all(),
        # Poll while something can still change without the requester doing anything.
        "polling": import_request.status in POLLING_STATUSES,
    }
