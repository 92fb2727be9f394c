"""Typed requests for the views' signatures: what the middleware and `@login_required` guarantee.

`HttpRequest.user` is `User | AnonymousUser` and `HttpRequest` has no `htmx`: a view behind
`@login_required` takes an `AuthenticatedHttpRequest` (its user is a real `User`), and every
request has passed django-htmx's middleware (`request.htmx`, true when htmx sent it).
These classes are for the type checker only: Django still passes its own request objects.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """Any request: `HtmxMiddleware` (settings.MIDDLEWARE) sets `request.htmx` on each."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    """A request to a view behind `@login_required`: `request.user` is never anonymous there."""

    user: User
