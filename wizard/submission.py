"""Requests from the requester's side: create one from an upload, submit it."""

from __future__ import annotations

import posixpath
import uuid

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from wizard import audit, preflight
from wizard.models import DiskContainer, ImportRequest
from wizard.statemachine import change_status

GIB = 1024**3


def upload_key(user_id: int, file_name: str) -> str:
    """A server-chosen S3 key under the user's prefix; the file name only lends its extension."""
    ext = posixpath.splitext(file_name)[1].lower()
    ext = ext if ext[1:].isalnum() and len(ext) <= 6 else ""
    return f"uploads/{user_id}/{uuid.uuid4().hex}{ext}"


def create_from_upload(user, upload: UploadedFile, disk_format: str, description: str = "") -> ImportRequest:
    """Store the image in S3 and make a draft request with it as its one disk container."""
    started = timezone.now()
    key = default_storage.save(upload_key(user.pk, upload.name or "image"), upload)
    ended = timezone.now()
    with transaction.atomic():
        request = ImportRequest.objects.create(
            owner=user,
            description=description,
            upload_start=started,
            upload_end=ended,
            upload_size=round(upload.size / GIB, 6),
        )
        DiskContainer.objects.create(
            request=request,
            position=0,
            format=disk_format,
            s3_bucket=settings.IMPORT_BUCKET,
            s3_key=key,
            file_name=(upload.name or "")[:255],
            size_bytes=upload.size,
        )
        audit.record("draft created", request, actor=user, after={"status": request.status})
        audit.record(
            "upload completed",
            request,
            actor=user,
            details={"key": key, "file_name": upload.name, "size_bytes": upload.size},
        )
    preflight.inspect_request(request)
    return request


class SubmitRefused(Exception):
    """The request breaks ImportImage rules or its images would fail; `findings` say which and where."""

    def __init__(self, findings: list):
        super().__init__("; ".join(f"{f.path}: {f.message}" for f in findings))
        self.findings = findings


def submit(request: ImportRequest, user) -> ImportRequest:
    """Hand a draft (or a rejected request) to the reviewers, or straight to dispatch
    when the installation does not require approval (WIZARD_APPROVAL_REQUIRED=0)."""
    from wizard.review import approve_without_review

    findings = preflight.blocking(preflight.all_findings(request, check_aws=True))
    if findings:
        raise SubmitRefused(findings)
    with transaction.atomic():
        change_status(
            request,
            ImportRequest.Status.SUBMITTED,
            actor=user,
            allowed_from=(ImportRequest.Status.DRAFT, ImportRequest.Status.REJECTED),
            action="submitted",
            submitted_at=timezone.now(),
        )
        if not settings.APPROVAL_REQUIRED:
            approve_without_review(request)
    return request
