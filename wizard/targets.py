"""Targets: the accounts and regions a request's AMI may be made in (wizard.models.Target).

A request with no target uses the application's own credentials and region: the default target,
which every requester may use. Any other target is for the members of its groups; the choice is
checked again wherever it is used, never trusted as saved.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from wizard.models import ImportRequest, Target

DEFAULT_NAME = "default"


def allowed_targets(user: Any) -> QuerySet[Target]:
    """The targets `user` may choose besides the default one."""
    if user.is_superuser:
        return Target.objects.all()
    return Target.objects.filter(groups__in=user.groups.all()).distinct()


def may_use(user: Any, target: Target | None) -> bool:
    return target is None or allowed_targets(user).filter(pk=target.pk).exists()


def refusal(user: Any, target: Target | None, who: str = "You") -> str:
    """Why `user` may not use `target` ("" when they may), in the words a page shows next to the
    target field (`who`: "You", or "The owner, alice," on a reviewer's page)."""
    if may_use(user, target):
        return ""
    return (
        f"{who} may not use the target {target}: it is for the members of its groups, and "
        f"{'you are' if who == 'You' else 'they are'} in none of them (any more). Choose another target "
        "(the default one is everyone's), or ask an administrator to add a group to it (Targets, in the admin)."
    )


def region_of(target: Target | None) -> str:
    return target.region if target is not None else settings.AWS_REGION


def label(target: Target | None) -> str:
    """How pages, history and the audit log name a target."""
    if target is None:
        return f"{DEFAULT_NAME} (this application's account, {settings.AWS_REGION})"
    return str(target)


def of(request: ImportRequest) -> Target | None:
    return request.target
