"""The dispatch queue: at most WIZARD_MAX_ACTIVE_IMPORTS import tasks at once.

AWS limits the import tasks an account runs at once in a Region (VM Import/Export quotas: 20
concurrent import image tasks by default; a quota increase is asked for in Service Quotas).
Approved requests are let through in order (approval time, then pk) while fewer than the
setting are active; the others stay "approved" and show their place ("queued, 3 ahead").

A request let through gets a `DispatchSlot` and its dispatch is queued (wizard.tasks). It is
active while it is approved with a slot or importing; once final, its slot no longer counts.
`kick` runs when a request is approved, after each poll (a task that ended frees its slot) and
after a dispatch that failed. Safe with several qcluster processes: the count and the
admission are one transaction holding a lock (a row locked FOR UPDATE on PostgreSQL; SQLite's
IMMEDIATE transactions serialise writers), so the limit is never exceeded and no request is
let through twice; the dispatch itself is idempotent by the request's ClientToken.

The quota is AWS's per account and Region, so the places are counted for each: the requests of
the default target (the application's own account and region) apart from those of each other
account and region (wizard.targets; two targets naming the same account and region share its
places). A full account does not hold up the requests of another; a place in the queue is
counted among the requests waiting for the same account and region.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import partial

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from wizard.models import DispatchSlot, ImportRequest, WorkerLease

GATE = "dispatch-gate"
Status = ImportRequest.Status


def limit() -> int:
    return max(1, int(settings.MAX_ACTIVE_IMPORTS))


def active() -> QuerySet[ImportRequest]:
    """Requests that hold one of the limited places: importing, or let through and not yet dispatched."""
    return ImportRequest.objects.filter(
        Q(status=Status.IMPORTING) | Q(status=Status.APPROVED, dispatch_slot__isnull=False)
    )


def waiting() -> QuerySet[ImportRequest]:
    """Approved requests waiting for a place, first come first."""
    return ImportRequest.objects.filter(status=Status.APPROVED, dispatch_slot__isnull=True).order_by(
        "reviewed_at", "pk"
    )


Place = tuple[str, str] | None  # (account, region) of a target; None: the default target's


def _place(account: str | None, region: str | None) -> Place:
    return (account, region or "") if account else None


PLACE_FIELDS = ("target__account_id", "target__region")


def _lock() -> None:
    """Take the gate's lock for this transaction."""
    WorkerLease.objects.get_or_create(name=GATE, defaults={"expires_at": timezone.now()})
    WorkerLease.objects.select_for_update().get(name=GATE)


def kick() -> list[int]:
    """Let the next approved requests through while places are free; returns their pks."""
    from wizard.tasks import queue_dispatch

    with transaction.atomic():
        _lock()
        busy = Counter(_place(*row) for row in active().values_list(*PLACE_FIELDS))
        most = limit()
        admitted = []
        for pk, *where in waiting().values_list("pk", *PLACE_FIELDS).iterator():
            place = _place(*where)
            if busy[place] < most:
                busy[place] += 1
                admitted.append(pk)
        if not admitted:
            return []
        now = timezone.now()
        DispatchSlot.objects.bulk_create([DispatchSlot(request_id=pk, admitted_at=now) for pk in admitted])
        for pk in admitted:
            transaction.on_commit(partial(queue_dispatch, pk))
    return admitted


def positions(pks: Iterable[int] | None = None) -> dict[int, int]:
    """pk -> how many waiting requests for the same account and region are ahead of it, for the
    waiting ones (one query)."""
    wanted = set(pks) if pks is not None else None
    ahead: Counter[Place] = Counter()
    found = {}
    for pk, *where in waiting().values_list("pk", *PLACE_FIELDS):
        place = _place(*where)
        if wanted is None or pk in wanted:
            found[pk] = ahead[place]
        ahead[place] += 1
    return found


def withdraw(request: ImportRequest, user: User, reason: str) -> bool:
    """Take a request that is waiting (for review, or for its place) out: cancelled, audited.
    False if it is no longer waiting (let through meanwhile, or ended)."""
    from wizard.requests.statemachine import TransitionError, change_status

    reason = reason.strip() or "withdrawn by the requester"
    with transaction.atomic():
        _lock()  # not let through while we withdraw it
        fresh = ImportRequest.objects.filter(pk=request.pk).values("status").first()
        if fresh is None or DispatchSlot.objects.filter(request_id=request.pk).exists():
            return False
        if fresh["status"] not in (Status.SUBMITTED, Status.APPROVED):
            return False
        try:
            change_status(
                request,
                "withdraw",
                actor=user,
                action="withdrawn",
                details={"reason": reason, "was": fresh["status"]},
                cancel_reason=reason,
            )
        except TransitionError:
            return False
    return True
