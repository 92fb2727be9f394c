"""Dispatch happens exactly once, whatever dies: a real `qcluster` SIGKILLed at random points.

First, quickly, in-process against the session's sandbox: a throttled dispatch raises (so
django-q2 delivers it again) until its last attempt, which fails the request with AWS's
message; an error retrying cannot fix fails the request after one call.

A real sandbox process (ImportImage slowed down, so a kill can land while AWS is making
the task, and throttled at a seeded rate, so botocore and django-q2 retry) and a real
`python manage.py qcluster` on a temporary SQLite file. Many approved requests are
queued; the cluster (its own process group) is started and SIGKILLed after a seeded
random delay, again and again, then started once more and left to finish. At the end
every request has exactly one ImportImage task in the sandbox (counted by its unique
Description, as DescribeImportImageTasks does not show the ClientToken), is linked to it
(its ImportTask row has that id) and is importing, not failed.

Each kill is classified from the cluster's log and the sandbox: dispatches in flight
when it died that AWS had not yet seen ("before the call"), that AWS had made a task for
but our database had not recorded ("after the call, before our commit"), and that were
committed but not yet acknowledged. The seed is printed (run with -s); set KILL_SEED to
repeat a run's kill schedule, KILL_TIMES and KILL_REQUESTS to change its size.
"""

from __future__ import annotations

import collections
import contextlib
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

from wizard import dispatch
from wizard.aws import clients, vmimport
from wizard.models import ImportRequest, ImportTask
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

CREATE_REQUESTS = """
import os
from django.contrib.auth import get_user_model
from wizard import review
from wizard.models import ImportRequest
n, bucket, key, prefix = (int(os.environ["KILL_REQUESTS"]), os.environ["KILL_BUCKET"], os.environ["KILL_KEY"],
                          os.environ["KILL_PREFIX"])
owner = get_user_model().objects.create_user("killtest")
for i in range(n):
    request = ImportRequest.objects.create(owner=owner, status="submitted", description=f"{prefix}{i}")
    request.disk_containers.create(format="VMDK", s3_bucket=bucket, s3_key=key)
    review.approve_without_review(request)  # approved; the dispatch is queued on commit
"""


@pytest.fixture
def approved(db, sandbox, requester) -> ImportRequest:
    request = ImportRequest.objects.create(owner=requester, status="approved", description="throttled")
    request.disk_containers.create(format="VMDK", s3_bucket=sandbox.bucket, s3_key="uploads/x.vmdk")
    return request


@pytest.fixture
def import_sends(sandbox, settings) -> list[int]:
    """HTTP requests of ImportImage the application sends (botocore's retries included)."""
    sends: list[int] = []
    events = clients._session(settings.AWS_SANDBOX, settings.AWS_REGION).events
    events.register("before-send.ec2.ImportImage", lambda **_: sends.append(1), unique_id="test-import-sends")
    yield sends
    events.unregister("before-send.ec2.ImportImage", unique_id="test-import-sends")


def test_a_throttled_dispatch_is_delivered_again_and_given_up_at_the_last_attempt(
    approved, sandbox, import_sends, monkeypatch, settings
):
    monkeypatch.setattr(clients, "RETRY_CONFIG", Config(retries={"mode": "standard", "total_max_attempts": 1}))
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "max_attempts": 3}
    sandbox.faults(throttle={"actions": ["ImportImage"]})
    for _ in range(2):
        with pytest.raises(vmimport.ImportCallError, match="RequestLimitExceeded"):
            dispatch.dispatch(approved.pk)  # django-q2 delivers it again after `retry`
        approved.refresh_from_db()
        assert approved.status == ImportRequest.Status.APPROVED
    assert dispatch.dispatch(approved.pk) is None  # the last attempt: no more raising
    approved.refresh_from_db()
    assert approved.status == ImportRequest.Status.FAILED
    assert approved.failure_message == "AWS did not take the import after 3 attempts: Request limit exceeded."
    assert len(import_sends) == 3
    assert not sandbox.client("ec2").describe_import_image_tasks()["ImportImageTasks"]


def test_a_dispatch_throttled_once_is_recorded_on_the_next_delivery(approved, sandbox, monkeypatch):
    monkeypatch.setattr(clients, "RETRY_CONFIG", Config(retries={"mode": "standard", "total_max_attempts": 1}))
    sandbox.faults(throttle={"actions": ["ImportImage"], "count": 1})
    with pytest.raises(vmimport.ImportCallError):
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
    with SandboxProcess(clock_speed=0, import_seconds=600) as sb:
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
    """pk -> description, status, failure message and linked task id, read straight from SQLite."""
    with sqlite3.connect(path, timeout=30) as conn:
        rows = conn.execute(
            "SELECT r.id, r.description, r.status, r.failure_message, t.import_task_id "
            "FROM wizard_importrequest r LEFT JOIN wizard_importtask t ON t.request_id = r.id"
        ).fetchall()
    return {pk: {"description": d, "status": s, "failure": f, "task": t or ""} for pk, d, s, f, t in rows}


def tasks_in_sandbox(sandbox: SandboxProcess) -> dict[str, list[str]]:
    """Description -> ids of the ImportImage tasks the sandbox has for it (every task, all pages)."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    pages = sandbox.client("ec2").get_paginator("describe_import_image_tasks").paginate()
    for page in pages:
        for task in page["ImportImageTasks"]:
            found[task.get("Description", "")].append(task["ImportTaskId"])
    return found


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

    final = Cluster(app_env, tmp_path / "cluster-final.log")
    try:
        deadline = time.monotonic() + Q_RETRY + 90
        while time.monotonic() < deadline:
            requests = requests_in_db(db_path)
            if all(r["task"] or r["status"] == "failed" for r in requests.values()):
                break
            time.sleep(0.5)
    finally:
        final.stop()

    requests, aws = requests_in_db(db_path), tasks_in_sandbox(sandbox)
    faults = sandbox.fault_status()
    summary = "\n".join(
        [
            f"seed {seed}: {KILLS} kills of qcluster, {REQUESTS} requests, {time.monotonic() - started:.0f} s",
            *schedule,
            f"kills that found dispatches in flight, by point: {dict(kinds)}",
            f"ImportImage calls throttled by the sandbox: {faults['throttle']['injected']} "
            f"of {faults['throttle']['matched']}",
        ]
    )
    print(summary)

    assert len(requests) == REQUESTS
    for pk, row in sorted(requests.items()):
        ids = aws.get(row["description"], [])
        assert len(ids) == 1, f"request {pk} has {len(ids)} ImportImage tasks: {ids}\n{summary}"
        assert row["task"] == ids[0], f"request {pk} is not linked to its task {ids}: {row}\n{summary}"
        assert (row["status"], row["failure"]) == ("importing", ""), f"request {pk}: {row}\n{summary}"
    assert sum(len(ids) for d, ids in aws.items()) == REQUESTS, f"tasks for no request: {aws}\n{summary}"
    # The kills did land where it matters, and the faults were on.
    assert kinds["after the call, before our commit"] >= 1, summary
    assert kinds["before the call"] >= 1, summary
    assert faults["throttle"]["injected"] >= 1, summary
