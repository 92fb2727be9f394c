"""The real PostgreSQL and Redis of this machine, for tests of the at-scale configuration.

Where a service is not reachable the test is skipped with the reason, except in CI
(CI=true), where `.ci/run` starts both and a missing service is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def fresh_postgres_database() -> tuple[str, callable]:
    """A new, empty database; returns its URL and a function that drops it."""
    import psycopg

    require("PostgreSQL", "127.0.0.1", 5432)
    name = f"wizard_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}", drop


def fresh_redis_db() -> str:
    """A Redis database number nobody else uses here, emptied."""
    import redis

    require("Redis", "127.0.0.1", 6379)
    base = REDIS_URL.rsplit("/", 1)[0]
    url = f"{base}/{int(uuid.uuid4().int % 14) + 1}"
    redis.from_url(url).flushdb()
    return url
