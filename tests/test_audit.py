from __future__ import annotations

import io
import json

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.urls import reverse

from wizard.audit import audit
from wizard.audit import checkpoint as audit_checkpoint
from wizard.models import AuditEvent


@pytest.fixture
def chain(db, requester):
    return [audit.record(f"action {i}", actor=requester if i % 2 else None, details={"i": i}) for i in range(4)]


def test_events_link_to_the_previous_hash(chain):
    assert chain[0].prev_hash == audit.GENESIS
    assert [e.prev_hash for e in chain[1:]] == [e.hash for e in chain[:-1]]
    assert audit.verify_chain() is None


def test_system_events_name_the_system(chain):
    assert chain[0].actor is None and chain[0].actor_name == "system"
    assert chain[1].actor_name == "alice"


def test_it_refuses_updates_and_deletes_through_the_orm(chain):
    event = chain[1]
    event.action = "edited"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="edited")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()


def _raw(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_it_detects_an_edit_in_the_database(chain):
    _raw("UPDATE wizard_auditevent SET action = %s WHERE id = %s", ["quietly changed", chain[2].pk])
    assert audit.verify_chain().pk == chain[2].pk


def test_it_detects_a_deletion_in_the_database(chain):
    _raw("DELETE FROM wizard_auditevent WHERE id = %s", [chain[1].pk])
    assert audit.verify_chain().pk == chain[2].pk


def test_it_detects_a_reordering_in_the_database(chain):
    a, b = chain[1], chain[2]
    _raw("UPDATE wizard_auditevent SET id = %s WHERE id = %s", [999, a.pk])
    _raw("UPDATE wizard_auditevent SET id = %s WHERE id = %s", [a.pk, b.pk])
    _raw("UPDATE wizard_auditevent SET id = %s WHERE id = %s", [b.pk, 999])
    assert audit.verify_chain().pk == a.pk


# --- the checkpoint of the head, outside the database (wizard.audit.checkpoint) ------------------

HEADS_PREFIX = "audit/heads/"


def _heads(sandbox) -> list[str]:
    listed = sandbox.client("s3").list_objects_v2(Bucket=sandbox.bucket, Prefix=HEADS_PREFIX).get("Contents", [])
    return [o["Key"] for o in listed]


def _head_json(sandbox) -> dict:
    return json.loads(sandbox.client("s3").get_object(Bucket=sandbox.bucket, Key="audit/head.json")["Body"].read())


def _head_pk(sandbox) -> int | None:
    try:
        return _head_json(sandbox)["pk"]
    except sandbox.client("s3").exceptions.NoSuchKey:
        return None


def _verify(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("verify_audit", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _committed(n: int) -> list[AuditEvent]:
    """n events, each in a transaction of its own (committed: transactional_db)."""
    return [audit.record(f"committed {i}", details={"i": i}) for i in range(n)]


def test_one_checkpoint_per_transaction_however_many_events(transactional_db, sandbox):
    with transaction.atomic():
        events = [audit.record(f"busy {i}") for i in range(200)]
    assert _heads(sandbox) == [f"{HEADS_PREFIX}{events[-1].pk:020d}.json"]
    head = _head_json(sandbox)
    assert (head["pk"], head["hash"], head["count"]) == (events[-1].pk, events[-1].hash, 200)
    _committed(2)
    assert len(_heads(sandbox)) == 3


def test_a_rolled_back_transaction_does_not_stop_the_next_checkpoint(transactional_db, sandbox):
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record("rolled back")
        raise RuntimeError
    (event,) = _committed(1)
    assert _head_json(sandbox)["pk"] == event.pk


def test_a_poll_cycle_writes_one_checkpoint_for_all_its_tasks(transactional_db, sandbox, requester):
    from wizard.imports import polling
    from wizard.models import ImportRequest, ImportTask

    ec2 = sandbox.client("ec2")
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key="uploads/1/d.raw", Body=bytes(512))
    disk = {"Format": "RAW", "UserBucket": {"S3Bucket": sandbox.bucket, "S3Key": "uploads/1/d.raw"}}
    for _ in range(6):
        req = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.IMPORTING)
        ImportTask.objects.create(request=req, import_task_id=ec2.import_image(DiskContainers=[disk])["ImportTaskId"])
    before = len(_heads(sandbox))
    sandbox.advance(20)
    polling.poll_once()
    changed = AuditEvent.objects.filter(action="aws status changed").count()
    assert changed == 6  # six transactions...
    assert len(_heads(sandbox)) == before + 1  # ...one checkpoint
    assert _head_json(sandbox)["pk"] == AuditEvent.objects.latest("pk").pk


def test_verify_audit_detects_the_last_events_deleted(transactional_db, sandbox):
    events = _committed(5)
    out, _ = _verify()
    assert "head matches the checkpoint" in out and f"event #{events[-1].pk}, 5 events" in out
    _raw("DELETE FROM wizard_auditevent WHERE id > %s", [events[2].pk])
    assert audit.verify_chain() is None  # what is left is a whole chain
    with pytest.raises(
        CommandError, match=rf"the last 2 events after #{events[2].pk} are missing: the log was truncated"
    ):
        _verify()


def test_it_sees_a_truncation_even_when_head_json_was_put_back(transactional_db, sandbox):
    events = _committed(4)
    forged = _head_json(sandbox)
    _committed(2)
    _raw("DELETE FROM wizard_auditevent WHERE id > %s", [events[-1].pk])
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key="audit/head.json", Body=json.dumps(forged).encode())
    with pytest.raises(CommandError, match="the last 2 events after .* are missing"):
        _verify()


def test_it_sees_a_chain_rewritten_to_hide_a_deletion(transactional_db, sandbox):
    """Anybody can compute the hashes: delete an event and re-chain the rest. The checkpoint's hash differs."""
    events = _committed(4)
    _raw("DELETE FROM wizard_auditevent WHERE id = %s", [events[1].pk])
    prev = events[0].hash
    for event in AuditEvent.objects.filter(pk__gt=events[0].pk).order_by("pk"):
        new = audit.event_hash(prev, audit._hashed_fields(event))
        _raw("UPDATE wizard_auditevent SET prev_hash = %s, hash = %s WHERE id = %s", [prev, new, event.pk])
        prev = new
    assert audit.verify_chain() is None
    with pytest.raises(CommandError, match=f"event #{events[-1].pk} or one before it is not what the checkpoint"):
        _verify()


def test_storage_down_the_change_succeeds_and_verify_says_so(transactional_db, sandbox, settings, client, caplog):
    from tests.conftest import make_user
    from wizard.models import ImportRequest

    owner, reviewer = make_user("owen", "requester"), make_user("rhea", "reviewer", is_staff=True)
    req = ImportRequest.objects.create(owner=owner, status=ImportRequest.Status.SUBMITTED)
    working = settings.STORAGES["audit"]
    down = {**working, "OPTIONS": {**working["OPTIONS"], "endpoint_url": "http://127.0.0.1:9"}}  # nothing listens
    settings.STORAGES = {**settings.STORAGES, "audit": down}
    client.force_login(reviewer)

    response = client.post(reverse("review-decide", args=[req.pk]), {"decision": "reject", "reason": "wrong disk"})

    assert response.status_code == 302
    req.refresh_from_db()
    assert req.status == ImportRequest.Status.REJECTED
    assert "audit checkpoint not written" in caplog.text
    out, err = _verify()
    assert "audit chain intact" in out and "warning: the checkpoint cannot be read" in err
    with pytest.raises(CommandError, match="checkpoint: the checkpoint cannot be read"):
        _verify("--strict")
    # Storage is back: the next change's checkpoint catches up.
    settings.STORAGES = {**settings.STORAGES, "audit": working}
    _committed(1)
    out, err = _verify("--strict")
    assert "head matches the checkpoint" in out and not err


def test_in_the_background_the_checkpoint_follows_the_commits(transactional_db, sandbox, settings):
    """The web's and worker's way (WIZARD_AUDIT_CHECKPOINT_BACKGROUND, the default): the commit does
    not wait for the write; once written, the head is the newest event's, and commits made while a
    write runs share the next one."""
    from wizard.audit import checkpoint

    settings.AUDIT_CHECKPOINT_BACKGROUND = True
    events = _committed(30)
    assert checkpoint.background.flush(30)
    head = _head_json(sandbox)
    assert (head["pk"], head["hash"], head["count"]) == (events[-1].pk, events[-1].hash, 30)
    assert 1 <= len(_heads(sandbox)) <= 30  # one per write, and writes cover several commits
    out, err = _verify("--strict")
    assert "head matches the checkpoint" in out and not err
    (later,) = _committed(1)
    assert checkpoint.background.flush(30) and _head_json(sandbox)["pk"] == later.pk


def test_in_the_background_checkpoints_are_at_least_the_interval_apart(transactional_db, sandbox, settings):
    """WIZARD_AUDIT_CHECKPOINT_SECONDS: a commit soon after a write waits for the interval (its
    checkpoint comes with the next write), unless the process flushes (at exit)."""
    import time

    from wizard.audit import checkpoint

    settings.AUDIT_CHECKPOINT_BACKGROUND = True
    settings.AUDIT_CHECKPOINT_SECONDS = 60
    checkpoint.background._last = float("-inf")  # no write yet in this process: the first goes at once
    (first,) = _committed(1)
    deadline = time.monotonic() + 30
    while _head_pk(sandbox) != first.pk and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _head_pk(sandbox) == first.pk
    (second,) = _committed(1)
    time.sleep(1)  # ample for a write (tens of ms) if there were no interval
    assert _head_json(sandbox)["pk"] == first.pk
    assert checkpoint.background.flush(30) and _head_json(sandbox)["pk"] == second.pk


def test_in_the_background_storage_down_is_logged_and_caught_up(transactional_db, sandbox, settings, caplog):
    from wizard.audit import checkpoint

    settings.AUDIT_CHECKPOINT_BACKGROUND = True
    working = settings.STORAGES["audit"]
    down = {**working, "OPTIONS": {**working["OPTIONS"], "endpoint_url": "http://127.0.0.1:9"}}  # nothing listens
    settings.STORAGES = {**settings.STORAGES, "audit": down}
    _committed(1)
    assert checkpoint.background.flush(60)
    assert "audit checkpoint not written" in caplog.text
    settings.STORAGES = {**settings.STORAGES, "audit": working}
    (event,) = _committed(1)
    assert checkpoint.background.flush(30) and _head_json(sandbox)["pk"] == event.pk


def test_no_checkpoint_yet_is_a_warning_and_fails_only_under_strict(chain):
    out, err = _verify()
    assert "audit chain intact: 4 events" in out
    assert "warning: no checkpoint of the audit log's head" in err
    with pytest.raises(CommandError, match="no checkpoint"):
        _verify("--strict")


def test_an_overwritten_head_json_is_a_warning_when_nothing_is_missing(chain):
    """Two processes may write their heads in either order: heads/<pk>.json keeps the newest."""
    audit_checkpoint.write()
    storage = storages["audit"]
    newest = audit_checkpoint.Head.from_json(storage.open("head.json").read())
    older = audit_checkpoint.Head(pk=chain[1].pk, hash=chain[1].hash, count=2, at="2024-01-01T00:00:00+00:00")
    storage.save("head.json", ContentFile(older.to_json()))
    verdict = audit_checkpoint.check()
    assert verdict.warning and not verdict.tampered
    assert f"event #{newest.pk}" in verdict.message and "head.json was overwritten" in verdict.message


@pytest.mark.parametrize("body", [b"", b"{}", b"[1]", b'{"pk": "1", "hash": "x", "count": 1, "at": ""}', b"\xff"])
def test_an_unreadable_checkpoint_is_a_warning(chain, body):
    storages["audit"].save("head.json", ContentFile(body))
    verdict = audit_checkpoint.check()
    assert verdict.warning and not verdict.tampered and "head.json is unreadable" in verdict.message
