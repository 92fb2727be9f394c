"""Shared fixtures: a real sandbox process, users, and django-q2 in sync mode for unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def q_sync(monkeypatch):
    """async_task runs inline in tests that call services directly (no cluster in-process)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture(autouse=True)
def fresh_aws_answers():
    """Each test asks AWS afresh: no answer kept by an earlier test (wizard.aws.recent), no client
    made with another test's event handlers (wizard.aws.clients)."""
    from wizard.aws import clients, recent

    recent.forget()
    clients.forget()
    yield
    recent.forget()


@pytest.fixture(autouse=True)
def audit_storage(settings, tmp_path):
    """The audit log's checkpoints and the batch manifests go to directories of the test's own (to
    the sandbox's S3 with `sandbox`), written before the response (in the background where a test says so)."""
    settings.AUDIT_CHECKPOINT_BACKGROUND = False
    settings.STORAGES = {
        **settings.STORAGES,
        "audit": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "audit", "allow_overwrite": True},
        },
        "manifests": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "manifests"},
        },
    }


@pytest.fixture(scope="session")
def sandbox_process():
    """One real sandbox server (moto + VM Import emulation) over HTTP for the whole session."""
    from wizard.sandbox.testing import SandboxProcess

    with SandboxProcess(import_seconds=60) as sb:
        yield sb


@pytest.fixture
def sandbox(sandbox_process, settings):
    """The sandbox, reset, with the application's settings pointed at it."""
    sandbox_process.reset()
    settings.AWS_SANDBOX = True
    settings.AWS_ENDPOINT_URL = sandbox_process.endpoint
    settings.AWS_REGION = sandbox_process.region
    settings.IMPORT_BUCKET = sandbox_process.bucket
    from config import settings as project

    storages = {**settings.STORAGES, "audit": project.STORAGES["audit"], "manifests": project.STORAGES["manifests"]}
    for alias in ("default", "audit", "manifests"):
        storages[alias] = {
            **storages[alias],
            "OPTIONS": {
                **storages[alias]["OPTIONS"],
                "endpoint_url": sandbox_process.endpoint,
                "bucket_name": sandbox_process.bucket,
                "region_name": sandbox_process.region,
            },
        }
    settings.STORAGES = storages
    return sandbox_process


def make_user(username: str, role: str | None, **fields):
    """A user with the role (group) of that name, as wizard.setup defines them."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from wizard.setup import ensure_roles

    ensure_roles()
    user = get_user_model().objects.create_user(username, password=None, **fields)  # tests use force_login
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def requester(db):
    return make_user("alice", "requester")


@pytest.fixture
def reviewer(db):
    return make_user("rita", "reviewer", is_staff=True)


def pytest_collection_modifyitems(config, items):
    """DB_TESTS_ONLY=1 keeps the tests that use the database (the PostgreSQL pass of `make test`)."""
    import os

    if os.environ.get("DB_TESTS_ONLY") != "1":
        return
    uses_db = {"db", "transactional_db", "django_db_setup"}
    keep = [i for i in items if uses_db & set(getattr(i, "fixturenames", ())) or i.get_closest_marker("django_db")]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep
