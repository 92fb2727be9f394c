"""Sessions in another account: sts:AssumeRole with an ExternalId, the credentials kept until
shortly before they expire."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

# Renew this long before AWS's expiry, so no call starts with credentials about to lapse.
RENEW_BEFORE = timedelta(minutes=5)
SESSION_NAME = "import-wizard"
_lock = threading.Lock()
_cache: dict[tuple[str, str, str], tuple[datetime, boto3.Session]] = {}


def assumed_session(sts_client: Any, role_arn: str, external_id: str, region: str) -> boto3.Session:
    """A boto3 session with the role's credentials in `region`; `sts_client` asks for them
    (the application's own credentials)."""
    key = (role_arn, external_id, region)
    now = datetime.now(UTC)
    with _lock:
        cached = _cache.get(key)
        if cached and cached[0] - RENEW_BEFORE > now:
            return cached[1]
    params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": SESSION_NAME}
    if external_id:
        params["ExternalId"] = external_id
    creds = sts_client.assume_role(**params)["Credentials"]
    session = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )
    expires = creds["Expiration"]
    expires = expires if isinstance(expires, datetime) else datetime.fromisoformat(str(expires))
    with _lock:
        _cache[key] = (expires if expires.tzinfo else expires.replace(tzinfo=UTC), session)
    return session


def forget() -> None:
    with _lock:
        _cache.clear()
