"""django-q2 task functions: thin entries into dispatch, polling and the image inspection."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone
from django_q.models import Task
from django_q.tasks import async_task

from wizard.imports import dispatch, polling
from wizard.models import WorkerLease
from wizard.preflight import preflight

# A poller that died with its worker is replaced by the next kick after this long.
LEASE_SECONDS = 90
# The inspection task may run this much longer than its child's wall-clock limit (starting the
# child, storing the report: SQLite's busy timeout is 20 s), as far as Q_RETRY leaves room.


def inspect_margin_seconds() -> int:
    return max(1, min(30, int(settings.Q_RETRY - math.ceil(settings.WIZARD_INSPECT_SECONDS)) - 1))


# When AWS keeps throttling, the pause between polls doubles up to this.
MAX_BACKOFF_SECONDS = 60
BACKOFF_KEY = "wizard:poller-backoff"
POLLER = "poller"
log = logging.getLogger(__name__)


def enqueue_dispatch(request_id: int) -> None:
    """An approved request waits for its place in the dispatch queue, which queues its dispatch."""
    from wizard.imports import dispatch_queue

    dispatch_queue.kick()


def queue_dispatch(request_id: int) -> None:
    async_task(
        "wizard.tasks.dispatch_request",
        request_id,
        task_name=f"dispatch-{request_id}",
        hook="wizard.tasks.dispatch_attempted",
    )


def dispatch_request(request_id: int) -> str | None:
    from wizard.imports import dispatch_queue

    task_id = dispatch.dispatch(request_id)
    if task_id:
        kick_poller()
    else:
        dispatch_queue.kick()  # a dispatch that failed frees its place
    return task_id


def dispatch_attempted(task: Task) -> None:
    """django-q2's hook, run each time it records an attempt of a dispatch: after the last
    attempt it makes (its own `attempt_count` reaching `max_attempts`), the request fails with
    the last answer instead of waiting for ever."""
    max_attempts = int(settings.Q_CLUSTER.get("max_attempts") or 0)
    if task.success or not max_attempts or task.attempt_count < max_attempts:
        return
    (request_id,) = task.args
    last_error = str(task.result or "").split(" : Traceback", 1)[0]  # django-q2 appends the traceback
    dispatch.give_up(int(request_id), last_error, task.attempt_count)


def kick_poller() -> None:
    async_task("wizard.tasks.poll_imports", task_name="poll-imports")


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def take_lease(name: str, seconds: int) -> bool:
    """Take (or renew) the lease `name` for `seconds`; False if another holder has it."""
    now = timezone.now()
    WorkerLease.objects.get_or_create(name=name, defaults={"expires_at": now})
    taken = (
        WorkerLease.objects.filter(name=name)
        .filter(Q(expires_at__lte=now) | Q(holder=_holder()))
        .update(holder=_holder(), expires_at=now + timedelta(seconds=seconds))
    )
    return taken == 1


def release_lease(name: str) -> None:
    WorkerLease.objects.filter(name=name, holder=_holder()).update(expires_at=timezone.now())


def poll_imports() -> int:
    """One poll of every active task, then, while any is active, queue the next one.

    django-q2 checks schedules only about every 30 s, too coarse for a few-second poll,
    so each poll queues its successor after WIZARD_POLL_SECONDS; a schedule every minute
    (wizard.setup) restarts the chain after a worker restart. Each run is short, so the
    cluster stops within seconds. The lease keeps it to one poller at a time: a second
    chain, started by the schedule, finds the lease taken and ends.
    """
    if not take_lease(POLLER, LEASE_SECONDS):
        return -1
    try:
        try:
            active = polling.poll_once()
            cache.delete(BACKOFF_KEY)
            pause = settings.IMPORT_POLL_SECONDS if active else 0
        except polling.PollBackoff as exc:
            # Still throttled after botocore's own retries (or AWS out of reach, or no call of the
            # poll answered): what the poll recorded stays; wait longer before the next one.
            pause = min(MAX_BACKOFF_SECONDS, cache.get(BACKOFF_KEY, settings.IMPORT_POLL_SECONDS) * 2)
            cache.set(BACKOFF_KEY, pause, 3600)
            log.warning("polling backs off (%s); next poll in %.0f s", exc.code, pause)
            active = -2
        time.sleep(pause)
    finally:
        release_lease(POLLER)
    if active:
        kick_poller()
    return active


def enqueue_inspection(container_id: int, asked_at: str) -> None:
    """Queue the inspection of one container's image; its timeout is longer than the child's limit,
    so django-q2 never kills a worker that is waiting for a child the limit will end anyway."""
    async_task(
        "wizard.tasks.inspect_container_task",
        container_id,
        asked_at,
        task_name=f"inspect-{container_id}",
        timeout=math.ceil(settings.WIZARD_INSPECT_SECONDS) + inspect_margin_seconds(),
    )


def inspect_container_task(container_id: int, asked_at: str) -> str:
    """Inspect one container's image (wizard.preflight.preflight.run_inspection): idempotent, so a task
    delivered again after a killed worker stores and audits nothing twice."""
    from wizard.batches import batches

    outcome = preflight.run_inspection(container_id, asked_at)
    if outcome in ("done", "refused"):
        batches.inspected(container_id)  # a batch may wait for this inspection to submit the request
    return outcome
