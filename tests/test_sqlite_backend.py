"""wizard.sqlite: a transaction waits for another process's write lock (within the timeout), then
begins; past the timeout it fails as SQLite's own wait does; SQLite's wait stays set for the rest."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from django.db import OperationalError, connection, connections, transaction

from wizard.models import ImportRequest

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")


def hold_write_lock(seconds: float, started: threading.Event) -> threading.Thread:
    """Another connection (as another process would) holds the write lock for `seconds`."""

    def hold() -> None:
        other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        started.set()
        threading.Event().wait(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert started.wait(10)
    return thread


def busy_timeout() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_transaction_waits_for_the_lock_then_writes(requester):
    connection.ensure_connection()
    holder = hold_write_lock(0.3, threading.Event())
    with transaction.atomic():  # begins once the other connection committed
        ImportRequest.objects.create(owner=requester)
    holder.join()
    assert ImportRequest.objects.filter(owner=requester).count() == 1
    assert busy_timeout() == int(connection.settings_dict["OPTIONS"]["timeout"] * 1000)


@pytest.mark.django_db(transaction=True)
def test_past_the_timeout_it_fails_as_sqlite_does_and_nothing_is_written(requester, monkeypatch):
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.2)
    connection.ensure_connection()
    holder = hold_write_lock(1.0, threading.Event())
    try:
        with pytest.raises(OperationalError, match="database is locked"), transaction.atomic():
            ImportRequest.objects.create(owner=requester)
    finally:
        holder.join()
    assert not ImportRequest.objects.filter(owner=requester).exists()
    assert busy_timeout() == 200  # SQLite's own wait, for the statements outside transactions
    with transaction.atomic():  # and the connection is usable afterwards
        ImportRequest.objects.create(owner=requester)
    assert ImportRequest.objects.filter(owner=requester).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_application_uses_it():
    default = connections["default"]
    assert type(default).__module__ == "wizard.sqlite.base" and default.vendor == "sqlite"
    assert default.transaction_mode == "IMMEDIATE"
