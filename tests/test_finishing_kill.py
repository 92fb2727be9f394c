"""Finishing happens exactly once, whatever dies: a real `qcluster` SIGKILLed during the finishing.

A real sandbox process (the finishing's calls slowed down, so a kill lands while AWS is making a
copy, tagging or sharing) and a real `python manage.py qcluster` on a temporary SQLite file.
Several requests whose imports completed in the sandbox are polled (the poller moves them to
"finishing" and queues their first step); the cluster (its own process group) is started and
SIGKILLed after a seeded random delay, again and again; then started once more and left to
finish. At the end every request is completed, every step done and audited once, and the sandbox
holds exactly one AMI of each request's name in its region and one in the copy's region, tagged,
shared with the one account, IMDSv2 required; the import's own AMI is gone.

The seed is printed (run with -s); FINISH_KILL_SEED repeats a run's kill schedule,
FINISH_KILL_TIMES and FINISH_KILL_REQUESTS change its size.
"""

from __future__ import annotations

import collections
import json
import os
import random
import sqlite3
import time
from pathlib import Path

import pytest

from tests.sandbox.conftest import DISK_IMAGE
from tests.test_dispatch_kill import Cluster, manage
from wizard.sandbox.testing import SandboxProcess

KILLS = int(os.environ.get("FINISH_KILL_TIMES", "6"))
REQUESTS = int(os.environ.get("FINISH_KILL_REQUESTS", "4"))
SLOW_SECONDS = 0.4
# Short, so that what a killed cluster had taken comes back soon (a finishing task lasts a few s here).
Q_TIMEOUT, Q_RETRY = 8, 9
IMPORT_SECONDS = 4
OTHER_ACCOUNT = "222233334444"
WEST = "eu-west-1"
FINISH_ACTIONS = [
    "CopyImage",
    "DeregisterImage",
    "DeleteSnapshot",
    "CreateTags",
    "ModifyImageAttribute",
    "ModifySnapshotAttribute",
]
STEPS = [
    "CopyImage",
    "DeregisterImage",
    "CreateTags",
    "ImdsSupport",
    "LaunchPermission",
    "CreateVolumePermission",
    "CopyImageToRegion",
]

CREATE_REQUESTS = """
import json, os
from django.contrib.auth import get_user_model
from wizard.imports import polling
from wizard.models import ImportRequest, ImportTask
owner = get_user_model().objects.create_user("killtest")
for i, task_id in enumerate(json.loads(os.environ["KILL_TASKS"])):
    request = ImportRequest.objects.create(
        owner=owner, status="importing", description=f"kill-{i}", ami_name=f"finished-{i}",
        ami_tags=[{"Key": "n", "Value": str(i)}], launch_user_ids=[os.environ["KILL_ACCOUNT"]],
        region_copies=[{"Region": os.environ["KILL_REGION"]}], imds_v2=True,
    )
    ImportTask.objects.create(request=request, import_task_id=task_id)
polling.poll_once()  # every task completed: each request goes to "finishing", its first step queued
"""


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("FINISH_KILL_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"\nfinishing kill test seed: {value} (FINISH_KILL_SEED={value} repeats this kill schedule)")
    return value


@pytest.fixture
def slow_sandbox():
    with SandboxProcess(clock_speed=1, import_seconds=IMPORT_SECONDS) as sb:
        sb.faults(slow={"seconds": SLOW_SECONDS, "actions": FINISH_ACTIONS})
        yield sb


@pytest.fixture
def app_env(tmp_path, slow_sandbox) -> dict[str, str]:
    env = {
        **os.environ,
        "WIZARD_DATA_DIR": str(tmp_path),
        "WIZARD_SANDBOX": "1",
        "WIZARD_AWS_ENDPOINT_URL": slow_sandbox.endpoint,
        "AWS_REGION": slow_sandbox.region,
        "WIZARD_BUCKET": slow_sandbox.bucket,
        "Q_WORKERS": "2",
        "Q_TIMEOUT": str(Q_TIMEOUT),
        "Q_RETRY": str(Q_RETRY),
        "WIZARD_INSPECT_SECONDS": "5",
        "WIZARD_POLL_SECONDS": "0.5",
        "WIZARD_FINISH_WAIT_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


def rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def wait_for(cluster: Cluster, text: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in cluster.log():
            return True
        time.sleep(0.02)
    return False


def named(ec2, name: str) -> list[dict]:
    return ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]


@pytest.mark.slow
def test_a_killed_worker_still_applies_each_finishing_step_exactly_once(tmp_path, slow_sandbox, app_env, seed):
    sandbox = slow_sandbox
    rng = random.Random(seed)
    manage(app_env, "migrate", "--noinput", "-v", "0")
    manage(app_env, "createcachetable")
    ec2 = sandbox.client("ec2")
    key = "uploads/kill-test.vmdk"
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=key, Body=DISK_IMAGE)
    disk = {"Format": "VMDK", "UserBucket": {"S3Bucket": sandbox.bucket, "S3Key": key}}
    task_ids = [ec2.import_image(DiskContainers=[disk])["ImportTaskId"] for _ in range(REQUESTS)]
    sandbox.advance(IMPORT_SECONDS + 1)
    imported = {
        t["ImportTaskId"]: t for t in ec2.describe_import_image_tasks(ImportTaskIds=task_ids)["ImportImageTasks"]
    }
    assert {t["Status"] for t in imported.values()} == {"completed"}
    env = {**app_env, "KILL_TASKS": json.dumps(task_ids), "KILL_ACCOUNT": OTHER_ACCOUNT, "KILL_REGION": WEST}
    manage(env, "shell", "-v", "0", "-c", CREATE_REQUESTS)
    db_path = tmp_path / "db.sqlite3"
    assert {s for (s,) in rows(db_path, "SELECT status FROM wizard_importrequest")} == {"finishing"}

    during = collections.Counter()
    for n in range(KILLS):
        cluster = Cluster(app_env, tmp_path / f"cluster-{n:02d}.log")
        # Starting takes seconds (more on a loaded machine): the kill counts from the first step begun.
        began = wait_for(cluster, "processing finish-")
        time.sleep(rng.uniform(0.5, 8.0) if began else 0.0)
        cluster.kill()
        time.sleep(Q_RETRY)  # what the dead cluster had taken is delivered again after Q_RETRY
        log = cluster.log()
        during["steps started"] += log.count("processing finish-")
        during["steps ended"] += log.count("Processed 'wizard.imports.finishing.run'")
    done_before = rows(db_path, "SELECT count(*) FROM wizard_finishingstep WHERE state = 'done'")[0][0]

    last = Cluster(app_env, tmp_path / "cluster-last.log")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            statuses = {s for (s,) in rows(db_path, "SELECT status FROM wizard_importrequest")}
            if statuses == {"completed"}:
                break
            time.sleep(1)
    finally:
        last.stop()
    print(f"kills: {KILLS}, {dict(during)}, steps done before the last start: {done_before}")
    requests = rows(db_path, "SELECT id, status, ami_name FROM wizard_importrequest ORDER BY id")
    assert {s for _, s, _ in requests} == {"completed"}, rows(
        db_path, "SELECT request_id, action, state, error, attempts FROM wizard_finishingstep"
    )
    assert during["steps started"] > during["steps ended"], "no kill landed during a step: the test proved nothing"
    assert done_before, "no step was done before the last start: the kills came too early to prove anything"

    steps = rows(
        db_path, "SELECT request_id, action, state, image_id FROM wizard_finishingstep ORDER BY request_id, position"
    )
    events = rows(db_path, "SELECT request_id, action, details FROM wizard_auditevent")
    west = sandbox.client("ec2", region_name=WEST)
    for pk, _, name in requests:
        mine = [s for s in steps if s[0] == pk]
        assert [s[1] for s in mine] == STEPS and {s[2] for s in mine} == {"done"}
        done = [json.loads(d)["step"] for r, a, d in events if r == pk and a == "finishing step done"]
        assert sorted(done) == sorted(STEPS), f"request {pk}: each step audited once"
        assert sum(1 for r, a, _ in events if r == pk and a == "completed") == 1
        copy_id = next(s[3] for s in mine if s[1] == "CopyImage")
        west_id = next(s[3] for s in mine if s[1] == "CopyImageToRegion")
        (ami,) = named(ec2, name)  # exactly one AMI of that name: CopyImage applied once
        (west_ami,) = named(west, name)
        assert (ami["ImageId"], west_ami["ImageId"]) == (copy_id, west_id)
        assert ami["ImdsSupport"] == "v2.0" and ami["Tags"] and west_ami["Tags"]
        shared = ec2.describe_image_attribute(ImageId=copy_id, Attribute="launchPermission")["LaunchPermissions"]
        assert shared == [{"UserId": OTHER_ACCOUNT}]
    for task in imported.values():  # every import's own AMI was deregistered
        assert not ec2.describe_images(Filters=[{"Name": "image-id", "Values": [task["ImageId"]]}])["Images"]
