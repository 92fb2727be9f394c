"""Batch pages: make a batch from a manifest, follow it on one dashboard, review it, and the
API tokens page. Thin: the work is in wizard.batches.batches and wizard.api.tokens."""

from __future__ import annotations

from typing import Any, cast

from botocore.exceptions import BotoCoreError, ClientError
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from wizard.api import tokens
from wizard.batches import batches
from wizard.batches.manifest import MAX_BYTES, MAX_ROWS
from wizard.http import AuthenticatedHttpRequest
from wizard.models import ApiToken, Batch, BatchItem, ImportRequest, Upload
from wizard.uploads import uploads

REVIEW_PERM = "wizard.review_importrequest"
CHOICES = {
    "Platform": ["", "Linux", "Windows"],
    "Architecture": ["", "x86_64", "i386", "arm64"],
    "BootMode": ["", "legacy-bios", "uefi", "uefi-preferred"],
    "LicenseType": ["", "AWS", "BYOL"],
}


def _choices(name: str) -> list[tuple[str, str]]:
    return [(v, v or "(each VM's own, or AWS's default)") for v in CHOICES[name]]


class BatchForm(forms.Form):
    name = forms.CharField(max_length=255, required=False)
    format = forms.ChoiceField(choices=[("csv", "CSV"), ("yaml", "YAML"), ("json", "JSON")], initial="csv")
    manifest_file = forms.FileField(required=False, label="Manifest file")
    manifest = forms.CharField(widget=forms.Textarea(attrs={"rows": 10}), required=False, label="or paste it")
    uploads = forms.ModelMultipleChoiceField(
        queryset=Upload.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="or choose images you uploaded here (one VM each)",
    )
    Platform = forms.ChoiceField(choices=_choices("Platform"), required=False)
    Architecture = forms.ChoiceField(choices=_choices("Architecture"), required=False)
    BootMode = forms.ChoiceField(choices=_choices("BootMode"), required=False)
    LicenseType = forms.ChoiceField(choices=_choices("LicenseType"), required=False)
    RoleName = forms.CharField(max_length=64, required=False)
    KmsKeyId = forms.CharField(max_length=2048, required=False)
    Encrypted = forms.BooleanField(required=False, label="Encrypt every AMI's snapshots (Encrypted)")
    Tags = forms.CharField(max_length=4000, required=False, help_text="Key=Value;Key=Value, added to every VM")
    import_valid = forms.BooleanField(required=False, label="If some rows have errors, import the valid ones")
    submit = forms.BooleanField(required=False, initial=True, label="Submit every request for review")

    def __init__(self, *args: Any, user: User | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        uploads = cast(forms.ModelMultipleChoiceField, self.fields["uploads"])
        uploads.queryset = Upload.objects.filter(owner=user, status=Upload.Status.COMPLETED).order_by(
            "-completed_at", "-pk"
        )
        uploads.label_from_instance = lambda u: f"{u.file_name} ({u.size:,} bytes, {u.completed_at:%Y-%m-%d %H:%M})"  # type: ignore[method-assign,assignment]

    def clean(self) -> dict[str, Any]:
        data = cast("dict[str, Any]", super().clean())  # forms.Form.clean returns cleaned_data
        upload = data.get("manifest_file")
        if upload is not None:
            if upload.size > MAX_BYTES:
                self.add_error("manifest_file", f"The manifest is larger than {MAX_BYTES // 1024} KiB; split it.")
                return data
            try:
                data["manifest"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                self.add_error("manifest_file", "The manifest must be UTF-8 text.")
                return data
            self.data = cast(QueryDict, self.data).copy()
            self.data["manifest"] = data["manifest"]  # shown again in the text box: nothing is lost
        if not (data.get("manifest") or "").strip() and not data.get("uploads"):
            self.add_error("manifest", "Choose a manifest file, paste one, or choose uploaded images.")
        tags = []
        for item in (data.get("Tags") or "").split(";"):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                self.add_error("Tags", f"Write each tag as Key=Value, separated by ';' (not {item.strip()!r}).")
                break
            tags.append({"Key": key.strip(), "Value": value.strip()})
        values = {k: data.get(k) for k in batches.SETTINGS}
        values["Encrypted"] = True if data.get("Encrypted") else None
        data["defaults"] = batches.settings_params(values, tags)
        return data


@login_required
def batch_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "batches/list.html", {"batches": batches.visible_batches(request.user)[:200]})


@login_required
@permission_required("wizard.add_importrequest", raise_exception=True)
def batch_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = BatchForm(request.POST or None, request.FILES or None, user=request.user)
    manifest = None
    if (
        request.method == "POST"
        and form.is_valid()
        and form.cleaned_data["uploads"]
        and not form.cleaned_data["manifest"]
    ):
        data = form.cleaned_data
        try:
            batch = batches.create_from_uploads(
                request.user,
                name=data["name"],
                upload_ids=[u.pk for u in data["uploads"]],
                defaults=data["defaults"],
                submit=data["submit"],
            )
        except batches.BatchError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Batch #{batch.pk}: {batch.items.count()} requests made.")
            return redirect(batch)
    elif request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            batch, manifest = batches.create_from_manifest(
                request.user,
                name=data["name"],
                text=data["manifest"],
                fmt=data["format"],
                defaults=data["defaults"],
                import_valid=data["import_valid"],
                submit=data["submit"],
            )
        except batches.BatchRefused as refused:
            manifest = refused.manifest
            messages.error(request, refused.message)
        else:
            skipped = len(manifest.invalid)
            messages.success(
                request,
                f"Batch #{batch.pk}: {len(manifest.valid)} requests made"
                + (f"; {skipped} rows with errors were not imported." if skipped else "."),
            )
            return redirect(batch)
    return render(
        request,
        "batches/new.html",
        {
            "form": form,
            "manifest": manifest,
            "max_rows": MAX_ROWS,
            "max_kib": MAX_BYTES // 1024,
            "unfinished": uploads.unfinished(None, request.user),
        },
    )


def _visible(request: AuthenticatedHttpRequest, pk: int) -> Batch:
    return get_object_or_404(batches.visible_batches(request.user), pk=pk)


def _context(request: AuthenticatedHttpRequest, batch: Batch) -> dict[str, object]:
    dash = batches.dashboard(batch)
    return {
        "batch": batch,
        "dash": dash,
        "own": batch.owner_id == request.user.pk,
        "may_cancel": batches.may_cancel(batch, request.user),
        "reviewer": request.user.has_perm(REVIEW_PERM),
    }


@login_required
def batch_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    batch = _visible(request, pk)
    return render(request, "batches/detail.html", _context(request, batch))


@login_required
def batch_table(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The whole table and its totals, one htmx request for every row (constant queries)."""
    batch = _visible(request, pk)
    return render(request, "batches/_table.html", _context(request, batch))


@login_required
def batch_manifest(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The manifest exactly as it was sent, for whoever may see the batch (a download, never rendered)."""
    batch = _visible(request, pk)
    try:
        text = batches.manifest_text(batch)
    except (BotoCoreError, ClientError, OSError):
        return HttpResponse("The manifest could not be read from storage just now; try again.", status=503)
    if text is None:
        raise Http404("This batch was not made from a manifest.")
    ext = batch.source.removeprefix("manifest-")
    response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}-manifest.{ext}"'
    return response


def _outcome(request: AuthenticatedHttpRequest, outcome: batches.Outcome, done: str) -> None:
    if outcome.done:
        messages.success(request, f"{done}: {len(outcome.done)}.")
    for pk, why in outcome.refused.items():
        messages.error(request, f"#{pk}: {why}")
    if not outcome.done and not outcome.refused:
        messages.info(request, "Nothing to do.")


@login_required
@require_POST
def batch_action(request: AuthenticatedHttpRequest, pk: int, action: str) -> HttpResponse:
    batch = _visible(request, pk)
    try:
        if action == "submit":
            _outcome(request, batches.submit_batch(batch, request.user), "Submitted")
        elif action == "retry":
            _outcome(request, batches.retry_failed(batch, request.user), "Retried and submitted")
        elif action == "cancel":
            if request.POST.get("confirm") != "yes":
                messages.error(request, "Tick the box to confirm: every import still running is cancelled.")
            else:
                _outcome(request, batches.cancel_rest(batch, request.user, request.POST.get("reason", "")), "Cancelled")
        else:
            raise PermissionDenied("unknown action")
    except batches.BatchError as exc:
        raise PermissionDenied(str(exc)) from exc
    return redirect(batch)


@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def review_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    waiting = (
        Batch.objects.filter(items__request__status=ImportRequest.Status.SUBMITTED)
        .select_related("owner")
        .distinct()
        .order_by("created_at", "pk")
    )
    return render(request, "batches/review_list.html", {"waiting": waiting})


@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def batch_review(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    batch = get_object_or_404(Batch.objects.select_related("owner"), pk=pk)
    if request.method == "POST":
        selected = [int(v) for v in request.POST.getlist("requests") if v.isdigit()] or None
        try:
            if request.POST.get("decision") == "approve":
                _outcome(request, batches.approve_batch(batch, request.user, selected), "Approved")
            elif request.POST.get("decision") == "reject":
                _outcome(
                    request,
                    batches.reject_batch(batch, request.user, request.POST.get("reason", ""), selected),
                    "Rejected",
                )
            else:
                messages.error(request, "Choose approve or reject.")
        except batches.BatchError as exc:
            messages.error(request, str(exc))
        return redirect("batch-review", pk=batch.pk)
    items = BatchItem.objects.filter(batch=batch).select_related("request").prefetch_related("request__disk_containers")
    return render(
        request,
        "batches/review.html",
        {"batch": batch, "items": items, "own": batch.owner_id == request.user.pk},
    )


# --- API tokens ------------------------------------------------------------------------------


@login_required
def api_tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    made = None
    if request.method == "POST":
        try:
            _, made = tokens.create(request.user, request.POST.get("name", ""))
        except tokens.TokenError as exc:
            messages.error(request, str(exc))
    rows = ApiToken.objects.filter(user=request.user)
    response = render(request, "batches/tokens.html", {"tokens": rows, "made": made})
    response["Cache-Control"] = "no-store"  # the new token is on this page once
    return response


@login_required
@require_POST
def api_token_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    tokens.revoke(token, request.user)
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("api-tokens")
