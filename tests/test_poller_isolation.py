"""One bad task, value or answer never stalls the others: the poller isolates failures.

A real sandbox process (its clock standing still) with ten import tasks, described four at a
time (DESCRIBE_BATCH patched): batches [0-3], [4-7], [8-9]. The faults break the answers of
one task (`corrupt`: not well-formed XML, as after the NUL cancel reason of the incident) or
of the calls that name it (`internal_error` / `throttle` with `task_ids`).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from botocore.config import Config
from django.core.cache import cache
from django.urls import reverse

from wizard import tasks
from wizard.audit import audit
from wizard.aws import clients, vmimport
from wizard.imports import polling
from wizard.models import AuditEvent, ImportRequest, ImportTask
from wizard.sandbox.testing import SandboxProcess

DESCRIBE = "DescribeImportImageTasks"
TASKS = 10
BATCH = 4
CULPRIT = 5  # in the second batch


@pytest.fixture(scope="module")
def still_sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(clock_speed=0, import_seconds=60) as sb:
        yield sb


@pytest.fixture
def sandbox(still_sandbox, settings) -> Iterator[SandboxProcess]:
    still_sandbox.reset()
    settings.AWS_SANDBOX = True
    settings.AWS_ENDPOINT_URL = still_sandbox.endpoint
    settings.AWS_REGION = still_sandbox.region
    yield still_sandbox


@pytest.fixture
def calls(sandbox, settings) -> Iterator[list[list[str]]]:
    """The ImportTaskIds of each DescribeImportImageTasks call the application makes."""
    seen: list[list[str]] = []
    events = clients._session(settings.AWS_SANDBOX, settings.AWS_REGION).events
    hook = f"before-parameter-build.ec2.{DESCRIBE}"
    events.register(hook, lambda params, **_: seen.append(list(params["ImportTaskIds"])), unique_id="test-isolation")
    clients.forget()  # clients made from now on carry the handler
    yield seen
    events.unregister(hook, unique_id="test-isolation")
    clients.forget()


@pytest.fixture
def followed(db, sandbox, requester, monkeypatch) -> list[ImportTask]:
    """TASKS importing requests, each with its task in the sandbox (pending), not yet polled."""
    monkeypatch.setattr(vmimport, "DESCRIBE_BATCH", BATCH)
    monkeypatch.setattr(clients, "RETRY_CONFIG", Config(retries={"mode": "standard", "total_max_attempts": 2}))
    monkeypatch.setattr(tasks, "time", SimpleNamespace(sleep=lambda seconds: None))
    monkeypatch.setattr(tasks, "kick_poller", lambda: None)
    cache.delete(tasks.BACKOFF_KEY)
    key = "uploads/isolation.vmdk"
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=key, Body=b"KDMV" + bytes(4092))
    ec2 = sandbox.client("ec2")
    disk = {"Format": "VMDK", "UserBucket": {"S3Bucket": sandbox.bucket, "S3Key": key}}
    rows = []
    for n in range(TASKS):
        task_id = ec2.import_image(DiskContainers=[disk], Description=f"isolation {n}")["ImportTaskId"]
        request = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.IMPORTING)
        rows.append(ImportTask.objects.create(request=request, import_task_id=task_id))
    return rows


def messages(rows: list[ImportTask]) -> list[str]:
    """Each task's StatusMessage as stored ("" until a poll recorded it)."""
    by_pk = dict(ImportTask.objects.values_list("pk", "status_message"))
    return [by_pk[row.pk] for row in rows]


def attention(row: ImportTask) -> str:
    return ImportTask.objects.get(pk=row.pk).attention


def others(rows: list[ImportTask], n: int = CULPRIT) -> list[ImportTask]:
    return rows[:n] + rows[n + 1 :]


def test_an_unreadable_answer_for_one_task_holds_up_no_other(followed, sandbox, calls):
    culprit = followed[CULPRIT]
    sandbox.faults(corrupt={"task_id": culprit.import_task_id})
    sandbox.advance(4)  # every task is validating now

    assert polling.poll_once() == TASKS
    assert set(messages(others(followed))) == {"validating"}
    assert messages([culprit]) == [""]
    note = attention(culprit)
    assert "DescribeImportImageTasks fails for this task alone (its answer could not be read: " in note
    assert "not well-formed" in note and " UTC " in note and culprit.import_task_id in note
    assert "The other imports are not held up" in note and "cancel the import and import again" in note
    event = AuditEvent.objects.get(action="needs attention")
    assert event.request_id == culprit.request_id and event.after == {"attention": note}
    # The spoilt batch is halved down to the culprit: 2 calls per halving, not one per task.
    ids = [t.import_task_id for t in followed]
    assert calls == [ids[0:4], ids[4:8], ids[4:6], ids[4:5], ids[5:6], ids[6:8], ids[8:10]]

    # From now on it is asked about alone: it spoils no batch.
    calls.clear()
    sandbox.advance(3)  # validated
    assert polling.poll_once() == TASKS
    assert set(messages(others(followed))) == {"validated"}
    assert calls == [
        [t.import_task_id for t in batch]
        for batch in (others(followed)[:4], others(followed)[4:8], others(followed)[8:])
    ] + [[culprit.import_task_id]]
    assert attention(culprit) == note  # kept as first written: one event, not one per poll
    assert AuditEvent.objects.filter(action="needs attention").count() == 1

    # AWS answers for it again: it is followed again and the note goes.
    sandbox.clear_faults()
    assert polling.poll_once() == TASKS
    assert messages([culprit]) == ["validated"] and attention(culprit) == ""
    cleared = AuditEvent.objects.get(action="attention cleared")
    assert (cleared.request_id, cleared.before, cleared.after) == (
        culprit.request_id,
        {"attention": note},
        {"attention": ""},
    )
    assert not ImportRequest.objects.filter(status=ImportRequest.Status.FAILED).exists()


def test_a_5xx_for_the_batch_of_one_task_is_isolated_to_it(followed, sandbox, calls):
    culprit = followed[CULPRIT]
    sandbox.faults(internal_error={"task_ids": [culprit.import_task_id], "actions": [DESCRIBE]})

    assert tasks.poll_imports() == TASKS
    assert set(messages(others(followed))) == {"pending"}
    assert messages([culprit]) == [""]
    assert "(AWS answered InternalError: An internal error has occurred.)" in attention(culprit)
    assert [attention(t) for t in others(followed)] == [""] * (TASKS - 1)
    assert cache.get(tasks.BACKOFF_KEY) is None  # the others were answered: no back-off


def test_a_throttled_batch_stops_the_poll_and_the_next_one_starts_there(followed, sandbox, calls):
    third = followed[8]
    # Both of botocore's attempts at the third batch are throttled, then the fault is spent.
    sandbox.faults(throttle={"task_ids": [third.import_task_id], "actions": [DESCRIBE], "count": 2})

    assert tasks.poll_imports() == -2  # backs off
    assert cache.get(tasks.BACKOFF_KEY) == 2 * 3  # doubled from the poll interval
    assert messages(followed) == ["pending"] * 8 + ["", ""]  # what the first two batches got stays
    assert len(calls) == 3  # a throttled batch is not halved: that would only add calls

    calls.clear()
    assert tasks.poll_imports() == TASKS
    # Those polled longest ago first: the third batch's two, then the oldest of the others.
    assert calls[0][:2] == [t.import_task_id for t in followed[8:]]
    assert messages(followed) == ["pending"] * TASKS
    assert not ImportTask.objects.exclude(attention="").exists()


def test_aws_out_of_reach_backs_off_and_marks_nothing(followed, settings):
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    assert tasks.poll_imports() == -2
    assert messages(followed) == [""] * TASKS
    assert not ImportTask.objects.exclude(attention="").exists()
    assert not ImportRequest.objects.exclude(status=ImportRequest.Status.IMPORTING).exists()


def test_when_aws_fails_every_call_no_task_is_blamed_and_the_calls_stay_bounded(followed, sandbox, calls):
    sandbox.faults(internal_error={"actions": [DESCRIBE]})
    assert tasks.poll_imports() == -2
    assert not ImportTask.objects.exclude(attention="").exists()
    assert len(calls) <= 3 + polling.SPLIT_CALLS
    assert messages(followed) == [""] * TASKS


def test_the_only_task_with_an_unreadable_answer_gets_attention_too(followed, sandbox):
    ImportTask.objects.exclude(pk=followed[0].pk).update(status="completed")
    sandbox.faults(corrupt={"task_id": followed[0].import_task_id})
    assert tasks.poll_imports() == -2  # no call got an answer: back off
    assert "its answer could not be read" in attention(followed[0])


def test_the_requests_page_says_what_needs_attention(client, requester, followed, sandbox):
    culprit = followed[CULPRIT]
    sandbox.faults(corrupt={"task_id": culprit.import_task_id})
    polling.poll_once()
    client.force_login(requester)
    page = client.get(reverse("request-progress", args=[culprit.request_id])).content.decode()
    assert 'id="attention"' in page and "its answer could not be read" in page
    other = client.get(reverse("request-progress", args=[followed[0].request_id])).content.decode()
    assert 'id="attention"' not in other

    sandbox.clear_faults()
    polling.poll_once()
    page = client.get(reverse("request-progress", args=[culprit.request_id])).content.decode()
    assert 'id="attention"' not in page


def test_an_unknown_task_among_them_is_still_lost_alone(followed, sandbox, calls):
    ImportTask.objects.filter(pk=followed[2].pk).update(import_task_id="import-ami-0123456789abcdef0")
    assert polling.poll_once() == TASKS - 1
    assert list(ImportRequest.objects.filter(status="failed").values_list("pk", flat=True)) == [followed[2].request_id]
    assert not ImportTask.objects.exclude(attention="").exists()


def _cycle_queries(rows: list[ImportTask], sandbox: SandboxProcess, seconds: float) -> int:
    """The queries of one poll in which every task of `rows` moved on (a new stage for each)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ImportTask.objects.exclude(pk__in=[r.pk for r in rows]).update(status="completed")  # not followed
    sandbox.advance(seconds)
    before = AuditEvent.objects.filter(action="aws status changed").count()
    with CaptureQueriesContext(connection) as ctx:
        assert polling.poll_once() == len(rows)
    assert AuditEvent.objects.filter(action="aws status changed").count() == before + len(rows)  # each changed
    ImportTask.objects.exclude(pk__in=[r.pk for r in rows]).update(status="active")
    return len(ctx.captured_queries)


def test_a_busy_cycles_queries_do_not_grow_with_its_tasks(followed, sandbox, monkeypatch):
    """2 or 10 tasks changing in one answer: the same queries (the changes are written in bulk)."""
    monkeypatch.setattr(vmimport, "DESCRIBE_BATCH", 200)  # one call for all of them
    assert polling.poll_once() == TASKS  # the first poll (each task's first stage; the dispatch gate's row)
    few = _cycle_queries(followed[:2], sandbox, 4)  # validating
    many = _cycle_queries(followed, sandbox, 3)  # all ten: validated, or validating
    assert many == few
    assert few <= 20  # the dispatch queue's look, the tasks, a lock, one write of each kind (and savepoints here)
    assert audit.verify_chain() is None


def test_a_value_the_database_refuses_holds_up_no_other_task(followed, sandbox, monkeypatch):
    """One task's answer cannot be stored (here: Progress out of range): the others are written."""
    culprit = followed[CULPRIT]
    real = vmimport.describe_import_image_tasks

    def describe(ids, ec2=None):
        for d in real(ids, ec2):
            yield {**d, "Progress": "-7"} if d["ImportTaskId"] == culprit.import_task_id else d

    monkeypatch.setattr(vmimport, "describe_import_image_tasks", describe)
    sandbox.advance(4)
    assert polling.poll_once() == TASKS
    assert set(messages(others(followed))) == {"validating"}
    assert messages([culprit]) == [""]  # left as it was
    assert "its answer could not be stored (IntegrityError" in attention(culprit)
    assert [attention(t) for t in others(followed)] == [""] * (TASKS - 1)
    assert AuditEvent.objects.filter(action="aws status changed").count() == TASKS - 1
    assert audit.verify_chain() is None

    monkeypatch.setattr(vmimport, "describe_import_image_tasks", real)  # its answers can be stored again
    assert polling.poll_once() == TASKS
    assert messages([culprit]) == ["validating"] and attention(culprit) == ""
    assert AuditEvent.objects.filter(action="attention cleared").count() == 1
