"""API tokens: per-user secrets for scripts, shown once, kept only as a SHA-256 hash.

A token reads ``iw_<prefix>_<secret>``: the prefix (12 hex digits, not secret) finds the row,
the secret (32 random bytes, URL-safe base64) is checked against its stored SHA-256 in constant
time. A token acts as its user, with exactly the user's permissions; it is revocable, records
when it was last used, and its creation and revocation are audit events.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from wizard.audit import audit
from wizard.models import ApiToken

TOKEN = re.compile(r"iw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
MAX_TOKENS = 20
# last_used_at is written at most this often per token (not on every call).
USED_RESOLUTION = timedelta(seconds=60)


class TokenError(Exception):
    pass


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the token text (shown once, never stored)."""
    name = (name or "").strip()[:100]
    if not name:
        raise TokenError("Name the token (what script or pipeline uses it).")
    if ApiToken.objects.filter(user=user, revoked_at=None).count() >= MAX_TOKENS:
        raise TokenError(f"You have {MAX_TOKENS} active tokens: revoke one you no longer use first.")
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        while True:
            prefix = secrets.token_hex(6)
            if not ApiToken.objects.filter(prefix=prefix).exists():
                break
        token = ApiToken.objects.create(user=user, name=name, prefix=prefix, secret_hash=_hash(secret))
        audit.record("api token created", actor=user, details={"token": token.pk, "name": name, "prefix": prefix})
    return token, f"iw_{prefix}_{secret}"


def revoke(token: ApiToken, user: User) -> ApiToken:
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            audit.record(
                "api token revoked",
                actor=user,
                details={"token": locked.pk, "name": locked.name, "prefix": locked.prefix, "of": locked.user_id},
            )
    return locked


def authenticate(text: str) -> User | None:
    """The active user a token belongs to, or None (malformed, unknown, revoked, wrong secret, inactive user)."""
    found = TOKEN.fullmatch(text or "")
    if not found:
        return None
    prefix, secret = found.groups()
    token = ApiToken.objects.select_related("user").filter(prefix=prefix, revoked_at=None).first()
    if token is None or not hmac.compare_digest(token.secret_hash, _hash(secret)) or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
