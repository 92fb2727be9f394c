"""Who may do what: a user's permissions read in one query instead of Django's two.

Every page asks (the navigation shows "New import" and "Review" by permission), and
Django's ModelBackend reads the user's own permissions and their groups' in two queries.
`PermissionsBackend`, listed before it in AUTHENTICATION_BACKENDS, reads the same set in
one (an active user's own permissions and those of every group they are in; every
permission for a superuser) and keeps it on the user object for the request under the
attribute ModelBackend keeps it under (`_perm_cache`). When it says no, Django asks the next
backend: ModelBackend finds the set already there and asks nothing.

It logs no one in (authenticate answers None) and has no get_user, so that nothing, not even
the test client's force_login, takes it for the backend a session names: logging in,
sessions and every other rule stay ModelBackend's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.db.models import Q


class PermissionsBackend:
    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = all_permissions(user_obj)
        permissions: set[str] = user_obj._perm_cache
        return permissions

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return bool(user_obj.is_active) and perm in self.get_all_permissions(user_obj, obj)


def all_permissions(user: Any) -> set[str]:
    """ "app_label.codename" of every permission `user` has, their own or a group's, in one query."""
    permissions = Permission.objects.all()
    if not user.is_superuser:
        permissions = permissions.filter(Q(user=user) | Q(group__user=user))
    rows = permissions.values_list("content_type__app_label", "codename").order_by().distinct()
    return {f"{app_label}.{codename}" for app_label, codename in rows}
