"""The upload widget's JSON endpoints (thin: the work is in wizard.uploads.uploads).

Every endpoint answers JSON, needs a logged-in user, finds uploads and requests only among
the user's own (404 otherwise), and refuses bodies larger than it could need before
reading them: image bytes go from the browser to S3, never through here. POSTs are
CSRF-protected (the widget sends the X-CSRFToken header).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from wizard.aws.multipart import PART_URL_SECONDS
from wizard.http import HttpError
from wizard.models import ImportRequest, Upload
from wizard.uploads import uploads
from wizard.uploads.uploads import UploadError

# A sign or start call is a few hundred bytes; a complete call lists up to 10,000 parts
# of about 60 bytes each.
MAX_BODY = 16 * 1024
MAX_COMPLETE_BODY = 1024 * 1024


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def json_endpoint(limit: int = MAX_BODY) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Logged in (401 otherwise), body at most `limit` bytes (413, unread), then the CSRF
    check, then the view; refusals as JSON {"error": ...}.

    The CSRF check runs here, after the size check, rather than in the middleware: the
    middleware reads form bodies (request.POST) before any view could refuse them.
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        protected = csrf_protect(view)

        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return _error("Log in again: your session has ended.", 401)
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return _error("Bad Content-Length.", 400)
            if length > limit or request.META.get("HTTP_TRANSFER_ENCODING"):
                return _error(f"The request body is over {limit:,} bytes: image bytes go to S3, not here.", 413)
            try:
                return protected(request, *args, **kwargs)
            except HttpError as exc:
                return _error(exc.message, exc.status)
            except UploadError as exc:
                return _error(exc.message, exc.status)

        return never_cache(csrf_exempt(wrapper))

    return decorate


# No number the widget sends has more digits than a size in bytes (13) or a part number (5).
MAX_NUMBER_DIGITS = 20


def _number(text: str) -> int | float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise HttpError(400, f"The body holds a number of {len(text):,} digits: no size or part number is that long.")
    return float(text) if any(c in text for c in ".eE") else int(text)


def _not_a_number(name: str) -> None:
    raise HttpError(400, f"The body holds {name}, which is not JSON.")


def _body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object; HttpError (400) for anything else, whatever it holds."""
    try:
        data = json.loads(request.body or b"{}", parse_int=_number, parse_float=_number, parse_constant=_not_a_number)
    except RecursionError as exc:
        raise HttpError(400, "The body is nested too deeply: it is no call of the upload widget.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, "The body is not JSON.") from exc
    if not isinstance(data, dict):
        raise HttpError(400, "The body must be a JSON object.")
    return data


def _own_request(request: HttpRequest, pk: int) -> ImportRequest:
    return get_object_or_404(ImportRequest, pk=pk, owner=request.user)


def _own_upload(request: HttpRequest, upload_id: int) -> Upload:
    return get_object_or_404(Upload.objects.select_related("request"), pk=upload_id, owner=request.user)


def upload_json(upload: Upload) -> dict[str, Any]:
    """What the widget knows of an upload, with the URLs of its calls."""
    return {
        "id": upload.pk,
        "request": upload.request_id,
        "status": upload.status,
        "key": upload.key,
        "upload_id": upload.upload_id,
        "file_name": upload.file_name,
        "size": upload.size,
        "part_size": uploads.part_size_for(upload.size),
        "part_count": uploads.part_count(upload.size),
        "urls": {
            "self": reverse("upload-detail", args=[upload.pk]),
            "sign": reverse("upload-sign", args=[upload.pk]),
            "parts": reverse("upload-parts", args=[upload.pk]),
            "complete": reverse("upload-complete", args=[upload.pk]),
            "abort": reverse("upload-abort", args=[upload.pk]),
        },
    }


# --- JSON endpoints ------------------------------------------------------------------------


def _start(request: HttpRequest, req: ImportRequest | None) -> HttpResponse:
    """POST {file_name, size, content_type?} → 201 the upload (key, upload_id, part_size, urls)."""
    data = _body(request)
    upload = uploads.start(
        request.user,
        req,
        file_name=data.get("file_name"),
        size=data.get("size"),
        content_type=data.get("content_type", ""),
    )
    return JsonResponse(upload_json(upload), status=201)


@require_POST
@json_endpoint()
def create(request: HttpRequest, pk: int) -> HttpResponse:
    """An upload for the user's draft `pk` (see `_start`)."""
    return _start(request, _own_request(request, pk))


@require_POST
@json_endpoint()
def create_loose(request: HttpRequest) -> HttpResponse:
    """A loose upload: an image for a batch, no request yet (see `_start`)."""
    if not request.user.has_perm("wizard.add_importrequest"):
        return _error("You may not make import requests.", 403)
    return _start(request, None)


@require_GET
@json_endpoint()
def detail(request: HttpRequest, upload_id: int) -> HttpResponse:
    return JsonResponse(upload_json(_own_upload(request, upload_id)))


@require_POST
@json_endpoint()
def sign(request: HttpRequest, upload_id: int) -> HttpResponse:
    """POST {parts: [{PartNumber, ChecksumCRC32}, ...]} (at most 100)
    → {urls: {"n": url}, headers: {"n": {header: value}}, expires_in}."""
    upload = _own_upload(request, upload_id)
    signed = uploads.sign_parts(upload, _body(request).get("parts"))
    return JsonResponse(
        {
            "urls": {str(n): url for n, (url, _) in signed.items()},
            "headers": {str(n): headers for n, (_, headers) in signed.items()},
            "expires_in": PART_URL_SECONDS,
        }
    )


@require_GET
@json_endpoint()
def parts(request: HttpRequest, upload_id: int) -> HttpResponse:
    """→ {parts: [{PartNumber, ETag, Size}]}: what S3 already holds."""
    upload = _own_upload(request, upload_id)
    return JsonResponse({"parts": [p.as_json() for p in uploads.list_parts(upload)]})


@require_POST
@json_endpoint(MAX_COMPLETE_BODY)
def complete(request: HttpRequest, upload_id: int) -> HttpResponse:
    """POST {parts: [{PartNumber, ETag, ChecksumCRC32}]} → the upload and its container.

    422 {error} when the object S3 made is not the size the browser declared, or its
    checksum not the one the parts' CRC32s make.
    """
    upload = _own_upload(request, upload_id)
    data = _body(request)
    done = uploads.complete(upload, request.user, data.get("parts"))
    c = done.container
    if c is None:  # a loose upload: complete, waiting to be chosen for a batch
        return JsonResponse({**upload_json(done.upload), "container": None})
    return JsonResponse(
        {
            **upload_json(done.upload),
            "container": {
                "id": c.pk,
                "position": c.position,
                "format": c.format,
                "file_name": c.file_name,
                "size_bytes": c.size_bytes,
                "s3_bucket": c.s3_bucket,
                "s3_key": c.s3_key,
            },
        }
    )


@require_POST
@json_endpoint()
def abort(request: HttpRequest, upload_id: int) -> HttpResponse:
    """POST → the upload, aborted in S3 (its parts dropped)."""
    upload = _own_upload(request, upload_id)
    return JsonResponse(upload_json(uploads.cancel(upload, request.user)))
