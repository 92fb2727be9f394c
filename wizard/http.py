"""Typed requests for the views' signatures: what the middleware and `@login_required` guarantee.

`HttpRequest.user` is `User | AnonymousUser` and `HttpRequest` has no `htmx`: a view behind
`@login_required` takes an `AuthenticatedHttpRequest` (its user is a real `User`), and every
request has passed django-htmx's middleware (`request.htmx`, true when htmx sent it).
These classes are for the type checker only: Django still passes its own request objects.

`HttpError` is the views' one error type: a refusal with its HTTP status, its message and,
where it concerns fields, their paths; the JSON endpoints (the upload widget's, the API)
answer it as JSON.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """Any request: `HtmxMiddleware` (settings.MIDDLEWARE) sets `request.htmx` on each."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    """A request to a view behind `@login_required`: `request.user` is never anonymous there."""

    user: User


class HttpError(Exception):
    """A request refused: `status` (4xx), what to tell the user, and per-field `errors` ({path, message})."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []
