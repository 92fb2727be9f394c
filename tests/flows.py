"""Shortcuts through the application's own services, for tests that start mid-flow."""

from __future__ import annotations

import posixpath

from django.test import TestCase

from tests.images import raw_mbr
from wizard.imports import polling
from wizard.models import ImportRequest, SourceGrant
from wizard.preflight import preflight
from wizard.requests import drafts


def grant(user, kind: str = SourceGrant.Kind.S3, **fields: str) -> SourceGrant:
    """An administrator's grant (wizard.uploads.sources) to a group of the user's own, "team-<name>":
    e.g. grant(alice, s3_bucket="b", s3_prefix="images/"), grant(alice, "url", host="example.com")."""
    from django.contrib.auth.models import Group

    group, _ = Group.objects.get_or_create(name=f"team-{user.get_username()}")
    user.groups.add(group)
    made, _ = SourceGrant.objects.get_or_create(kind=kind, **fields)
    made.groups.add(group)
    return made


def draft_with_image(
    user, sandbox, body: bytes | None = None, key: str = "uploads/test/disk.raw", description: str = "web01"
) -> ImportRequest:
    """A draft whose one disk is an image put in the sandbox's S3, inspected as the wizard does
    (queued after the commit; django-q2 runs the task inline in tests).

    The user may import it: its folder in the bucket is granted to a group of theirs."""
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=key, Body=raw_mbr(64 * 1024) if body is None else body)
    grant(user, s3_bucket=sandbox.bucket, s3_prefix=posixpath.dirname(key) + "/" if "/" in key else "")
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
