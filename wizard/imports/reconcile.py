"""Reconciliation: find requests whose stored state disagrees with AWS's and repair them.

The dispatcher and the poller keep requests and tasks in step with AWS as things happen; this
pass, run every 10 minutes (`run`, scheduled by `wizard.setup`) and by `manage.py reconcile`,
catches what slipped past them: a worker killed between two writes, a dispatch lost from the
queue, or rows an earlier version left wrong. It compares and repairs:

- an importing request, or a completed task without its ImageId, whose task AWS says has
  ended: recorded as the poller records it (`polling.apply_description`: ImageId,
  SnapshotDetails, StatusMessage) and the request finished (completed, failed, cancelled);
- an importing request whose task row is final but AWS no longer shows the task (7 days
  after it ended): finished as the row says; a task AWS does not know that was not final is
  lost, as the poller handles it;
- a request approved longer ago than the dispatch retry window (django-q2's `retry` times
  `max_attempts`, plus `timeout`) without a task: its dispatch is queued again (dispatching
  is idempotent: the ClientToken gives the same task), at most once per window.

Every repair writes an audit event "reconciled" with the state before and after it. Tasks AWS
says are still running are the poller's: nothing is done to them here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from wizard.audit import audit
from wizard.aws import clients, vmimport
from wizard.imports import polling
from wizard.models import AuditEvent, ImportRequest, ImportTask

log = logging.getLogger(__name__)

ACTION = "reconciled"
LEASE = "reconcile"
LEASE_SECONDS = 600


@dataclass(frozen=True)
class Repair:
    request_id: int
    what: str
    before: dict[str, Any]
    after: dict[str, Any]

    def __str__(self) -> str:
        return f"request #{self.request_id}: {self.what} ({self.before} -> {self.after})"


def dispatch_window() -> timedelta:
    """How long django-q2 may still deliver a dispatch again after the approval."""
    q = settings.Q_CLUSTER
    attempts = int(q.get("max_attempts") or 1)
    return timedelta(seconds=int(q.get("retry") or 0) * attempts + int(q.get("timeout") or 0))


def reconcile(now: datetime | None = None) -> list[Repair]:
    """One pass over everything; returns the repairs made (each one audited)."""
    now = now or timezone.now()
    return [*_ended_tasks(), *_lost_dispatches(now)]


def run() -> int:
    """The schedule's entry: one pass at a time (a lease); returns how many repairs, -1 if another runs."""
    from wizard.tasks import release_lease, take_lease

    if not take_lease(LEASE, LEASE_SECONDS):
        return -1
    try:
        repairs = reconcile()
    finally:
        release_lease(LEASE)
    for repair in repairs:
        log.warning("reconciled %s", repair)
    return len(repairs)


def _state(task: ImportTask) -> dict[str, Any]:
    request = ImportRequest.objects.get(pk=task.request_id)
    return {
        "status": request.status,
        "task": {"Status": task.status, "StatusMessage": task.status_message, "ImageId": task.image_id},
    }


def _record(task: ImportTask, what: str, before: dict[str, Any]) -> Repair | None:
    after = _state(task)
    if after == before:
        return None
    repair = Repair(task.request_id, what, before, after)
    audit.record(
        ACTION,
        task.request,
        before=before,
        after=after,
        details={"repair": what, "import_task_id": task.import_task_id},
    )
    return repair


def _ended_tasks() -> list[Repair]:
    """Importing requests and completed tasks without ImageId, compared with what AWS says."""
    suspects = list(
        ImportTask.objects.filter(
            Q(request__status=ImportRequest.Status.IMPORTING) | Q(status="completed", image_id="")
        ).select_related("request__target")
    )
    # Each target's tasks are asked about in its own account and region (polling.by_target): an id
    # of one is unknown in another, and must never be taken for lost there.
    found: dict[str, dict[str, Any]] = {}
    unknown: set[str] = set()
    for target, group in polling.by_target(suspects):
        try:
            ec2 = clients.client("ec2", target=target)
        except (*polling.FAILURES, ClientError) as exc:
            log.warning("reconcile: no client in %s (%r): its tasks are looked at next time", target, exc)
            continue
        seen, lost = _describe((t.import_task_id for t in group), ec2)
        found.update(seen)
        unknown.update(lost)
    repairs = []
    for task in suspects:
        before = _state(task)
        description = found.get(task.import_task_id)
        if description is not None:
            if description.get("Status") not in ImportTask.FINAL_STATES:
                continue  # still running: the poller follows it
            polling.apply_description(task, description)
            repair = _record(task, f"AWS says the task is {description.get('Status')}: recorded", before)
        elif task.import_task_id in unknown:
            if task.is_final:
                polling.finish_request(task)
                repair = _record(task, "AWS no longer shows the task: finished as it was recorded", before)
            else:
                polling.mark_lost(task)
                repair = _record(task, "AWS no longer knows the task: lost", before)
        else:
            continue  # AWS could not be asked this time
        if repair is not None:
            repairs.append(repair)
    return repairs


def _describe(task_ids: Iterable[str], ec2: Any = None) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """What AWS says of each id (batched, through `ec2`: a client of the ids' one target), and the
    ids it does not know; ids it could not be asked about (throttled, an unreadable answer) are in
    neither: they are looked at again next time."""
    ids = sorted(set(task_ids))
    found: dict[str, dict[str, Any]] = {}
    unknown: set[str] = set()

    def ask(batch: list[str]) -> None:
        try:
            answer = {d["ImportTaskId"]: d for d in vmimport.describe_import_image_tasks(batch, ec2)}
        except polling.FAILURES as exc:
            kind, _ = polling.classify(exc)
            if len(batch) == 1 and kind == polling.UNKNOWN:
                unknown.update(batch)
            elif kind == polling.UNKNOWN:
                ask(batch[: len(batch) // 2])
                ask(batch[len(batch) // 2 :])
            else:
                log.warning("reconcile: describing %d tasks failed: %s", len(batch), polling.describe_failure(exc))
            return
        found.update(answer)
        unknown.update(i for i in batch if i not in answer)

    for start in range(0, len(ids), vmimport.DESCRIBE_BATCH):
        ask(ids[start : start + vmimport.DESCRIBE_BATCH])
    return found, unknown


def _lost_dispatches(now: datetime) -> list[Repair]:
    """Let through the dispatch queue long ago, no task: queue the dispatch again (at most once per
    window). A request still waiting for its place in the queue (wizard.imports.dispatch_queue) is not
    stuck; the queue is kicked, in case a kick was lost."""
    from wizard.imports import dispatch_queue
    from wizard.tasks import queue_dispatch

    window = dispatch_window()
    stuck = (
        ImportRequest.objects.filter(status=ImportRequest.Status.APPROVED, import_task__isnull=True)
        .filter(dispatch_slot__admitted_at__lt=now - window)
        .annotate(approved_at=Coalesce("dispatch_slot__admitted_at", "reviewed_at", "updated_at"))
    )
    repairs = []
    for request in stuck:
        if AuditEvent.objects.filter(request=request, action=ACTION, at__gte=now - window).exists():
            continue  # queued again not long ago: give that delivery its time
        before = {"status": request.status, "task": None, "approved_at": request.approved_at.isoformat()}
        after = {"status": request.status, "task": None, "dispatch": "queued again"}
        what = f"let through {_ago(now - request.approved_at)} ago without a task: dispatch queued again"
        audit.record(ACTION, request, before=before, after=after, details={"repair": what})
        repairs.append(Repair(request.pk, what, before, after))
        queue_dispatch(request.pk)
    dispatch_queue.kick()
    return repairs


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
