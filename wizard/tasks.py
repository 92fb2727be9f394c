"""django-q2 task functions: thin entries into dispatch and polling."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from wizard import dispatch, polling
from wizard.models import WorkerLease

# One poll loop runs at most this long, then queues its successor; so no task outlives
# Q_CLUSTER["timeout"], and a poller lost with its worker is replaced within LEASE_SECONDS.
LOOP_SECONDS = 60
LEASE_SECONDS = 90
POLLER = "poller"


def enqueue_dispatch(request_id: int) -> None:
    async_task("wizard.tasks.dispatch_request", request_id, task_name=f"dispatch-{request_id}")


def dispatch_request(request_id: int) -> str | None:
    task_id = dispatch.dispatch(request_id)
    if task_id:
        kick_poller()
    return task_id


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
    """Poll every active task every WIZARD_POLL_SECONDS while any is active (one poller at a time).

    django-q2 checks schedules only about every 30 s, too coarse for a few-second poll,
    so this task loops and then queues its own successor; a schedule every minute
    (see the migration) restarts it after a worker restart.
    """
    if not take_lease(POLLER, LEASE_SECONDS):
        return -1
    deadline = time.monotonic() + LOOP_SECONDS
    try:
        while True:
            active = polling.poll_once()
            if not active:
                return 0
            if time.monotonic() >= deadline:
                break
            time.sleep(settings.IMPORT_POLL_SECONDS)
            take_lease(POLLER, LEASE_SECONDS)
    finally:
        release_lease(POLLER)
    kick_poller()
    return active
