"""Batches: many import requests made, reviewed and followed together.

A batch comes from a manifest (wizard.batches.manifest) or from images the user already uploaded here.
Each VM is an ordinary ImportRequest of its own (a `BatchItem` ties it to the batch), made by
the same services as a single one: `drafts.draft_from_spec` (the sources rule), the pre-flight
inspection, `submission.submit`, `review.approve` / `reject` (separation of duties), the
dispatch queue, `cancelling.cancel`, `drafts.duplicate`. Nothing here bypasses them; what this
module adds is doing it for many at once and saying, per VM, what happened.

Writes are services here; `dashboard` is the one read, in a constant number of queries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from wizard.audit import audit
from wizard.batches.manifest import MAX_BYTES, Format, Manifest, RowError, parse_manifest
from wizard.imports import cancelling, dispatch_queue, failures, progress
from wizard.models import Batch, BatchItem, ImportRequest, Upload
from wizard.preflight import preflight
from wizard.requests import drafts, review, submission
from wizard.requests.cli_format import parse_cli_input
from wizard.requests.importspec import TAG_RESOURCE_TYPE, Finding, ImportSpec
from wizard.selectors import can_see_all
from wizard.uploads import sources

log = logging.getLogger(__name__)

Status = ImportRequest.Status
MAX_NAME = 255
MANIFESTS = "manifests"  # the STORAGES alias the manifests are kept in
# The settings a batch chooses once for every VM (API names; a row or request may override each).
SETTINGS = (
    "Platform",
    "Architecture",
    "BootMode",
    "LicenseType",
    "UsageOperation",
    "RoleName",
    "Encrypted",
    "KmsKeyId",
)


class BatchRefused(Exception):
    """Nothing was saved: the manifest has errors (by row and path) and the user did not ask to
    import only the valid rows, or no row is valid."""

    def __init__(self, manifest: Manifest, message: str = ""):
        self.manifest = manifest
        self.message = message or f"Nothing was saved: the manifest has {len(manifest.problems)} problem(s)."
        super().__init__(self.message)


class BatchError(Exception):
    pass


# --- reads ----------------------------------------------------------------------------------------


def visible_batches(user: User) -> QuerySet[Batch]:
    """Requesters see their own batches; reviewers, auditors and admins every one (as requests)."""
    qs = Batch.objects.select_related("owner")
    return qs if can_see_all(user) else qs.filter(owner=user)


def settings_params(values: dict[str, Any], tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The batch's chosen settings as ImportImage parameters (unset ones left out)."""
    params = {k: values[k] for k in SETTINGS if values.get(k) not in (None, "")}
    if tags:
        params["TagSpecifications"] = [{"ResourceType": TAG_RESOURCE_TYPE, "Tags": tags}]
    return params


# --- making a batch -------------------------------------------------------------------------------


def check_manifest(user: User, text: str, fmt: Format, defaults: dict[str, Any] | None = None) -> Manifest:
    """The manifest read row by row, and every valid row's sources judged for `user`
    (wizard.uploads.sources): a manifest cannot name what the user may not import."""
    manifest = parse_manifest(text, fmt, defaults)
    grants = sources.grants_of(user)
    for row in manifest.rows:
        if not row.ok or row.spec is None:  # (ok: it has a spec)
            continue
        refused = [
            Finding(sources.source_path(disk, i), why)
            for i, disk in enumerate(row.spec.disk_containers)
            if (why := sources.container_verdict(user, disk, grants=grants).refusal)
        ]
        if refused:
            row.errors = [RowError(row.row, f.path, f.message) for f in refused]
            row.spec = None
    return manifest


def create_from_manifest(
    user: User,
    *,
    name: str,
    text: str,
    fmt: Format,
    defaults: dict[str, Any] | None = None,
    import_valid: bool = False,
    submit: bool = False,
) -> tuple[Batch, Manifest]:
    """A batch of drafts, one per valid row of the manifest (then inspected, and submitted if asked).

    With any row in error nothing is saved (BatchRefused) unless `import_valid`; then only the
    valid rows become requests and the others are reported."""
    manifest = check_manifest(user, text, fmt, defaults)
    if manifest.errors or not manifest.rows:
        raise BatchRefused(manifest)
    if manifest.invalid and not import_valid:
        raise BatchRefused(manifest)
    if not manifest.valid:
        raise BatchRefused(manifest, "Nothing was saved: no row of the manifest is valid.")
    specs = [(row.row, row.spec) for row in manifest.valid if row.spec is not None]  # (valid: it has a spec)
    try:
        batch = _create(
            user,
            name,
            f"manifest-{fmt}",
            defaults or {},
            specs,
            skipped=[r.row for r in manifest.invalid],
            manifest=(text, fmt),
        )
    except ManifestNotKept as exc:
        raise BatchRefused(manifest, str(exc)) from exc
    _after_create(batch, user, submit)
    return batch, manifest


def create_from_uploads(
    user: User, *, name: str, upload_ids: list[int], defaults: dict[str, Any] | None = None, submit: bool = False
) -> Batch:
    """A batch with one request per image the user uploaded here (their own completed uploads)."""
    uploads = list(Upload.objects.filter(owner=user, status=Upload.Status.COMPLETED, pk__in=upload_ids).order_by("pk"))
    if not uploads or len(uploads) != len(set(upload_ids)):
        raise BatchError("Choose images you uploaded here yourself (completed uploads).")
    specs: list[tuple[int | None, ImportSpec]] = []
    for upload in uploads:
        params = {
            **(defaults or {}),
            "Description": upload.file_name[:255],
            "DiskContainers": [
                {
                    "Format": drafts.guess_format(upload.file_name) or None,
                    "UserBucket": {"S3Bucket": upload.bucket, "S3Key": upload.key},
                }
            ],
        }
        spec, findings = parse_cli_input(json.dumps(params), "json")
        if spec is None:
            raise BatchError(f"{upload.file_name}: " + "; ".join(f"{f.path}: {f.message}" for f in findings))
        specs.append((None, spec))
    batch = _create(user, name, "uploads", defaults or {}, specs)
    _after_create(batch, user, submit)
    return batch


def _create(
    user: User,
    name: str,
    source: str,
    defaults: dict[str, Any],
    specs: Sequence[tuple[int | None, ImportSpec]],
    skipped: list[int] | None = None,
    manifest: tuple[str, Format] | None = None,
) -> Batch:
    name = (name or "").strip()[:MAX_NAME] or f"batch of {len(specs)}"
    with transaction.atomic():
        batch = Batch.objects.create(owner=user, name=name, source=source, settings=defaults)
        if manifest is not None:
            _keep_manifest(batch, *manifest)
        for position, (row, spec) in enumerate(specs):
            request = drafts.draft_from_spec(user, spec, source=f"batch #{batch.pk}" + (f" row {row}" if row else ""))
            BatchItem.objects.create(batch=batch, request=request, position=position, row=row)
        audit.record(
            "batch created",
            actor=user,
            details={
                "batch": batch.pk,
                "name": name,
                "source": source,
                "requests": len(specs),
                "skipped_rows": skipped or [],
                **({"manifest_sha256": batch.manifest_sha256} if batch.manifest_sha256 else {}),
            },
        )
    return batch


class ManifestNotKept(BatchError):
    pass


def _keep_manifest(batch: Batch, text: str, fmt: Format) -> None:
    """Keep the manifest as it was sent (STORAGES["manifests"], through django-storages): what a
    reviewer or auditor reads back later is exactly what made the batch. If it cannot be kept,
    nothing is saved (the caller's transaction rolls back)."""
    data = text.encode()
    batch.manifest_sha256 = hashlib.sha256(data).hexdigest()
    name = f"{batch.owner_id}/batch-{batch.pk}-{batch.manifest_sha256[:12]}.{fmt}"
    try:
        batch.manifest = storages[MANIFESTS].save(name, ContentFile(data))
    except (BotoCoreError, ClientError) as exc:
        log.warning("batch %s: the manifest could not be kept: %r", batch.pk, exc)
        raise ManifestNotKept(
            "Nothing was saved: the manifest could not be kept in storage (S3 did not take it). Try again in a "
            "moment; the manifest is still in the form."
        ) from exc
    batch.save(update_fields=["manifest", "manifest_sha256"])


def manifest_text(batch: Batch) -> str | None:
    """The manifest as it was sent, or None (a batch of uploads, or one made before manifests were kept)."""
    if not batch.manifest:
        return None
    with storages[MANIFESTS].open(batch.manifest, "rb") as f:
        return f.read(MAX_BYTES + 1).decode("utf-8", "replace")


def _after_create(batch: Batch, user: User, submit: bool) -> None:
    """Each request's images are inspected on their own by the worker (drafts.draft_from_spec
    queued them, the same pre-flight as a single one). With `submit`, each request is submitted
    as soon as its images are inspected (`inspected`); those with nothing to inspect at once."""
    if not submit:
        return
    batch.items.update(submit_when_inspected=True)
    for item in _items(batch):
        if not item.request.disk_containers.filter(inspection_status=preflight.PENDING).exists():
            _submit_when_inspected(item)


def inspected(container_id: int) -> None:
    """The worker has inspected a container's image: submit its request if its batch asked for it
    and no other image of it is still waiting (called by wizard.tasks after each inspection)."""
    item = (
        BatchItem.objects.select_related("request", "batch__owner")
        .filter(request__disk_containers__pk=container_id, submit_when_inspected=True)
        .first()
    )
    if item is None or item.request.disk_containers.filter(inspection_status=preflight.PENDING).exists():
        return
    _submit_when_inspected(item)


def _submit_when_inspected(item: BatchItem) -> None:
    """Submit one request of a batch in its owner's name, once; a refusal stays a draft, audited."""
    if not BatchItem.objects.filter(pk=item.pk, submit_when_inspected=True).update(submit_when_inspected=False):
        return  # another delivery did it
    request, owner = item.request, item.batch.owner
    if request.status not in drafts.EDITABLE:
        return
    try:
        submission.submit(request, owner)
    except submission.SubmitRefused as exc:
        audit.record(
            "batch item not submitted",
            request,
            details={"batch": item.batch_id, "findings": [f"{f.path}: {f.message}" for f in exc.findings]},
        )


# --- submitting, reviewing -----------------------------------------------------------------------


@dataclass
class Outcome:
    """What a batch action did, per request: done, and refused with the reason."""

    done: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"done": self.done, "refused": {str(k): v for k, v in self.refused.items()}}


def _items(batch: Batch, pks: list[int] | None = None) -> list[BatchItem]:
    qs = batch.items.select_related("request", "request__owner").order_by("position", "pk")
    if pks is not None:
        qs = qs.filter(request_id__in=pks)
    return list(qs)


def submit_batch(batch: Batch, user: User) -> Outcome:
    """Submit every draft (or rejected request) of the batch; each is checked on its own."""
    if batch.owner_id != user.pk:
        raise BatchError("only the batch's owner submits it")
    outcome = Outcome()
    for item in _items(batch):
        if item.request.status not in drafts.EDITABLE:
            continue
        try:
            submission.submit(item.request, user)
            outcome.done.append(item.request_id)
        except submission.SubmitRefused as exc:
            outcome.refused[item.request_id] = "; ".join(f"{f.path}: {f.message}" for f in exc.findings)
    audit.record("batch submitted", actor=user, details={"batch": batch.pk, **outcome.as_json()})
    return outcome


def approve_batch(batch: Batch, user: User, pks: list[int] | None = None) -> Outcome:
    """Approve the batch's submitted requests (all, or `pks`), each under separation of duties."""
    return _decide(batch, user, pks, lambda r: review.approve(r, user), "batch approved")


def reject_batch(batch: Batch, user: User, reason: str, pks: list[int] | None = None) -> Outcome:
    if not reason.strip():
        raise BatchError("say why the requests are rejected; the requester sees the reason")
    return _decide(batch, user, pks, lambda r: review.reject(r, user, reason), "batch rejected", reason=reason)


def _decide(
    batch: Batch,
    user: User,
    pks: list[int] | None,
    act: Callable[[ImportRequest], object],
    action: str,
    **details: Any,
) -> Outcome:
    if not user.has_perm("wizard.review_importrequest"):
        raise BatchError("you may not review import requests")
    outcome = Outcome()
    for item in _items(batch, pks):
        if item.request.status != Status.SUBMITTED:
            if pks is not None:
                outcome.refused[item.request_id] = f"it is {item.request.get_status_display().lower()}"
            continue
        try:
            act(item.request)
            outcome.done.append(item.request_id)
        except review.ReviewError as exc:
            outcome.refused[item.request_id] = str(exc)
    audit.record(action, actor=user, details={"batch": batch.pk, **details, **outcome.as_json()})
    return outcome


# --- after the dispatch: retry, cancel ------------------------------------------------------------


def retry_failed(batch: Batch, user: User) -> Outcome:
    """ "Retry the failed ones": for each failed request not retried yet, a new request with the
    same settings (drafts.duplicate: only the disks the user may import), in the batch, submitted
    as soon as its images are inspected (`inspected`). `done` lists the new requests, `refused`
    what a copy left out."""
    if batch.owner_id != user.pk:
        raise BatchError("only the batch's owner retries its requests")
    outcome = Outcome()
    retried = set(batch.items.exclude(retry_of=None).values_list("retry_of_id", flat=True))
    position = (batch.items.aggregate(last=Max("position"))["last"] or 0) + 1
    for item in _items(batch):
        if item.request.status != Status.FAILED or item.pk in retried:
            continue
        copy, dropped = drafts.duplicate(item.request, user)
        new = BatchItem.objects.create(
            batch=batch, request=copy, position=position, row=item.row, retry_of=item, submit_when_inspected=True
        )
        position += 1
        outcome.done.append(copy.pk)
        if dropped:
            outcome.refused[copy.pk] = "; ".join(dropped)
        if not copy.disk_containers.filter(inspection_status=preflight.PENDING).exists():
            _submit_when_inspected(new)
    audit.record("batch retried", actor=user, details={"batch": batch.pk, **outcome.as_json()})
    return outcome


def cancel_rest(batch: Batch, user: User, reason: str = "") -> Outcome:
    """ "Cancel the rest": cancel the imports running (CancelImportTask) and withdraw the requests
    still waiting for review or for their place in the queue; finished ones are left as they are."""
    if not may_cancel(batch, user):
        raise BatchError("only the batch's owner or a reviewer cancels its imports")
    reason = reason.strip() or f"cancelled with the rest of batch #{batch.pk}"
    outcome = Outcome()
    for item in _items(batch):
        request = item.request
        try:
            if request.status == Status.IMPORTING:
                cancelling.cancel(request, user, reason)
            elif request.status in (Status.SUBMITTED, Status.APPROVED):
                if not dispatch_queue.withdraw(request, user, reason):
                    outcome.refused[request.pk] = "it is being dispatched: cancel it once it is importing"
                    continue
            else:
                continue
            outcome.done.append(request.pk)
        except cancelling.CancelError as exc:
            outcome.refused[request.pk] = str(exc)
    audit.record("batch cancelled", actor=user, details={"batch": batch.pk, "reason": reason, **outcome.as_json()})
    return outcome


def may_cancel(batch: Batch, user: User) -> bool:
    """As for one request: its owner, or a reviewer."""
    return batch.owner_id == user.pk or user.has_perm("wizard.review_importrequest")


# --- the dashboard ---------------------------------------------------------------------------------


@dataclass
class Line:
    """One VM of the dashboard."""

    item: BatchItem
    request: ImportRequest
    stage: str
    progress: int | None
    ahead: int | None = None
    explanation: failures.Explanation | None = None
    time_left: timedelta | None = None

    @property
    def label(self) -> str:
        return self.request.description or f"#{self.request.pk}"


@dataclass
class Dashboard:
    batch: Batch
    lines: list[Line]
    totals: dict[str, int]
    time_left: timedelta | None
    final: bool

    @property
    def failed(self) -> list[Line]:
        return [line for line in self.lines if line.request.status == Status.FAILED]

    @property
    def can_retry(self) -> bool:
        retried = {line.item.retry_of_id for line in self.lines if line.item.retry_of_id}
        return any(line.item.pk not in retried for line in self.failed)

    @property
    def can_cancel(self) -> bool:
        return any(line.request.status in (Status.SUBMITTED, Status.APPROVED, Status.IMPORTING) for line in self.lines)


def dashboard(batch: Batch, now: datetime | None = None) -> Dashboard:
    """Every VM's stage and progress, totals by state, the batch's time left: two queries
    (the items with their requests, tasks and queue places; the queue's order), whatever the size."""
    now = now or timezone.now()
    items = list(
        batch.items.select_related("request", "request__import_task", "request__dispatch_slot").order_by(
            "position", "pk"
        )
    )
    ahead = dispatch_queue.positions()
    lines: list[Line] = []
    totals: dict[str, int] = {}
    durations: list[timedelta] = []
    remaining: list[timedelta] = []
    for item in items:
        request = item.request
        task = getattr(request, "import_task", None)
        line = Line(item, request, stage=request.get_status_display(), progress=None)
        if task is not None:
            line.stage = progress.stage_of(task.status, task.status_message)
            line.progress = 100 if task.status == "completed" else task.progress
            if request.status == Status.COMPLETED:
                durations.append(task.changed_at - task.created_at)
            elif request.status == Status.IMPORTING:
                line.time_left = progress.time_left(now - task.created_at, task.progress)
                if line.time_left is not None:
                    remaining.append(line.time_left)
        if request.status == Status.APPROVED:
            if request.pk in ahead:
                line.ahead = ahead[request.pk]
                line.stage = f"queued, {line.ahead} ahead"
            else:
                line.stage = "dispatching"
        if request.failure_message:
            line.explanation = failures.explain(request.failure_message)
        totals[request.status] = totals.get(request.status, 0) + 1
        lines.append(line)
    final = all(line.request.is_final or line.request.status in (Status.REJECTED, Status.DELETED) for line in lines)
    return Dashboard(batch, lines, totals, None if final else _time_left(lines, durations, remaining), final)


def _time_left(lines: list[Line], durations: list[timedelta], remaining: list[timedelta]) -> timedelta | None:
    """Until the last VM ends: the longest of the running ones, then the waiting ones in waves of
    WIZARD_MAX_ACTIVE_IMPORTS at the typical duration so far (None until there is a pace)."""
    typical = statistics.median(durations) if durations else None  # type: ignore[type-var]  # timedeltas do
    waiting = sum(1 for line in lines if line.request.status in (Status.SUBMITTED, Status.APPROVED))
    running = max(remaining) if remaining else None
    if typical is None:
        return running if not waiting else None
    return (running or timedelta(0)) + typical * math.ceil(waiting / dispatch_queue.limit())
