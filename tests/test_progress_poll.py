"""The progress poll's 304 answered before Django's session and auth (wizard.views.progress_poll):
only for the owner's live session with the current ETag; everything else as Django answers it."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.cached_db import SessionStore
from django.test import Client
from django.urls import reverse
from django.utils.http import parse_etags
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.conftest import make_user
from tests.test_progress_page import _poll, _running
from wizard.models import ImportRequest, ImportTask
from wizard.views.progress_poll import ProgressPollMiddleware


@pytest.fixture
def answered(monkeypatch):
    """What the middleware answered itself, per poll: a status code, or None (on to Django)."""
    seen: list[int | None] = []
    original = ProgressPollMiddleware.not_modified

    def spy(self, request, pk):
        response = original(self, request, pk)
        seen.append(None if response is None else response.status_code)
        return response

    monkeypatch.setattr(ProgressPollMiddleware, "not_modified", spy)
    return seen


@pytest.fixture
def polled(client, requester):
    """An importing request of the requester's, polled once: (client, request, its ETag)."""
    req, _ = _running(requester)
    client.force_login(requester)
    first = _poll(client, req)
    assert first.status_code == 200
    return client, req, first["ETag"]


def test_the_owners_unchanged_poll_is_answered_before_django(polled, answered, django_assert_max_num_queries):
    client, req, etag = polled
    with django_assert_max_num_queries(2):  # the session (its cache) and one read: no user, no view
        again = _poll(client, req, etag)
    assert answered == [304]
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == etag and "no-cache" in again["Cache-Control"] and "private" in again["Cache-Control"]
    assert "Cookie" in again["Vary"]
    # The same 304 as Django's own view gives (it is what a reviewer's poll gets, with their ETag).
    assert _poll(client, req, f'"other", {etag}').status_code == 304


def test_a_changed_partial_goes_on_to_the_view(polled, answered):
    client, req, etag = polled
    ImportTask.objects.filter(request=req).update(progress=55)
    changed = _poll(client, req, etag)
    assert answered == [None] and changed.status_code == 200 and changed["ETag"] != etag
    assert 'id="task-progress">55<' in changed.content.decode()


def test_someone_elses_session_with_the_owners_etag_gets_404(polled, answered):
    _, req, etag = polled
    mallory = Client()
    mallory.force_login(make_user("mallory", "requester"))
    assert _poll(mallory, req, etag).status_code == 404 and answered == [None]


def test_a_reviewer_polling_with_the_owners_etag_gets_their_own_page(polled, answered, reviewer):
    _, req, etag = polled
    client = Client()
    client.force_login(reviewer)
    page = _poll(client, req, etag)
    assert answered == [None] and page.status_code == 200 and page["ETag"] != etag


def _redirected_to_login(response) -> bool:
    return response.status_code == 302 and "login" in response["Location"]


def test_no_session_or_a_forged_or_ended_one_is_sent_to_log_in(polled, answered):
    client, req, etag = polled
    key = client.cookies["sessionid"].value
    for cookie in ("", "x", "a" * 32, key[:-1] + ("0" if key[-1] != "0" else "1"), "../" * 20):
        stranger = Client()
        stranger.cookies["sessionid"] = cookie
        assert _redirected_to_login(_poll(stranger, req, etag)), cookie
    client.logout()  # the session is deleted: its cookie, sent again, is nobody's
    replay = Client()
    replay.cookies["sessionid"] = key
    assert _redirected_to_login(_poll(replay, req, etag))
    assert 304 not in answered


def test_a_password_changed_elsewhere_ends_the_session_here_too(polled, answered, requester):
    client, req, etag = polled
    requester.set_password("a new one, set in another browser")
    requester.save()
    assert _redirected_to_login(_poll(client, req, etag)) and answered == [None]


def test_a_deactivated_user_is_not_answered(polled, answered, requester):
    client, req, etag = polled
    type(requester).objects.filter(pk=requester.pk).update(is_active=False)
    assert _redirected_to_login(_poll(client, req, etag)) and answered == [None]


def test_a_session_of_another_backend_goes_on_to_django(polled, answered):
    client, req, etag = polled
    session = SessionStore(client.cookies["sessionid"].value)
    session["_auth_user_backend"] = "somewhere.else.Backend"  # not one of AUTHENTICATION_BACKENDS
    session.save()
    assert _redirected_to_login(_poll(client, req, etag)) and answered == [None]


def test_a_session_under_a_retired_secret_key_is_left_to_django(client, requester, settings, answered):
    settings.SECRET_KEY = "the old secret key, long enough for Django's checks " * 2
    req, _ = _running(requester)
    client.force_login(requester)
    etag = _poll(client, req)["ETag"]
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the new secret key, long enough for Django's checks " * 2
    again = _poll(client, req, etag)
    # Django verifies the session with the fallback and moves it to the new key: still logged in.
    assert answered[-1] is None and again.status_code == 304
    assert _poll(client, req, etag).status_code == 304 and answered[-1] == 304


def test_only_a_get_with_if_none_match_on_the_progress_path_is_looked_at(polled, answered):
    client, req, etag = polled
    assert client.head(reverse("request-progress", args=[req.pk]), HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert client.get(reverse("request-detail", args=[req.pk]), HTTP_IF_NONE_MATCH=etag).status_code == 200
    assert client.get(f"/imports/0{req.pk}/progress/", HTTP_IF_NONE_MATCH=etag).status_code == 304  # the view's
    assert _poll(client, req).status_code == 200
    assert answered == []


# What can arrive in a request: a cookie's value (RFC 6265's cookie-octets) and a header's (latin-1).
COOKIE_CHARACTERS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='";,\\')
HEADER_CHARACTERS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")


@pytest.mark.django_db
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cookie=st.one_of(st.none(), st.text(COOKIE_CHARACTERS, max_size=60), st.sampled_from(["owner", "other"])),
    etag=st.one_of(st.text(HEADER_CHARACTERS, max_size=80), st.sampled_from(["current", "*", 'W/"x"', '""'])),
    pk=st.one_of(st.sampled_from(["own", "other"]), st.integers(min_value=0, max_value=10**19)),
)
@example(cookie="owner", etag="current", pk=2**63)  # past any primary key (SQLite: no overflow, a 404)
@example(cookie="owner", etag="*", pk=10**19)
def test_whatever_a_poll_carries_only_the_owner_gets_a_304(polled, cookie, etag, pk):
    """Bounded fuzz of what a client controls (cookie, If-None-Match, the request's number): never a
    500; a 304 only for the owner's session with the request's current ETag (or "*")."""
    client, req, current = polled
    other = ImportRequest.objects.filter(owner__username="bob").first()
    if other is None:
        other, _ = _running(make_user("bob", "requester"))
    target = {"own": req.pk, "other": other.pk}.get(pk, pk) if isinstance(pk, str) else pk
    poller = Client(raise_request_exception=False)
    if cookie == "owner":
        poller.cookies["sessionid"] = client.cookies["sessionid"].value
    elif cookie == "other":
        poller.force_login(other.owner)
    elif cookie is not None:
        poller.cookies["sessionid"] = cookie
    sent = current if etag == "current" else etag
    response = poller.get(f"/imports/{target}/progress/", HTTP_IF_NONE_MATCH=sent)
    assert response.status_code < 500
    if response.status_code == 304:
        mine = cookie == "owner" and target == req.pk or cookie == "other" and target == other.pk
        sent_tags = parse_etags(sent)
        assert mine and (sent_tags == ["*"] or response["ETag"] in sent_tags), (cookie, sent)
        if cookie == "owner":
            assert response["ETag"] == current


def test_the_session_hash_is_djangos(requester):
    from wizard.views.progress_poll import _session_auth_hash

    requester.set_password("something")
    assert _session_auth_hash(requester.password) == requester.get_session_auth_hash()
