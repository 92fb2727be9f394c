"""Batches through the real sandbox: a manifest to requests, one review, the dispatch queue's
limit, retry the failed ones, cancel the rest, and a dashboard whose query count does not grow."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.conftest import make_user
from tests.flows import grant, poll_until_final
from tests.images import raw_mbr
from wizard.batches import batches
from wizard.imports import dispatch_queue, polling
from wizard.models import AuditEvent, Batch, BatchItem, DispatchSlot, ImportRequest, ImportTask

IMAGE = raw_mbr(64 * 1024)


def manifest(sandbox, n: int, *, prefix: str = "batch/", extra_rows: str = "") -> str:
    s3 = sandbox.client("s3")
    lines = ["S3Bucket,S3Key,Format,Description"]
    for i in range(n):
        key = f"{prefix}vm{i:03d}.raw"
        s3.put_object(Bucket=sandbox.bucket, Key=key, Body=IMAGE)
        lines.append(f"{sandbox.bucket},{key},RAW,vm{i:03d}")
    return "\n".join(lines) + "\n" + extra_rows


@pytest.fixture
def owner(db, sandbox):
    user = make_user("olga", "requester")
    grant(user, s3_bucket=sandbox.bucket, s3_prefix="batch/")
    return user


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    """Run what waits for the commit (the dispatch queue's hand-over to the worker) as it happens."""
    return django_capture_on_commit_callbacks


def make(owner, sandbox, n: int, **kwargs) -> Batch:
    """A batch from a manifest of `n` images; the worker's inspections (queued on commit) run."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        batch, _ = batches.create_from_manifest(
            owner, name="wave 1", text=manifest(sandbox, n), fmt="csv", defaults={"Platform": "Linux"}, **kwargs
        )
    return batch


def test_a_manifest_with_errors_saves_nothing_unless_asked(owner, sandbox):
    text = manifest(sandbox, 2, extra_rows=f"{sandbox.bucket},,RAW,broken\nsomebody-else,batch/x.raw,RAW,theirs\n")
    with pytest.raises(batches.BatchRefused) as refused:
        batches.create_from_manifest(owner, name="w", text=text, fmt="csv")
    errors = [str(e) for e in refused.value.manifest.problems]
    assert any(e.startswith("row 3: DiskContainers[0].UserBucket.S3Key (column S3Key): ") for e in errors)
    assert any(
        e.startswith("row 4: DiskContainers[0].UserBucket: You may not import from this location") for e in errors
    )
    assert not Batch.objects.exists() and not ImportRequest.objects.exists()

    batch, found = batches.create_from_manifest(owner, name="w", text=text, fmt="csv", import_valid=True)
    assert [r.row for r in found.invalid] == [3, 4]
    assert [i.row for i in batch.items.all()] == [1, 2]
    created = AuditEvent.objects.get(action="batch created")
    assert created.details["skipped_rows"] == [3, 4] and created.details["requests"] == 2


def test_every_request_is_inspected_and_one_review_approves_the_batch(owner, sandbox, monkeypatch, commits):
    monkeypatch.setattr("wizard.tasks.kick_poller", lambda: None)
    batch = make(owner, sandbox, 3, submit=True)
    requests = [i.request for i in batch.items.select_related("request")]
    assert {r.status for r in requests} == {"submitted"}
    assert all(c.inspection and c.inspection["format"] == "RAW" for r in requests for c in r.disk_containers.all())
    assert {r.platform for r in requests} == {"Linux"}

    # The owner, even as a reviewer, may approve none of their own (separation of duties).
    owner.groups.add(*make_user("x", "reviewer").groups.all())
    owner = type(owner).objects.get(pk=owner.pk)
    mine = batches.approve_batch(batch, owner)
    assert not mine.done and set(mine.refused) == {r.pk for r in requests}

    rita = make_user("rita", "reviewer")
    with commits(execute=True):
        outcome = batches.approve_batch(batch, rita)
    assert sorted(outcome.done) == sorted(r.pk for r in requests)
    assert {r.status for r in ImportRequest.objects.all()} == {"importing"}  # under the limit: all dispatched
    assert AuditEvent.objects.filter(action="approved", actor=rita).count() == 3


def test_the_queue_never_runs_more_than_the_limit_and_keeps_order(owner, sandbox, settings, monkeypatch, commits):
    settings.MAX_ACTIVE_IMPORTS = 2
    monkeypatch.setattr("wizard.tasks.kick_poller", lambda: None)
    batch = make(owner, sandbox, 5, submit=True)
    with commits(execute=True):
        batches.approve_batch(batch, make_user("rita", "reviewer"))
    dash = batches.dashboard(batch)
    assert [line.request.status for line in dash.lines] == ["importing"] * 2 + ["approved"] * 3
    assert [line.stage for line in dash.lines[2:]] == ["queued, 0 ahead", "queued, 1 ahead", "queued, 2 ahead"]
    assert dispatch_queue.kick() == []  # no free place: nothing more let through

    seen = []
    for _ in range(40):
        with commits(execute=True):
            polling.poll_once()
        seen.append(dispatch_queue.active().count())
        if ImportRequest.objects.filter(status="completed").count() == 5:
            break
        sandbox.advance(10)
    assert max(seen) <= 2 and ImportRequest.objects.filter(status="completed").count() == 5, seen
    order = list(
        ImportTask.objects.order_by("created_at", "pk").values_list("request__batch_item__position", flat=True)
    )
    assert order == [0, 1, 2, 3, 4]
    assert DispatchSlot.objects.count() == 5


def test_cancel_the_rest_cancels_running_and_withdraws_waiting(owner, sandbox, settings, monkeypatch, commits):
    settings.MAX_ACTIVE_IMPORTS = 1
    monkeypatch.setattr("wizard.tasks.kick_poller", lambda: None)
    batch = make(owner, sandbox, 3, submit=True)
    rita = make_user("rita", "reviewer")
    first, second, third = [i.request for i in batch.items.select_related("request")]
    with commits(execute=True):
        batches.approve_batch(batch, rita, [first.pk, second.pk])
    outcome = batches.cancel_rest(batch, owner, "wrong wave")
    assert sorted(outcome.done) == sorted([first.pk, second.pk, third.pk])
    for r in (second, third):
        r.refresh_from_db()
        assert (r.status, r.cancel_reason) == ("cancelled", "wrong wave")
    assert AuditEvent.objects.filter(action="withdrawn").count() == 2
    poll_until_final(first, sandbox)
    assert first.status == "cancelled"
    assert not ImportTask.objects.filter(request__in=[second, third]).exists()


def test_retry_the_failed_ones_makes_new_requests_with_the_same_settings(owner, sandbox, monkeypatch, commits):
    monkeypatch.setattr("wizard.tasks.kick_poller", lambda: None)
    batch = make(owner, sandbox, 2, submit=True)
    sandbox.faults(fail={"stage": "booting", "message": "ClientError: Unknown OS / Missing OS files."})
    with commits(execute=True):
        batches.approve_batch(batch, make_user("rita", "reviewer"))
    for item in batch.items.select_related("request"):
        poll_until_final(item.request, sandbox)
    sandbox.faults()
    dash = batches.dashboard(batch)
    assert len(dash.failed) == 2 and "Unknown OS" in dash.failed[0].request.failure_message
    assert dash.failed[0].explanation is not None and dash.can_retry

    with commits(execute=True):  # the copies' images are inspected, then they are submitted
        outcome = batches.retry_failed(batch, owner)
    assert len(outcome.done) == 2 and not outcome.refused
    retries = BatchItem.objects.exclude(retry_of=None)
    assert {i.request.status for i in retries} == {"submitted"}
    assert {i.request.platform for i in retries} == {"Linux"}
    assert batches.retry_failed(batch, owner).done == []  # each failure is retried once
    assert not batches.dashboard(batch).can_retry


def _bulk_batch(owner, n: int) -> Batch:
    batch = Batch.objects.create(owner=owner, name=f"{n} VMs", source="manifest-csv")
    statuses = ["importing", "approved", "failed", "completed", "submitted"]
    requests = ImportRequest.objects.bulk_create(
        [
            ImportRequest(
                owner=owner,
                description=f"vm{i}",
                status=statuses[i % 5],
                reviewed_at=timezone.now(),
                failure_message="ClientError: Unknown OS / Missing OS files." if i % 5 == 2 else "",
            )
            for i in range(n)
        ]
    )
    BatchItem.objects.bulk_create(
        [BatchItem(batch=batch, request=r, position=i, row=i + 1) for i, r in enumerate(requests)]
    )
    ImportTask.objects.bulk_create(
        [
            ImportTask(
                request=r,
                import_task_id=f"import-ami-{r.pk:017x}",
                status="active",
                status_message="converting",
                progress=40,
            )
            for r in requests
            if r.status in ("importing", "failed", "completed")
        ]
    )
    return batch


def test_the_dashboard_partial_takes_the_same_queries_for_5_and_500_vms(owner, client, django_assert_num_queries):
    client.force_login(owner)
    counts = {}
    for n in (5, 500):
        batch = _bulk_batch(owner, n)
        client.get(reverse("batch-table", args=[batch.pk]))  # warm the session and permission caches alike
        with CaptureQueriesContext(connection) as queries:
            page = client.get(reverse("batch-table", args=[batch.pk]))
        assert page.status_code == 200
        assert page.content.decode().count("<tr data-request=") == n
        counts[n] = len(queries)
    print(f"\ndashboard partial queries: {counts}")
    batch = _bulk_batch(owner, 500)
    with django_assert_num_queries(counts[5]):
        client.get(reverse("batch-table", args=[batch.pk]))


def test_others_see_no_batch_of_yours(owner, sandbox, client):
    batch = make(owner, sandbox, 1)
    client.force_login(make_user("bob", "requester"))
    assert client.get(reverse("batch-detail", args=[batch.pk])).status_code == 404
    assert client.post(reverse("batch-action", args=[batch.pk, "cancel"]), {"confirm": "yes"}).status_code == 404
    client.force_login(make_user("aud", "auditor"))
    assert client.get(reverse("batch-table", args=[batch.pk])).status_code == 200
    assert client.post(reverse("batch-action", args=[batch.pk, "retry"])).status_code == 403


def test_a_batch_of_images_uploaded_here_one_vm_each(owner, sandbox, client):
    from wizard.models import Upload

    mine = [
        Upload.objects.create(
            owner=owner,
            status="completed",
            bucket=sandbox.bucket,
            key=f"uploads/{owner.pk}/{i}.raw",
            file_name=f"db{i}.raw",
            size=len(IMAGE),
            completed_at=timezone.now(),
        )
        for i in range(2)
    ]
    for u in mine:
        sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=u.key, Body=IMAGE)
    theirs = Upload.objects.create(
        owner=make_user("bob", "requester"),
        status="completed",
        bucket=sandbox.bucket,
        key="uploads/9/x.raw",
        file_name="x.raw",
        size=1,
    )
    client.force_login(owner)
    page = client.get(reverse("batch-new")).content.decode()
    assert "db0.raw" in page and "x.raw" not in page
    with TestCase.captureOnCommitCallbacks(execute=True):  # the worker inspects each, then it is submitted
        answer = client.post(
            reverse("batch-new"),
            {"format": "csv", "uploads": [u.pk for u in mine], "Platform": "Linux", "submit": "on"},
        )
    batch = Batch.objects.get()
    assert answer.status_code == 302 and answer["Location"] == batch.get_absolute_url()
    requests = [i.request for i in batch.items.select_related("request")]
    assert [r.description for r in requests] == ["db0.raw", "db1.raw"]
    assert {(r.status, r.platform) for r in requests} == {("submitted", "Linux")}
    with pytest.raises(batches.BatchError):
        batches.create_from_uploads(owner, name="x", upload_ids=[theirs.pk])


def test_the_manifest_is_kept_as_sent_and_read_back_only_by_those_who_see_the_batch(owner, sandbox, client):
    import hashlib

    text = manifest(sandbox, 2).strip().replace("\n", "\r\n")  # as the browser sends a text box
    client.force_login(owner)
    answer = client.post(reverse("batch-new"), {"name": "wave 2", "format": "csv", "manifest": text})
    assert answer.status_code == 302, answer.content.decode()[-3000:]
    batch = Batch.objects.get()
    assert answer.status_code == 302
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert batch.manifest_sha256 == digest
    assert AuditEvent.objects.get(action="batch created").details["manifest_sha256"] == digest
    kept = sandbox.client("s3").get_object(Bucket=sandbox.bucket, Key=f"manifests/{batch.manifest}")
    assert kept["Body"].read() == text.encode() and batch.manifest.startswith(f"{owner.pk}/")
    assert b'id="batch-manifest"' in client.get(reverse("batch-detail", args=[batch.pk])).content

    url = reverse("batch-manifest", args=[batch.pk])
    got = client.get(url)
    assert got.status_code == 200 and got.content == text.encode()
    assert got["Content-Disposition"] == f'attachment; filename="batch-{batch.pk}-manifest.csv"'
    assert got["Content-Type"] == "text/plain; charset=utf-8"
    for user, status in ((make_user("bob", "requester"), 404), (make_user("aud", "auditor"), 200)):
        client.force_login(user)
        assert client.get(url).status_code == status, user
    client.logout()
    assert client.get(url).status_code == 302


def test_a_batch_of_uploads_has_no_manifest_to_read(owner, client):
    batch = Batch.objects.create(owner=owner, name="uploads", source="uploads")
    client.force_login(owner)
    assert client.get(reverse("batch-manifest", args=[batch.pk])).status_code == 404
    assert b'id="batch-manifest"' not in client.get(reverse("batch-detail", args=[batch.pk])).content


def test_storage_down_nothing_is_saved_and_the_manifest_stays_in_the_form(owner, sandbox, client, settings):
    working = settings.STORAGES["manifests"]
    settings.STORAGES = {
        **settings.STORAGES,
        "manifests": {**working, "OPTIONS": {**working["OPTIONS"], "endpoint_url": "http://127.0.0.1:9"}},
    }
    text = manifest(sandbox, 1)
    client.force_login(owner)
    page = client.post(reverse("batch-new"), {"name": "wave 3", "format": "csv", "manifest": text})
    assert page.status_code == 200
    body = page.content.decode()
    assert "the manifest could not be kept in storage" in body
    assert f"{sandbox.bucket},batch/vm000.raw,RAW,vm000" in body  # still in the text box
    assert not Batch.objects.exists() and not ImportRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="batch created").exists()
