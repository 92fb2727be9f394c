from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from wizard import tasks
from wizard.models import WorkerLease


def test_only_one_holder_at_a_time(db, monkeypatch):
    assert tasks.take_lease("poller", 60)
    assert tasks.take_lease("poller", 60)  # the holder renews
    monkeypatch.setattr(tasks, "_holder", lambda: "other-host:1")
    assert not tasks.take_lease("poller", 60)


def test_an_expired_lease_can_be_taken(db, monkeypatch):
    WorkerLease.objects.create(name="poller", holder="dead:1", expires_at=timezone.now() - timedelta(seconds=1))
    assert tasks.take_lease("poller", 60)
    assert WorkerLease.objects.get(name="poller").holder == tasks._holder()


def test_the_poll_chain_ends_when_nothing_is_active(db, monkeypatch):
    polls, kicks = [], []
    monkeypatch.setattr(tasks.polling, "poll_once", lambda: polls.append(1) or 0)
    monkeypatch.setattr(tasks, "kick_poller", lambda: kicks.append(1))
    assert tasks.poll_imports() == 0
    assert (polls, kicks) == ([1], [])
    assert WorkerLease.objects.get(name="poller").expires_at <= timezone.now()


def test_the_poll_chain_goes_on_while_tasks_are_active(db, monkeypatch, settings):
    settings.IMPORT_POLL_SECONDS = 0
    kicks = []
    monkeypatch.setattr(tasks.polling, "poll_once", lambda: 3)
    monkeypatch.setattr(tasks, "kick_poller", lambda: kicks.append(1))
    assert tasks.poll_imports() == 3
    assert kicks == [1]


def test_a_second_poller_ends_at_once(db, monkeypatch):
    monkeypatch.setattr(tasks, "_holder", lambda: "other-host:1")
    assert tasks.take_lease("poller", 60)
    monkeypatch.undo()
    monkeypatch.setattr(tasks.polling, "poll_once", lambda: pytest.fail("a second poller polled"))
    assert tasks.poll_imports() == -1
