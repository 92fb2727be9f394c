"""Reads: which requests a user may see."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet

from wizard.models import AuditEvent, ImportRequest

SEE_ALL_PERMS = ("wizard.review_importrequest", "wizard.view_importrequest")


def can_see_all(user: User) -> bool:
    return user.is_superuser or any(user.has_perm(p) for p in SEE_ALL_PERMS)


def visible_requests(user: User) -> QuerySet[ImportRequest]:
    """Requesters see their own requests; reviewers, auditors and admins see every one."""
    qs = ImportRequest.objects.select_related("owner")
    return qs if can_see_all(user) else qs.filter(owner=user)


def visible_events(user: User) -> QuerySet[AuditEvent]:
    """Reviewers, auditors and admins read the whole audit log; requesters their own requests' events."""
    qs = AuditEvent.objects.all()
    if can_see_all(user) or user.has_perm("wizard.view_auditevent"):
        return qs
    return qs.filter(request__owner=user)
