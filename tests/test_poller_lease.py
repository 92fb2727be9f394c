from __future__ import annotations

from datetime import timedelta

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


def test_the_poll_loop_stops_when_nothing_is_active(db, monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.polling, "poll_once", lambda: calls.append(1) or 0)
    assert tasks.poll_imports() == 0
    assert calls == [1]
    assert WorkerLease.objects.get(name="poller").expires_at <= timezone.now()
