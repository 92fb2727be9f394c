"""Reconciliation: stored requests and tasks that disagree with AWS are repaired, each repair audited."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from tests.flows import grant
from wizard import setup, tasks
from wizard.imports import dispatch, polling, reconcile
from wizard.models import AuditEvent, DispatchSlot, ImportRequest, ImportTask, WorkerLease

KEY = "uploads/reconcile.vmdk"


@pytest.fixture
def make_importing(db, sandbox, requester, monkeypatch):
    """An importing request with its task in the sandbox, as the dispatcher leaves it."""
    monkeypatch.setattr(tasks, "kick_poller", lambda: None)
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=KEY, Body=b"KDMV" + bytes(4092))
    grant(requester, s3_bucket=sandbox.bucket)  # the owner may import the image (wizard.uploads.sources)

    def make(description: str = "reconcile") -> ImportTask:
        request = ImportRequest.objects.create(owner=requester, status="approved", description=description)
        request.disk_containers.create(format="VMDK", s3_bucket=sandbox.bucket, s3_key=KEY)
        dispatch.dispatch(request.pk)
        return ImportTask.objects.get(request=request)

    return make


def status_of(task: ImportTask) -> str:
    return ImportRequest.objects.get(pk=task.request_id).status


def reconciled(task: ImportTask) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(request_id=task.request_id, action="reconciled"))


def aws_view(sandbox, task: ImportTask) -> dict:
    return sandbox.client("ec2").describe_import_image_tasks(ImportTaskIds=[task.import_task_id])["ImportImageTasks"][0]


def test_an_importing_request_whose_task_completed_is_completed_with_its_ami(make_importing, sandbox):
    task = make_importing()
    sandbox.advance(61)  # the poller never saw it end
    (repair,) = reconcile.reconcile()
    task.refresh_from_db()
    assert status_of(task) == "completed" and task.image_id == aws_view(sandbox, task)["ImageId"]
    assert task.snapshot_details[0]["SnapshotId"].startswith("snap-")
    (event,) = reconciled(task)
    assert event.before == {
        "status": "importing",
        "task": {"Status": "active", "StatusMessage": "pending", "ImageId": ""},
    }
    assert event.after == {
        "status": "completed",
        "task": {"Status": "completed", "StatusMessage": "", "ImageId": task.image_id},
    }
    assert event.details["repair"] == "AWS says the task is completed: recorded" == repair.what
    assert reconcile.reconcile() == []  # nothing left to repair


def test_a_completed_task_row_without_ami_and_a_request_left_importing_is_repaired(make_importing, sandbox):
    """What a dispatch delivered after the task ended used to leave behind."""
    task = make_importing()
    sandbox.advance(61)
    ImportTask.objects.filter(pk=task.pk).update(status="completed", status_message="", progress=None)
    assert polling.poll_once() == 0  # the poller does not look at final rows
    (repair,) = reconcile.reconcile()
    task.refresh_from_db()
    assert status_of(task) == "completed" and task.image_id.startswith("ami-")
    assert repair.before["task"] == {"Status": "completed", "StatusMessage": "", "ImageId": ""}


def test_a_completed_request_missing_its_ami_gets_it(make_importing, sandbox):
    task = make_importing()
    sandbox.advance(61)
    polling.poll_once()
    ImportTask.objects.filter(pk=task.pk).update(image_id="")
    (repair,) = reconcile.reconcile()
    task.refresh_from_db()
    assert task.image_id == aws_view(sandbox, task)["ImageId"] and status_of(task) == "completed"
    assert (repair.before["status"], repair.after["status"]) == ("completed", "completed")


def test_a_failed_task_and_a_request_still_importing_ends_failed_with_awss_message(make_importing, sandbox):
    task = make_importing()
    sandbox.faults(
        fail={"stage": "converting", "message": "ClientError: No valid partitions.", "task_id": task.import_task_id}
    )
    sandbox.advance(61)
    ImportTask.objects.filter(pk=task.pk).update(status="deleted", status_message="ClientError: No valid partitions.")
    reconcile.reconcile()
    request = ImportRequest.objects.get(pk=task.request_id)
    assert (request.status, request.failure_message) == ("failed", "ClientError: No valid partitions.")
    assert len(reconciled(task)) == 1


def test_a_final_row_aws_no_longer_shows_finishes_the_request_as_recorded(make_importing, sandbox):
    task = make_importing()
    ImportTask.objects.filter(pk=task.pk).update(status="completed", image_id="ami-0123456789abcdef0")
    sandbox.reset()  # gone from AWS (as 7 days after a task ended)
    (repair,) = reconcile.reconcile()
    assert status_of(task) == "completed"
    assert repair.what == "AWS no longer shows the task: finished as it was recorded"


def test_a_running_task_aws_no_longer_knows_is_lost(make_importing, sandbox):
    task = make_importing()
    sandbox.reset()
    (repair,) = reconcile.reconcile()
    request = ImportRequest.objects.get(pk=task.request_id)
    assert request.status == "failed" and request.failure_message == polling.LOST_MESSAGE
    assert repair.what == "AWS no longer knows the task: lost"
    assert AuditEvent.objects.filter(request=request, action="task lost").exists()


def test_running_tasks_are_left_to_the_poller(make_importing, sandbox):
    task = make_importing()
    assert reconcile.reconcile() == []
    assert not reconciled(task) and status_of(task) == "importing"


def test_a_request_let_through_long_ago_without_a_task_is_dispatched_again_once_per_window(
    db, sandbox, requester, monkeypatch
):
    monkeypatch.setattr(tasks, "kick_poller", lambda: None)
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=KEY, Body=b"KDMV" + bytes(4092))
    grant(requester, s3_bucket=sandbox.bucket)
    queued = []
    really = tasks.queue_dispatch
    monkeypatch.setattr(tasks, "queue_dispatch", queued.append)
    long_ago = timezone.now() - reconcile.dispatch_window() - timedelta(minutes=1)
    stuck = ImportRequest.objects.create(owner=requester, status="approved", reviewed_at=long_ago)
    stuck.disk_containers.create(format="VMDK", s3_bucket=sandbox.bucket, s3_key=KEY)
    DispatchSlot.objects.create(request=stuck, admitted_at=long_ago)  # let through; its dispatch was lost
    recent = ImportRequest.objects.create(owner=requester, status="approved", reviewed_at=timezone.now())
    DispatchSlot.objects.create(request=recent, admitted_at=timezone.now())
    # Approved long ago but still waiting for its place in the queue: not stuck, only let through.
    waiting = ImportRequest.objects.create(owner=requester, status="approved", reviewed_at=long_ago)

    (repair,) = reconcile.reconcile()
    assert queued == [stuck.pk] and repair.request_id == stuck.pk
    assert "without a task: dispatch queued again" in repair.what
    event = AuditEvent.objects.get(request=stuck, action="reconciled")
    assert event.after == {"status": "approved", "task": None, "dispatch": "queued again"}
    assert not AuditEvent.objects.filter(request=waiting, action="reconciled").exists()
    assert DispatchSlot.objects.filter(request=waiting).exists()  # the pass kicked the queue
    assert reconcile.reconcile() == [] and queued == [stuck.pk]  # that delivery gets its time
    later = timezone.now() + reconcile.dispatch_window() + timedelta(minutes=1)
    assert sorted(r.request_id for r in reconcile.reconcile(now=later)) == [stuck.pk, recent.pk, waiting.pk]

    monkeypatch.setattr(tasks, "queue_dispatch", really)  # the real queue (inline in tests): the dispatch runs
    reconcile.reconcile(now=later + reconcile.dispatch_window() * 2)
    stuck.refresh_from_db()
    assert stuck.status == "importing" and ImportTask.objects.filter(request=stuck).count() == 1


def test_the_command_prints_what_it_repaired(make_importing, sandbox):
    task = make_importing()
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert out.getvalue() == "nothing to repair\n"
    sandbox.advance(61)
    call_command("reconcile", stdout=out)
    assert f"request #{task.request_id}: AWS says the task is completed: recorded" in out.getvalue()
    assert out.getvalue().endswith("1 repaired\n")


def test_it_runs_every_10_minutes_one_pass_at_a_time(db, monkeypatch):
    setup.ensure_schedules()
    schedule = Schedule.objects.get(name="reconcile")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "wizard.imports.reconcile.run",
        Schedule.MINUTES,
        10,
    )
    assert reconcile.run() == 0
    WorkerLease.objects.filter(name=reconcile.LEASE).update(
        holder="other:1", expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert reconcile.run() == -1
