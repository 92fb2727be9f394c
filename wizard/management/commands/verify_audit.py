"""Check the audit log: its hash chain, and its head against the checkpoint kept outside the database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from wizard.audit import checkpoint as audit_checkpoint
from wizard.audit.audit import verify_chain
from wizard.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain (exits 1 at the first broken event) and compare its head with the "
        "checkpoint in object storage (exits 1 when events are missing at the end)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--strict", action="store_true", help="also exit 1 when the checkpoint is missing or cannot be read"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        broken = verify_chain()
        if broken is not None:
            raise CommandError(
                f"audit chain broken at event {broken.pk} ({broken.at:%Y-%m-%d %H:%M:%S} {broken.action}): "
                "it was edited, or an event before it was deleted or moved"
            )
        self.stdout.write(f"audit chain intact: {AuditEvent.objects.count()} events")
        verdict = audit_checkpoint.check()
        if verdict.tampered:
            raise CommandError(f"audit log truncated or rewritten: {verdict.message}")
        if verdict.warning:
            if options["strict"]:
                raise CommandError(f"checkpoint: {verdict.message}")
            self.stderr.write(f"warning: {verdict.message}")
            return
        self.stdout.write(f"checkpoint: {verdict.message}")
