"""manage.py demo_data: demo requests in every state, made through the application's services
against a real sandbox (tasks run inline here, as the worker would run them), idempotent."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tests.flows import poll_until_final
from wizard.audit import audit
from wizard.management.commands.demo_data import BATCH_NAME, DEMOS, REJECTION
from wizard.models import AuditEvent, Batch, ImportRequest, Upload

S = ImportRequest.Status


def seed(**options) -> str:
    out = io.StringIO()
    call_command("demo_data", stdout=out, stderr=out, **options)
    return out.getvalue()


@pytest.fixture
def demo_users(transactional_db, sandbox, monkeypatch):
    """Committed transactions (transactional_db): the services queue tasks after each commit, and
    they run inline; the poller's chain too, which would run until the imports end: polled by hand."""
    monkeypatch.setattr("wizard.tasks.kick_poller", lambda: None)
    call_command("demo_users", stdout=io.StringIO())


def test_every_state_is_seeded_through_the_services_and_a_second_run_adds_nothing(demo_users, sandbox):
    assert "added" in seed()
    demo = {r.description: r for r in ImportRequest.objects.filter(owner__username="demo")}
    states = {d.state: demo[d.description] for d in DEMOS}
    assert {k: r.status for k, r in states.items()} == {
        "draft": S.DRAFT,
        "submitted": S.SUBMITTED,
        "rejected": S.REJECTED,
        "importing": S.IMPORTING,
        "completed": S.IMPORTING,  # until the sandbox's task ends
        "failed": S.IMPORTING,
    }
    # Each image was uploaded by the demo user (theirs to import) and inspected without a problem.
    for request in states.values():
        (disk,) = request.disk_containers.all()
        assert disk.upload.owner.username == "demo" and disk.upload.status == Upload.Status.COMPLETED
        assert disk.inspection_status == "done" and disk.inspection["ok"], disk.inspection
    rejected = AuditEvent.objects.get(request=states["rejected"], action="rejected")
    assert rejected.actor_name == "reviewer" and rejected.details["reason"] == REJECTION
    # The batch of two waits for review.
    batch = Batch.objects.get(name=BATCH_NAME)
    assert [i.request.status for i in batch.items.select_related("request")] == [S.SUBMITTED, S.SUBMITTED]
    # The audit log tells the same story, and its chain is whole.
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"draft created", "upload completed", "image inspected", "submitted", "rejected", "approved"} <= actions
    assert {"dispatched", "batch created"} <= actions
    assert audit.verify_chain() is None

    count = (ImportRequest.objects.count(), Upload.objects.count(), Batch.objects.count(), AuditEvent.objects.count())
    assert seed() == "demo data: already there, nothing added\n"
    assert (ImportRequest.objects.count(), Upload.objects.count(), Batch.objects.count()) == count[:3]
    assert AuditEvent.objects.count() == count[3]

    # The sandbox's faults hold one import at "updating" and fail another at "booting"; the third completes.
    for key in ("completed", "failed"):
        poll_until_final(states[key], sandbox, step_seconds=10, polls=20)
    states["importing"].refresh_from_db()
    assert states["completed"].status == S.COMPLETED and states["completed"].import_task.image_id.startswith("ami-")
    assert states["failed"].status == S.FAILED and "Unknown OS" in states["failed"].failure_message
    assert states["importing"].status == S.IMPORTING
    assert states["importing"].import_task.status_message == "updating"


def test_only_in_the_sandbox_and_only_when_on(demo_users, settings):
    settings.DEMO_DATA = False
    assert seed() == "demo data is off (WIZARD_DEMO_DATA=0)\n"
    assert not ImportRequest.objects.exists()
    settings.AWS_SANDBOX = False
    with pytest.raises(CommandError, match="only in the sandbox"):
        seed()


def test_it_needs_the_demo_users(transactional_db, sandbox):
    with pytest.raises(CommandError, match="demo_users"):
        seed()


@pytest.mark.slow
def test_make_run_seeds_in_the_background_and_a_second_start_adds_nothing(tmp_path):
    """The whole stack: seeded once it is up; Ctrl-C stops the seeding with the parts; a second
    start adds nothing."""
    import re
    import time

    from tests.stack import Stack, pid_alive

    def until_in_log(stack, text: str, count: int = 1, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while stack.log().count(text) < count:
            assert "demo data failed" not in stack.log(), stack.log()[-4000:]
            assert time.monotonic() < deadline, stack.log()[-4000:]
            time.sleep(0.3)

    stack = Stack(tmp_path / "stack", WIZARD_DEMO_DATA="1")
    try:
        stack.start()
        until_in_log(stack, "[run] demo data done")
        assert re.search(r"demo data: 7 added in [\d.]+ s", stack.log())
        stack.interrupt()
        stack.start()
        until_in_log(stack, "[run] demo data done", count=2)
        assert stack.log().split("[run] stopped")[-1].count("demo data: already there, nothing added") == 1
        stack.interrupt()
    finally:
        stack.kill()

    early = Stack(tmp_path / "early", WIZARD_DEMO_DATA="1")
    try:
        early.start()
        until_in_log(early, "started demo data in the background")
        pid = int(re.search(r"started demo data in the background \(pid (\d+)\)", early.log())[1])
        early.interrupt()  # Ctrl-C while it seeds (it takes seconds): it stops with the parts
        assert f"stopping demo data (pid {pid})" in early.log()
        assert not pid_alive(pid) and "[run] stopped" in early.log()
    finally:
        early.kill()
