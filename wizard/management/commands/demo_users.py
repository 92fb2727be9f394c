"""Create the sandbox's demo users: requester demo/demo and reviewer reviewer/reviewer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from wizard.setup import ensure_roles

DEMO_USERS = (("demo", "demo", "requester"), ("reviewer", "reviewer", "reviewer"))


class Command(BaseCommand):
    help = "Create the demo users (sandbox only)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.AWS_SANDBOX:
            raise CommandError("demo users exist only in the sandbox (WIZARD_SANDBOX=1)")
        ensure_roles()
        User = get_user_model()
        for username, password, group in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
            # The reviewer works in the Django admin for now (approve action).
            user.is_staff = group == "reviewer"
            user.save()
            user.groups.add(Group.objects.get(name=group))
            self.stdout.write(f"{'created' if created else 'kept'} demo user {username} ({group})")
