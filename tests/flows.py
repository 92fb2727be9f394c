"""Shortcuts through the application's own services, for tests that start mid-flow."""

from __future__ import annotations

from django.test import TestCase

from tests.images import raw_mbr
from wizard import drafts, polling, preflight
from wizard.models import ImportRequest


def draft_with_image(
    user, sandbox, body: bytes | None = None, key: str = "uploads/test/disk.raw", description: str = "web01"
) -> ImportRequest:
    """A draft whose one disk is an image put in the sandbox's S3, inspected as the wizard does
    (queued after the commit; django-q2 runs the task inline in tests)."""
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=key, Body=raw_mbr(64 * 1024) if body is None else body)
    draft = drafts.create_draft(user, description=description)
    container = drafts.add_container(draft, user, s3_bucket=sandbox.bucket, s3_key=key)
    with TestCase.captureOnCommitCallbacks(execute=True):
        preflight.inspect_container(container)
    return draft


def poll_until_final(request: ImportRequest, sandbox, step_seconds: float = 5, polls: int = 30) -> ImportRequest:
    """Poll as the worker does, moving the sandbox's clock on between polls, until the request ends."""
    for _ in range(polls):
        polling.poll_once()
        request.refresh_from_db()
        if request.is_final:
            break
        sandbox.advance(step_seconds)
    return request
