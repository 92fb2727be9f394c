"""wizard.permissions.PermissionsBackend: Django's answers, in one query."""

from __future__ import annotations

import itertools

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_user
from wizard.permissions import PermissionsBackend, all_permissions

pytestmark = pytest.mark.django_db
names = itertools.count(1)
WIZARD = ("add_importrequest", "review_importrequest", "view_auditevent", "change_target", "delete_upload")


def fresh(user):
    """The user as a new request loads it: nothing kept from an earlier question."""
    return get_user_model().objects.get(pk=user.pk)


def test_a_page_asks_once_for_the_permissions_of_the_user_and_their_groups(client, requester):
    client.force_login(requester)
    with CaptureQueriesContext(connection) as queries:
        client.get("/imports/")
    asked = [q["sql"] for q in queries if '"auth_permission"' in q["sql"]]
    assert len(asked) == 1, asked
    assert "auth_user_user_permissions" in asked[0] and "auth_user_groups" in asked[0]


def test_no_is_answered_without_asking_django_again(requester):
    user = fresh(requester)
    with CaptureQueriesContext(connection) as queries:
        assert user.has_perm("wizard.add_importrequest")
        assert not user.has_perm("wizard.review_importrequest")  # PermissionsBackend says no, ModelBackend asked
        assert not user.has_perm("wizard.view_auditevent")
    assert len(queries) == 1


def test_it_logs_no_one_in_and_sessions_keep_naming_django(client, requester):
    requester.set_password("a long enough password")
    requester.save()
    assert PermissionsBackend().authenticate(None, username="alice", password="a long enough password") is None
    assert not hasattr(PermissionsBackend(), "get_user")
    client.force_login(requester)
    assert client.session["_auth_user_backend"] == "django.contrib.auth.backends.ModelBackend"
    client.logout()
    page = client.post("/login/", {"username": "alice", "password": "a long enough password"})
    assert page.status_code == 302
    assert client.session["_auth_user_backend"] == "django.contrib.auth.backends.ModelBackend"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    own=st.sets(st.sampled_from(WIZARD)),
    groups=st.lists(st.sets(st.sampled_from(WIZARD)), max_size=3),
    superuser=st.booleans(),
    active=st.booleans(),
)
def test_the_same_answers_as_djangos_model_backend(db, own, groups, superuser, active):
    user = make_user(f"u{next(names)}", None, is_superuser=superuser, is_active=active)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="wizard", codename__in=own))
    for codenames in groups:
        group = Group.objects.create(name=f"g{next(names)}")
        group.permissions.set(Permission.objects.filter(content_type__app_label="wizard", codename__in=codenames))
        user.groups.add(group)
    django, ours = ModelBackend(), PermissionsBackend()
    expected = django.get_all_permissions(fresh(user))
    assert ours.get_all_permissions(fresh(user)) == expected
    if active:
        assert all_permissions(fresh(user)) == expected
    for codename in WIZARD:
        perm = f"wizard.{codename}"
        assert ours.has_perm(fresh(user), perm) == django.has_perm(fresh(user), perm)
        assert fresh(user).has_perm(perm) == django.has_perm(fresh(user), perm)
