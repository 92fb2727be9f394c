"""A checkpoint of the audit log's head kept outside the database, so that a truncated log is seen.

The hash chain (wizard.audit.audit) shows an event edited, deleted or moved, but not the last
events deleted: what is left is still a whole chain. So after every transaction that
recorded events, the chain's head (the last event's pk and hash, how many events there are
up to it, when) is written to object storage through django-storages (STORAGES["audit"]):
`head.json`, overwritten each time, and `heads/<pk>.json`, one object per checkpoint, which
S3 versioning and Object Lock keep even if `head.json` is overwritten. `check` compares the
database with the newest of them; `verify_audit` reports it.

Writing never fails a change: a failed write is logged, and the next one catches up.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import connection, connections, transaction
from django.utils import timezone

from wizard.models import AuditEvent

log = logging.getLogger(__name__)

STORAGE = "audit"
HEAD = "head.json"
HEADS = "heads"
_local = threading.local()


@dataclass(frozen=True)
class Head:
    """The chain's head as a checkpoint records it."""

    pk: int
    hash: str
    count: int  # events with pk <= self.pk
    at: str  # when the checkpoint was written (ISO 8601)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Head:
        """Raises ValueError unless `data` is a checkpoint."""
        try:
            fields = json.loads(data)
            head = cls(pk=fields["pk"], hash=fields["hash"], count=fields["count"], at=fields["at"])
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not a checkpoint ({exc})") from exc
        if not (isinstance(head.pk, int) and isinstance(head.count, int) and isinstance(head.hash, str)):
            raise ValueError("not a checkpoint (wrong types)")
        return head


def head_name(pk: int) -> str:
    """`heads/<pk>.json`, zero-padded so that names sort as the pks do."""
    return f"{HEADS}/{pk:020d}.json"


def current_head() -> Head | None:
    """The database's head now, or None when the log is empty."""
    last = AuditEvent.objects.order_by("-pk").values_list("pk", "hash").first()
    if last is None:
        return None
    pk, hash_ = last
    return Head(pk=pk, hash=hash_, count=AuditEvent.objects.filter(pk__lte=pk).count(), at=timezone.now().isoformat())


def write() -> Head | None:
    """Write the current head to the audit storage (two objects). Raises when it cannot."""
    head = current_head()
    if head is None:
        return None
    storage = storages[STORAGE]
    for name in (head_name(head.pk), HEAD):
        saved = storage.save(name, ContentFile(head.to_json()))
        if saved != name:
            raise ImproperlyConfigured(
                f'the audit storage saved {name} as {saved}: it must overwrite (S3Storage: "file_overwrite": True)'
            )
    return head


def write_quietly() -> None:
    try:
        write()
    except Exception as exc:  # the change is committed already; the next checkpoint catches up
        log.warning("audit checkpoint not written (the next one catches up): %s: %s", type(exc).__name__, exc)


def _after_commit() -> None:
    if getattr(_local, "depth", 0):
        _local.pending = True
    elif settings.AUDIT_CHECKPOINT_BACKGROUND:
        background.wanted()
    else:
        write_quietly()


class Background:
    """A thread of this process that writes the checkpoint after commits, off the request.

    A web request that recorded an event does not wait for the two S3 writes (tens of ms each);
    commits while a write runs make one more write, of the head then, and writes are at least
    AUDIT_CHECKPOINT_SECONDS apart: under load, one checkpoint covers many transactions, as
    `batched` does for a poll cycle. The thread uses its own
    database connection, closed after each write. At exit a pending write is waited for (a
    few seconds at most); a write lost with the process is caught up by the next one, as a
    failed write is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._hurry = threading.Event()
        self._last = float("-inf")  # when the last write started (time.monotonic)
        self._thread: threading.Thread | None = None

    def wanted(self) -> None:
        with self._lock:
            self._idle.clear()
            self._wanted.set()
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="audit-checkpoint", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            # At most one write per AUDIT_CHECKPOINT_SECONDS: under load, one covers the commits of
            # that time (each write is two S3 PUTs and a count). flush() cuts the pause short.
            pause = self._last + settings.AUDIT_CHECKPOINT_SECONDS - time.monotonic()
            if pause > 0:
                self._hurry.wait(pause)
            self._wanted.clear()
            self._last = time.monotonic()
            try:
                write_quietly()
            finally:
                connections.close_all()  # this thread's connections only
                with self._lock:
                    if not self._wanted.is_set():
                        self._idle.set()

    def flush(self, timeout: float = 10) -> bool:
        """Wait until every checkpoint asked for is written (or failed), without the pause
        between writes; False on timeout."""
        self._hurry.set()
        try:
            return self._idle.wait(timeout)
        finally:
            self._hurry.clear()


background = Background()
atexit.register(background.flush, 5)


def schedule() -> None:
    """One checkpoint after the current transaction commits, however many events it records.

    Called by wizard.audit.audit.record inside its transaction. A transaction rolled back drops
    its callbacks, so the next one that records an event schedules a checkpoint again.
    """
    # (savepoint ids, func, robust) since Django 4.2; django-stubs still lists two items
    if not any(func is _after_commit for _, func, _ in connection.run_on_commit):  # type: ignore[misc]
        transaction.on_commit(_after_commit)


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """One checkpoint for all the transactions committed inside (e.g. a poll cycle), at the end.

    Usable as a decorator. Nested uses write once, when the outermost ends.
    """
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        if not _local.depth and getattr(_local, "pending", False):
            _local.pending = False
            write_quietly()


@dataclass(frozen=True)
class Verdict:
    """What the checkpoint says of the database: `tampered` is an error, `warning` a doubt."""

    message: str
    tampered: bool = False
    warning: bool = False


def _newest_listed(storage: Storage) -> int | None:
    """The highest pk among the `heads/` objects (None if there are none)."""
    try:
        _, files = storage.listdir(HEADS)
    except FileNotFoundError:
        return None
    pks = [int(name[:-5]) for name in files if name.endswith(".json") and name[:-5].isdigit()]
    return max(pks, default=None)


def _read(storage: Storage, name: str) -> Head:
    with storage.open(name) as f:
        return Head.from_json(f.read())


def newest_checkpoint() -> tuple[Head | None, list[str]]:
    """The newest checkpoint (head.json, or a newer `heads/` object) and what was odd on the way.

    Raises when the storage cannot be read at all.
    """
    storage = storages[STORAGE]
    notes: list[str] = []
    head = None
    try:
        head = _read(storage, HEAD)
    except FileNotFoundError:
        notes.append(f"{HEAD} is missing")
    except ValueError as exc:
        notes.append(f"{HEAD} is unreadable: {exc}")
    newest = _newest_listed(storage)
    if newest is not None and (head is None or newest > head.pk):
        if head is not None:
            notes.append(f"{HEAD} names #{head.pk} but {head_name(newest)} exists: {HEAD} was overwritten")
        head = _read(storage, head_name(newest))
    return head, notes


def check() -> Verdict:
    """Compare the database's audit log with the newest checkpoint."""
    try:
        head, notes = newest_checkpoint()
    except Exception as exc:
        return Verdict(
            f"the checkpoint cannot be read ({type(exc).__name__}: {exc}): a truncation cannot be seen", warning=True
        )
    last = AuditEvent.objects.order_by("-pk").values_list("pk", "hash").first()
    if head is None:
        if last is None:
            return Verdict("no events and no checkpoint yet")
        return Verdict(
            f"no checkpoint of the audit log's head in storage ({'; '.join(notes)}): a truncation cannot be seen",
            warning=True,
        )
    present = AuditEvent.objects.filter(pk__lte=head.pk).count()
    named = f"the checkpoint of {head.at} names event #{head.pk}, with {head.count} events up to it"
    if (last is None or last[0] < head.pk) and head.count > present:
        after = f"after #{last[0]}" if last else "(all of them)"
        return Verdict(
            f"the last {head.count - present} events {after} are missing: the log was truncated ({named})",
            tampered=True,
        )
    at_head = AuditEvent.objects.filter(pk=head.pk).values_list("hash", flat=True).first()
    if at_head is None:
        return Verdict(f"event #{head.pk} is missing ({named})", tampered=True)
    if at_head != head.hash or present != head.count:
        return Verdict(
            f"event #{head.pk} or one before it is not what the checkpoint recorded: the log was rewritten ({named})",
            tampered=True,
        )
    message = f"the head matches the checkpoint of {head.at} (event #{head.pk}, {head.count} events)"
    if newer := AuditEvent.objects.filter(pk__gt=head.pk).count():
        message += f"; {newer} newer events are not in a checkpoint yet"
    if notes:
        return Verdict(f"{message}; but {'; '.join(notes)}", warning=True)
    return Verdict(message)
