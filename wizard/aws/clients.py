"""boto3 clients: one factory, so endpoint, region, credentials and retries are set once."""

from __future__ import annotations

import json
import threading
from functools import cache, lru_cache
from typing import Any, Protocol

import boto3
from botocore.config import Config
from django.conf import settings

from wizard.aws import sts

# Throttling (RequestLimitExceeded) and 5xx answers are retried by botocore with
# exponential backoff; errors retrying cannot fix surface at once.
RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


_lock = threading.Lock()


@cache
def _session(sandbox: bool, region: str) -> boto3.Session:
    if sandbox:
        # The sandbox accepts any signature: throw-away credentials keep real ones away from it.
        return boto3.Session(aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name=region)
    return boto3.Session(region_name=region)  # the standard credential chain


class TargetLike(Protocol):
    """What a client needs of a target (wizard.models.Target): where, and the role to assume."""

    region: str
    role_arn: str
    external_id: str


def client(service: str, *, region: str | None = None, target: TargetLike | None = None, **config: Any) -> Any:
    """A boto3 client for `service` against the configured endpoint (sandbox or AWS).

    `target`: in that target's account, through its role (sts:AssumeRole with its ExternalId), in
    its region; None (the default target) is the application's own credentials and AWS_REGION.
    `region`: another region than that (a copy of an AMI there)."""
    if target is None:
        with _lock:  # functools.cache may make two sessions for two threads at once
            session = _session(settings.AWS_SANDBOX, region or settings.AWS_REGION)
    else:
        own = client("sts", region=target.region)
        session = sts.assumed_session(own, target.role_arn, target.external_id, region or target.region)
    with _lock:  # a Session is not thread-safe; the clients it makes are
        return _made(
            session, service, settings.AWS_ENDPOINT_URL or None, RETRY_CONFIG, json.dumps(config, sort_keys=True)
        )


@lru_cache(maxsize=128)
def _made(session: boto3.Session, service: str, endpoint: str | None, retry: Config, config: str) -> Any:
    """One client per session, service, endpoint and configuration, made once: making a boto3
    client costs tens of milliseconds (its service model, endpoint rules, event handlers), far
    more than most calls it makes. boto3's clients are thread-safe. A renewed role session (wizard.aws.sts) is
    a new session, so its clients are new too; the oldest clients are dropped past `maxsize`."""
    extra = json.loads(config)
    cfg = retry.merge(Config(**extra)) if extra else retry
    # boto3-stubs types a client per literal service name; this factory serves them all (Any)
    return session.client(service, endpoint_url=endpoint, config=cfg)  # type: ignore[call-overload]


def forget() -> None:
    """Drop the clients made: the next call makes them again (a client copies its session's
    event handlers when it is made, so one registered later reaches new clients only)."""
    with _lock:
        _made.cache_clear()
