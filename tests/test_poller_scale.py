"""Polling at scale: 450 active tasks in a real sandbox process, described in batches, with faults.

AWS calls are counted with botocore event hooks on the session `wizard.aws.clients` makes
its clients from: `before-parameter-build` once per API call (with its parameters),
`before-send` once per HTTP request (botocore's retries included).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.config import Config
from django.core.cache import cache

from wizard import tasks
from wizard.aws import clients, vmimport
from wizard.imports import polling
from wizard.models import ImportRequest, ImportTask
from wizard.sandbox.testing import SandboxProcess

ACTIVE = 450
DESCRIBE = "DescribeImportImageTasks"
UNKNOWN_ID = "import-ami-0123456789abcdef0"


@dataclass
class Calls:
    """DescribeImportImageTasks as the application makes them."""

    calls: list[dict[str, Any]] = field(default_factory=list)  # the parameters of each API call
    sends: int = 0  # HTTP requests, retries included

    def reset(self) -> None:
        self.calls.clear()
        self.sends = 0


@pytest.fixture(scope="module")
def scale_sandbox() -> Iterator[tuple[SandboxProcess, list[str]]]:
    """A sandbox of its own with ACTIVE import tasks, made once for the module.

    Its clock stands still, so the tasks stay active (pending) whatever the tests do.
    """
    with SandboxProcess(clock_speed=0, import_seconds=600) as sb:
        key = "uploads/scale.vmdk"
        sb.client("s3").put_object(Bucket=sb.bucket, Key=key, Body=b"KDMV" + bytes(4092))
        ec2 = sb.client("ec2")
        disk = {"Format": "VMDK", "UserBucket": {"S3Bucket": sb.bucket, "S3Key": key}}
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda n: ec2.import_image(DiskContainers=[disk])["ImportTaskId"], range(ACTIVE)))
        yield sb, ids


@pytest.fixture
def sandbox(scale_sandbox, settings) -> Iterator[SandboxProcess]:
    """The scale sandbox, with the application's settings pointed at it; faults cleared after."""
    sb = scale_sandbox[0]
    settings.AWS_SANDBOX = True
    settings.AWS_ENDPOINT_URL = sb.endpoint
    settings.AWS_REGION = sb.region
    yield sb
    sb.clear_faults()


@pytest.fixture
def describe_calls(sandbox, settings) -> Iterator[Calls]:
    seen = Calls()

    def on_call(params: dict[str, Any], **_: Any) -> None:
        seen.calls.append(dict(params))

    def on_send(**_: Any) -> None:
        seen.sends += 1

    events = clients._session(settings.AWS_SANDBOX, settings.AWS_REGION).events
    events.register(f"before-parameter-build.ec2.{DESCRIBE}", on_call, unique_id="test-poller-scale-call")
    events.register(f"before-send.ec2.{DESCRIBE}", on_send, unique_id="test-poller-scale-send")
    clients.forget()  # clients made from now on carry the handlers
    yield seen
    events.unregister(f"before-parameter-build.ec2.{DESCRIBE}", unique_id="test-poller-scale-call")
    events.unregister(f"before-send.ec2.{DESCRIBE}", unique_id="test-poller-scale-send")
    clients.forget()


@pytest.fixture
def active(db, scale_sandbox, sandbox, requester) -> list[ImportTask]:
    """An importing request and its task row for each of the sandbox's ACTIVE tasks."""
    requests = ImportRequest.objects.bulk_create(
        ImportRequest(owner=requester, status=ImportRequest.Status.IMPORTING, description=f"scale {n}")
        for n in range(ACTIVE)
    )
    rows = ImportTask.objects.bulk_create(
        ImportTask(request=request, import_task_id=task_id)
        for request, task_id in zip(requests, scale_sandbox[1], strict=False)
    )
    cache.delete(tasks.BACKOFF_KEY)
    return rows


@pytest.fixture
def few_retries(monkeypatch):
    """botocore retries a throttled call once, not five times with up to 31 s of backoff."""
    monkeypatch.setattr(clients, "RETRY_CONFIG", Config(retries={"mode": "standard", "total_max_attempts": 2}))


def failed_requests() -> list[int]:
    return list(ImportRequest.objects.filter(status=ImportRequest.Status.FAILED).values_list("pk", flat=True))


def test_450_active_tasks_take_three_describe_calls_per_poll(active, describe_calls):
    assert polling.poll_once() == ACTIVE
    assert len(describe_calls.calls) == math.ceil(ACTIVE / vmimport.DESCRIBE_BATCH) == 3
    assert [len(c["ImportTaskIds"]) for c in describe_calls.calls] == [200, 200, 50]
    assert sorted(i for c in describe_calls.calls for i in c["ImportTaskIds"]) == sorted(
        t.import_task_id for t in active
    )
    assert not ImportTask.objects.filter(polled_at=None).exists()
    assert not ImportTask.objects.filter(status="active", status_message="").exists()  # each got its stage

    describe_calls.reset()
    assert polling.poll_once() == ACTIVE  # a second poll: the same, nothing changed or not
    assert (len(describe_calls.calls), describe_calls.sends) == (3, 3)


def test_every_page_of_a_paginated_answer_is_read(active, describe_calls, settings):
    """AWS may answer a batch in pages (NextToken); here every call asks for pages of 64."""
    session = clients._session(settings.AWS_SANDBOX, settings.AWS_REGION)

    def small_pages(params: dict[str, Any], **_: Any) -> None:
        params.setdefault("MaxResults", 64)

    session.events.register(f"provide-client-params.ec2.{DESCRIBE}", small_pages, unique_id="test-small-pages")
    clients.forget()
    try:
        assert polling.poll_once() == ACTIVE
    finally:
        session.events.unregister(f"provide-client-params.ec2.{DESCRIBE}", unique_id="test-small-pages")
        clients.forget()
    # 200 -> 4 pages, 200 -> 4 pages, 50 -> 1 page; the later pages carry the NextToken.
    assert len(describe_calls.calls) == 9
    assert sum("NextToken" in c for c in describe_calls.calls) == 6
    assert not failed_requests()
    assert not ImportTask.objects.filter(polled_at=None).exists()


def test_one_unknown_task_is_found_in_a_few_calls_and_only_it_fails(active, describe_calls):
    lost = active[137]
    ImportTask.objects.filter(pk=lost.pk).update(import_task_id=UNKNOWN_ID)  # AWS never heard of it
    assert polling.poll_once() == ACTIVE - 1
    assert failed_requests() == [lost.request_id]
    assert "no longer knows this import task" in ImportRequest.objects.get(pk=lost.request_id).failure_message
    # The spoilt batch of 200 is halved down to the unknown id: about 2 * log2(200) calls, not 450.
    assert len(describe_calls.calls) <= 2 * 3 + 2 * math.ceil(math.log2(vmimport.DESCRIBE_BATCH))


def test_a_throttled_describe_backs_off_and_the_chain_goes_on(
    active, describe_calls, sandbox, few_retries, monkeypatch, settings
):
    settings.IMPORT_POLL_SECONDS = 3
    pauses, kicks = [], []
    monkeypatch.setattr(tasks, "time", SimpleNamespace(sleep=pauses.append))  # the poller's pause only
    monkeypatch.setattr(tasks, "kick_poller", lambda: kicks.append(1))
    sandbox.faults(throttle={"actions": [DESCRIBE]})  # every Describe is throttled

    assert tasks.poll_imports() == -2
    assert tasks.poll_imports() == -2
    assert tasks.poll_imports() == -2
    assert pauses == [6, 12, 24]  # doubling, from the poll interval
    assert kicks == [1, 1, 1]  # the next poll is queued each time: no crash, no stop
    # One throttled call is not retried at once 450 times: each poll made one call (two sends).
    assert (len(describe_calls.calls), describe_calls.sends) == (3, 6)
    assert not failed_requests()
    assert not ImportTask.objects.exclude(polled_at=None).exists()

    sandbox.clear_faults()
    pauses.clear()
    assert tasks.poll_imports() == ACTIVE
    assert pauses == [3]  # back to the poll interval
    assert cache.get(tasks.BACKOFF_KEY) is None


def test_throttling_while_looking_for_an_unknown_task_fails_no_other_request(
    active, describe_calls, sandbox, few_retries, monkeypatch
):
    """Halving a spoilt batch makes more calls; a throttled one among them must not read as 'unknown'."""
    monkeypatch.setattr(tasks, "time", SimpleNamespace(sleep=lambda seconds: None))
    monkeypatch.setattr(tasks, "kick_poller", lambda: None)
    lost = active[3]
    ImportTask.objects.filter(pk=lost.pk).update(import_task_id=UNKNOWN_ID)
    # Each HTTP request (retries too) is throttled at this rate: some calls get through botocore's retry.
    sandbox.faults(throttle={"actions": [DESCRIBE], "rate": 0.6, "seed": 7})

    results = {tasks.poll_imports() for _ in range(6)}
    assert -2 in results  # some polls were throttled through botocore's retry and backed off
    assert set(failed_requests()) <= {lost.request_id}

    sandbox.clear_faults()
    assert polling.poll_once() == ACTIVE - 1
    assert failed_requests() == [lost.request_id]
