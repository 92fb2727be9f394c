"""Fixtures for the sandbox's own tests: one real sandbox process, reset before each test.

These tests talk to the sandbox over HTTP only and need no Django.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.sandbox import images
from wizard.sandbox.testing import SandboxProcess

IMPORT_SECONDS = 10.0
# A real stream-optimized VMDK of a 3 MiB disk with an MBR (random data: it does not compress).
DISK_IMAGE = images.vmdk_stream(images.raw_disk(3 * 2**20, seed=1))


@pytest.fixture(autouse=True)
def q_sync() -> None:
    """Replaces the project-wide fixture of that name: nothing here runs django-q2."""


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxProcess]:
    """One sandbox for the session; its clock only moves when a test advances it."""
    with SandboxProcess(import_seconds=IMPORT_SECONDS, clock_speed=0) as sb:
        yield sb


@pytest.fixture
def sb(sandbox_server: SandboxProcess) -> SandboxProcess:
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def ec2(sb: SandboxProcess) -> Any:
    return sb.client("ec2")


@pytest.fixture
def s3(sb: SandboxProcess) -> Any:
    return sb.client("s3")


@pytest.fixture
def iam(sb: SandboxProcess) -> Any:
    return sb.client("iam")


def upload(sb: SandboxProcess, s3: Any, key: str, body: bytes, disk_format: str) -> dict[str, Any]:
    """Put `body` into the upload bucket; returns it as a DiskContainer."""
    s3.put_object(Bucket=sb.bucket, Key=key, Body=body)
    return {"Format": disk_format, "UserBucket": {"S3Bucket": sb.bucket, "S3Key": key}}


@pytest.fixture
def disk(sb: SandboxProcess, s3: Any) -> dict[str, Any]:
    """A stream-optimized VMDK of about 3 MiB in the upload bucket, as one DiskContainer."""
    return upload(sb, s3, "uploads/disk.vmdk", DISK_IMAGE, "vmdk")
