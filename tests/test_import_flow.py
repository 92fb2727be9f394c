"""Integration: a request goes from upload through dispatch and polling to an AMI, over HTTP to the sandbox."""

from __future__ import annotations

import pytest

from tests.flows import draft_with_image, grant
from wizard import tasks
from wizard.imports import polling
from wizard.models import AuditEvent, ImportRequest, ImportTask
from wizard.requests import review, submission

STAGES = ["pending", "validating", "validated", "converting", "updating", "booting", "preparing ami", "completed"]


@pytest.fixture
def approved(db, sandbox, requester, reviewer, monkeypatch, django_capture_on_commit_callbacks):
    req = draft_with_image(requester, sandbox)
    submission.submit(req, requester)
    monkeypatch.setattr(tasks, "kick_poller", lambda: None)  # this test polls by hand
    with django_capture_on_commit_callbacks(execute=True):
        review.approve(req, reviewer)  # django-q2 in sync mode: dispatches inline
    req.refresh_from_db()
    return req


def test_the_image_was_inspected_before_submission(approved):
    container = approved.disk_containers.get()
    assert container.format == "RAW"
    assert container.inspection["ok"] and container.inspection["partition_table"] == "mbr"


def test_dispatch_records_the_task_and_sends_the_requests_token(approved, sandbox):
    task = ImportTask.objects.get(request=approved)
    assert approved.status == ImportRequest.Status.IMPORTING
    assert task.import_task_id.startswith("import-ami-")
    described = sandbox.client("ec2").describe_import_image_tasks(ImportTaskIds=[task.import_task_id])
    assert described["ImportImageTasks"][0]["ImportTaskId"] == task.import_task_id
    # The same ClientToken again gives the same task: a retried dispatch cannot make a second one.
    again = sandbox.client("ec2").import_image(**approved.to_api_params())
    assert again["ImportTaskId"] == task.import_task_id
    assert AuditEvent.objects.get(action="dispatched").details["import_task_id"] == task.import_task_id


def test_dispatch_twice_makes_one_task(approved):
    first = ImportTask.objects.get(request=approved).import_task_id
    assert tasks.dispatch_request(approved.pk) == first
    assert ImportTask.objects.count() == 1


def test_polling_follows_every_stage_to_an_ami(approved, sandbox):
    seen = []
    for _ in range(40):
        polling.poll_once()
        task = ImportTask.objects.get(request=approved)
        stage = task.status_message or task.status  # AWS drops StatusMessage once completed
        if not seen or seen[-1] != stage:
            seen.append(stage)
        if task.is_final:
            break
        sandbox.advance(3)
    approved.refresh_from_db()
    assert approved.status == ImportRequest.Status.COMPLETED
    assert seen == STAGES
    assert task.status == "completed" and task.image_id.startswith("ami-")
    images = sandbox.client("ec2").describe_images(ImageIds=[task.image_id])["Images"]
    assert [i["ImageId"] for i in images] == [task.image_id]
    assert task.changes.count() == len(STAGES)
    assert AuditEvent.objects.get(action="completed").details["image_id"] == task.image_id
    assert AuditEvent.objects.filter(action="aws status changed").count() == len(STAGES) - 1
    assert polling.poll_once() == 0


def test_a_task_the_sandbox_forgot_fails_with_a_clear_message(approved, sandbox):
    sandbox.reset()
    assert polling.poll_once() == 0
    approved.refresh_from_db()
    assert approved.status == ImportRequest.Status.FAILED
    assert "no longer knows this import task" in approved.failure_message


def test_an_error_retrying_cannot_fix_fails_the_request_at_once(db, sandbox, requester, reviewer, monkeypatch):
    grant(requester, s3_bucket=sandbox.bucket, s3_prefix="uploads/")
    req = ImportRequest.objects.create(owner=requester, role_name="no-such-role", status="approved")
    req.disk_containers.create(format="VMDK", s3_bucket=sandbox.bucket, s3_key="uploads/x.vmdk")
    assert tasks.dispatch.dispatch(req.pk) is None
    req.refresh_from_db()
    assert req.status == ImportRequest.Status.FAILED
    assert "no-such-role" in req.failure_message
    assert not ImportTask.objects.exists()
