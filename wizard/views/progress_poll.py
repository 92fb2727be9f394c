"""An unchanged progress poll answered 304 before Django's session, auth and view machinery.

Every open request page polls its partial every 2 s (wizard.views.imports.request_progress),
and almost every poll is answered 304. This middleware, placed right after whitenoise, answers
that 304 itself for the one case it can check completely and cheaply: the requester polling
their own request with the ETag the view gave them. It checks what Django's
AuthenticationMiddleware and the view check, from the same sources:

- the session (the session engine's own store: expired or logged-out sessions are gone), logged
  in through ModelBackend;
- the user: active, and the session's auth hash equal to the user's current one (a changed
  password ends the session, as Django's get_user does);
- the request: that user's own (owner), and its ETag, computed by the view's own functions
  from the same fields, equal to one the browser sent.

Anything else (no cookie, another backend, a reviewer, a secret key fallback, a changed
partial, any doubt) goes on to Django untouched, which answers as it always did. It only
ever answers 304 with no body, and never writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.cache import get_conditional_response, patch_cache_control, patch_vary_headers
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from wizard.selectors import own_request_for_poll
from wizard.views.imports import progress_etag, shown_values


class ProgressPollMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore
        # Sessions of the backends whose get_user is ModelBackend's (what is checked below).
        self.backends = frozenset(
            path for path in settings.AUTHENTICATION_BACKENDS if issubclass(import_string(path), ModelBackend)
        )
        sample = reverse("request-progress", kwargs={"pk": 9})
        head, tail = sample.rsplit("/9/", 1)
        self.path = re.compile(re.escape(head) + r"/([1-9][0-9]{0,17})/" + re.escape(tail))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "GET" and "HTTP_IF_NONE_MATCH" in request.META:
            match = self.path.fullmatch(request.path_info)
            if match is not None:
                response = self.not_modified(request, int(match[1]))
                if response is not None:
                    return response
        return self.get_response(request)

    def not_modified(self, request: HttpRequest, pk: int) -> HttpResponse | None:
        """The 304 the view would answer, or None when anything is not as expected."""
        key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if not key:
            return None
        session = self.session_store(key)
        if session.session_key is None:  # not a well-formed key
            return None
        data = session.load()
        if data.get(BACKEND_SESSION_KEY) not in self.backends or not data.get(HASH_SESSION_KEY):
            return None
        try:
            user_id = User._meta.pk.to_python(data[SESSION_KEY])
        except (KeyError, ValidationError):  # no user id, or not one
            return None
        found = own_request_for_poll(pk, user_id)
        if found is None or not found.owner_is_active:
            return None
        # Django's get_user with the current secret key (sessions under a fallback key: Django).
        if not constant_time_compare(data[HASH_SESSION_KEY], _session_auth_hash(found.owner_password)):
            return None
        etag = progress_etag({**shown_values(found.request), "viewer": user_id})
        response = get_conditional_response(request, etag=etag)
        if response is None or response.status_code != 304:
            return None
        # As the view's 304 goes out: its ETag and cache policy; Vary as the session adds it.
        response.headers["ETag"] = etag
        patch_cache_control(response, private=True, no_cache=True)
        patch_vary_headers(response, ("Cookie",))
        return response


def _session_auth_hash(password: str) -> str:
    """User.get_session_auth_hash for a user whose password hash is `password`: Django's own
    method, on a bare instance (it reads only the password; a full User costs more than the hash)."""
    user = User.__new__(User)
    user.password = password
    return user.get_session_auth_hash()
