"""Browser-to-S3 multipart uploads: the services behind the upload widget.

The web process never sees an image's bytes. It starts a multipart upload under the
user's prefix with a key it chooses (`start`), presigns one URL per part for the browser
(`sign_parts`, each URL signing the part's CRC32 the browser computed, which S3 checks),
tells the browser which parts S3 already holds so a resumed upload sends only the missing
ones (`list_parts`), and finally joins the parts, checks the object S3 made against what
the browser declared (size; CRC32 of the parts' CRC32s) and attaches it to the user's
draft as a new DiskContainer (`complete`) — or aborts it (`cancel`).

Callers pass uploads already looked up with `owner=user`; these functions check state.
"""

from __future__ import annotations

import base64
import binascii
import math
import posixpath
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, TypeGuard

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from wizard.audit import audit
from wizard.aws import multipart
from wizard.aws.errors import AwsError
from wizard.aws.multipart import Part
from wizard.models import DiskContainer, ImportRequest, Upload
from wizard.preflight import preflight
from wizard.requests import drafts

MIB = 1024**2
GIB = 1024**3
MAX_SIZE = multipart.MAX_OBJECT_SIZE  # 5 TiB, S3's largest object
MIN_PART_SIZE = 8 * MIB
MAX_SIGN_BATCH = 100  # part URLs per sign call


class UploadError(Exception):
    """A refusal the user should read: `message` in plain words, `status` for HTTP."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def upload_key(user_id: int, file_name: str) -> str:
    """A server-chosen S3 key under the user's prefix; the file name only lends its extension."""
    ext = posixpath.splitext(file_name)[1].lower()
    # ASCII letters and digits only: str.isalnum() also takes full-width and other scripts' letters.
    ext = ext if ext[1:].isascii() and ext[1:].isalnum() and len(ext) <= 6 else ""
    return f"uploads/{user_id}/{uuid.uuid4().hex}{ext}"


def part_size_for(size: int) -> int:
    """Bytes per part: at least 8 MiB, and large enough that 10,000 parts cover `size`
    (rounded up to a whole MiB). The widget computes the same (static/js/upload.js)."""
    return max(MIN_PART_SIZE, math.ceil(size / multipart.MAX_PARTS / MIB) * MIB)


def part_count(size: int) -> int:
    return max(1, math.ceil(size / part_size_for(size)))


def crc32_b64(data: bytes) -> str:
    """A CRC32 as S3 writes it: base64 of its four big-endian bytes."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def composite_crc32(part_checksums: list[str]) -> str:
    """S3's checksum of a multipart object made with CRC32: the CRC32 of the parts' CRC32s
    (their bytes, in part order), followed by "-<number of parts>"."""
    joined = b"".join(base64.b64decode(c) for c in part_checksums)
    return f"{crc32_b64(joined)}-{len(part_checksums)}"


def _clean_crc32(value: Any, number: int) -> str:
    try:
        if isinstance(value, str) and len(base64.b64decode(value, validate=True)) == 4:
            return value
    except (binascii.Error, ValueError):
        pass
    raise UploadError(f"Part {number} needs its CRC32 checksum (base64 of 4 bytes).")


def clean_content_type(content_type: Any) -> str:
    """The browser's content type of the file, as metadata: a short printable ASCII string, or ""."""
    if content_type is None:
        return ""
    if not isinstance(content_type, str):
        raise UploadError("The content type must be a string.")
    if len(content_type) > 255 or not (content_type.isascii() and content_type.isprintable()):
        raise UploadError("The content type must be at most 255 printable ASCII characters.")
    return content_type


def clean_file_name(file_name: Any) -> str:
    """The user's file name as metadata: its last path component, printable, at most 255 chars."""
    if not isinstance(file_name, str):
        raise UploadError("The file name is missing.")
    name = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if not name or name in (".", ".."):
        raise UploadError("The file name is missing.")
    return name[-255:] if len(name) > 255 else name


def _draft(request: ImportRequest, lock: bool = False) -> ImportRequest:
    qs = ImportRequest.objects.select_for_update() if lock else ImportRequest.objects
    fresh = qs.get(pk=request.pk)
    if fresh.status != ImportRequest.Status.DRAFT:
        raise UploadError(
            f"Import #{fresh.pk} is {fresh.get_status_display().lower()}, no longer a draft: "
            "images can be added to drafts only.",
            status=409,
        )
    return fresh


def _uploading(upload: Upload) -> None:
    if upload.status != Upload.Status.UPLOADING:
        raise UploadError(f"The upload of {upload.file_name} is {upload.get_status_display().lower()}.", status=409)


# --- start -----------------------------------------------------------------------------


def start(user: Any, request: ImportRequest | None, *, file_name: Any, size: Any, content_type: Any = "") -> Upload:
    """Start a multipart upload of one image for the user's draft `request`, or (None) a loose
    one: an image to choose for a batch, one request each, once it is complete."""
    if request is not None and request.owner_id != user.pk:
        raise UploadError("Not your import request.", status=404)
    name = clean_file_name(file_name)
    content_type = clean_content_type(content_type)
    if isinstance(size, bool) or not isinstance(size, int):
        raise UploadError("The file size is missing.")
    if size <= 0:
        raise UploadError(f"{name} is empty.")
    if size > MAX_SIZE:
        raise UploadError(f"{name} is larger than 5 TiB, the largest object S3 stores.")
    if request is not None and _draft(request).target_id is not None:
        raise UploadError(
            "Uploads go to this application's own bucket, which the account of this import's target does not "
            "read: copy the image to the target's bucket and name it as an object already in S3, or choose "
            "the default target.",
            status=409,
        )
    bucket = settings.IMPORT_BUCKET
    key = upload_key(user.pk, name)
    try:
        upload_id = multipart.create(bucket, key, file_name=name)
    except AwsError as exc:
        raise UploadError(f"S3 did not start the upload: {exc.message}", status=502) from exc
    return Upload.objects.create(
        owner=user,
        request=request,
        bucket=bucket,
        key=key,
        upload_id=upload_id,
        file_name=name,
        size=size,
        content_type=clean_content_type(content_type),
    )


# --- sign, list ------------------------------------------------------------------------


def sign_parts(upload: Upload, parts: Any) -> dict[int, tuple[str, dict[str, str]]]:
    """Presigned PUT URLs for these parts of the upload, each for that part only, and the
    headers to send with each: `parts` is [{"PartNumber": n, "ChecksumCRC32": base64}, ...],
    the CRC32 of each part's bytes, which the URL signs and S3 checks. Only while the upload
    is in progress and its request (if it has one: see `start`) is still a draft."""
    _uploading(upload)
    if upload.request is not None:
        _draft(upload.request)
    if not isinstance(parts, list) or not parts:
        raise UploadError("Name the parts to sign.")
    if len(parts) > MAX_SIGN_BATCH:
        raise UploadError(f"At most {MAX_SIGN_BATCH} parts per call.")
    last = part_count(upload.size)
    checksums: dict[int, str] = {}
    for part in parts:
        n = part.get("PartNumber") if isinstance(part, dict) else None
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= last:
            raise UploadError(f"Part numbers of this upload run from 1 to {last}.")
        checksums[n] = _clean_crc32(part.get("ChecksumCRC32"), n)
    return multipart.presign_parts(upload.bucket, upload.key, upload.upload_id, checksums)


def list_parts(upload: Upload) -> list[Part]:
    """The parts S3 already holds (a resumed upload sends only the others)."""
    _uploading(upload)
    try:
        return multipart.list_parts(upload.bucket, upload.key, upload.upload_id)
    except AwsError as exc:
        if exc.code == "NoSuchUpload":
            _fail(upload, "S3 no longer knows this upload (it was aborted or expired). Upload the file again.")
            raise UploadError("S3 no longer knows this upload. Upload the file again.", status=409) from exc
        raise UploadError(f"S3 did not list the parts: {exc.message}", status=502) from exc


# --- complete --------------------------------------------------------------------------


@dataclass(frozen=True)
class Completed:
    upload: Upload
    container: DiskContainer | None  # None for a loose upload (see `start`)


def _is_etag(etag: Any) -> TypeGuard[str]:
    """An ETag as S3 gives them: printable ASCII, at most 128 characters."""
    return isinstance(etag, str) and 0 < len(etag) <= 128 and etag.isascii() and etag.isprintable()


def _clean_parts(parts: Any, upload: Upload) -> list[Part]:
    if not isinstance(parts, list) or not parts:
        raise UploadError("The list of parts is empty.")
    cleaned: list[Part] = []
    for i, part in enumerate(parts, start=1):
        number = part.get("PartNumber") if isinstance(part, dict) else None
        etag = part.get("ETag") if isinstance(part, dict) else None
        if number != i or not _is_etag(etag):
            raise UploadError("The parts must be numbered 1, 2, 3, … in order, each with its ETag.")
        crc = part.get("ChecksumCRC32")
        cleaned.append(Part(i, etag, checksum_crc32=_clean_crc32(crc, i) if crc is not None else ""))
    if len(cleaned) != part_count(upload.size):
        raise UploadError(
            f"{upload.file_name} is {upload.size:,} bytes, {part_count(upload.size)} parts, "
            f"but {len(cleaned)} parts were sent."
        )
    return cleaned


def _with_checksums(parts: list[Part], upload: Upload) -> list[Part]:
    """The parts, each with its CRC32: the browser's, else S3's (ListParts).

    A browser that resumed after a reload may no longer know the checksums of the parts
    sent before it; S3 lists them (S3 checked each part against its checksum)."""
    if all(p.checksum_crc32 for p in parts):
        return parts
    held = {p.number: p for p in list_parts(upload)}
    filled = []
    for part in parts:
        crc = part.checksum_crc32 or (held[part.number].checksum_crc32 if part.number in held else "")
        if not crc:
            raise UploadError(
                f"The CRC32 checksum of part {part.number} is unknown here: pick the same file again in the "
                "browser that started the upload, or upload it again."
            )
        filled.append(Part(part.number, part.etag, checksum_crc32=crc))
    return filled


def complete(upload: Upload, user: Any, parts: Any) -> Completed:
    """Join the parts, check the object S3 made, and add it to the draft as a DiskContainer.

    `parts` is the browser's list of {PartNumber, ETag, ChecksumCRC32}. The object S3 made
    (HEAD) must have the size the browser declared at the start and the checksum the parts'
    CRC32s make; otherwise the object is deleted, the upload marked failed and no container
    made. Completing twice answers the same container. A loose upload (no request) gets no
    container: it waits, complete, to be chosen for a batch.
    """
    if upload.status == Upload.Status.COMPLETED:
        return Completed(upload, _container_of(upload))
    _uploading(upload)
    if upload.request is not None:
        _draft(upload.request)
    cleaned = _with_checksums(_clean_parts(parts, upload), upload)

    try:
        etag = multipart.complete(upload.bucket, upload.key, upload.upload_id, cleaned)
    except AwsError as exc:
        if exc.code in ("InvalidPart", "InvalidPartOrder", "BadDigest"):
            raise UploadError(
                "S3 does not hold every part the browser sent: pick the same file again to resume."
            ) from exc
        if exc.code == "EntityTooSmall":
            raise UploadError("A part other than the last is smaller than 5 MiB.") from exc
        if exc.code != "NoSuchUpload":
            raise UploadError(f"S3 did not complete the upload: {exc.message}", status=502) from exc
        etag = ""  # maybe completed by a concurrent call: the object tells

    try:
        info = multipart.head(upload.bucket, upload.key)
    except AwsError as exc:
        upload.refresh_from_db()
        if upload.status == Upload.Status.COMPLETED:
            return Completed(upload, _container_of(upload))
        if exc.status == 404 or exc.code in ("404", "NoSuchKey"):
            message = "S3 no longer knows this upload (it was aborted or expired). Upload the file again."
            _fail(upload, message, actor=user)
            raise UploadError(message, status=409) from exc
        raise UploadError(f"S3 did not answer for the object: {exc.message}", status=502) from exc

    if info.size != upload.size:
        message = (
            f"The object S3 holds for {upload.file_name} is {info.size:,} bytes, but the file is "
            f"{upload.size:,} bytes: the upload was refused. Upload the file again."
        )
        _fail(upload, message, actor=user, delete_object=True, details={"object_size": info.size})
        raise UploadError(message, status=422)
    expected = composite_crc32([p.checksum_crc32 for p in cleaned])
    # S3 writes "<crc>-<parts>"; the sandbox writes the "<crc>" alone.
    if info.checksum_crc32 and info.checksum_crc32.split("-")[0] != expected.split("-")[0]:
        message = (
            f"The object S3 holds for {upload.file_name} has CRC32 {info.checksum_crc32}, but the file's parts, "
            f"as the browser read them, make {expected}: the upload was refused. Upload the file again."
        )
        _fail(
            upload,
            message,
            actor=user,
            delete_object=True,
            details={"object_crc32": info.checksum_crc32, "expected_crc32": expected},
        )
        raise UploadError(message, status=422)
    return _attach(upload, user, etag or info.etag, expected if info.checksum_crc32 else "")


def _container_of(upload: Upload) -> DiskContainer | None:
    if upload.request_id is None and not DiskContainer.objects.filter(upload=upload).exists():
        return None  # a loose upload, for a batch
    container = DiskContainer.objects.filter(upload=upload).first()
    if container is None:
        raise UploadError("This upload is complete but is no longer one of the request's disks.", status=409)
    return container


def _attach(upload: Upload, user: Any, etag: str, crc32: str = "") -> Completed:
    now = timezone.now()
    with transaction.atomic():
        locked = Upload.objects.select_for_update().get(pk=upload.pk)
        if locked.status == Upload.Status.COMPLETED:  # a concurrent call won
            return Completed(locked, _container_of(locked))
        _uploading(locked)
        if locked.request is None:
            return Completed(_complete_loose(locked, user, etag, crc32, now), None)
        request = _draft(locked.request, lock=True)
        container = DiskContainer.objects.create(
            request=request,
            position=drafts.next_position(request),
            format=drafts.guess_format(locked.file_name),
            s3_bucket=locked.bucket,
            s3_key=locked.key,
            upload=locked,
        )
        locked.status = Upload.Status.COMPLETED
        locked.etag = etag[:128]
        locked.completed_at = now
        locked.checksum_crc32 = crc32
        locked.save(update_fields=["status", "etag", "completed_at", "checksum_crc32"])
        _update_client_data(request, locked)
        audit.record(
            "upload completed",
            request,
            actor=user,
            details={
                "upload": locked.pk,
                "key": locked.key,
                "file_name": locked.file_name,
                "size_bytes": locked.size,
                "etag": locked.etag,
                "checksum_crc32": crc32,
                "container": container.pk,
                "position": container.position,
                "format": container.format,
            },
        )
    # The image itself, before anyone relies on it: queued for the worker (pending until its report is in).
    preflight.inspect_container(container)
    return Completed(locked, container)


def _complete_loose(upload: Upload, user: Any, etag: str, crc32: str, now: Any) -> Upload:
    """Mark a loose upload complete (inside `_attach`'s transaction): audited, no container yet."""
    upload.status = Upload.Status.COMPLETED
    upload.etag = etag[:128]
    upload.completed_at = now
    upload.checksum_crc32 = crc32
    upload.save(update_fields=["status", "etag", "completed_at", "checksum_crc32"])
    audit.record(
        "upload completed",
        actor=user,
        details={
            "upload": upload.pk,
            "key": upload.key,
            "file_name": upload.file_name,
            "size_bytes": upload.size,
            "etag": upload.etag,
            "checksum_crc32": crc32,
        },
    )
    return upload


def _update_client_data(request: ImportRequest, upload: Upload) -> None:
    """ClientData: the first upload's start, the last one's end, and the size of every disk
    uploaded (GiB), including any that reached the draft another way."""
    total = sum(c.size_bytes or 0 for c in request.disk_containers.select_related("upload"))
    start_at = upload.created_at if request.upload_start is None else min(request.upload_start, upload.created_at)
    assert upload.completed_at is not None  # complete() set it just before
    end_at = upload.completed_at if request.upload_end is None else max(request.upload_end, upload.completed_at)
    request.upload_start = start_at
    request.upload_end = end_at
    request.upload_size = round(total / GIB, 6)
    request.save(update_fields=["upload_start", "upload_end", "upload_size", "updated_at"])


# --- cancel, fail ----------------------------------------------------------------------


def cancel(upload: Upload, user: Any) -> Upload:
    """Abort the multipart upload in S3 (its parts are dropped) and record it."""
    if upload.status == Upload.Status.ABORTED:
        return upload
    _uploading(upload)
    try:
        multipart.abort(upload.bucket, upload.key, upload.upload_id)
    except AwsError as exc:
        raise UploadError(f"S3 did not abort the upload: {exc.message}", status=502) from exc
    with transaction.atomic():
        locked = Upload.objects.select_for_update().get(pk=upload.pk)
        if locked.status != Upload.Status.UPLOADING:
            return locked
        locked.status = Upload.Status.ABORTED
        locked.save(update_fields=["status"])
        audit.record(
            "upload cancelled",
            locked.request,
            actor=user,
            details={"upload": locked.pk, "key": locked.key, "file_name": locked.file_name, "size_bytes": locked.size},
        )
    return locked


def _fail(
    upload: Upload,
    message: str,
    *,
    actor: Any = None,
    delete_object: bool = False,
    details: dict[str, Any] | None = None,
) -> None:
    """Give the upload up: S3 keeps nothing of it, and the audit log says why.

    (Upload has no "failed" status nor a message field yet: it is marked aborted and the
    message is kept in the "upload failed" audit event.)
    """
    try:
        if delete_object:
            multipart.delete(upload.bucket, upload.key)
        else:
            multipart.abort(upload.bucket, upload.key, upload.upload_id)
    except AwsError:
        pass  # nothing more to drop, or S3 is down: the bucket's lifecycle rule cleans up
    with transaction.atomic():
        locked = Upload.objects.select_for_update().get(pk=upload.pk)
        if locked.status != Upload.Status.UPLOADING:
            return
        locked.status = Upload.Status.ABORTED
        locked.save(update_fields=["status"])
        audit.record(
            "upload failed",
            locked.request,
            actor=actor,
            details={
                "upload": locked.pk,
                "key": locked.key,
                "file_name": locked.file_name,
                "size_bytes": locked.size,
                "message": message,
                **(details or {}),
            },
        )
    upload.status = Upload.Status.ABORTED


def unfinished(request: ImportRequest | None, user: Any) -> list[Upload]:
    """The user's uploads for this request (None: loose ones) still in progress (to resume or discard)."""
    return list(Upload.objects.filter(request=request, owner=user, status=Upload.Status.UPLOADING))
