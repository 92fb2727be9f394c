from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _setup(**kwargs: object) -> None:
    from wizard.setup import ensure_roles, ensure_schedules

    ensure_roles()
    ensure_schedules()


class WizardConfig(AppConfig):
    name = "wizard"
    verbose_name = "Import Wizard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_setup, sender=self)
