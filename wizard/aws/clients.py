"""boto3 clients: one factory, so endpoint, region, credentials and retries are set once."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from django.conf import settings

# Throttling (RequestLimitExceeded) and 5xx answers are retried by botocore with
# exponential backoff; errors retrying cannot fix surface at once.
RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


@cache
def _session(sandbox: bool, region: str) -> boto3.Session:
    if sandbox:
        # The sandbox accepts any signature: throw-away credentials keep real ones away from it.
        return boto3.Session(aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name=region)
    return boto3.Session(region_name=region)  # the standard credential chain


def client(service: str, **config: Any) -> Any:
    """A boto3 client for `service` against the configured endpoint (sandbox or AWS)."""
    session = _session(settings.AWS_SANDBOX, settings.AWS_REGION)
    cfg = RETRY_CONFIG.merge(Config(**config)) if config else RETRY_CONFIG
    # boto3-stubs types a client per literal service name; this factory serves them all (Any)
    return session.client(service, endpoint_url=settings.AWS_ENDPOINT_URL or None, config=cfg)  # type: ignore[call-overload]
