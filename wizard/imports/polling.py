"""Polling: follow every active import task with batched DescribeImportImageTasks calls.

One bad task, value or answer never stalls the others. Each batch of DESCRIBE_BATCH ids is
described and recorded on its own, and a batch whose call fails is halved until what spoils
it is alone (about 2·log2(n) calls for one bad task among n). What a failure means:

- AWS does not know an id (InvalidConversionTaskId..., or the task is missing from a good
  answer): that task is lost and its request fails (`LOST_MESSAGE`).
- Anything else about the answer (not well-formed XML, a 5xx that outlived botocore's
  retries, a read timeout, an unexpected error code): the task, once alone, gets
  `ImportTask.attention` (what failed, since when, what to do), shown on its request's page.
  From then on it is asked about on its own, so it spoils no batch; the note is cleared as
  soon as AWS answers for it again. Both changes are audited ("needs attention",
  "attention cleared"). Halving for such failures is bounded (SPLIT_CALLS per poll); what
  is left is asked about again at the next poll.
- Throttling, or no connection to AWS at all: nothing is wrong with any task. The poll stops
  there (what it recorded stays) and raises `PollBackoff`, so `tasks.poll_imports` waits
  longer before the next one. So does a poll in which no call got an answer.
- Errors about the account or its credentials (AuthFailure, ...): raised as they are.

The tasks polled longest ago go first, so a poll cut short reaches the others next time.

Each target (wizard.targets: an account and region) is polled on its own, with a client in
that account through its role: one DescribeImportImageTasks call never mixes targets (AWS
knows a task only in the account and region that made it). A target whose role cannot be
assumed or whose account refuses the calls holds up no other target: its tasks get attention
(which says so, and goes when it answers again) and the others are polled; one that throttles
is backed off once the others are polled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as NoConnection
from botocore.parsers import ResponseParserError
from django.db import DataError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from wizard.audit import audit
from wizard.audit import checkpoint as audit_checkpoint
from wizard.aws import clients, vmimport
from wizard.aws.errors import AwsError
from wizard.imports import bulkwrite, dispatch_queue, finishing
from wizard.models import ImportRequest, ImportTask, Target, TaskStatusChange
from wizard.requests.statemachine import change_status

log = logging.getLogger(__name__)

LOST_MESSAGE = (
    "AWS no longer knows this import task (in the sandbox: it was restarted and forgot it). "
    "Import again with these settings."
)
# Halving batches whose answer failed (not for unknown ids) takes at most this many calls per
# poll: enough to find a few bad tasks among DESCRIBE_BATCH, bounded when AWS fails for all.
SPLIT_CALLS = 64
# AWS asks us to slow down, or cannot take calls now: not about any one task.
SLOW_DOWN_CODES = {
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ServiceUnavailable",
    "Unavailable",
}
# About the account or its credentials: every call fails alike, halving would not help.
ACCOUNT_CODES = {
    "AuthFailure",
    "UnauthorizedOperation",
    "OptInRequired",
    "Blocked",
    "PendingVerification",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "RequestExpired",
    "ExpiredToken",
    "MissingAuthenticationToken",
}
FAILURES = (AwsError, BotoCoreError, ResponseParserError)
UNKNOWN, BROKEN, SLOW_DOWN, ACCOUNT = "unknown", "broken", "slow down", "account"


class PollBackoff(Exception):
    """AWS throttled the poll, could not be reached, or answered no call: poll again later."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def active_tasks() -> list[ImportTask]:
    """Every running task, the one polled longest ago first, with its request (only its id and
    target: all a poll reads of it; any other field would load on access) and that target.
    Three plain queries rather than one select_related: building 1,000 whole requests through
    the related populator took longer than loading the tasks themselves (bench/poller)."""
    tasks = list(
        ImportTask.objects.exclude(status__in=ImportTask.FINAL_STATES).order_by(
            F("polled_at").asc(nulls_first=True), "pk"
        )
    )
    requests = ImportRequest.objects.only("id", "target").in_bulk({task.request_id for task in tasks})
    targets = Target.objects.in_bulk({r.target_id for r in requests.values() if r.target_id is not None})
    for request in requests.values():
        ImportRequest.target.field.set_cached_value(request, targets.get(request.target_id))
    tasks = [task for task in tasks if task.request_id in requests]  # the others' requests: deleted meanwhile
    for task in tasks:
        ImportTask.request.field.set_cached_value(task, requests[task.request_id])
    return tasks


def by_target(tasks: Sequence[ImportTask]) -> list[tuple[Target | None, list[ImportTask]]]:
    """The tasks grouped by their request's target (the default target first), each group in the
    order given."""
    groups: dict[int | None, list[ImportTask]] = {}
    found: dict[int | None, Target | None] = {}
    for task in tasks:
        key = task.request.target_id
        groups.setdefault(key, []).append(task)
        found[key] = task.request.target
    order = sorted(groups, key=lambda k: (k is not None, k or 0))
    return [(found[k], groups[k]) for k in order]


@audit_checkpoint.batched()  # one audit checkpoint per cycle, not one per task that changed
def poll_once() -> int:
    """Describe every active task, record what changed; returns how many are still active.

    Raises PollBackoff (after recording what it could) when AWS throttles or cannot be reached.
    """
    dispatch_queue.kick()  # tasks that ended free their places: let the queue dispatch the next
    tasks = active_tasks()
    if not tasks:
        return 0
    groups = by_target(tasks)
    answered = broken = 0
    last_code = ""
    backoff: PollBackoff | None = None  # one account throttled: the others are polled, then it is raised
    for target, group in groups:
        try:
            poll = Poll(ec2=clients.client("ec2", target=target))  # one client per target for the cycle
        except (*FAILURES, ClientError) as exc:  # its role cannot be assumed
            if len(groups) == 1:
                raise
            _account_refused(target, group, exc)
            continue
        try:
            _poll_group(poll, group)
        except PollBackoff as exc:
            poll.finish()
            if len(groups) == 1:
                raise
            backoff = backoff or exc
            continue
        except FAILURES as exc:  # the account refused the calls (ACCOUNT)
            if len(groups) == 1:
                raise  # the only account: as it always was
            poll.finish()
            _account_refused(target, group, exc)
            continue
        poll.finish()
        answered, broken, last_code = answered + poll.answered, broken + poll.broken, poll.last_code or last_code
    if backoff is not None:
        raise backoff
    if broken and not answered:
        raise PollBackoff(last_code, "no DescribeImportImageTasks call of this poll got an answer")
    return sum(not t.is_final for t in tasks)


def _account_refused(target: Target | None, group: list[ImportTask], exc: Exception) -> None:
    """A target's account cannot be asked (its role cannot be assumed, or it refuses the calls)
    while others answer: its tasks get attention (cleared when it answers again), the others go on."""
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    why = _short(f"the target {target} could not be asked ({code or type(exc).__name__}: {exc})")
    log.warning("polling: %s", why)
    now = timezone.now()
    for task in group:
        needs_attention(task, why, now)


def _poll_group(poll: Poll, tasks: list[ImportTask]) -> None:
    """Describe one target's tasks: in batches, then those needing attention one by one."""
    batched = [t for t in tasks if not t.attention]
    for start in range(0, len(batched), vmimport.DESCRIBE_BATCH):
        poll.describe(batched[start : start + vmimport.DESCRIBE_BATCH])
    for task in tasks:
        if task.attention:  # it spoilt its batch before: asked about on its own
            poll.describe([task])


@dataclass
class Poll:
    """One poll: what it asked, what it learnt, and what it still has to write."""

    answered: int = 0  # calls that got an answer
    broken: int = 0  # calls that failed, not for throttling or an unknown id
    split_calls: int = 0
    last_code: str = ""
    alone: list[tuple[ImportTask, str, bool]] = field(default_factory=list)  # (task, why, answer unreadable)
    ec2: Any = None  # the boto3 client the calls go through

    def describe(self, group: list[ImportTask]) -> None:
        try:
            answer = vmimport.describe_import_image_tasks([t.import_task_id for t in group], self.ec2)
            found = {d["ImportTaskId"]: d for d in answer}
        except FAILURES as exc:
            self._failed(group, exc)
            return
        self.answered += 1
        changes, unchanged, answered = [], [], []
        for task in group:
            description = found.get(task.import_task_id)
            if description is None:
                mark_lost(task)
                continue
            answered.append(task)
            if _changed(task, description):
                changes.append((task, description))
            else:
                unchanged.append(task.pk)
        refused = self._record(changes, unchanged)
        for task in answered:
            if task.attention and task.pk not in refused:  # AWS answers for it again, and it was stored
                clear_attention(task)

    def _record(self, changes: list[tuple[ImportTask, dict[str, Any]]], unchanged: list[int]) -> set[int]:
        """Write what one answer said, in one transaction. If the database refuses a value (one
        task's: a NUL byte, too long, out of range), each task is written on its own, so that it
        holds up no other: that one is left as it was and gets attention. Returns their pks."""
        try:
            apply_descriptions(changes, unchanged)
            return set()
        except (DataError, IntegrityError) as exc:
            log.warning("recording %d tasks at once failed (%s); one at a time", len(changes), exc)
        apply_descriptions([], unchanged)  # polled_at alone: nothing an answer said can spoil it
        refused = set()
        for task, description in changes:
            try:
                apply_descriptions([(task, description)])
            except (DataError, IntegrityError) as exc:
                why = _short(f"its answer could not be stored ({type(exc).__name__}: {str(exc).strip()})")
                log.warning("task %s: %s", task.import_task_id, why)
                self.alone.append((task, why, True))
                refused.add(task.pk)
        return refused

    def _failed(self, group: list[ImportTask], exc: Exception) -> None:
        kind, code = classify(exc)
        self.last_code = code
        if kind == SLOW_DOWN:
            log.warning("polling: %s; backing off", describe_failure(exc))
            raise PollBackoff(code, describe_failure(exc)) from exc
        if kind == ACCOUNT:
            raise exc
        self.broken += kind == BROKEN
        if len(group) == 1:
            task = group[0]
            if kind == UNKNOWN:
                log.warning("task %s is unknown: %s", task.import_task_id, exc)
                mark_lost(task)
            else:
                log.warning("task %s alone: %s", task.import_task_id, describe_failure(exc))
                self.alone.append((task, describe_failure(exc), isinstance(exc, ResponseParserError)))
            return
        if kind == BROKEN:
            if self.split_calls >= SPLIT_CALLS:
                log.warning("describing %d tasks failed (%s); left for the next poll", len(group), code)
                return
            self.split_calls += 2
        log.warning("describing %d tasks failed (%s); halving the batch", len(group), code)
        half = len(group) // 2
        self.describe(group[:half])
        self.describe(group[half:])

    def finish(self) -> None:
        """Write what is left: attention of the lone failures.

        A lone failure gets attention when something else did get an answer (so it is this task,
        not AWS), or when its answer was unreadable or could not be stored (which no outage explains).
        """
        now = timezone.now()
        for task, why, unreadable in self.alone:
            if self.answered or unreadable:
                needs_attention(task, why, now)


def classify(exc: Exception) -> tuple[str, str]:
    """What a failed DescribeImportImageTasks call means: (UNKNOWN | BROKEN | SLOW_DOWN | ACCOUNT, code)."""
    if isinstance(exc, AwsError):
        if _names_unknown_task(exc):
            return UNKNOWN, exc.code
        if exc.code in SLOW_DOWN_CODES:
            return SLOW_DOWN, exc.code
        if exc.code in ACCOUNT_CODES:
            return ACCOUNT, exc.code
        return BROKEN, exc.code  # InternalError and anything unexpected: maybe about one task
    if isinstance(exc, NoConnection):
        return SLOW_DOWN, type(exc).__name__
    if isinstance(exc, (HTTPClientError, ResponseParserError)):
        return BROKEN, type(exc).__name__  # the answer for these ids did not come whole
    return ACCOUNT, type(exc).__name__  # e.g. no credentials


def _names_unknown_task(exc: AwsError) -> bool:
    """AWS's answer when an id is unknown (or expired, 7 days after its task ended)."""
    return exc.code.startswith("InvalidConversionTaskId") or exc.code == "InvalidParameterValue"


def describe_failure(exc: Exception) -> str:
    """A short, printable account of a failed call (an unreadable answer is not quoted)."""
    if isinstance(exc, AwsError):
        text = f"AWS answered {exc.code}: {exc.message}"
    elif isinstance(exc, ResponseParserError):
        # "Unable to parse response (not well-formed ...), invalid XML received. ...:\nb'<the body>'"
        text = "its answer could not be read: " + str(exc).split("\n", 1)[0].split(", invalid XML received")[0]
    else:
        text = f"no whole answer came ({type(exc).__name__}: {exc})"
    return _short(text)


def _short(text: str) -> str:
    printable = "".join(c if c.isprintable() else "?" for c in text)
    return printable if len(printable) <= 300 else printable[:299] + "…"


def attention_message(task_id: str, why: str, at: datetime) -> str:
    return (
        f"Since {at:%Y-%m-%d %H:%M} UTC this import cannot be followed: DescribeImportImageTasks fails for "
        f"this task alone ({why}). The other imports are not held up. It is asked about on its own at every "
        "poll and this note goes away as soon as AWS answers for it. If it stays, look at the task in the EC2 "
        f"console (aws ec2 describe-import-image-tasks --import-task-ids {task_id}), or cancel the import "
        "and import again."
    )


def needs_attention(task: ImportTask, why: str, at: datetime) -> None:
    """Mark one task as needing attention (kept as first written while it keeps failing); audited."""
    if task.attention:
        return
    message = attention_message(task.import_task_id, why, at)
    with transaction.atomic():
        ImportTask.objects.filter(pk=task.pk).update(attention=message)
        audit.record(
            "needs attention",
            task.request,
            before={"attention": ""},
            after={"attention": message},
            details={"import_task_id": task.import_task_id, "error": why},
        )
    task.attention = message


def clear_attention(task: ImportTask) -> None:
    """AWS answers for the task again: the note goes (audited)."""
    with transaction.atomic():
        ImportTask.objects.filter(pk=task.pk).update(attention="")
        audit.record(
            "attention cleared",
            task.request,
            before={"attention": task.attention},
            after={"attention": ""},
            details={"import_task_id": task.import_task_id},
        )
    task.attention = ""


def apply_description(task: ImportTask, d: dict[str, Any]) -> bool:
    """Store one DescribeImportImageTasks entry; returns True if anything changed.

    The poller (for a whole answer at once), the dispatcher (a task already ended when
    ImportImage answered) and the reconciliation all record through `apply_descriptions`.
    """
    return apply_descriptions([(task, d)])[0]


TASK_FIELDS = ("status", "status_message", "progress", "snapshot_details", "image_id", "changed_at", "polled_at")
CHANGE_FIELDS = ("task_id", "at", "status", "status_message", "progress", "snapshot_details")


def apply_descriptions(changes: list[tuple[ImportTask, dict[str, Any]]], unchanged: Sequence[int] = ()) -> list[bool]:
    """Store DescribeImportImageTasks entries (task, its entry) in one transaction, in bulk; also
    touch polled_at of the `unchanged` task pks. Returns, per entry, whether anything changed.

    The rows are re-read under a lock, so two writers recording the same answer write it once.
    Each change writes its TaskStatusChange and its "aws status changed" audit event (the chain
    appended in one go, `audit.record_many`). A final task finishes its request (completed,
    cancelled or failed) if that has not happened yet, in `finish_request`.
    """
    now = timezone.now()
    with transaction.atomic():
        if unchanged:
            ImportTask.objects.filter(pk__in=unchanged).update(polled_at=now)
        if not changes:
            return []
        stored = {
            row[0]: row[1:]
            for row in ImportTask.objects.select_for_update()
            .filter(pk__in=[task.pk for task, _ in changes])
            .values_list("pk", "status", "status_message", "progress", "snapshot_details", "image_id")
        }
        results, history, events, written = [], [], [], []
        for task, d in changes:
            if task.pk not in stored:  # its request was deleted meanwhile
                results.append(False)
                continue
            status, message, progress, snapshots, image_id = stored[task.pk]
            observed = _observed(status, image_id, d)
            changed = observed != (status, message, progress, snapshots, image_id)
            if changed:
                history.append((task.pk, now, *observed[:4]))
                after = {"Status": observed[0], "StatusMessage": observed[1], "Progress": observed[2]}
                if observed[4]:
                    after["ImageId"] = observed[4]
                events.append(
                    audit.Entry(
                        "aws status changed",
                        task.request_id,
                        before={"Status": status, "StatusMessage": message, "Progress": progress},
                        after=after,
                        details={"import_task_id": task.import_task_id},
                    )
                )
                task.status, task.status_message, task.progress, task.snapshot_details, task.image_id = observed
                task.changed_at = now
            else:  # as another writer stored it meanwhile
                task.status, task.status_message, task.progress, task.snapshot_details, task.image_id = stored[task.pk]
            task.polled_at = now
            written.append(task)
            results.append(changed)
        bulkwrite.update_rows(ImportTask, TASK_FIELDS, [[getattr(t, f) for f in TASK_FIELDS] + [t.pk] for t in written])
        bulkwrite.insert_rows(TaskStatusChange, CHANGE_FIELDS, history)
        audit.record_many(events)
        for task in written:
            if task.is_final:
                finish_request(task)
    return results


def finish_request(task: ImportTask) -> bool:
    """End the request of a final task as the task ended, if it is still importing; True if it was."""
    request = ImportRequest.objects.get(pk=task.request_id)
    if request.status != ImportRequest.Status.IMPORTING:
        return False
    if task.status == "completed":
        if finishing.start(request, task):  # the requester chose a name, tags, shares...: finished first
            return True
        change_status(
            request,
            "complete",
            action="completed",
            details={"image_id": task.image_id, "import_task_id": task.import_task_id},
        )
    elif request.cancel_reason:
        change_status(
            request,
            "cancel",
            action="cancelled",
            details={"reason": request.cancel_reason, "import_task_id": task.import_task_id},
            failure_message=task.status_message,
        )
    else:
        fail(request, task.status_message or "the import task was deleted", import_task_id=task.import_task_id)
    return True


def fail(request: ImportRequest, message: str, *, action: str = "failed", **details: Any) -> None:
    change_status(
        request,
        "fail",
        action=action,
        details={"message": message, **details},
        failure_message=message,
    )


def progress_of(description: dict) -> int | None:
    value = description.get("Progress")
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _observed(status: str, image_id: str, d: dict[str, Any]) -> tuple[str, str, int | None, list, str]:
    """Status, StatusMessage, Progress, SnapshotDetails and ImageId of a DescribeImportImageTasks entry
    (for a task stored with `status` and `image_id`, which an entry without them keeps)."""
    return (
        d.get("Status", status),
        d.get("StatusMessage", ""),
        progress_of(d),
        d.get("SnapshotDetails", []),
        d.get("ImageId") or image_id,
    )


def _changed(task: ImportTask, d: dict[str, Any]) -> bool:
    return _observed(task.status, task.image_id, d) != (
        task.status,
        task.status_message,
        task.progress,
        task.snapshot_details,
        task.image_id,
    )


def mark_lost(task: ImportTask) -> None:
    with transaction.atomic():
        task.status, task.status_message, task.changed_at = "deleted", LOST_MESSAGE, timezone.now()
        task.save()
        request = ImportRequest.objects.get(pk=task.request_id)
        if request.status in (ImportRequest.Status.APPROVED, ImportRequest.Status.IMPORTING):
            fail(request, LOST_MESSAGE, action="task lost", import_task_id=task.import_task_id)
