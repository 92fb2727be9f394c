"""Image inspection runs in the worker, in a child process with a time and a memory limit.

A web request only queues it (the container is "pending"); the django-q2 task runs the
inspector in `python -m wizard.preflight.inspection` with WIZARD_INSPECT_SECONDS and
WIZARD_INSPECT_MEMORY_MB, stores the report once, and an image that exceeds the limits (or
crashes the child) gets a clear error finding, never an exception. Pages poll a small
partial until the report is in; a pending inspection blocks submission.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import timedelta

import pytest
from django.test import TestCase
from django.urls import reverse
from django_q.conf import Conf
from django_q.models import OrmQ
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.conftest import make_user
from tests.flows import grant
from tests.images import raw_mbr
from tests.sandbox import images
from wizard import tasks
from wizard.models import AuditEvent, DiskContainer, ImportRequest
from wizard.preflight import inspection, preflight
from wizard.requests import drafts, submission
from wizard.sandbox import imagecheck


class Bytes:
    """A `wizard.inspect.Reader` over bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


class Slow(Bytes):
    """Each read takes a while: an S3 that answers slowly, or an image made to need many reads."""

    def read(self, offset: int, length: int) -> bytes:
        time.sleep(1.5)
        return super().read(offset, length)


def put(sandbox, key: str, body: bytes) -> None:
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=key, Body=body)


def container_for(user, sandbox, key: str, body: bytes | None = None) -> DiskContainer:
    if body is not None:
        put(sandbox, key, body)
    grant(user, s3_bucket=sandbox.bucket)  # the user may import the test bucket (wizard.uploads.sources)
    draft = drafts.create_draft(user, description="inspected")
    return drafts.add_container(draft, user, s3_bucket=sandbox.bucket, s3_key=key)


def inspect_now(container: DiskContainer) -> DiskContainer:
    """Queue the inspection and let the queued task run (django-q2 is inline in tests)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        preflight.inspect_container(container)
    container.refresh_from_db()
    return container


def codes(container: DiskContainer) -> list[str]:
    return [f["code"] for f in container.inspection["findings"]]


# --- the task ---------------------------------------------------------------------------------


def test_a_normal_image_gets_its_report_and_its_format_through_the_task(sandbox, requester):
    container = container_for(requester, sandbox, "uploads/disk.vhd", raw_mbr(64 * 1024))  # named .vhd, RAW
    assert container.format == "VHD"
    container = inspect_now(container)
    assert container.inspection_status == "done" and container.inspected_at
    assert container.inspection["format"] == "RAW" and container.inspection["partition_table"] == "mbr"
    assert container.inspection["ok"] is True and container.format == "RAW"
    event = AuditEvent.objects.get(action="image inspected")
    assert event.request_id == container.request_id and event.actor is None
    assert event.details == {
        "container": container.pk,
        "position": 0,
        "source": f"s3://{sandbox.bucket}/uploads/disk.vhd",
        "format": "RAW",
        "ok": True,
        "errors": [],
        "warnings": [],
        "format_changed": {"from": "VHD", "to": "RAW"},
    }


def test_an_image_that_needs_more_time_gets_the_limits_finding(sandbox, requester, settings):
    # Not even enough to start the child: a child forked from the fork server inspects a small
    # image in a few ms, so 0.01 s was sometimes enough (and the test failed).
    settings.WIZARD_INSPECT_SECONDS = 0.0001
    container = inspect_now(container_for(requester, sandbox, "uploads/disk.raw", raw_mbr(64 * 1024)))
    assert container.inspection_status == "done" and codes(container) == ["inspection-limits"]
    finding = container.inspection["findings"][0]
    assert finding["severity"] == "error" and finding["exceeded"] == "time"
    assert finding["message"].startswith(
        f"This image could not be inspected within 0.0001 s / {settings.WIZARD_INSPECT_MEMORY_MB} MiB: "
        "it may be corrupt"
    )
    with pytest.raises(submission.SubmitRefused, match="could not be inspected within 0.0001 s"):
        submission.submit(ImportRequest.objects.get(pk=container.request_id), requester)
    assert AuditEvent.objects.get(action="image inspected").details["errors"] == ["inspection-limits"]


def test_an_image_that_needs_more_memory_gets_the_memory_finding(sandbox, requester, settings):
    # The child reads through the pipe (the worker reads S3) and needs ~25 MiB: 12 cannot fit
    # (forked, it starts with the fork server's pages and cannot map more: an OVA's reads need to).
    settings.WIZARD_INSPECT_MEMORY_MB = 12
    body = images.ova(images.raw_disk(2**20, seed=4))
    container = inspect_now(container_for(requester, sandbox, "uploads/disk.ova", body))
    assert codes(container) == ["inspection-limits"]
    finding = container.inspection["findings"][0]
    assert finding["exceeded"] == "memory" and "within 30 s / 12 MiB: it may be corrupt" in finding["message"]


def test_a_missing_object_is_reported_as_aws_would(sandbox, requester):
    container = inspect_now(container_for(requester, sandbox, "uploads/nothing-here.raw"))
    assert codes(container) == ["unreadable"] and "403 Forbidden" in container.inspection["findings"][0]["message"]


def test_a_later_inspection_supersedes_an_earlier_one(sandbox, requester, django_capture_on_commit_callbacks):
    container = container_for(requester, sandbox, "uploads/disk.raw", raw_mbr(64 * 1024))
    with django_capture_on_commit_callbacks() as queued:
        preflight.inspect_container(container)
        first = container.inspected_at
        preflight.inspect_container(container)
    assert len(queued) == 2 and container.inspected_at != first
    assert preflight.run_inspection(container.pk, first.isoformat()) == "superseded"
    container.refresh_from_db()
    assert container.inspection_status == "pending" and container.inspection is None
    queued[1]()  # the second one's task
    container.refresh_from_db()
    assert container.inspection_status == "done" and container.inspection["format"] == "RAW"
    queued[0]()  # the first one's task, late: it changes nothing
    assert AuditEvent.objects.filter(action="image inspected").count() == 1


def test_a_task_delivered_again_stores_and_audits_nothing_twice(sandbox, requester):
    container = container_for(requester, sandbox, "uploads/disk.raw", raw_mbr(64 * 1024))
    preflight.inspect_container(container)  # queued after the commit: not run here
    asked = container.inspected_at.isoformat()
    assert tasks.inspect_container_task(container.pk, asked) == "done"
    container.refresh_from_db()
    done_at = container.inspected_at
    assert tasks.inspect_container_task(container.pk, asked) == "superseded"  # e.g. the ack was lost
    container.refresh_from_db()
    assert container.inspected_at == done_at
    assert AuditEvent.objects.filter(action="image inspected").count() == 1
    container.delete()
    assert tasks.inspect_container_task(container.pk, asked) == "gone"


def test_sources_that_are_not_in_s3_are_not_inspected(requester):
    draft = drafts.create_draft(requester)
    snapshot = DiskContainer.objects.create(request=draft, snapshot_id="snap-0123456789abcdef0")
    with TestCase.captureOnCommitCallbacks() as queued:
        assert preflight.inspect_container(snapshot) is None
    assert not queued and snapshot.inspection_status == ""


# --- never in the web request -----------------------------------------------------------------


def test_the_web_request_only_queues_the_inspection(
    sandbox, client, requester, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", False)  # a real queue: the ORM broker of the settings
    put(sandbox, "uploads/web.raw", raw_mbr(64 * 1024))
    grant(requester, s3_bucket=sandbox.bucket)
    draft = drafts.create_draft(requester)
    client.force_login(requester)

    def no_inspector_here(*args, **kwargs):
        raise AssertionError("the inspector ran in the web request")

    with monkeypatch.context() as m:
        m.setattr(inspection.subprocess, "Popen", no_inspector_here)
        m.setattr(inspection.forkserver, "spawn", no_inspector_here)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("wizard-source", args=[draft.pk]),
                {"kind": "s3", "s3_bucket": sandbox.bucket, "s3_key": "uploads/web.raw"},
            )
        assert response.status_code == 302
        container = draft.disk_containers.get()
        assert container.inspection_status == "pending" and container.inspection is None
        page = client.get(reverse("wizard-step", args=[draft.pk, "upload"])).content.decode()
        assert "Inspecting the image…" in page and 'hx-trigger="every 2s"' in page

    (queued,) = OrmQ.objects.all()
    task = queued.task
    assert task["func"] == "wizard.tasks.inspect_container_task" and task["args"][0] == container.pk
    assert task["timeout"] > 30  # longer than the child's own limit (WIZARD_INSPECT_SECONDS)
    assert tasks.inspect_container_task(*task["args"]) == "done"  # what the worker does
    container.refresh_from_db()
    assert container.inspection_status == "done" and container.inspection["partition_table"] == "mbr"


def test_a_source_added_is_judged_once_in_the_request_and_again_by_the_worker(
    sandbox, client, requester, monkeypatch, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(Conf, "SYNC", False)
    put(sandbox, "uploads/revoked.raw", raw_mbr(64 * 1024))
    given_grant = grant(requester, s3_bucket=sandbox.bucket)
    draft = drafts.create_draft(requester)
    client.force_login(requester)
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
        response = client.post(
            reverse("wizard-source", args=[draft.pk]),
            {"kind": "s3", "s3_bucket": sandbox.bucket, "s3_key": "uploads/revoked.raw"},
        )
    assert response.status_code == 302
    assert sum('FROM "wizard_sourcegrant"' in q["sql"] for q in queries) == 1  # add_container's judgement
    container = draft.disk_containers.get()
    assert container.inspection_status == "pending"
    given_grant.delete()  # revoked while the task waits in the queue

    def nothing_read(*args, **kwargs):
        raise AssertionError("the worker read an image its owner may no longer import")

    monkeypatch.setattr(preflight, "S3RangeReader", nothing_read)
    (queued,) = OrmQ.objects.all()
    assert tasks.inspect_container_task(*queued.task["args"]) == "refused"
    container.refresh_from_db()
    assert container.inspection_status == "done" and container.inspection["findings"]


def test_an_inspection_lost_with_its_worker_is_queued_again_once(sandbox, client, requester, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)
    container = container_for(requester, sandbox, "uploads/disk.raw", raw_mbr(64 * 1024))
    preflight.inspect_container(container)  # its task never runs: lost with a worker
    url = reverse("container-inspection", args=[container.pk])
    client.force_login(requester)
    client.get(url)
    assert not OrmQ.objects.exists()  # not stale yet: django-q2 may still deliver it again
    asked = container.inspected_at - preflight.stale_after() - timedelta(seconds=1)
    DiskContainer.objects.filter(pk=container.pk).update(inspected_at=asked)
    for _ in range(3):
        assert 'hx-trigger="every 2s"' in client.get(url).content.decode()
    (queued,) = OrmQ.objects.all()  # once, however often the page polls
    assert queued.task["args"] == (container.pk, asked.isoformat())
    assert tasks.inspect_container_task(*queued.task["args"]) == "done"
    assert tasks.inspect_container_task(*queued.task["args"]) == "superseded"  # the original, if it comes
    assert AuditEvent.objects.filter(action="image inspected").count() == 1
    assert "hx-trigger" not in client.get(url).content.decode()


# --- pending blocks submission, and shows ------------------------------------------------------


@pytest.fixture
def pending(sandbox, requester) -> DiskContainer:
    container = container_for(requester, sandbox, "uploads/disk.raw", raw_mbr(64 * 1024))
    preflight.inspect_container(container)  # queued after the commit, which never comes in this test
    return container


def test_a_pending_inspection_blocks_submission(pending, requester, client):
    draft = ImportRequest.objects.get(pk=pending.request_id)
    with pytest.raises(submission.SubmitRefused, match="still being inspected"):
        submission.submit(draft, requester)
    client.force_login(requester)
    review = client.get(reverse("wizard-step", args=[draft.pk, "review"])).content.decode()
    assert "The image is still being inspected" in review and 'id="submit-request" disabled' in review
    assert 'hx-trigger="every 2s"' in review  # the review step polls, then refreshes its findings
    response = client.post(reverse("request-submit", args=[draft.pk]))
    draft.refresh_from_db()
    assert response.status_code == 302 and draft.status == "draft"


def test_the_reviewer_page_shows_a_pending_inspection(pending, client, reviewer):
    ImportRequest.objects.filter(pk=pending.request_id).update(status=ImportRequest.Status.SUBMITTED)
    client.force_login(reviewer)
    page = client.get(reverse("review-detail", args=[pending.request_id])).content.decode()
    assert "The image is still being inspected" in page


def test_the_partial_polls_then_shows_the_findings(pending, client, requester, sandbox):
    client.force_login(requester)
    url = reverse("container-inspection", args=[pending.pk]) + "?findings=1"
    polling = client.get(url, HTTP_HX_REQUEST="true")
    body = polling.content.decode()
    assert polling.status_code == 200 and "HX-Trigger" not in polling.headers
    assert 'hx-trigger="every 2s"' in body and f'hx-get="{url}"' in body and "Inspecting the image…" in body

    put(sandbox, "uploads/disk.raw", bytes(64 * 1024))  # no partition table after all
    assert tasks.inspect_container_task(pending.pk, pending.inspected_at.isoformat()) == "done"
    final = client.get(url, HTTP_HX_REQUEST="true")
    body = final.content.decode()
    assert final.headers["HX-Trigger"] == "inspection-done"
    assert "every 2s" not in body and "hx-get" not in body  # the polling stops here
    assert 'class="inspection error"' in body and "No valid partitions" in body
    assert "No valid partitions" not in client.get(reverse("container-inspection", args=[pending.pk])).content.decode()


def test_every_page_that_shows_a_report_polls_while_pending(pending, client, requester):
    client.force_login(requester)
    poll = f'hx-get="{reverse("container-inspection", args=[pending.pk])}'
    for url in (
        reverse("wizard-step", args=[pending.request_id, "upload"]),
        reverse("wizard-step", args=[pending.request_id, "disks"]),
        reverse("wizard-step", args=[pending.request_id, "review"]),
    ):
        assert poll in client.get(url).content.decode(), url
    partial = client.get(reverse("container-inspection", args=[pending.pk])).content.decode()
    assert "style=" not in partial and "<script" not in partial and "hx-on" not in partial  # CSP-ready


def test_the_partial_is_for_the_owner_and_those_who_see_every_request(pending, client, db):
    url = reverse("container-inspection", args=[pending.pk])
    assert client.get(url).status_code == 302  # to the login page
    for user, status in (
        (make_user("bob", "requester"), 404),
        (make_user("rev", "reviewer", is_staff=True), 200),
        (make_user("aud", "auditor"), 200),
        (ImportRequest.objects.get(pk=pending.request_id).owner, 200),
    ):
        client.force_login(user)
        assert client.get(url).status_code == status, user
    assert client.get(reverse("container-inspection", args=[pending.pk + 1000])).status_code == 404
    assert client.post(url).status_code == 405


# --- the limited runner itself ----------------------------------------------------------------


@pytest.fixture(params=["fork server", "fresh interpreter"])
def runner(request, monkeypatch):
    """Piped jobs run in a child of the fork server, or (without one) a fresh interpreter: both
    must give the same reports and findings."""
    monkeypatch.setattr(inspection, "USE_FORKSERVER", request.param == "fork server")
    return request.param


def test_the_runner_reports_an_image_read_through_the_pipe(runner):
    body = images.ova(images.raw_disk(2**20, seed=4))
    report = inspection.inspect_reader(Bytes(body), seconds=30, memory_mb=256, declared_format="OVA")
    assert report["format"] == "OVA" and report["ok"], report


def test_a_slow_image_is_stopped_at_the_time_limit(runner):
    report = inspection.inspect_reader(Slow(raw_mbr(64 * 1024)), seconds=1, memory_mb=256)
    assert [f["code"] for f in report["findings"]] == ["inspection-limits"]
    assert report["findings"][0]["exceeded"] == "time" and report["ok"] is False


def test_an_image_that_cannot_fit_in_the_memory_limit_gets_the_memory_finding(runner):
    # Through the pipe the child needs about 20 MiB (bench/inspect-memory): 12 cannot fit. (A
    # forked child starts with the server's ~25 MiB mapped and may not map more: an image it can
    # inspect without allocating would pass; an OVA's reads cannot.)
    body = images.ova(images.raw_disk(2**20, seed=4))
    report = inspection.inspect_reader(Bytes(body), seconds=30, memory_mb=12)
    assert report["findings"][0]["code"] == "inspection-limits" and report["findings"][0]["exceeded"] == "memory"


def test_a_crash_of_the_child_is_a_clear_finding_not_an_exception():
    report, usage = inspection.run({"source": "s3"}, seconds=30, memory_mb=256)  # no bucket: the child fails
    assert [f["code"] for f in report["findings"]] == ["inspection-failed"] and usage == {}
    assert "exited with status 1" in report["findings"][0]["message"]


def test_a_crash_of_a_piped_child_is_a_clear_finding_too(runner):
    report, usage = inspection.run({"source": "pipe", "size": "many"}, seconds=30, memory_mb=256)
    assert [f["code"] for f in report["findings"]] == ["inspection-failed"] and usage == {}
    assert "exited with status 1" in report["findings"][0]["message"]


def test_a_reader_that_breaks_in_the_parent_is_a_finding_too(runner):
    class Broken(Bytes):
        def read(self, offset: int, length: int) -> bytes:
            raise OSError("gone")

    report = inspection.inspect_reader(Broken(raw_mbr(64 * 1024)), seconds=30, memory_mb=256)
    assert [f["code"] for f in report["findings"]] == ["inspection-failed"]
    assert "the image could not be read (OSError: gone)" in report["findings"][0]["message"]


def test_a_piped_childs_environment_has_no_credentials_nor_database():
    environ = {
        "PATH": "/usr/bin", "PYTHONPATH": "/app", "LANG": "C.UTF-8", "WIZARD_INSPECT_SECONDS": "30",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x", "AWS_PROFILE": "prod",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.2/x", "DATABASE_URL": "postgres://u:p@db/w",
        "REDIS_URL": "redis://r", "DJANGO_SECRET_KEY": "k", "SMTP_PASSWORD": "p", "GITHUB_TOKEN": "t",
    }  # fmt: skip
    piped = inspection.child_environment({"source": "pipe"}, environ)
    assert piped == {"PATH": "/usr/bin", "PYTHONPATH": "/app", "LANG": "C.UTF-8", "WIZARD_INSPECT_SECONDS": "30"}
    assert inspection.child_environment({"source": "s3"}, environ) == environ  # it reads S3 itself


def test_the_child_that_parses_the_image_holds_no_aws_credentials(sandbox, requester, monkeypatch):
    """The worker reads S3 and serves the ranges: the child is given neither a client nor a job
    naming the bucket (it would find the standard chain's credentials in its environment)."""
    jobs: list[dict] = []
    run = inspection.run
    monkeypatch.setattr(inspection, "run", lambda job, **kw: jobs.append(job) or run(job, **kw))
    container = inspect_now(container_for(requester, sandbox, "uploads/piped.raw", raw_mbr(64 * 1024)))
    assert container.inspection["format"] == "RAW" and container.inspection_status == "done"
    assert [j["source"] for j in jobs] == ["pipe"] and not any("aws" in j or "bucket" in j for j in jobs)
    assert not [name for name in inspection.child_environment(jobs[0]) if name.startswith("AWS_")]


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(
        [raw_mbr(64 * 1024), images.vhd_fixed(images.raw_disk(2**16)), images.ova(images.raw_disk(2**16))]
    ),
    flips=st.lists(st.tuples(st.integers(0, 2**16 + 4096), st.integers(0, 255)), max_size=40),
    cut=st.integers(0, 2**17),
)
def test_whatever_the_bytes_the_runner_answers_a_report(base: bytes, flips, cut: int):
    data = bytearray(base[: max(1, len(base) - cut)])
    for offset, value in flips:
        if offset < len(data):
            data[offset] = value
    report = inspection.inspect_reader(Bytes(bytes(data)), seconds=30, memory_mb=256)
    assert isinstance(report["findings"], list) and isinstance(report["ok"], bool)
    assert report["format"] in {"OVA", "VMDK", "VHD", "VHDX", "RAW", "QCOW2", "ISO", "UNKNOWN"}
    assert not {f["code"] for f in report["findings"]} & {"inspection-limits", "inspection-failed"}, report


@given(
    kind=st.sampled_from(["report", "timeout", "ended", "failed"]),
    value=st.one_of(st.none(), st.text(max_size=20), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
    returncode=st.one_of(st.none(), st.integers(-64, 255)),
    stderr=st.text(max_size=200),
)
def test_every_ending_of_the_child_is_a_report(kind, value, returncode, stderr):
    report = inspection._result((kind, value), returncode, stderr, 30, 256)
    assert isinstance(report, dict)
    if not (kind == "report" and isinstance(value, dict)):
        assert report["ok"] is False and report["findings"][0]["severity"] == "error"
        assert report["findings"][0]["code"] in ("inspection-limits", "inspection-failed")


# --- the sandbox uses the same limits ----------------------------------------------------------


def test_the_sandbox_inspects_within_the_limits(capsys):
    blank = images.raw_disk(2**20, None)  # no partition table: VM Import fails it at "converting"
    assert imagecheck.content_failure(Bytes(blank), "RAW", imagecheck.bounded(30, 256)) == (
        "converting",
        imagecheck.NO_PARTITIONS,
    )
    assert imagecheck.content_failure(Slow(blank), "RAW", imagecheck.bounded(1, 256)) is None  # left alone
    assert "could not be inspected within 1 s" in capsys.readouterr().err


def test_the_sandbox_takes_the_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("WIZARD_INSPECT_SECONDS", "7")
    monkeypatch.setenv("WIZARD_INSPECT_MEMORY_MB", "300")
    assert imagecheck.limits() == (7.0, 300)
    monkeypatch.delenv("WIZARD_INSPECT_SECONDS")
    monkeypatch.delenv("WIZARD_INSPECT_MEMORY_MB")
    assert imagecheck.limits() == (inspection.DEFAULT_SECONDS, inspection.DEFAULT_MEMORY_MB)


# --- a real worker -----------------------------------------------------------------------------

QUEUE_INSPECTIONS = """
import os
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from wizard.requests import drafts
from wizard.preflight import preflight
from wizard.models import SourceGrant
bucket = os.environ["TEST_BUCKET"]
owner = get_user_model().objects.create_user("worker-test")
team = Group.objects.create(name="worker-test-team")
owner.groups.add(team)
SourceGrant.objects.create(kind="s3", s3_bucket=bucket).groups.add(team)
draft = drafts.create_draft(owner, description="worker test")
for key in ("uploads/good.vhd", "uploads/blank.raw"):
    preflight.inspect_container(drafts.add_container(draft, owner, s3_bucket=bucket, s3_key=key))
"""


@pytest.mark.slow
def test_a_real_qcluster_inspects_in_its_daemonic_workers(tmp_path, sandbox):
    """django-q2's workers are daemonic processes (no multiprocessing children): the child is a
    plain subprocess, so it works there; each image is inspected once, its report stored."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    put(sandbox, "uploads/good.vhd", raw_mbr(64 * 1024))
    put(sandbox, "uploads/blank.raw", bytes(64 * 1024))
    env = {
        **os.environ,
        "WIZARD_DATA_DIR": str(tmp_path),
        "WIZARD_SANDBOX": "1",
        "WIZARD_AWS_ENDPOINT_URL": sandbox.endpoint,
        "AWS_REGION": sandbox.region,
        "WIZARD_BUCKET": sandbox.bucket,
        "Q_WORKERS": "1",
        "TEST_BUCKET": sandbox.bucket,
    }
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)

    def manage(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr

    manage("migrate", "--noinput", "-v", "0")
    manage("createcachetable")
    manage("shell", "-v", "0", "-c", QUEUE_INSPECTIONS)

    def containers() -> list[tuple]:
        with sqlite3.connect(tmp_path / "db.sqlite3", timeout=30) as conn:
            return conn.execute(
                "SELECT s3_key, inspection_status, format, inspection FROM wizard_diskcontainer ORDER BY position"
            ).fetchall()

    assert [row[1] for row in containers()] == ["pending", "pending"]
    log_path = tmp_path / "cluster.log"
    with log_path.open("wb") as log:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for _ in range(240):  # up to two minutes on a loaded machine
            if all(row[1] == "done" for row in containers()):
                break
            time.sleep(0.5)
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(cluster.pid, signal.SIGKILL)
    rows = containers()
    assert [row[1] for row in rows] == ["done", "done"], log_path.read_text(errors="replace")[-3000:]
    good, blank = (json.loads(row[3]) for row in rows)
    assert rows[0][2] == "RAW" and good["ok"] and good["partition_table"] == "mbr"
    assert not blank["ok"] and "no-partitions" in {f["code"] for f in blank["findings"]}, blank
    with sqlite3.connect(tmp_path / "db.sqlite3", timeout=30) as conn:
        (events,) = conn.execute("SELECT COUNT(*) FROM wizard_auditevent WHERE action = 'image inspected'").fetchone()
    assert events == 2
