"""Check the audit log's hash chain: report the first event where it breaks."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from wizard.audit import verify_chain
from wizard.models import AuditEvent


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exits 1 at the first broken event."

    def handle(self, *args, **options) -> None:
        broken = verify_chain()
        if broken is not None:
            raise CommandError(
                f"audit chain broken at event {broken.pk} ({broken.at:%Y-%m-%d %H:%M:%S} {broken.action}): "
                "it was edited, or an event before it was deleted or moved"
            )
        self.stdout.write(f"audit chain intact: {AuditEvent.objects.count()} events")
