"""Email to the requester when their request is approved, rejected, completed, failed or cancelled."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from wizard.models import ImportRequest

log = logging.getLogger(__name__)

NOTIFY_ON = {"approved", "rejected", "completed", "failed", "cancelled"}


def status_changed(request_id: int, status: str) -> None:
    """Send the requester the news (called after the change commits; never breaks the change)."""
    if status not in NOTIFY_ON:
        return
    request = ImportRequest.objects.select_related("owner").get(pk=request_id)
    if not request.owner.email:
        return
    context = {"req": request, "url": settings.WIZARD_BASE_URL.rstrip("/") + request.get_absolute_url()}
    subject = f"Import #{request.pk} {request.get_status_display().lower()}"
    try:
        send_mail(subject, render_to_string("email/status.txt", context), None, [request.owner.email])
    except Exception:  # noqa: BLE001 - a mail outage must not undo an import's progress
        log.exception("could not email %s about request %s", request.owner.email, request.pk)
