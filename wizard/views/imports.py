"""Requester pages: my imports, a new import, a request's page and its live progress."""

from __future__ import annotations

import functools
import hashlib
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import get_template
from django.utils import timezone
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from wizard import targets
from wizard.http import AuthenticatedHttpRequest
from wizard.imports import cancelling, failures, progress
from wizard.models import FinishingStep, ImportRequest, ImportTask
from wizard.preflight import acknowledgements
from wizard.requests import drafts, statemachine, submission
from wizard.requests.cli_format import to_cli_command, to_cli_json
from wizard.requests.forms import CancelForm, error_summary
from wizard.requests.review import ReviewError
from wizard.requests.statemachine import TransitionError
from wizard.selectors import own_request_with_task, visible_requests
from wizard.templatetags.wizard_tags import duration
from wizard.views.wizard import review_refused

POLLING_STATUSES = (
    ImportRequest.Status.SUBMITTED,
    ImportRequest.Status.APPROVED,
    ImportRequest.Status.IMPORTING,
    ImportRequest.Status.FINISHING,  # wizard.imports.finishing
)


@login_required
def my_imports(request: AuthenticatedHttpRequest) -> HttpResponse:
    imports = request.user.import_requests.exclude(status=ImportRequest.Status.DELETED).select_related("import_task")
    return render(request, "imports/my_imports.html", {"imports": imports})


@login_required
@permission_required("wizard.add_importrequest", raise_exception=True)
def new_import(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Two ways in: the wizard, or an AWS CLI document."""
    return render(request, "imports/new.html")


@login_required
def request_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    import_request = get_object_or_404(visible_requests(request.user), pk=pk)
    spec = import_request.to_spec()
    context = {**progress_context(import_request), "viewer": request.user.pk}
    context.update(
        containers=import_request.disk_containers.select_related("upload"),
        cli_json=to_cli_json(spec),
        cli_command=to_cli_command(spec, multiline=True),
        can_cancel=statemachine.can_cancel(import_request)
        and (import_request.owner_id == request.user.pk or request.user.has_perm("wizard.review_importrequest")),
        etag=progress_etag(context),  # the first poll's answer, if unchanged, is not swapped in either
    )
    return render(request, "imports/detail.html", context)


@login_required
def request_progress(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The htmx partial polled by the request's page; reads only the database, never AWS.

    Answered 304 when nothing it shows changed: its ETag is a hash of the values the
    template shows, computed after the access check and without rendering. The polled element
    sends it (hx-headers: If-None-Match), and htmx swaps nothing on a 304 (base.html's
    htmx-config): the page stays as it was.
    """
    # The requester's own request first: no permission look-ups on this hot path.
    own = own_request_with_task(pk, request.user.pk)
    import_request = own or get_object_or_404(visible_requests(request.user).select_related("import_task"), pk=pk)
    shown = {**shown_values(import_request), "viewer": request.user.pk}
    etag = progress_etag(shown)
    response = get_conditional_response(request, etag=etag)
    if response is None:
        response = render(request, "imports/_progress.html", {**progress_context(import_request, shown), "etag": etag})
    response.headers["ETag"] = etag
    patch_cache_control(response, private=True, no_cache=True)
    return response


@login_required
@require_POST
def submit_request(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    import_request = get_object_or_404(ImportRequest, pk=pk, owner=request.user)
    acknowledge = None
    if request.POST.get("acknowledge") == "yes":  # the box under the warnings of the review step
        acknowledge = acknowledgements.parse_token(request.POST.get("warnings", ""))
        if acknowledge is None:
            return _not_acknowledged(request, import_request, "The list of warnings sent is not one this page shows.")
    try:
        submission.submit(import_request, request.user, acknowledge=acknowledge)
        messages.success(request, "Submitted for review." if settings.APPROVAL_REQUIRED else "Submitted and approved.")
    except submission.WarningsNotAcknowledged as exc:
        n = len(exc.findings)
        why = exc.stale or (
            f"{n} warning{'s' if n != 1 else ''} above: tick “{ACKNOWLEDGE}” to submit anyway, or mend "
            f"{'them' if n != 1 else 'it'} first."
        )
        return _not_acknowledged(request, import_request, why)
    except submission.SubmitRefused as exc:
        messages.error(request, f"Not submitted: {len(exc.findings)} problem(s) to fix first, listed below.")
        return redirect("wizard-step", pk=import_request.pk, name="review")
    except (TransitionError, ReviewError):  # deleted, or submitted by another tab, meanwhile
        import_request.refresh_from_db()
        messages.error(
            request, f"Not submitted: import #{import_request.pk} is {import_request.get_status_display().lower()}."
        )
    return redirect(import_request)


ACKNOWLEDGE = "I have read these warnings and want to import anyway"


def _not_acknowledged(request: AuthenticatedHttpRequest, import_request: ImportRequest, why: str) -> HttpResponse:
    """Not submitted: the review step again (400), why next to the box, nothing saved lost."""
    if import_request.status not in drafts.EDITABLE:  # submitted by another tab meanwhile
        return redirect(import_request)
    return review_refused(request, import_request, why)


@login_required
@require_POST
def cancel_request(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    import_request = get_object_or_404(visible_requests(request.user), pk=pk)
    if import_request.owner_id != request.user.pk and not request.user.has_perm("wizard.review_importrequest"):
        raise PermissionDenied("only the requester or a reviewer may cancel an import")
    form = CancelForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not cancelled, nothing was sent to AWS: {error_summary(form)}.")
        return redirect(import_request)
    try:
        cancelling.cancel(import_request, request.user, form.cleaned_data["reason"])
        messages.success(request, "Cancellation requested; AWS is deleting the import task.")
    except cancelling.CancelError as exc:
        messages.error(request, str(exc))
    return redirect(import_request)


def progress_context(import_request: ImportRequest, shown: dict[str, object] | None = None) -> dict[str, object]:
    """Everything the progress partial shows, from the request and its task (and, once AWS's
    import ended, its finishing steps: one query more); from `shown` (shown_values) when the
    caller has it already."""
    context = dict(shown) if shown is not None else shown_values(import_request)
    task = context["task"]
    failed = import_request.status in (ImportRequest.Status.FAILED, ImportRequest.Status.CANCELLED)
    context.update(
        # Poll while something can still change without the requester doing anything.
        polling=import_request.status in POLLING_STATUSES,
        explanation=failures.explain(import_request.failure_message) if import_request.failure_message else None,
    )
    if isinstance(task, ImportTask):
        elapsed = (task.changed_at if task.is_final else timezone.now()) - task.created_at
        time_left = None if task.is_final else progress.time_left(elapsed, task.progress)
        context.update(
            stepper=progress.stepper(task.status, task.status_message, failed),
            disks=progress.disk_progress(task.snapshot_details),
            # A running import's times to the minute, as of this render: wizard.js keeps them
            # current from data-elapsed, so the clock alone never changes the partial (its ETag).
            elapsed_text=duration(elapsed) if task.is_final else progress.rough_duration(elapsed),
            elapsed_seconds=None if task.is_final else max(0, int(elapsed.total_seconds())),
            time_left_text=_about(time_left) if time_left is not None else "",
        )
    return context


def shown_values(import_request: ImportRequest) -> dict[str, object]:
    """What the partial shows that is not a plain function of the request's and task's fields
    (the finishing steps, how long a stalled task has not moved, the console's address), with
    the request and task themselves: all that progress_etag reads. The rest of progress_context
    is worked out from these alone, so only a render needs it."""
    task = getattr(import_request, "import_task", None)
    now = timezone.now()
    finishing = import_request.status in (ImportRequest.Status.FINISHING, ImportRequest.Status.COMPLETED)
    context: dict[str, object] = {
        "req": import_request,
        "task": task,
        # Steps exist only once the import completed (wizard.imports.finishing.start).
        "finishing_steps": list(import_request.finishing_steps.all()) if finishing and import_request.pk else [],
    }
    if task is not None:
        stalled = progress.is_stalled(task.changed_at, now, task.is_final, timedelta(minutes=settings.STALL_MINUTES))
        context.update(
            stalled_for=timesince(task.changed_at, now) if stalled else "",
            console_url=_console_url(task.image_id, targets.region_of(import_request.target)),
        )
    return context


def _about(value: timedelta) -> str:
    rough = progress.rough_duration(value)
    return rough if value < timedelta(minutes=1) else f"about {rough}"


def progress_etag(context: dict[str, object]) -> str:
    """The ETag of the progress partial: every value it shows (the request's and task's fields,
    shown_values), and the template's own source. No rendering, no query.

    Weak (W/): a running import's elapsed time and time left are worked out from the task's
    created_at and progress, as of the render, and kept current in the browser (wizard.js), so
    two renders a minute apart differ in those words alone and are the same partial."""
    req = context["req"]
    task = context["task"]
    assert isinstance(req, ImportRequest)
    shown: list[object] = [
        _template_source_hash(),
        context.get("viewer"),  # who looks: the retry button is the owner's or a reviewer's
        req.pk,
        req.status,
        req.failure_message,
        context.get("stalled_for"),
        context.get("console_url"),
    ]
    if isinstance(task, ImportTask):
        shown += [
            task.import_task_id,
            task.created_at,  # the elapsed time and the time left (with progress)
            task.changed_at,  # a finished import's elapsed time
            task.status,
            task.status_message,
            task.progress,
            task.image_id,
            task.snapshot_details,
            task.attention,
        ]
    steps = context.get("finishing_steps")
    if isinstance(steps, list):
        shown += [(s.pk, s.state, s.image_id, s.error) for s in steps if isinstance(s, FinishingStep)]
    return "W/" + progress.fingerprint(shown)


@functools.cache
def _template_source_hash() -> str:
    """A new template (a deploy) makes new ETags: a browser's cached partial is not reused."""
    source = get_template("imports/_progress.html").template.source  # type: ignore[attr-defined]
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _console_url(image_id: str, region: str) -> str:
    """The AMI's page in the EC2 console (real AWS only), in the request's target's region."""
    if not image_id or settings.AWS_SANDBOX:
        return ""
    return f"https://{region}.console.aws.amazon.com/ec2/home?region={region}#ImageDetails:imageId={image_id}"
