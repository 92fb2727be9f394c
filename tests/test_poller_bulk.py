"""The poller's bulk writes: what `apply_descriptions` stores for many tasks at once, the audit
chain `audit.record_many` appends, and values a database refuses (also on PostgreSQL:
DB_TESTS_ONLY=1 DATABASE_URL=postgres://...)."""

from __future__ import annotations

import pytest
from django.db import DataError, IntegrityError, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from wizard.audit import audit
from wizard.imports import polling
from wizard.models import AuditEvent, ImportRequest, ImportTask, TaskStatusChange


def _tasks(owner, n: int) -> list[ImportTask]:
    requests = ImportRequest.objects.bulk_create(
        ImportRequest(owner=owner, status=ImportRequest.Status.IMPORTING) for _ in range(n)
    )
    return list(
        ImportTask.objects.bulk_create(
            ImportTask(request=r, import_task_id=f"import-ami-{r.pk:017x}") for r in requests
        )
    )


def _description(task: ImportTask, **fields) -> dict:
    return {"ImportTaskId": task.import_task_id, "Status": "active", **fields}


def test_record_many_continues_the_chain_that_record_made(db, requester):
    audit.record("before", actor=requester, details={"n": 1})
    audit.record_many([audit.Entry(f"bulk {i}", None, before={"i": i}, after={"i": i + 1}) for i in range(5)])
    audit.record("after")
    events = list(AuditEvent.objects.order_by("pk"))
    assert [e.action for e in events] == ["before", *(f"bulk {i}" for i in range(5)), "after"]
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert events[3].actor is None and events[3].actor_name == "system" and events[3].after == {"i": 3}
    assert audit.verify_chain() is None
    audit.record_many([])  # nothing to append: nothing written
    assert AuditEvent.objects.count() == 7


def test_many_changes_are_stored_as_one_at_a_time_would(db, requester):
    tasks = _tasks(requester, 30)
    pairs = [
        (t, _description(t, StatusMessage="converting", Progress=str(i), SnapshotDetails=[{"Format": "VMDK"}]))
        for i, t in enumerate(tasks)
    ]
    assert polling.apply_descriptions(pairs[:20], unchanged=[t.pk for t in tasks[20:]]) == [True] * 20
    assert polling.apply_descriptions(pairs) == [False] * 20 + [True] * 10  # the first 20 are stored already
    for i, row in enumerate(ImportTask.objects.order_by("pk")):
        assert (row.status_message, row.progress, row.snapshot_details) == ("converting", i, [{"Format": "VMDK"}])
        assert row.polled_at is not None and row.changed_at == TaskStatusChange.objects.get(task=row).at
    events = AuditEvent.objects.filter(action="aws status changed").order_by("pk")
    assert [e.request_id for e in events] == [t.request_id for t in tasks]
    assert events[5].before == {"Status": "active", "StatusMessage": "", "Progress": None}
    assert events[5].after == {"Status": "active", "StatusMessage": "converting", "Progress": 5}
    assert audit.verify_chain() is None


def test_a_final_task_finishes_its_request_in_the_same_write(db, requester):
    done, running = _tasks(requester, 2)
    polling.apply_descriptions(
        [
            (done, _description(done, Status="completed", ImageId="ami-0123456789abcdef0")),
            (running, _description(running, StatusMessage="validating")),
        ]
    )
    assert ImportRequest.objects.get(pk=done.request_id).status == ImportRequest.Status.COMPLETED
    assert ImportRequest.objects.get(pk=running.request_id).status == ImportRequest.Status.IMPORTING
    assert done.image_id == "ami-0123456789abcdef0" and done.is_final  # the caller's objects follow
    assert audit.verify_chain() is None


@pytest.mark.parametrize(
    "fields",
    [
        {"Progress": "-1"},  # PositiveSmallIntegerField: a CHECK on both databases
        {"Progress": "70000"},  # smallint on PostgreSQL; CHECK-free on SQLite (stored there)
        {"Status": "x" * 40},  # varchar(32) on PostgreSQL
        {"StatusMessage": "nul\x00byte"},  # PostgreSQL text refuses NUL
    ],
)
def test_a_refused_value_rolls_back_the_whole_write(db, requester, fields):
    good, bad = _tasks(requester, 2)
    pairs = [(good, _description(good, StatusMessage="validating")), (bad, _description(bad, **fields))]
    try:
        with transaction.atomic():
            polling.apply_descriptions(pairs)
    except (DataError, IntegrityError):
        # Nothing of it stays (the poller then writes task by task: tests/test_poller_isolation.py).
        assert not TaskStatusChange.objects.exists() and not AuditEvent.objects.exists()
        assert ImportTask.objects.get(pk=good.pk).status_message == ""
        return
    # This database took the value: it reads back as it was written.
    stored = ImportTask.objects.get(pk=bad.pk)
    assert (stored.status, stored.status_message, stored.progress) == (
        fields.get("Status", "active"),
        fields.get("StatusMessage", ""),
        polling.progress_of(fields),
    )
    assert audit.verify_chain() is None


ANSWERS = st.fixed_dictionaries(
    {
        "Status": st.text(max_size=32).filter(lambda s: "\x00" not in s),
        "StatusMessage": st.text(max_size=200).filter(lambda s: "\x00" not in s),
        "Progress": st.integers(0, 100).map(str) | st.text(max_size=5).filter(lambda s: "\x00" not in s),
        "SnapshotDetails": st.lists(
            st.dictionaries(
                st.sampled_from(["Format", "Status", "Progress", "DeviceName"]),
                st.text(max_size=20).filter(lambda s: "\x00" not in s),
            ),
            max_size=3,
        ),
    }
)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.lists(ANSWERS, min_size=1, max_size=4))
def test_whatever_aws_answers_is_stored_as_it_said_and_the_chain_stays_whole(db, requester, answers):
    """Any text AWS puts in an answer (no NUL: see above) is stored and read back as it was."""
    tasks = _tasks(requester, len(answers))
    pairs = [(t, _description(t, **a)) for t, a in zip(tasks, answers, strict=True)]
    with transaction.atomic():
        try:
            polling.apply_descriptions(pairs)
        except IntegrityError:  # a progress that is digits but over 32767: refused, nothing half-written
            assert any(polling.progress_of(a) not in (None, *range(101)) for a in answers)
            return
    for task, a in zip(tasks, answers, strict=True):
        row = ImportTask.objects.get(pk=task.pk)
        assert (row.status, row.status_message, row.progress, row.snapshot_details) == (
            a["Status"],
            a["StatusMessage"],
            polling.progress_of(a),
            a["SnapshotDetails"],
        )
    assert audit.verify_chain() is None
