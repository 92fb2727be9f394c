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
        from django.contrib.auth.signals import user_login_failed

        from wizard.logins import audit_failed_login

        post_migrate.connect(_setup, sender=self)
        # After django-axes' own receiver (its app comes first): it has counted the failure.
        user_login_failed.connect(audit_failed_login, dispatch_uid="wizard.logins.audit_failed_login")
