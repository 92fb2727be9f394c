"""What every installation needs in its database: the roles and the poller's schedule.

Run after every `migrate` (post_migrate), idempotently.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

# Roles are groups: a requester makes imports (and sees only their own), a reviewer sees
# every request and approves or rejects, an auditor reads everything and changes nothing.
ROLES: dict[str, tuple[str, ...]] = {
    "requester": ("add_importrequest",),
    "reviewer": (
        "add_importrequest",
        "review_importrequest",
        "view_importrequest",
        "change_importrequest",
        "view_auditevent",
    ),
    "auditor": ("view_importrequest", "view_auditevent", "view_importtask"),
}


def ensure_roles() -> None:
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="wizard", codename__in=codenames))


def ensure_schedules() -> None:
    """A schedule restarts the poll loop every minute, e.g. after the worker was down; another
    reconciles stored requests with AWS every 10 minutes (wizard.imports.reconcile)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="poll-imports",
        defaults={"func": "wizard.tasks.poll_imports", "schedule_type": Schedule.MINUTES, "minutes": 1},
    )
    Schedule.objects.update_or_create(
        name="reconcile",
        defaults={"func": "wizard.imports.reconcile.run", "schedule_type": Schedule.MINUTES, "minutes": 10},
    )
    Schedule.objects.update_or_create(  # finishing whose task django-q2 gave up (wizard.imports.finishing.resume)
        name="resume-finishing",
        defaults={"func": "wizard.imports.finishing.resume", "schedule_type": Schedule.MINUTES, "minutes": 1},
    )
