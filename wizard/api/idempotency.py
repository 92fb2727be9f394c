"""Idempotency keys: a retried POST with the same `Idempotency-Key` creates nothing twice.

The key is stored per user with a fingerprint of the request (method, path, body) and the
answer given. The same key with the same request gets the same answer again (with the header
`Idempotent-Replayed: true`); with another request, 422; while the first is still running, 409.
Answers of 5xx are not kept (the client may try again with the same key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from wizard.models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY = 255
# A first attempt that never recorded its answer (its process died) is taken over after this.
ABANDONED = timedelta(minutes=5)


def fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    for part in (request.method or "", request.path, request.META.get("QUERY_STRING", "")):
        digest.update(part.encode() + b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def run(request: HttpRequest, user: User, answer: Callable[[], tuple[int, dict[str, Any]]]) -> JsonResponse:
    """`answer()` -> (status, body), once per user and key."""
    key = request.headers.get(HEADER, "")
    if not key:
        status, body = answer()
        return JsonResponse(body, status=status)
    if len(key) > MAX_KEY or not key.isprintable():
        return JsonResponse(
            {"message": f"{HEADER} must be printable text of at most {MAX_KEY} characters", "errors": []}, status=422
        )
    mark = fingerprint(request)
    try:
        with transaction.atomic():
            record, created = IdempotencyKey.objects.get_or_create(
                user=user, key=key, defaults={"endpoint": request.path, "fingerprint": mark}
            )
    except IntegrityError:
        record, created = IdempotencyKey.objects.get(user=user, key=key), False
    if not created:
        if record.fingerprint != mark:
            return JsonResponse(
                {
                    "message": f"This {HEADER} was used for another request ({record.endpoint}); use a new key for a "
                    "new request",
                    "errors": [],
                },
                status=422,
            )
        if record.status_code is None:
            if timezone.now() - record.created_at < ABANDONED:
                return JsonResponse(
                    {"message": f"The first request with this {HEADER} is still running; try again", "errors": []},
                    status=409,
                )
        else:
            replay = JsonResponse(record.response, status=record.status_code)
            replay["Idempotent-Replayed"] = "true"
            return replay
    try:
        status, body = answer()
    except Exception:
        IdempotencyKey.objects.filter(pk=record.pk).delete()
        raise
    if status >= 500:
        IdempotencyKey.objects.filter(pk=record.pk).delete()
    else:
        IdempotencyKey.objects.filter(pk=record.pk).update(status_code=status, response=body)
    return JsonResponse(body, status=status)
