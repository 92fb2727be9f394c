"""Compare stored requests and tasks with AWS and repair what disagrees (wizard.imports.reconcile)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from wizard.imports import reconcile


class Command(BaseCommand):
    help = "Repair requests whose stored state disagrees with AWS's (each repair is audited); prints them."

    def handle(self, *args: Any, **options: Any) -> None:
        repairs = reconcile.reconcile()
        for repair in repairs:
            self.stdout.write(str(repair))
        self.stdout.write(f"{len(repairs)} repaired" if repairs else "nothing to repair")
