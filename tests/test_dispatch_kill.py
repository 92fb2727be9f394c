"""Dispatch happens exactly once, whatever dies: a real `qcluster` SIGKILLed at random points.

First, quickly, in-process against the session's sandbox: a throttled dispatch raises (so
django-q2 delivers it again, counting the attempts on its task row) and after its last attempt
django-q2's hook fails the request with AWS's message; an error retrying cannot fix fails the
request after one call; a delivery whose task had already ended (completed, or failed) records
the task's real final state.

A real sandbox process (ImportImage slowed down, so a kill can land while AWS is making
the task, and throttled at a seeded rate, so botocore and django-q2 retry) and a real
`python manage.py qcluster` on a temporary SQLite file. Many approved requests are
queued; the cluster (its own process group) is started and SIGKILLed after a seeded
random delay, again and again. Then it is killed while ImportImage calls are in flight
(the sandbox makes their tasks after the worker died) until at least two tasks exist that
our database has not recorded. The sandbox clock then moves past the end of every import,
one of those tasks failing: their dispatches are delivered again only after the tasks
ended. The cluster is started once more and left to finish, the sandbox clock moving on so
that tasks dispatched from now on end too. At the end every request has reached a final
state (completed with the AMI AWS made, or failed with AWS's message for the task that
failed), has exactly one ImportImage task in the sandbox (counted by its unique
Description, as DescribeImportImageTasks does not show the ClientToken) and is linked to it.

Each kill is classified from the cluster's log and the sandbox: dispatches in flight
when it died that AWS had not yet seen ("before the call"), that AWS had made a task for
but our database had not recorded ("after the call, before our commit"), and that were
committed but not yet acknowledged. The seed is printed (run with -s); set KILL_SEED to
repeat a run's kill schedule, KILL_TIMES and KILL_REQUESTS to change its size.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.config import Config

from tests.flows import grant
from wizard.aws import clients, vmimport
from wizard.imports import dispatch, polling
from wizard.models import AuditEvent, ImportRequest, ImportTask
from wizard.sandbox.testing import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
KILLS = int(os.environ.get("KILL_TIMES", "24"))
REQUESTS = int(os.environ.get("KILL_REQUESTS", "60"))
SLOW_SECONDS = 0.8  # each ImportImage answer comes this late: the window for "after the call"
THROTTLE_RATE = 0.3
# Short, so that the tasks a killed cluster had taken come back within the test (retry > timeout).
Q_TIMEOUT, Q_RETRY = 12, 15
Q_WORKERS = 2  # each cluster takes workers + workers**2 (prefetched) tasks at a time
# When each kill comes, drawn from the seed: (share of the kills, what the delay counts from,
# the delay's range in s). Starting and taking the first tasks; just after a worker began a
# dispatch (it is still making its boto3 client: before the call); and later, mostly while
# ImportImage is in flight or answered and not yet committed.
KILL_POINTS = (
    (0.2, "start", (0.3, 2.5)),
    (0.3, "first dispatch", (0.0, 0.3)),
    (0.5, "first dispatch", (0.3, 2.0)),
)
PREFIX = "kill-test-"
FAIL_MESSAGE = "ClientError: Unknown OS / Missing OS files."
IMPORT_SECONDS = 600

CREATE_REQUESTS = """
import os
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from wizard.requests import review
from wizard.models import ImportRequest, SourceGrant
n, bucket, key, prefix = (int(os.environ["KILL_REQUESTS"]), os.environ["KILL_BUCKET"], os.environ["KILL_KEY"],
                          os.environ["KILL_PREFIX"])
owner = get_user_model().objects.create_user("killtest")
team = Group.objects.create(name="killtest-team")
owner.groups.add(team)
SourceGrant.objects.create(kind="s3", s3_bucket=bucket).groups.add(team)  # it may import the image
for i in range(n):
    request = ImportRequest.objects.create(owner=owner, status="submitted", description=f"{prefix}{i}")
    request.disk_containers.create(format="VMDK", s3_bucket=bucket, s3_key=key)
    review.approve_without_review(request)  # approved; the dispatch is queued on commit
"""


@pytest.fixture
def approved(db, sandbox, requester) -> ImportRequest:
    grant(requester, s3_bucket=sandbox.bucket)  # the owner may import the image (wizard.uploads.sources)
    request = ImportRequest.objects.create(owner=requester, status="approved", description="throttled")
    request.disk_containers.create(format="VMDK", s3_bucket=sandbox.bucket, s3_key="uploads/x.vmdk")
    return request


@pytest.fixture
def import_sends(sandbox, settings) -> list[int]:
    """HTTP requests of ImportImage the application sends (botocore's retries included)."""
    sends: list[int] = []
    events = clients._session(settings.AWS_SANDBOX, settings.AWS_REGION).events
    events.register("before-send.ec2.ImportImage", lambda **_: sends.append(1), unique_id="test-import-sends")
    clients.forget()  # clients made from now on carry the handler
    yield sends
    events.unregister("before-send.ec2.ImportImage", unique_id="test-import-sends")
    clients.forget()


def _attempt_recorded(package: dict, error: Exception) -> None:
    """What django-q2's monitor does with a failed attempt: record it on the task's row (one row
    per task id, its attempt_count counted up), which calls the task's hook."""
    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.monitor import save_task

    now = timezone.now()
    save_task(
        {**package, "started": now, "stopped": now, "result": f"{error} : Traceback (most recent call last): ..."},
        get_broker(),
    )


def test_a_throttled_dispatch_is_delivered_again_and_given_up_at_the_last_attempt(
    approved, sandbox, import_sends, monkeypatch, settings
):
    from django_q.models import Task

    monkeypatch.setattr(clients, "RETRY_CONFIG", Config(retries={"mode": "standard", "total_max_attempts": 1}))
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "max_attempts": 3}
    sandbox.faults(throttle={"actions": ["ImportImage"]})
    package = {  # the task wizard.tasks.queue_dispatch makes, as a delivery carries it
        "id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "name": f"dispatch-{approved.pk}",
        "func": "wizard.tasks.dispatch_request",
        "hook": "wizard.tasks.dispatch_attempted",
        "args": (approved.pk,),
        "kwargs": {},
        "success": False,
    }
    for attempt in (1, 2, 3):
        with pytest.raises(dispatch.RetryLater, match="RequestLimitExceeded") as raised:
            dispatch.dispatch(approved.pk)  # django-q2 delivers it again after `retry`...
        _attempt_recorded(package, raised.value)  # ... and counts the attempt
        assert Task.objects.get(id=package["id"]).attempt_count == attempt
        approved.refresh_from_db()
        expected = ImportRequest.Status.FAILED if attempt == 3 else ImportRequest.Status.APPROVED
        assert approved.status == expected, attempt
    assert approved.failure_message == "AWS did not take the import after 3 attempts: Request limit exceeded."
    assert len(import_sends) == 3
    assert not sandbox.client("ec2").describe_import_image_tasks()["ImportImageTasks"]
    dispatch.give_up(approved.pk, "RequestLimitExceeded: again", 4)  # a late hook changes nothing
    approved.refresh_from_db()
    assert approved.failure_message.endswith("after 3 attempts: Request limit exceeded.")


def test_a_dispatch_throttled_once_is_recorded_on_the_next_delivery(approved, sandbox, monkeypatch):
    monkeypatch.setattr(clients, "RETRY_CONFIG", Config(retries={"mode": "standard", "total_max_attempts": 1}))
    sandbox.faults(throttle={"actions": ["ImportImage"], "count": 1})
    with pytest.raises(dispatch.RetryLater):
        dispatch.dispatch(approved.pk)
    task_id = dispatch.dispatch(approved.pk)
    assert ImportTask.objects.get(request=approved).import_task_id == task_id
    assert dispatch.dispatch(approved.pk) == task_id  # a third delivery calls nothing
    tasks_in_aws = sandbox.client("ec2").describe_import_image_tasks()["ImportImageTasks"]
    assert [t["ImportTaskId"] for t in tasks_in_aws] == [task_id]


def test_an_error_retrying_cannot_fix_fails_after_one_call(approved, import_sends):
    ImportRequest.objects.filter(pk=approved.pk).update(role_name="no-such-role")
    assert dispatch.dispatch(approved.pk) is None
    approved.refresh_from_db()
    assert approved.status == ImportRequest.Status.FAILED
    assert "The service role no-such-role provided does not exist" in approved.failure_message
    assert len(import_sends) == 1  # neither botocore nor django-q2 tries again
    assert dispatch.dispatch(approved.pk) is None and len(import_sends) == 1


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("KILL_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"\nkill test seed: {value} (KILL_SEED={value} repeats this kill schedule)")
    return value


@pytest.fixture
def faulty_sandbox(seed):
    # The clock stands still: every task stays active, nothing completes or fails on its own.
    with SandboxProcess(clock_speed=0, import_seconds=IMPORT_SECONDS) as sb:
        sb.faults(
            slow={"seconds": SLOW_SECONDS, "actions": ["ImportImage"]},
            throttle={"rate": THROTTLE_RATE, "seed": seed, "actions": ["ImportImage"]},
        )
        yield sb


@pytest.fixture
def app_env(tmp_path, faulty_sandbox) -> dict[str, str]:
    sandbox = faulty_sandbox
    env = {
        **os.environ,
        "WIZARD_DATA_DIR": str(tmp_path),
        "WIZARD_SANDBOX": "1",
        "WIZARD_AWS_ENDPOINT_URL": sandbox.endpoint,
        "AWS_REGION": sandbox.region,
        "WIZARD_BUCKET": sandbox.bucket,
        "Q_WORKERS": str(Q_WORKERS),
        "Q_TIMEOUT": str(Q_TIMEOUT),
        "Q_RETRY": str(Q_RETRY),
        "WIZARD_INSPECT_SECONDS": "5",  # under Q_RETRY (config.settings)
        "WIZARD_POLL_SECONDS": "0.5",
        "WIZARD_MAX_ACTIVE_IMPORTS": str(REQUESTS),  # every request at once: the clock stands still
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Cluster:
    """`manage.py qcluster` in its own process group, its output in `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL to the whole group: main process, pusher, monitor and workers die at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM to the main pid (signalling the group can hang shutdown), then make sure."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        finally:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_dispatch(self, timeout: float = 20) -> bool:
        """Wait until a worker begins a dispatch; False if none did (all taken by a killed cluster)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "processing dispatch-" in self.log():
                return True
            time.sleep(0.01)
        return False

    def in_flight(self) -> set[int]:
        """Requests whose dispatch a worker had started and the cluster had not finished."""
        log = self.log()
        started = {int(n) for n in re.findall(r"processing dispatch-(\d+) ", log)}
        ended = {int(n) for n in re.findall(r"(?:Processed|Failed) '[^']*' \(dispatch-(\d+)\)", log)}
        return started - ended


def requests_in_db(path: Path) -> dict[int, dict[str, str]]:
    """pk -> description, status, failure message, linked task id and its ImageId, read straight from SQLite."""
    with sqlite3.connect(path, timeout=30) as conn:
        rows = conn.execute(
            "SELECT r.id, r.description, r.status, r.failure_message, t.import_task_id, t.image_id "
            "FROM wizard_importrequest r LEFT JOIN wizard_importtask t ON t.request_id = r.id"
        ).fetchall()
    return {
        pk: {"description": d, "status": s, "failure": f, "task": t or "", "image_id": i or ""}
        for pk, d, s, f, t, i in rows
    }


def ended_at_delivery(path: Path) -> collections.Counter:
    """How many dispatches found their task already ended, by the Status ImportImage answered."""
    with sqlite3.connect(path, timeout=30) as conn:
        rows = conn.execute("SELECT details FROM wizard_auditevent WHERE action = 'dispatched'").fetchall()
    return collections.Counter(json.loads(d).get("Status") for (d,) in rows if "Status" in json.loads(d))


def tasks_in_sandbox(sandbox: SandboxProcess) -> dict[str, list[dict]]:
    """Description -> the ImportImage tasks the sandbox has for it (every task, all pages)."""
    found: dict[str, list[dict]] = collections.defaultdict(list)
    pages = sandbox.client("ec2").get_paginator("describe_import_image_tasks").paginate()
    for page in pages:
        for task in page["ImportImageTasks"]:
            found[task.get("Description", "")].append(task)
    return found


def unrecorded(db_path: Path, sandbox: SandboxProcess) -> list[str]:
    """Ids of the tasks AWS made that no request is linked to yet (their dispatch was killed)."""
    requests, aws = requests_in_db(db_path), tasks_in_sandbox(sandbox)
    return [t["ImportTaskId"] for r in requests.values() if not r["task"] for t in aws.get(r["description"], [])]


@pytest.mark.slow
def test_a_killed_worker_still_dispatches_each_request_exactly_once(tmp_path, faulty_sandbox, app_env, seed):
    sandbox = faulty_sandbox
    started = time.monotonic()
    rng = random.Random(seed)
    manage(app_env, "migrate", "--noinput", "-v", "0")
    manage(app_env, "createcachetable")
    key = "uploads/kill-test.vmdk"
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=key, Body=b"KDMV" + bytes(4092))
    manage(
        {
            **app_env,
            "KILL_REQUESTS": str(REQUESTS),
            "KILL_BUCKET": sandbox.bucket,
            "KILL_KEY": key,
            "KILL_PREFIX": PREFIX,
        },
        "shell",
        "-v",
        "0",
        "-c",
        CREATE_REQUESTS,
    )
    db_path = tmp_path / "db.sqlite3"
    assert {r["status"] for r in requests_in_db(db_path).values()} == {"approved"}

    kinds = collections.Counter()
    schedule = []
    for n in range(KILLS):
        _, after, (low, high) = rng.choices(KILL_POINTS, weights=[k[0] for k in KILL_POINTS])[0]
        delay = rng.uniform(low, high)
        cluster = Cluster(app_env, tmp_path / f"cluster-{n:02d}.log")
        if after == "first dispatch" and not cluster.wait_for_dispatch():
            delay = 0.0
        time.sleep(delay)
        cluster.kill()
        time.sleep(SLOW_SECONDS + 0.5)  # a call in flight reaches moto only after the slow delay
        requests, aws = requests_in_db(db_path), tasks_in_sandbox(sandbox)
        found = collections.Counter()
        for pk in cluster.in_flight():
            row = requests[pk]
            if row["task"]:
                found["committed, not acknowledged"] += 1
            elif aws.get(row["description"]):
                found["after the call, before our commit"] += 1
            else:
                found["before the call"] += 1
        kinds.update(found)
        linked = sum(1 for r in requests.values() if r["task"])
        when = f"{delay:.2f} s after {after}"
        schedule.append(f"kill {n + 1:2d}, {when:>29}: {linked:2d} linked; in flight: {dict(found)}")

    # Kills while ImportImage is in flight (at least one), until AWS holds two tasks or more that
    # our database has not recorded.
    in_flight_kills, made_after_the_kill = 0, 0
    while (in_flight_kills < 1 or len(unrecorded(db_path, sandbox)) < 2) and in_flight_kills < 12:
        before = len(unrecorded(db_path, sandbox))
        cluster = Cluster(app_env, tmp_path / f"cluster-in-flight-{in_flight_kills:02d}.log")
        if cluster.wait_for_dispatch():
            time.sleep(rng.uniform(0.05, SLOW_SECONDS / 2))  # the call waits in the sandbox's slow fault
        cluster.kill()
        in_flight_kills += 1
        time.sleep(SLOW_SECONDS + 0.5)
        made_after_the_kill += max(0, len(unrecorded(db_path, sandbox)) - before)
    waiting = unrecorded(db_path, sandbox)
    # Their imports end before the dispatches are delivered again: one fails, the others complete.
    sandbox.faults(fail={"stage": "booting", "message": FAIL_MESSAGE, "task_id": waiting[0]})
    sandbox.advance(IMPORT_SECONDS + 1)

    final = Cluster(app_env, tmp_path / "cluster-final.log")
    try:
        deadline = time.monotonic() + Q_RETRY + 150
        while time.monotonic() < deadline:
            requests = requests_in_db(db_path)
            if all(r["status"] in ("completed", "failed", "cancelled") for r in requests.values()):
                break
            sandbox.advance(IMPORT_SECONDS + 1)  # tasks dispatched from now on end too
            time.sleep(0.5)
    finally:
        final.stop()

    requests, aws = requests_in_db(db_path), tasks_in_sandbox(sandbox)
    faults = sandbox.fault_status()
    ended = ended_at_delivery(db_path)
    summary = "\n".join(
        [
            f"seed {seed}: {KILLS} kills of qcluster, {REQUESTS} requests, {time.monotonic() - started:.0f} s",
            *schedule,
            f"kills that found dispatches in flight, by point: {dict(kinds)}",
            f"kills while ImportImage was in flight: {in_flight_kills}, whose calls made {made_after_the_kill} tasks "
            f"after the worker died; tasks unrecorded before the clock moved on: {len(waiting)}",
            f"dispatches delivered again after their task had ended, by Status: {dict(ended)}",
            f"requests by final status: {dict(collections.Counter(r['status'] for r in requests.values()))}",
            f"ImportImage calls throttled by the sandbox: {faults['throttle']['injected']} "
            f"of {faults['throttle']['matched']}",
        ]
    )
    print(summary)

    assert len(requests) == REQUESTS
    for pk, row in sorted(requests.items()):
        found = aws.get(row["description"], [])
        assert len(found) == 1, f"request {pk} has {len(found)} ImportImage tasks: {found}\n{summary}"
        (task,) = found
        assert row["task"] == task["ImportTaskId"], f"request {pk} is not linked to its task {task}: {row}\n{summary}"
        if task["ImportTaskId"] == waiting[0]:
            assert (row["status"], row["failure"]) == ("failed", FAIL_MESSAGE), f"request {pk}: {row}\n{summary}"
        else:
            assert task["Status"] == "completed", f"request {pk}'s task: {task}\n{summary}"
            assert (row["status"], row["failure"]) == ("completed", ""), f"request {pk}: {row}\n{summary}"
            assert row["image_id"] == task["ImageId"], f"request {pk} has not recorded its AMI: {row}\n{summary}"
    assert sum(len(found) for found in aws.values()) == REQUESTS, f"tasks for no request: {aws}\n{summary}"
    # The kills did land where it matters, and the faults were on.
    assert kinds["after the call, before our commit"] >= 1, summary
    assert kinds["before the call"] >= 1, summary
    assert len(waiting) >= 2, summary
    assert ended["deleted"] >= 1 and ended["completed"] >= 1, summary
    assert faults["throttle"]["injected"] >= 1, summary


# --- a delivery after the task ended (the worker was killed after AWS made it) ---------------------


@pytest.fixture
def made_before(approved, sandbox) -> str:
    """AWS made the request's task (same ClientToken) but the delivery that asked was killed."""
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key="uploads/x.vmdk", Body=b"KDMV" + bytes(4092))
    return vmimport.import_image(approved.to_api_params())["ImportTaskId"]


def test_a_delivery_after_the_task_completed_records_the_ami_and_completes(approved, sandbox, made_before):
    sandbox.advance(61)  # the import finished while nobody recorded it
    (aws,) = sandbox.client("ec2").describe_import_image_tasks(ImportTaskIds=[made_before])["ImportImageTasks"]
    assert aws["Status"] == "completed" and aws["ImageId"].startswith("ami-")

    assert dispatch.dispatch(approved.pk) == made_before
    approved.refresh_from_db()
    assert approved.status == ImportRequest.Status.COMPLETED
    task = ImportTask.objects.get(request=approved)
    assert (task.status, task.image_id) == ("completed", aws["ImageId"])
    assert [d["SnapshotId"] for d in task.snapshot_details] == [d["SnapshotId"] for d in aws["SnapshotDetails"]]
    actions = list(AuditEvent.objects.filter(request=approved).values_list("action", flat=True))
    assert actions[-3:] == ["dispatched", "aws status changed", "completed"]
    assert AuditEvent.objects.get(request=approved, action="dispatched").details["Status"] == "completed"
    assert AuditEvent.objects.get(request=approved, action="completed").details["image_id"] == aws["ImageId"]
    assert dispatch.dispatch(approved.pk) == made_before  # a further delivery changes nothing
    assert AuditEvent.objects.filter(request=approved, action="completed").count() == 1


def test_a_delivery_after_the_task_failed_records_awss_message_and_fails(approved, sandbox, made_before):
    sandbox.faults(
        fail={"stage": "booting", "message": "ClientError: Unknown OS / Missing OS files.", "task_id": made_before}
    )
    sandbox.advance(61)
    assert dispatch.dispatch(approved.pk) == made_before
    approved.refresh_from_db()
    assert (approved.status, approved.failure_message) == (
        ImportRequest.Status.FAILED,
        "ClientError: Unknown OS / Missing OS files.",
    )
    task = ImportTask.objects.get(request=approved)
    assert (task.status, task.status_message, task.image_id) == ("deleted", approved.failure_message, "")


def test_an_import_image_answer_without_the_image_id_is_completed_from_describe(
    approved, sandbox, made_before, settings
):
    """AWS's ImportImage answer for an existing task need not carry ImageId: it is described first."""
    events = clients._session(settings.AWS_SANDBOX, settings.AWS_REGION).events

    def drop_image_id(parsed, **_):
        parsed.pop("ImageId", None)

    events.register("after-call.ec2.ImportImage", drop_image_id, unique_id="test-drop-image-id")
    try:
        sandbox.advance(61)
        dispatch.dispatch(approved.pk)
    finally:
        events.unregister("after-call.ec2.ImportImage", unique_id="test-drop-image-id")
    task = ImportTask.objects.get(request=approved)
    assert task.image_id.startswith("ami-") and task.request.status == ImportRequest.Status.COMPLETED


def test_if_describing_the_ended_task_fails_the_poller_records_it(approved, sandbox, made_before, monkeypatch):
    monkeypatch.setattr(clients, "RETRY_CONFIG", Config(retries={"mode": "standard", "total_max_attempts": 1}))
    sandbox.advance(61)
    sandbox.faults(throttle={"actions": ["DescribeImportImageTasks"], "count": 1})
    assert dispatch.dispatch(approved.pk) == made_before
    task = ImportTask.objects.get(request=approved)
    assert (task.status, task.image_id) == ("active", "")  # never final without its ImageId
    assert task.request.status == ImportRequest.Status.IMPORTING
    assert polling.poll_once() == 0
    task.refresh_from_db()
    assert task.status == "completed" and task.image_id.startswith("ami-")
    assert task.request.status == ImportRequest.Status.COMPLETED
