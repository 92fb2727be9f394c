"""Failed logins and lockouts: audit events, and the login page while locked out.

django-axes (config.settings, AXES_*) counts failed logins per user name and per address and
refuses further attempts for a while once either reaches the limit. Here:

- `audit_failed_login` (Django's `user_login_failed`, after django-axes has counted it) writes
  a "login failed" event for each failure up to the limit and a "login locked out" event when
  the limit is reached: at most limit + 1 events per lock, however hard someone hammers the
  form while it is locked. The events carry the user name as typed and the address, never
  the password (Django hands receivers the credentials with the password masked; only the
  user name is read).
- `lockout_response` answers a locked-out attempt with the login page (HTTP 429) saying so.
"""

from __future__ import annotations

from typing import Any

from axes.helpers import get_cool_off, get_failure_limit
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from wizard.audit import audit

USERNAME_LENGTH = 150  # Django's user name field; anything longer is cut in the event


def audit_failed_login(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if request is None:
        return
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:  # django-axes did not count it (disabled, or a whitelisted address)
        return
    limit = get_failure_limit(request, credentials)
    if failures > limit:
        return  # already locked: the lockout event was written when it began
    details = {
        "username": str(credentials.get("username") or "")[:USERNAME_LENGTH],
        "address": getattr(request, "axes_ip_address", None) or "",
        "failures": failures,
    }
    audit.record("login failed", details=details)
    if failures == limit:
        cool_off = get_cool_off(request)
        minutes = round(cool_off.total_seconds() / 60) if cool_off else None
        audit.record("login locked out", details={**details, "minutes": minutes})


def lockout_message(request: HttpRequest) -> str:
    cool_off = get_cool_off(request)
    if not cool_off:
        return "Too many failed logins: this account is locked. An administrator can unlock it."
    minutes = max(1, round(cool_off.total_seconds() / 60))
    return f"Too many failed logins: logging in as this user or from this address is refused for {minutes} minutes."


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """The login page with the lockout message, status 429 (django-axes' AXES_LOCKOUT_CALLABLE)."""
    form = AuthenticationForm(request, initial={"username": (credentials or {}).get("username", "")})
    context = {"form": form, "locked_out": lockout_message(request), "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=429)
