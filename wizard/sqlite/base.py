"""Django's SQLite backend, with a writer's wait that ends within milliseconds of the lock's release.

SQLite lets one writer at a time; the others wait in its busy handler, which sleeps 1, 2, 5,
10, ... 100 ms between tries and is not woken when the lock is freed. With many writers
(bench/load: every autosave, source, submission and the worker's polls) a write of a few ms
waited hundreds of ms behind others, and a write that lost a few tries in a row waited longest.
Here a transaction's BEGIN IMMEDIATE (settings: transaction_mode) is tried without SQLite's wait,
then again after at most `MAX_PAUSE`, until the same timeout (OPTIONS["timeout"]) ends with
"database is locked" as before. Every other statement keeps SQLite's own wait.
"""

from __future__ import annotations

import random
import sqlite3
import time

from django.db.backends.sqlite3 import base

FIRST_PAUSE = 0.0002  # seconds
MAX_PAUSE = 0.002


class DatabaseWrapper(base.DatabaseWrapper):
    def _start_transaction_under_autocommit(self) -> None:
        mode = getattr(self, "transaction_mode", None)  # OPTIONS["transaction_mode"] (not in django-stubs)
        begin = "BEGIN" if mode is None else f"BEGIN {mode}"  # a plain BEGIN takes no lock: no wait
        timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))
        raw = self.connection
        deadline = time.monotonic() + timeout
        pause = FIRST_PAUSE
        with self.wrap_database_errors:  # sqlite3's errors raised as Django's, as Django's own BEGIN does
            raw.execute("PRAGMA busy_timeout = 0")
            try:
                while True:
                    try:
                        raw.execute(begin)
                        return
                    except sqlite3.OperationalError as exc:
                        if "locked" not in str(exc) or time.monotonic() >= deadline:
                            raise
                    time.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not secrecy
                    pause = min(pause * 2, MAX_PAUSE)
            finally:
                raw.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
