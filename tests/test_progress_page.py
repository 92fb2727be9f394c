"""The progress page: stepper, per-disk bars, time, failures explained, stalls, cancel, constant queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from wizard import cancelling, failures, progress
from wizard.models import AuditEvent, ImportRequest, ImportTask, TaskStatusChange

FACTS_MESSAGES = [
    "The service role vmimport provided does not exist or does not have sufficient permissions",
    "ClientError: Disk validation failed [We do not have access to the given resource. Reason 403 Forbidden]",
    "ClientError: Disk validation failed [Unsupported VMDK File Format]",
    "ClientError: Disk validation failed [OVF file parsing error: OVA with chunked disk files]",
    "ClientError: Disk validation failed [Unsupported OVA format]",
    "ClientError: Disk validation failed [Unsupported specified file format]",
    "ClientError: Unknown OS / Missing OS files.",
    "ClientError: Unsupported kernel version 2.6.18",
    "ClientError: No valid partitions. Not a valid volume.",
    "architecture=arm64 has an invalid format",
]


@pytest.mark.parametrize("message", FACTS_MESSAGES)
def test_every_documented_failure_is_explained(message):
    explanation = failures.explain(message)
    assert explanation is not None and explanation.meaning and explanation.action


def test_the_stepper_folds_aws_messages_into_stages():
    assert progress.stage_of("active", "validated") == "validating"
    assert progress.stage_of("active", "booted") == "booting"
    assert progress.stage_of("completed", "") == "completed"
    items = progress.stepper("active", "converting", failed=False)
    assert [i.state for i in items] == ["done", "done", "current", "todo", "todo", "todo", "todo"]
    assert progress.stepper("deleted", "booting", failed=True)[4].state == "failed"
    assert all(i.state == "done" for i in progress.stepper("completed", "", failed=False))


def test_time_left_follows_the_pace_so_far():
    assert progress.time_left(timedelta(minutes=10), 25) == timedelta(minutes=30)
    assert progress.time_left(timedelta(minutes=1), 2) is None and progress.time_left(timedelta(1), None) is None


def _importing(owner, disks: int = 1, changes: int = 1, **task_fields):
    req = ImportRequest.objects.create(owner=owner, status=ImportRequest.Status.IMPORTING)
    details = [
        {
            "DeviceName": f"/dev/sd{chr(97 + i)}",
            "Format": "VMDK",
            "DiskImageSize": 1073741824.0,
            "Status": "active",
            "Progress": "40",
        }
        for i in range(disks)
    ]
    fields = {"status": "active", "status_message": "converting", "progress": 28, **task_fields}
    task = ImportTask.objects.create(
        request=req, import_task_id=f"import-ami-{req.pk:017x}", snapshot_details=details, **fields
    )
    for i in range(changes):
        TaskStatusChange.objects.create(task=task, at=timezone.now(), status="active", status_message="x", progress=i)
    return req, task


def test_the_partial_shows_every_element(client, requester):
    req, task = _importing(requester, disks=2)
    client.force_login(requester)
    page = client.get(reverse("request-progress", args=[req.pk])).content.decode()
    assert 'id="stage-stepper"' in page and 'class="stage-current" data-stage="converting"' in page
    assert page.count("/dev/sd") == 2 and 'id="elapsed"' in page and 'id="overall-progress"' in page


def test_a_stalled_task_is_flagged(client, requester, settings):
    settings.STALL_MINUTES = 30
    req, task = _importing(requester)
    ImportTask.objects.filter(pk=task.pk).update(changed_at=timezone.now() - timedelta(hours=2))
    client.force_login(requester)
    assert 'id="stalled"' in client.get(reverse("request-progress", args=[req.pk])).content.decode()


def test_a_failure_shows_awss_message_its_meaning_and_what_to_do(client, requester):
    req, task = _importing(requester, status="deleted")
    ImportRequest.objects.filter(pk=req.pk).update(
        status="failed", failure_message="ClientError: Unknown OS / Missing OS files."
    )
    client.force_login(requester)
    page = client.get(reverse("request-progress", args=[req.pk])).content.decode()
    assert "Unknown OS / Missing OS files." in page and 'id="failure-meaning"' in page and 'id="failure-action"' in page
    assert "hx-trigger" not in page


def _queries_for(client, req) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("request-progress", args=[req.pk])).status_code == 200
    return len(ctx.captured_queries)


def test_queries_per_poll_do_not_grow_with_disks_or_changes(client, requester):
    client.force_login(requester)
    small, _ = _importing(requester, disks=1, changes=1)
    big, _ = _importing(requester, disks=21, changes=200)
    expected = _queries_for(client, small)
    assert _queries_for(client, big) == expected
    assert expected <= 3  # session, user, the request with its task (the owner needs no permission look-up)


def test_cancel_needs_a_confirmation_and_ends_as_cancelled(
    client, sandbox, requester, reviewer, monkeypatch, django_capture_on_commit_callbacks
):
    from tests.flows import draft_with_image, poll_until_final
    from wizard import review, submission, tasks

    monkeypatch.setattr(tasks, "kick_poller", lambda: None)
    req = draft_with_image(requester, sandbox)
    submission.submit(req, requester)
    with django_capture_on_commit_callbacks(execute=True):
        review.approve(req, reviewer)
    client.force_login(requester)
    url = reverse("request-cancel", args=[req.pk])
    client.post(url, {"reason": "wrong image"})
    assert not AuditEvent.objects.filter(action="cancel requested").exists()
    client.post(url, {"reason": "wrong image", "confirm": "yes"})
    event = AuditEvent.objects.get(action="cancel requested")
    assert (event.details["PreviousState"], event.details["State"]) == ("active", "deleting")
    poll_until_final(req, sandbox, step_seconds=10)
    assert req.status == ImportRequest.Status.CANCELLED and req.cancel_reason == "wrong image"
    with pytest.raises(cancelling.CancelError):
        cancelling.cancel(req, requester, "again")


def test_the_requester_is_emailed_on_approval_and_completion(
    requester, reviewer, monkeypatch, django_capture_on_commit_callbacks
):
    from wizard import review
    from wizard.statemachine import change_status

    requester.email = "alice@example.com"
    requester.save()
    monkeypatch.setattr("wizard.tasks.enqueue_dispatch", lambda pk: None)
    req = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.SUBMITTED, description="db01")
    with django_capture_on_commit_callbacks(execute=True):
        review.approve(req, reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        change_status(req, "dispatch", action="dispatched")
        change_status(
            req,
            "fail",
            action="failed",
            failure_message="ClientError: No valid partitions. Not a valid volume.",
        )
    assert [m.subject for m in mail.outbox] == [f"Import #{req.pk} approved, dispatching", f"Import #{req.pk} failed"]
    assert mail.outbox[1].to == ["alice@example.com"] and "No valid partitions" in mail.outbox[1].body
    assert req.get_absolute_url() in mail.outbox[0].body
