"""The endpoints of the JSON API: each reads its input, calls one service, answers JSON.

Errors answer `{"message": ..., "errors": [{"path", "message"}, ...]}` with the paths and
messages of the CLI import (``DiskContainers[1].UserBucket.S3Key: ...``); a manifest's also
carry `row` (and `column` for CSV).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from ninja import NinjaAPI, Query, Schema
from ninja import Status as Answer
from ninja.errors import AuthenticationError, ValidationError
from ninja.security import HttpBearer

from wizard.api import idempotency, schemas, tokens
from wizard.aws.multipart import PART_URL_SECONDS
from wizard.batches import batches
from wizard.batches.manifest import MAX_BYTES, Manifest, RowError
from wizard.http import AuthenticatedHttpRequest, HttpError
from wizard.imports import cancelling, dispatch_queue, failures, progress
from wizard.models import Batch, DiskContainer, ImportRequest, Upload
from wizard.preflight import acknowledgements, preflight
from wizard.requests import drafts, review, submission
from wizard.requests.cli_format import parse_cli_input, to_cli_json
from wizard.requests.importspec import Finding
from wizard.requests.statemachine import TransitionError
from wizard.requests.steps import Placed
from wizard.selectors import visible_requests
from wizard.uploads import uploads as upload_service

T = TypeVar("T")
Status = ImportRequest.Status
ADD = "wizard.add_importrequest"
REVIEW = "wizard.review_importrequest"
MAX_PAGE = 200
# Only these keys say "no disks yet": a document without DiskContainers makes a draft for uploads.
NO_DISKS = "DiskContainers must hold at least one disk to import"


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        user = tokens.authenticate(token)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="Import Wizard API",
    version="1",
    description=(
        "Self-service EC2 VM Import (ImportImage): requests, uploads, review and batches, with the same rules and "
        "permissions as the pages. Authenticate with a personal token (Authorization: Bearer iw_...), made on the "
        "API tokens page. POSTs that create something accept an Idempotency-Key header."
    ),
    auth=TokenAuth(),
    docs_url=None,  # no Swagger UI: it loads scripts from a CDN, which the Content-Security-Policy forbids
    urls_namespace="api",
)


def _error(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> JsonResponse:
    return JsonResponse({"message": message, "errors": errors or []}, status=status)


@api.exception_handler(HttpError)
def _refused(request: HttpRequest, exc: HttpError) -> JsonResponse:
    return _error(exc.status, exc.message, exc.errors)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> JsonResponse:
    errors = [
        {
            "path": ".".join(str(p) for p in e.get("loc", ())[2:] if p != "payload") or "(body)",
            "message": e.get("msg", "invalid"),
        }
        for e in exc.errors
    ]
    return _error(422, "The body does not fit this endpoint.", errors)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> JsonResponse:
    return _error(401, "Send a valid API token: Authorization: Bearer iw_... (make one on the API tokens page).")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> JsonResponse:
    return _error(404, "Not found (or not yours to see).")


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> JsonResponse:
    return _error(413, f"The body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.")


def _findings(findings: Iterable[Finding | Placed], **extra: Any) -> list[dict[str, Any]]:
    return [{"path": f.path, "message": f.message, **extra} for f in findings]


def _need(request: AuthenticatedHttpRequest, perm: str, what: str) -> None:
    if not request.user.has_perm(perm):
        raise HttpError(403, f"You may not {what}.")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- requests --------------------------------------------------------------------------------


def request_json(r: ImportRequest, *, findings: list[Placed] | None = None, ahead: int | None = None) -> dict[str, Any]:
    task = getattr(r, "import_task", None)
    item = getattr(r, "batch_item", None)
    explanation = failures.explain(r.failure_message) if r.failure_message else None
    task_json = None
    if task is not None:
        elapsed = (task.changed_at if task.is_final else timezone.now()) - task.created_at
        left = None if task.is_final else progress.time_left(elapsed, task.progress)
        task_json = {
            "ImportTaskId": task.import_task_id,
            "Status": task.status,
            "StatusMessage": task.status_message,
            "Progress": task.progress,
            "ImageId": task.image_id,
            "stage": progress.stage_of(task.status, task.status_message),
            "time_left_seconds": int(left.total_seconds()) if left else None,
            "disks": progress.disk_progress(task.snapshot_details),
        }
    return {
        "id": r.pk,
        "status": r.status,
        "status_display": r.get_status_display(),
        "owner": r.owner.get_username(),
        "batch": item.batch_id if item else None,
        "description": r.description,
        "created_at": r.created_at.isoformat(),
        "submitted_at": _iso(r.submitted_at),
        "reviewed_at": _iso(r.reviewed_at),
        "review_reason": r.review_reason,
        "queued_ahead": ahead,
        "document": json.loads(to_cli_json(r.to_spec())),
        "findings": None
        if findings is None
        else [{"path": f.path, "message": f.message, "severity": f.severity, "code": f.code} for f in findings],
        "inspecting": None
        if findings is None
        else r.disk_containers.filter(inspection_status=preflight.PENDING).exists(),
        "task": task_json,
        "failure": {
            "message": r.failure_message,
            "meaning": explanation.meaning if explanation else "",
            "action": explanation.action if explanation else "",
        }
        if r.failure_message
        else None,
        "url": reverse("request-detail", args=[r.pk]),
    }


def _requests(user: User) -> QuerySet[ImportRequest]:
    return (
        visible_requests(user)
        .exclude(status=Status.DELETED)
        .select_related("import_task", "batch_item")
        .prefetch_related("disk_containers")
    )


def _one(request: AuthenticatedHttpRequest, pk: int) -> ImportRequest:
    found = _requests(request.user).filter(pk=pk).first()
    if found is None:
        raise Http404
    return found


def _detail(r: ImportRequest) -> dict[str, Any]:
    r = ImportRequest.objects.select_related("owner", "import_task", "batch_item").get(pk=r.pk)
    ahead = dispatch_queue.positions([r.pk]).get(r.pk) if r.status == Status.APPROVED else None
    return request_json(r, findings=preflight.all_findings(r), ahead=ahead)


def _document(request: AuthenticatedHttpRequest) -> tuple[Any, list[Finding]]:
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return None, [Finding("(document)", "The body is not UTF-8 text")]
    spec, findings = parse_cli_input(text, "json")
    if spec is not None or [f.message for f in findings] != [NO_DISKS]:
        return spec, findings
    # No disks yet: a draft to upload images into. Every other parameter is checked all the same.
    try:
        document = json.loads(text)
    except ValueError:
        return None, findings
    placeholder = {"Format": "RAW", "UserBucket": {"S3Bucket": "placeholder", "S3Key": "placeholder.raw"}}
    spec, others = parse_cli_input(json.dumps({**document, "DiskContainers": [placeholder]}), "json")
    if spec is None:
        return None, others
    spec.disk_containers = []
    return spec, []


@api.post(
    "/requests",
    response={201: schemas.ImportRequestOut, 403: schemas.Error, 409: schemas.Error, 422: schemas.Error},
    summary="Create a request from an aws ec2 import-image --cli-input-json document",
    description="The body is the document itself. Without DiskContainers the request is a draft to upload images "
    "into (POST /requests/{id}/uploads). Errors carry the CLI import's paths and messages. Send an Idempotency-Key "
    "header so that a retried POST creates nothing twice.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
        }
    },
)
def create_request(request: AuthenticatedHttpRequest) -> JsonResponse:
    _need(request, ADD, "make import requests")

    def answer() -> tuple[int, dict[str, Any]]:
        spec, findings = _document(request)
        if spec is None:
            return 422, {"message": "The document has problems; nothing was saved.", "errors": _findings(findings)}
        try:
            draft = drafts.draft_from_spec(request.user, spec, source="api")
        except drafts.SourceRefused as exc:
            return 422, {"message": "Nothing was saved.", "errors": _findings(exc.findings)}
        for container in draft.disk_containers.select_related("request__owner"):
            preflight.inspect_container(container)
        return 201, _detail(draft)

    return idempotency.run(request, request.user, answer)


class RequestFilters(Schema):
    status: str | None = None
    batch: int | None = None
    owner: str | None = None
    limit: int = 50
    offset: int = 0


@api.get("/requests", response=schemas.RequestList, summary="List the requests you may see, newest first")
def list_requests(request: AuthenticatedHttpRequest, filters: Query[RequestFilters]) -> dict[str, Any]:
    qs = _requests(request.user)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.batch is not None:
        qs = qs.filter(batch_item__batch_id=filters.batch)
    if filters.owner:
        qs = qs.filter(owner__username=filters.owner)
    limit = max(1, min(filters.limit, MAX_PAGE))
    offset = max(0, filters.offset)
    page = list(qs.order_by("-created_at", "-pk")[offset : offset + limit])
    ahead = dispatch_queue.positions([r.pk for r in page if r.status == Status.APPROVED])
    return {"count": qs.count(), "results": [request_json(r, ahead=ahead.get(r.pk)) for r in page]}


@api.get(
    "/requests/{pk}",
    response={200: schemas.ImportRequestOut, 404: schemas.Error},
    summary="A request, its pre-flight findings and its progress",
)
def get_request(request: AuthenticatedHttpRequest, pk: int) -> dict[str, Any]:
    return _detail(_one(request, pk))


@api.post(
    "/requests/{pk}/submit",
    response={200: schemas.ImportRequestOut, 404: schemas.Error, 409: schemas.Error, 422: schemas.Error},
    summary="Submit a draft for review (every rule and pre-flight check first; warnings need acknowledge_warnings)",
)
def submit_request(
    request: AuthenticatedHttpRequest, pk: int, body: schemas.Submit | None = None
) -> dict[str, Any] | JsonResponse:
    r = _one(request, pk)
    if r.owner_id != request.user.pk:
        raise Http404
    codes = body.acknowledge_warnings if body is not None else None
    try:
        submission.submit(r, request.user, acknowledge_codes=codes)
    except submission.WarningsNotAcknowledged as exc:
        warnings = acknowledgements.codes(acknowledgements.keys(exc.findings))
        message = exc.stale or (
            "Not submitted: these warnings need an acknowledgement. Read them; to import anyway, send "
            '{"acknowledge_warnings": [...]} with every code listed in warnings_to_acknowledge.'
        )
        errors = [{"path": f.path, "message": f.message, "code": f.code} for f in exc.findings]
        return JsonResponse({"message": message, "errors": errors, "warnings_to_acknowledge": warnings}, status=422)
    except submission.SubmitRefused as exc:
        raise HttpError(422, "Not submitted: fix these first.", _findings(exc.findings)) from exc
    except TransitionError as exc:
        raise HttpError(409, str(exc)) from exc
    return _detail(r)


@api.post(
    "/requests/{pk}/cancel",
    response={200: schemas.ImportRequestOut, 403: schemas.Error, 404: schemas.Error, 409: schemas.Error},
    summary="Cancel an import (CancelImportTask), or withdraw a request still waiting for review or its place",
)
def cancel_request(request: AuthenticatedHttpRequest, pk: int, body: schemas.Reason) -> dict[str, Any]:
    r = _one(request, pk)
    if r.owner_id != request.user.pk and not request.user.has_perm(REVIEW):
        raise HttpError(403, "Only the requester or a reviewer may cancel an import.")
    if r.status == Status.IMPORTING:
        try:
            cancelling.cancel(r, request.user, body.reason)
        except cancelling.CancelError as exc:
            raise HttpError(409, str(exc)) from exc
    elif not dispatch_queue.withdraw(r, request.user, body.reason):
        r.refresh_from_db()
        raise HttpError(409, f"Import #{r.pk} is {r.get_status_display().lower()}: there is nothing to cancel now.")
    return _detail(r)


def _review(request: AuthenticatedHttpRequest, pk: int, act: Callable[[ImportRequest], object]) -> dict[str, Any]:
    _need(request, REVIEW, "review import requests")
    r = _one(request, pk)
    try:
        act(r)
    except review.ReviewError as exc:
        raise HttpError(409, str(exc)) from exc
    return _detail(r)


@api.post(
    "/requests/{pk}/approve",
    response={200: schemas.ImportRequestOut, 403: schemas.Error, 404: schemas.Error, 409: schemas.Error},
    summary="Approve (reviewers; nobody approves a request they had a hand in)",
)
def approve_request(request: AuthenticatedHttpRequest, pk: int) -> dict[str, Any]:
    return _review(request, pk, lambda r: review.approve(r, request.user))


@api.post(
    "/requests/{pk}/reject",
    response={200: schemas.ImportRequestOut, 403: schemas.Error, 404: schemas.Error, 409: schemas.Error},
    summary="Reject with a reason the requester sees (reviewers)",
)
def reject_request(request: AuthenticatedHttpRequest, pk: int, body: schemas.Reason) -> dict[str, Any]:
    return _review(request, pk, lambda r: review.reject(r, request.user, body.reason))


# --- uploads ---------------------------------------------------------------------------------


def upload_json(upload: Upload, container: DiskContainer | None = None) -> dict[str, Any]:
    return {
        "id": upload.pk,
        "request": upload.request_id,
        "status": upload.status,
        "file_name": upload.file_name,
        "size": upload.size,
        "bucket": upload.bucket,
        "key": upload.key,
        "part_size": upload_service.part_size_for(upload.size),
        "part_count": upload_service.part_count(upload.size),
        "container": None
        if container is None
        else {"id": container.pk, "position": container.position, "format": container.format},
    }


def _upload_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except upload_service.UploadError as exc:
        raise HttpError(exc.status, exc.message) from exc


def _own_upload(request: AuthenticatedHttpRequest, upload_id: int) -> Upload:
    upload = Upload.objects.select_related("request").filter(pk=upload_id, owner=request.user).first()
    if upload is None:
        raise Http404
    return upload


@api.post(
    "/requests/{pk}/uploads",
    response={201: schemas.UploadOut, 404: schemas.Error, 409: schemas.Error, 422: schemas.Error},
    summary="Start a multipart upload of one image into your draft (the bytes go to S3, never here)",
)
def start_upload(request: AuthenticatedHttpRequest, pk: int, body: schemas.UploadStart) -> Answer[dict[str, Any]]:
    r = _one(request, pk)
    if r.owner_id != request.user.pk:
        raise Http404
    upload = _upload_call(
        lambda: upload_service.start(
            request.user, r, file_name=body.file_name, size=body.size, content_type=body.content_type
        )
    )
    return Answer(201, upload_json(upload))


@api.post(
    "/uploads/{upload_id}/sign",
    response={200: schemas.SignedParts, 404: schemas.Error, 409: schemas.Error, 400: schemas.Error},
    summary="Presigned PUT URLs for parts (each signs the part's CRC32, which S3 checks)",
)
def sign_parts(request: AuthenticatedHttpRequest, upload_id: int, body: schemas.PartsToSign) -> dict[str, Any]:
    upload = _own_upload(request, upload_id)
    signed = _upload_call(lambda: upload_service.sign_parts(upload, [p.dict() for p in body.parts]))
    return {
        "urls": {str(n): url for n, (url, _) in signed.items()},
        "headers": {str(n): headers for n, (_, headers) in signed.items()},
        "expires_in": PART_URL_SECONDS,
    }


@api.post(
    "/uploads/{upload_id}/complete",
    response={200: schemas.UploadOut, 404: schemas.Error, 409: schemas.Error, 422: schemas.Error},
    summary="Join the parts; the image becomes a disk of the draft and is inspected",
)
def complete_upload(request: AuthenticatedHttpRequest, upload_id: int, body: schemas.PartsDone) -> dict[str, Any]:
    upload = _own_upload(request, upload_id)
    parts = [{k: v for k, v in p.dict().items() if v is not None} for p in body.parts]
    done = _upload_call(lambda: upload_service.complete(upload, request.user, parts))
    return upload_json(done.upload, done.container)


# --- batches ---------------------------------------------------------------------------------


def batch_json(dash: batches.Dashboard, skipped: Iterable[RowError] = ()) -> dict[str, Any]:
    batch = dash.batch
    lines = []
    for line in dash.lines:
        r = line.request
        lines.append(
            {
                "request": r.pk,
                "row": line.item.row,
                "retry_of": line.item.retry_of.request_id if line.item.retry_of else None,
                "description": r.description,
                "status": r.status,
                "stage": line.stage,
                "progress": line.progress,
                "queued_ahead": line.ahead,
                "failure": {
                    "message": r.failure_message,
                    "meaning": line.explanation.meaning if line.explanation else "",
                    "action": line.explanation.action if line.explanation else "",
                }
                if r.failure_message
                else None,
            }
        )
    return {
        "id": batch.pk,
        "name": batch.name,
        "owner": batch.owner.get_username(),
        "source": batch.source,
        "settings": batch.settings,
        "created_at": batch.created_at.isoformat(),
        "totals": dash.totals,
        "time_left_seconds": int(dash.time_left.total_seconds()) if dash.time_left else None,
        "final": dash.final,
        "requests": lines,
        "skipped": [{"row": e.row, "path": e.path, "message": e.message, "column": e.column} for e in skipped],
        "url": reverse("batch-detail", args=[batch.pk]),
    }


def _batch(request: AuthenticatedHttpRequest, pk: int) -> Batch:
    found = batches.visible_batches(request.user).filter(pk=pk).first()
    if found is None:
        raise Http404
    return found


def _manifest_errors(manifest: Manifest) -> list[dict[str, Any]]:
    return [{"row": e.row, "path": e.path, "message": e.message, "column": e.column or None} for e in manifest.problems]


@api.post(
    "/batches",
    response={201: schemas.BatchOut, 403: schemas.Error, 422: schemas.Error},
    summary="Create a batch from a manifest (CSV, or a YAML/JSON list of CLI documents)",
    description="Every row is checked on its own; with errors in any row nothing is saved and the errors come by "
    "row and path, unless import_valid is true. Send an Idempotency-Key header.",
)
def create_batch(request: AuthenticatedHttpRequest, body: schemas.BatchCreate) -> JsonResponse:
    _need(request, ADD, "make import requests")
    if len(body.manifest.encode()) > MAX_BYTES:
        raise HttpError(413, f"The manifest is larger than {MAX_BYTES // 1024} KiB; split it into several batches.")

    def answer() -> tuple[int, dict[str, Any]]:
        try:
            batch, manifest = batches.create_from_manifest(
                request.user,
                name=body.name,
                text=body.manifest,
                fmt=body.format,
                defaults=body.settings,
                import_valid=body.import_valid,
                submit=body.submit,
            )
        except batches.BatchRefused as exc:
            return 422, {"message": exc.message, "errors": _manifest_errors(exc.manifest)}
        return 201, batch_json(batches.dashboard(batch), skipped=[e for r in manifest.invalid for e in r.errors])

    return idempotency.run(request, request.user, answer)


@api.get("/batches", response=schemas.BatchList, summary="List the batches you may see, newest first")
def list_batches(request: AuthenticatedHttpRequest, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    qs = batches.visible_batches(request.user)
    limit, offset = max(1, min(limit, MAX_PAGE)), max(0, offset)
    return {
        "count": qs.count(),
        "results": [
            {
                "id": b.pk,
                "name": b.name,
                "owner": b.owner.get_username(),
                "created_at": b.created_at.isoformat(),
                "url": reverse("batch-detail", args=[b.pk]),
            }
            for b in qs[offset : offset + limit]
        ],
    }


@api.get(
    "/batches/{pk}",
    response={200: schemas.BatchOut, 404: schemas.Error},
    summary="A batch: every VM's stage and progress, totals, time left",
)
def get_batch(request: AuthenticatedHttpRequest, pk: int) -> dict[str, Any]:
    return batch_json(batches.dashboard(_batch(request, pk)))


def _batch_action(call: Callable[[], batches.Outcome]) -> dict[str, Any]:
    try:
        return call().as_json()
    except batches.BatchError as exc:
        raise HttpError(403, str(exc)) from exc


@api.post("/batches/{pk}/submit", response={200: schemas.Outcome, 403: schemas.Error, 404: schemas.Error})
def submit_batch(request: AuthenticatedHttpRequest, pk: int) -> dict[str, Any]:
    batch = _batch(request, pk)
    return _batch_action(lambda: batches.submit_batch(batch, request.user))


@api.post(
    "/batches/{pk}/approve",
    response={200: schemas.Outcome, 403: schemas.Error, 404: schemas.Error},
    summary="Approve the batch's submitted requests, or some of them (reviewers; separation of duties each)",
)
def approve_batch(request: AuthenticatedHttpRequest, pk: int, body: schemas.Decision) -> dict[str, Any]:
    _need(request, REVIEW, "review import requests")
    batch = _batch(request, pk)
    return _batch_action(lambda: batches.approve_batch(batch, request.user, body.requests))


@api.post("/batches/{pk}/reject", response={200: schemas.Outcome, 403: schemas.Error, 404: schemas.Error})
def reject_batch(request: AuthenticatedHttpRequest, pk: int, body: schemas.Decision) -> dict[str, Any]:
    _need(request, REVIEW, "review import requests")
    batch = _batch(request, pk)
    if not body.reason.strip():
        raise HttpError(422, "Say why the requests are rejected.", [{"path": "reason", "message": "required"}])
    return _batch_action(lambda: batches.reject_batch(batch, request.user, body.reason, body.requests))


@api.post(
    "/batches/{pk}/retry-failed",
    response={200: schemas.Outcome, 403: schemas.Error, 404: schemas.Error},
    summary="New requests with the same settings for the failed ones, submitted",
)
def retry_failed(request: AuthenticatedHttpRequest, pk: int) -> dict[str, Any]:
    batch = _batch(request, pk)
    return _batch_action(lambda: batches.retry_failed(batch, request.user))


@api.post(
    "/batches/{pk}/cancel",
    response={200: schemas.Outcome, 403: schemas.Error, 404: schemas.Error},
    summary="Cancel the running imports and withdraw the waiting requests",
)
def cancel_batch(request: AuthenticatedHttpRequest, pk: int, body: schemas.Reason) -> dict[str, Any]:
    batch = _batch(request, pk)
    return _batch_action(lambda: batches.cancel_rest(batch, request.user, body.reason))


@api.get("/me", response=schemas.TokenCheck, summary="Who this token acts as")
def me(request: AuthenticatedHttpRequest) -> dict[str, Any]:
    perms = sorted(p for p in (ADD, REVIEW) if request.user.has_perm(p))
    return {"user": request.user.get_username(), "permissions": perms}
