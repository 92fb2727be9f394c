"""The checks behind /healthz: database, queue and AWS endpoint."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from wizard.aws import s3

# The cluster is up when one of its processes reported in this recently.
QUEUE_STALE_AFTER = timedelta(seconds=30)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_queue() -> str:
    """Ask django-q2's own status records (they work with every broker)."""
    from django_q.status import Stat

    stats = Stat.get_all()
    fresh = [s for s in stats if timezone.now() - s.timestamp < QUEUE_STALE_AFTER]
    if not fresh:
        raise RuntimeError("no django-q2 cluster is running (start it with: python manage.py qcluster)")
    return f"ok ({len(fresh)} cluster{'s' if len(fresh) > 1 else ''})"


def check_aws() -> str:
    s3.head_bucket()
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {"database": check_database, "queue": check_queue, "aws": check_aws}


def run_checks() -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    healthy = True
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means "down", with its reason
            healthy = False
            results[name] = f"down: {exc}"
    return healthy, results
