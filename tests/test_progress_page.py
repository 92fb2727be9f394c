"""The progress page: stepper, per-disk bars, time, failures explained, stalls, cancel, constant queries."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from wizard.imports import cancelling, failures, progress
from wizard.models import AuditEvent, FinishingStep, ImportRequest, ImportTask, TaskStatusChange

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
    # session (from its cache), user, the request, its task (the owner needs no permission look-up)
    assert expected <= 4


def test_cancel_needs_a_confirmation_and_ends_as_cancelled(
    client, sandbox, requester, reviewer, monkeypatch, django_capture_on_commit_callbacks
):
    from tests.flows import draft_with_image, poll_until_final
    from wizard import tasks
    from wizard.requests import review, submission

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
    from wizard.requests import review
    from wizard.requests.statemachine import change_status

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


# --- Conditional polls: an unchanged partial is answered 304 -------------------------------


def _poll(client, req, etag: str | None = None):
    headers = {"HTTP_IF_NONE_MATCH": etag} if etag else {}
    return client.get(reverse("request-progress", args=[req.pk]), HTTP_HX_REQUEST="true", **headers)


def _running(owner, **task_fields):
    """An importing request whose task started 10 min 30 s ago: its elapsed time shows "10 min"
    for the next 30 s, so two polls in a row show the same page."""
    req, task = _importing(owner, **task_fields)
    started = timezone.now() - timedelta(minutes=10, seconds=30)
    ImportTask.objects.filter(pk=task.pk).update(created_at=started, changed_at=started)
    task.refresh_from_db()
    return req, task


def test_an_unchanged_poll_is_answered_304_without_a_body(client, requester):
    req, _ = _running(requester)
    client.force_login(requester)
    first = _poll(client, req)
    assert first.status_code == 200 and 'id="stage-stepper"' in first.content.decode()
    etag = first.headers["ETag"]
    # Weak: a running import's elapsed time is written as of each render (wizard.js moves it on).
    assert etag.startswith('W/"') and etag.endswith('"') and len(etag) > 10
    # The browser keeps it but asks again each time (htmx then gets the cached 200 from it).
    assert "no-cache" in first.headers["Cache-Control"] and "private" in first.headers["Cache-Control"]
    assert "10 min" in first.content.decode()
    # The element asks its next poll with that ETag itself (htmx's hx-headers), the page's first one too.
    asked = re.search(r'hx-headers="([^"]*)"', first.content.decode())
    assert asked and json.loads(html.unescape(asked[1])) == {"If-None-Match": etag}
    page = client.get(reverse("request-detail", args=[req.pk])).content.decode()
    asked = re.search(r'<section id="progress"[^>]*hx-headers="([^"]*)"', page)
    assert asked and json.loads(html.unescape(asked[1])) == {"If-None-Match": etag}

    second = _poll(client, req, etag)
    assert second.status_code == 304 and second.content == b""
    assert second.headers["ETag"] == etag
    assert _poll(client, req, '"something else"').status_code == 200
    assert _poll(client, req, etag.removeprefix("W/")).status_code == 304  # weak comparison (RFC 9110, GET)


def test_the_clock_alone_does_not_change_the_partial(client, requester, monkeypatch):
    """Minutes go by, AWS reports nothing new: every poll is a 304; a render then says the new
    elapsed time and time left, and carries what wizard.js moves them on from."""
    from wizard.views import imports

    req, task = _running(requester, progress=25)
    client.force_login(requester)
    first = _poll(client, req)
    page = first.content.decode()
    assert '<dd id="elapsed" data-elapsed="63' in page and ">10 min</dd>" in page  # 10 min 30 s
    assert 'data-progress="25">about 31 min</span>' in page  # 10.5 min at 25 %: 31.5 min left
    later = timezone.now() + timedelta(minutes=7)
    monkeypatch.setattr(imports.timezone, "now", lambda: later)
    assert _poll(client, req, first.headers["ETag"]).status_code == 304
    again = _poll(client, req)
    assert again.headers["ETag"] == first.headers["ETag"]
    assert ">17 min</dd>" in again.content.decode() and ">about 52 min</span>" in again.content.decode()
    ImportTask.objects.filter(pk=task.pk).update(progress=26)  # what AWS reports still does
    assert _poll(client, req, first.headers["ETag"]).status_code == 200


def test_a_finished_imports_elapsed_time_is_not_moved_on(client, requester):
    req, task = _running(requester, progress=25)
    ImportTask.objects.filter(pk=task.pk).update(status="completed", image_id="ami-0123456789abcdef0")
    client.force_login(requester)
    page = _poll(client, req).content.decode()
    assert 'id="elapsed">' in page and "data-elapsed" not in page and 'id="time-left"' not in page


def test_the_304_is_decided_without_rendering_the_template(client, requester, monkeypatch):
    from wizard.views import imports

    req, _ = _running(requester)
    client.force_login(requester)
    etag = _poll(client, req).headers["ETag"]
    monkeypatch.setattr(imports, "render", lambda *a, **k: pytest.fail("rendered for a 304"))
    with CaptureQueriesContext(connection) as ctx:
        assert _poll(client, req, etag).status_code == 304
    assert len(ctx.captured_queries) <= 4  # session (its cache), user, the request, its task


def test_what_the_poller_writes_makes_a_new_etag(client, requester):
    from wizard.imports import polling

    req, task = _running(requester)
    client.force_login(requester)
    etag = _poll(client, req).headers["ETag"]
    description = {
        "ImportTaskId": task.import_task_id,
        "Status": "active",
        "StatusMessage": "converting",
        "Progress": "29",
        "SnapshotDetails": task.snapshot_details,
    }
    polling.apply_description(task, description)  # the poller's own path: progress 28 -> 29
    moved = _poll(client, req, etag)
    assert moved.status_code == 200 and moved.headers["ETag"] != etag
    assert '<span id="task-progress">29</span>' in moved.content.decode()
    assert _poll(client, req, moved.headers["ETag"]).status_code == 304

    etag = moved.headers["ETag"]
    polling.needs_attention(task, "AWS answered InternalError", timezone.now())  # changed_at stays the same
    flagged = _poll(client, req, etag)
    assert flagged.status_code == 200 and 'id="attention"' in flagged.content.decode()

    etag = flagged.headers["ETag"]
    polling.apply_description(task, {**description, "Status": "completed", "ImageId": "ami-0123456789abcdef0"})
    done = _poll(client, req, etag)
    page = done.content.decode()
    assert done.status_code == 200 and done.headers["ETag"] != etag
    assert "ami-0123456789abcdef0" in page and "hx-trigger" not in page  # finished: the page stops polling
    assert ImportRequest.objects.get(pk=req.pk).status == ImportRequest.Status.COMPLETED


def test_a_status_change_or_a_failure_message_alone_makes_a_new_etag(client, requester):
    req, _ = _running(requester)
    client.force_login(requester)
    etag = _poll(client, req).headers["ETag"]
    ImportRequest.objects.filter(pk=req.pk).update(failure_message="ClientError: Unknown OS / Missing OS files.")
    failed = _poll(client, req, etag)
    assert failed.status_code == 200 and "Unknown OS" in failed.content.decode()
    ImportRequest.objects.filter(pk=req.pk).update(status=ImportRequest.Status.FAILED)  # updated_at untouched
    assert _poll(client, req, failed.headers["ETag"]).status_code == 200


def test_a_finishing_step_that_moves_makes_a_new_etag(client, requester):
    from wizard.models import FinishingStep

    req, task = _running(requester, status="completed", progress=None, image_id="ami-0123456789abcdef0")
    ImportRequest.objects.filter(pk=req.pk).update(status=ImportRequest.Status.FINISHING)
    step = FinishingStep.objects.create(request=req, position=0, action="CreateTags")
    client.force_login(requester)
    first = _poll(client, req)
    assert first.status_code == 200 and 'id="finishing-steps"' in first.content.decode()
    assert _poll(client, req, first.headers["ETag"]).status_code == 304
    FinishingStep.objects.filter(pk=step.pk).update(state=FinishingStep.State.FAILED, error="AccessDenied: no")
    failed = _poll(client, req, first.headers["ETag"])
    assert failed.status_code == 200 and "AccessDenied: no" in failed.content.decode()
    assert "finishing-retry" in failed.content.decode()
    # Somebody else who may see it (a reviewer) has an ETag of their own: what they are offered differs.
    from tests.conftest import make_user

    auditor = make_user("audrey", "auditor")
    client.force_login(auditor)
    seen = _poll(client, req, failed.headers["ETag"])
    assert seen.status_code == 200 and "finishing-retry" not in seen.content.decode()


def test_a_minute_more_makes_a_new_etag(client, requester):
    req, task = _running(requester)
    client.force_login(requester)
    etag = _poll(client, req).headers["ETag"]
    ImportTask.objects.filter(pk=task.pk).update(created_at=task.created_at - timedelta(minutes=1))
    later = _poll(client, req, etag)
    assert later.status_code == 200 and "11 min" in later.content.decode()


def test_someone_who_may_not_see_the_request_gets_404_not_304(client, requester):
    from tests.conftest import make_user

    req, _ = _running(requester)
    client.force_login(requester)
    etag = _poll(client, req).headers["ETag"]
    other = make_user("mallory", "requester")
    client.force_login(other)
    refused = _poll(client, req, etag)
    assert refused.status_code == 404 and "ETag" not in refused.headers
    client.logout()
    anonymous = _poll(client, req, etag)
    assert anonymous.status_code == 302 and "ETag" not in anonymous.headers


def _in_memory(req_fields: dict, task_fields: dict | None):
    """A request (and its task) as the view reads them, without the database."""
    start = timezone.make_aware(timezone.datetime(2026, 1, 1, 12, 0, 0))
    req = ImportRequest(pk=7, **req_fields)
    req._prefetched_objects_cache = {"finishing_steps": FinishingStep.objects.none()}  # none, and no query
    if task_fields is None:
        ImportRequest._meta.get_field("import_task").set_cached_value(req, None)  # no task, and no query
    else:
        fields = {"created_at": start, "changed_at": start, **task_fields}
        req.import_task = ImportTask(pk=7, request_id=7, **fields)
    return req


SHOWN_TASK_FIELDS = {
    "import_task_id": st.text(max_size=40),
    "status": st.sampled_from(["active", "completed", "deleted", "deleting", "odd"]),
    "status_message": st.text(max_size=60),
    "progress": st.none() | st.integers(0, 100),
    "image_id": st.text(max_size=30),
    "snapshot_details": st.lists(
        st.dictionaries(
            st.sampled_from(["DeviceName", "Format", "DiskImageSize", "Status", "StatusMessage", "Progress"]),
            st.text(max_size=10) | st.integers(0, 10**12),
            max_size=6,
        ),
        max_size=4,
    ),
    "attention": st.text(max_size=60),
    "created_at": st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2026, 1, 1, 12), timezones=st.just(UTC)
    ),
    "changed_at": st.datetimes(
        min_value=datetime(2026, 1, 1, 12), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
}
SHOWN_REQUEST_FIELDS = {
    "status": st.sampled_from([s.value for s in ImportRequest.Status]),
    "failure_message": st.text(max_size=60),
}


@st.composite
def _states(draw):
    req = {name: draw(s) for name, s in SHOWN_REQUEST_FIELDS.items()}
    task = draw(st.none() | st.fixed_dictionaries(SHOWN_TASK_FIELDS))
    return req, task


@hypothesis_settings(max_examples=150, deadline=None)
@given(state=_states(), data=st.data())
def test_any_change_to_what_the_partial_shows_changes_the_etag(state, data):
    from wizard.views.imports import progress_context, progress_etag, shown_values

    req_fields, task_fields = state
    before = progress_context(_in_memory(req_fields, task_fields))
    assert progress_etag(before) == progress_etag(progress_context(_in_memory(req_fields, task_fields)))
    # What the ETag is computed from before any render (wizard.views.progress_poll too) is enough.
    assert progress_etag(shown_values(_in_memory(req_fields, task_fields))) == progress_etag(before)
    if task_fields is not None and data.draw(st.booleans()):
        name = data.draw(st.sampled_from(sorted(SHOWN_TASK_FIELDS)))
        value = data.draw(SHOWN_TASK_FIELDS[name].filter(lambda v: v != task_fields[name]))
        changed = (req_fields, {**task_fields, name: value})
    else:
        name = data.draw(st.sampled_from(sorted(SHOWN_REQUEST_FIELDS)))
        value = data.draw(SHOWN_REQUEST_FIELDS[name].filter(lambda v: v != req_fields[name]))
        changed = ({**req_fields, name: value}, task_fields)
    after = progress_context(_in_memory(*changed))
    assert progress_etag(after) != progress_etag(before), name


def test_the_partials_own_request_query_reads_what_the_orm_reads(requester, reviewer, django_assert_num_queries):
    from wizard.selectors import PROGRESS_FIELDS, own_request_for_poll, own_request_with_task

    req, task = _importing(requester, disks=3, attention="look at this", image_id="ami-0123456789abcdef0")
    expected = ImportRequest.objects.select_related("import_task").get(pk=req.pk)
    with django_assert_num_queries(1):
        read = own_request_for_poll(req.pk, requester.pk)
        assert read is not None
        found = read.request
        got = found.import_task
    assert (read.owner_password, read.owner_is_active) == (requester.password, True)
    for name in PROGRESS_FIELDS:
        field = ImportRequest._meta.get_field(name)
        assert getattr(found, field.attname) == getattr(expected, field.attname)
    for field in ImportTask._meta.concrete_fields:  # JSON and times converted as the ORM converts them
        assert getattr(got, field.attname) == getattr(expected.import_task, field.attname), field.name
    assert got.request is found
    assert own_request_with_task(req.pk, reviewer.pk) is None  # not theirs: nothing, whoever asks
    assert own_request_with_task(req.pk + 1000, requester.pk) is None
    draft = ImportRequest.objects.create(owner=requester)
    with django_assert_num_queries(1):
        bare = own_request_with_task(draft.pk, requester.pk)
        assert bare is not None
        with pytest.raises(ImportRequest.import_task.RelatedObjectDoesNotExist):
            _ = bare.import_task
    assert bare.description == draft.description  # a field it did not read: loaded when read
