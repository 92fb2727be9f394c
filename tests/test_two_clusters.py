"""Scale: a batch of 200 VMs, two `qcluster` processes on the Redis broker and PostgreSQL.

Each request is dispatched exactly once (one ImportImage task per VM in the sandbox, counted
by its unique Description), the dispatch queue never lets more than WIZARD_MAX_ACTIVE_IMPORTS
run at once (checked exactly: from each request's admission to its completion, as recorded,
never more overlap than the limit), and every VM reaches `completed` in the sandbox.
"""

from __future__ import annotations

import collections
import os
import time

import psycopg
import pytest

from tests.services import fresh_postgres_database, fresh_redis_db
from tests.test_dispatch_kill import Cluster, manage, tasks_in_sandbox
from wizard.sandbox.testing import SandboxProcess

pytestmark = pytest.mark.slow

VMS = int(os.environ.get("TWO_CLUSTERS_VMS", "200"))
LIMIT = 20
IMPORT_SECONDS = 3  # sandbox seconds (its clock runs at real speed here) from pending to completed
PREFIX = "two-clusters-"

CREATE_BATCH = """
import os
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from wizard.requests import review
from wizard.models import Batch, BatchItem, ImportRequest, SourceGrant
n, bucket, key, prefix = int(os.environ["VMS"]), os.environ["BUCKET"], os.environ["KEY"], os.environ["PREFIX"]
owner = get_user_model().objects.create_user("migrator")
team = Group.objects.create(name="migration")
owner.groups.add(team)
SourceGrant.objects.create(kind="s3", s3_bucket=bucket, s3_prefix="uploads/").groups.add(team)
batch = Batch.objects.create(owner=owner, name="200 VMs", source="manifest-csv")
with transaction.atomic():
    for i in range(n):
        request = ImportRequest.objects.create(owner=owner, status="submitted", description=f"{prefix}{i:03d}")
        request.disk_containers.create(format="VMDK", s3_bucket=bucket, s3_key=key)
        BatchItem.objects.create(batch=batch, request=request, position=i, row=i + 1)
        review.approve_without_review(request)  # the queue is kicked once, on commit
"""


@pytest.fixture
def scale_env(tmp_path):
    database_url, drop = fresh_postgres_database()
    redis_url = fresh_redis_db()
    with SandboxProcess(import_seconds=IMPORT_SECONDS, clock_speed=1) as sandbox:
        env = {
            **os.environ,
            "WIZARD_DATA_DIR": str(tmp_path),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "WIZARD_SANDBOX": "1",
            "WIZARD_AWS_ENDPOINT_URL": sandbox.endpoint,
            "AWS_REGION": sandbox.region,
            "WIZARD_BUCKET": sandbox.bucket,
            "WIZARD_MAX_ACTIVE_IMPORTS": str(LIMIT),
            "WIZARD_POLL_SECONDS": "0.5",
            "Q_WORKERS": "2",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        try:
            yield env, sandbox, database_url
        finally:
            drop()


def rows(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql).fetchall()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an end at the same moment as a start comes first)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_two_clusters_dispatch_a_batch_of_200_exactly_once_within_the_limit(tmp_path, scale_env):
    env, sandbox, database_url = scale_env
    started = time.monotonic()
    manage(env, "migrate", "--noinput", "-v", "0")
    key = "uploads/two-clusters.vmdk"
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=key, Body=b"KDMV" + bytes(4092))
    manage(
        {**env, "VMS": str(VMS), "BUCKET": sandbox.bucket, "KEY": key, "PREFIX": PREFIX}, "shell", "-c", CREATE_BATCH
    )
    assert rows(database_url, "SELECT count(*) FROM wizard_dispatchslot")[0][0] == LIMIT  # the first wave only

    clusters = [Cluster(env, tmp_path / f"cluster-{n}.log") for n in (1, 2)]
    peak_seen = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            (active,) = rows(
                database_url,
                "SELECT count(*) FROM wizard_importrequest r LEFT JOIN wizard_dispatchslot s ON s.request_id = r.id "
                "WHERE r.status = 'importing' OR (r.status = 'approved' AND s.id IS NOT NULL)",
            )[0]
            peak_seen = max(peak_seen, active)
            statuses = collections.Counter(
                dict(rows(database_url, "SELECT status, count(*) FROM wizard_importrequest GROUP BY status"))
            )
            if statuses.get("completed", 0) + statuses.get("failed", 0) == VMS:
                break
            time.sleep(0.2)
    finally:
        for cluster in clusters:
            cluster.stop()
    elapsed = time.monotonic() - started
    logs = [c.log() for c in clusters]
    dispatched_by = [log.count("processing dispatch-") for log in logs]
    print(
        f"\n{VMS} VMs, 2 clusters, limit {LIMIT}: {elapsed:.0f} s; dispatches run per cluster {dispatched_by}; "
        f"peak active seen by sampling {peak_seen}"
    )

    assert statuses == {"completed": VMS}, (statuses, logs[0][-3000:])
    aws = tasks_in_sandbox(sandbox)
    mine = {d: ids for d, ids in aws.items() if d.startswith(PREFIX)}
    assert len(mine) == VMS and all(len(ids) == 1 for ids in mine.values()), [d for d, i in mine.items() if len(i) > 1]
    linked = rows(database_url, "SELECT count(DISTINCT import_task_id) FROM wizard_importtask")[0][0]
    assert linked == VMS
    # From each admission to the completion the poller recorded: never more than the limit at once.
    intervals = rows(
        database_url,
        "SELECT extract(epoch FROM s.admitted_at), extract(epoch FROM e.at) FROM wizard_dispatchslot s "
        "JOIN wizard_auditevent e ON e.request_id = s.request_id AND e.action = 'completed'",
    )
    assert len(intervals) == VMS
    peak = max_overlap([(float(a), float(b)) for a, b in intervals])
    print(f"most imports active at once (exact, from the records): {peak}")
    assert peak <= LIMIT
    assert peak_seen <= LIMIT
    assert all(n > 0 for n in dispatched_by), "both clusters took part"
    assert rows(database_url, "SELECT count(*) FROM wizard_dispatchslot")[0][0] == VMS
