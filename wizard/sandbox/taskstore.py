"""The sandbox's import image tasks: `ImportTask` and the store that keeps them, `ImportTasks`.

Tasks are kept in memory per account and region, like everything in moto, by
the id ImportImage gave them ("import-ami-..."); a ClientToken finds the task
it made before (with other parameters it is IdempotentParameterMismatch).
`ImportTasks.tick` brings every task up to date with the sandbox clock: what a
stage brings (`wizard.sandbox.resources`: disk sizes, snapshots, the AMI) is
produced when the task is first seen at or past it; the sandbox server calls
it before each request so the AMI exists as soon as the clock says so,
whichever call looks first. Which stage a task is at, and what it shows there,
is `wizard.sandbox.stages`.

A task can also fail, as on AWS after the call was accepted: it shows the stage
it failed at until that stage's end, then Status "deleted" with a StatusMessage
"ClientError: ..." (any snapshots it made are deleted, no AMI is registered).
Failures come from the `validator` (the checks of the disk images, the role and
the KMS key, see `wizard.sandbox.imagecheck`), run once when the task reaches
"validating", and from the faults set on the sandbox (`wizard.sandbox.faults`):
a "fail" fault does the same at a chosen stage, a "stall" fault keeps a task at
a stage until the faults are cleared (`pin`, `release`, `pinned`).

`describe` answers DescribeImportImageTasks: the tasks asked for by id (an
unknown id is InvalidConversionTaskId.Malformed), or all of the account's in
the region, passed through the filters (task-state, tag:KEY), one page of
MaxResults at a time with a NextToken (an unknown one is InvalidPaginationToken).

A task that has ended (completed, failed, or deleted after a cancel) stays
visible for `RETENTION_SECONDS` (7 days, sandbox clock), as on AWS; after
that it is gone, and asking for its id is the error an unknown id gets.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.utils import random_id

from wizard.sandbox import resources, stages
from wizard.sandbox.clock import SandboxClock
from wizard.sandbox.faults import STAGE_NAMES, Faults, FaultSpecError, TaskFault
from wizard.sandbox.stages import ACTIVE, DONE, FAILED, PREPARING_AMI, STAGES, VALIDATED, VALIDATING

# How long an ended task stays visible to DescribeImportImageTasks (sandbox seconds).
RETENTION_SECONDS = 7 * 24 * 3600


@dataclass
class ImportTask:
    """One import image task and what it has produced so far."""

    task_id: str
    account: str
    region: str
    params: dict[str, Any]  # the request, without ClientToken and DryRun
    created: float  # sandbox time
    disk_sizes: list[float | None] | None = None  # bytes per disk, read at "validated"
    snapshot_ids: list[str] = field(default_factory=list)  # made at "preparing ami"
    image_id: str | None = None  # registered at "completed"
    cancelled_at: float | None = None  # sandbox time
    cancelled_stage: int | None = None
    cancel_message: str = ""
    stall_stage: int | None = None  # it goes no further than this stage
    # How it is to fail, by source ("fault", "check"): (stage, StatusMessage); it ends
    # (deleted) at the end of the earliest such stage.
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)
    validated: bool = False  # whether the validator has looked at it
    corrupt: bool = False  # a "corrupt" fault: its view carries a character XML cannot

    @property
    def failure(self) -> tuple[int, str] | None:
        """The failure that comes first, if any: (stage, StatusMessage)."""
        return min(self.failures.values(), default=None, key=lambda failure: failure[0])

    @property
    def disks(self) -> list[dict[str, Any]]:
        return list(self.params["DiskContainers"])


# Looks at a task as it starts validating: None, or (stage name, StatusMessage) it fails with.
Validator = Callable[[ImportTask], "tuple[str, str] | None"]


class ImportTasks:
    """The in-memory task store of one sandbox process; thread-safe.

    Tasks are kept per account and region like everything in moto; the clock
    and `import_seconds` decide which stage each task is at.
    """

    def __init__(
        self,
        clock: SandboxClock,
        import_seconds: float,
        faults: Faults | None = None,
        validator: Validator | None = None,
    ) -> None:
        if import_seconds <= 0:
            raise ValueError(f"import_seconds must be > 0, not {import_seconds}")
        self.clock = clock
        self.import_seconds = import_seconds
        self.faults = faults or Faults()
        self.validator = validator
        self._lock = threading.RLock()
        self._tasks: dict[tuple[str, str], dict[str, ImportTask]] = {}
        self._tokens: dict[tuple[str, str, str], str] = {}  # (account, region, token) -> id

    def clear(self) -> None:
        """Forget every task (moto's reset forgets the AMIs and snapshots)."""
        with self._lock:
            self._tasks.clear()
            self._tokens.clear()

    def tick(self) -> None:
        """Produce what every task's current stage brings (sizes, snapshots, AMI).

        Tasks whose retention has run out are forgotten.
        """
        with self._lock:
            now = self.clock.now()
            for tasks in self._tasks.values():
                for task in list(tasks.values()):
                    self._advance(task, now)
            self._expire(now)

    def pin(self, faults: list[tuple[TaskFault, str]], check_only: bool = False) -> None:
        """Apply task faults to the running tasks they name.

        Raises FaultSpecError (nothing applied) if a task is unknown or has ended.
        """
        with self._lock:
            now = self.clock.now()
            found = []
            for fault, task_id in faults:
                task = self._find_id(task_id)
                if task is None:
                    raise FaultSpecError(f"{fault.kind}.task_id: no task {task_id}")
                self._advance(task, now)
                if fault.kind != "corrupt" and self._state(task, now)[1] != ACTIVE:
                    raise FaultSpecError(f"{fault.kind}.task_id: the task {task_id} has ended")
                found.append((fault, task))
            if check_only:
                return
            for fault, task in found:
                # A task already past the stage stalls or fails where it is.
                self._apply(task, fault, max(fault.stage, self._state(task, now)[0]))

    def release(self) -> None:
        """Undo the faults of running tasks: stalled ones go on from the start of
        the stage they stalled at; failures a fault set are dropped; corrupt answers
        are whole again."""
        with self._lock:
            now = self.clock.now()
            for tasks in self._tasks.values():
                for task in tasks.values():
                    task.corrupt = False
                    self._advance(task, now)
                    outcome = self._state(task, now)[1]
                    if outcome == ACTIVE:
                        task.failures.pop("fault", None)
                    if task.stall_stage is None:
                        continue
                    stalled_at, task.stall_stage = task.stall_stage, None
                    if outcome == ACTIVE and self._by_time(task, now) > stalled_at:
                        task.created = now - STAGES[stalled_at].starts_at * self.import_seconds

    def pinned(self) -> dict[str, dict[str, Any]]:
        """The stalls and failures of tasks that have not ended yet, by task id (for GET)."""
        with self._lock:
            now = self.clock.now()
            shown: dict[str, dict[str, Any]] = {}
            for tasks in self._tasks.values():
                for task in tasks.values():
                    if task.corrupt:
                        shown.setdefault(task.task_id, {})["corrupt"] = {}
                    if self._state(task, now)[1] != ACTIVE:
                        continue
                    if task.stall_stage is not None:
                        shown.setdefault(task.task_id, {})["stall"] = {"stage": STAGE_NAMES[task.stall_stage]}
                    if "fault" in task.failures:
                        stage, message = task.failures["fault"]
                        shown.setdefault(task.task_id, {})["fail"] = {
                            "stage": STAGE_NAMES[stage],
                            "message": message,
                        }
            return shown

    def find(self, account: str, region: str, client_token: str | None, params: dict[str, Any]) -> ImportTask | None:
        """The task made earlier with this ClientToken, if any.

        The same token with other parameters is IdempotentParameterMismatch, as in EC2.
        """
        if not client_token:
            return None
        with self._lock:
            known = self._tokens.get((account, region, client_token))
            if known is None:
                return None
            task = self._tasks[(account, region)][known]
            if task.params != params:
                raise EC2ClientError(
                    "IdempotentParameterMismatch",
                    f"Client token {client_token} was used before with other parameters.",
                )
            return task

    def create(self, account: str, region: str, params: dict[str, Any], client_token: str | None) -> ImportTask:
        """A new task (or the one a concurrent call with the same ClientToken made)."""
        with self._lock:
            task = self.find(account, region, client_token, params)
            if task is not None:
                return task
            task = ImportTask(
                task_id=random_id(prefix="import-ami"),
                account=account,
                region=region,
                params=params,
                created=self.clock.now(),
            )
            for fault in self.faults.for_new_task():
                self._apply(task, fault, fault.stage)
            self._tasks.setdefault((account, region), {})[task.task_id] = task
            if client_token:
                self._tokens[(account, region, client_token)] = task.task_id
            return task

    def describe(
        self,
        account: str,
        region: str,
        task_ids: list[str],
        filters: dict[str, list[str]],
        max_results: int | None,
        next_token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of task views (ImportImageTask shapes) and the next page's token."""
        with self._lock:
            now = self.clock.now()
            self._expire(now)
            tasks = [self._get(account, region, i) for i in task_ids] or list(
                self._tasks.get((account, region), {}).values()
            )
            views = []
            for task in tasks:
                self._advance(task, now)
                view = self._view(task, now)
                if _matches(view, filters):
                    views.append(view)
            start = _token_position(next_token, views)
            end = len(views) if max_results is None else start + max_results
            token = _token_for(views[end]) if end < len(views) else None
            return views[start:end], token

    def view(self, task: ImportTask) -> dict[str, Any]:
        """The task as DescribeImportImageTasks shows it now."""
        with self._lock:
            now = self.clock.now()
            self._advance(task, now)
            return self._view(task, now)

    def cancel(self, account: str, region: str, task_id: str, reason: str | None) -> None:
        """Cancel an active task: it shows "deleting", then "deleted"."""
        with self._lock:
            now = self.clock.now()
            self._expire(now)
            task = self._get(account, region, task_id)
            self._advance(task, now)
            state = self._view(task, now)["Status"]
            if state != "active":
                raise EC2ClientError(
                    "IncorrectState",
                    f"The import task {task_id} can't be cancelled because it is {state}.",
                )
            resources.delete_snapshots(task)
            task.cancelled_at = now
            task.cancelled_stage = self._state(task, now)[0]
            task.cancel_message = "ClientError: Import task cancelled" + (f": {reason}" if reason else "")

    def _get(self, account: str, region: str, task_id: str) -> ImportTask:
        task = self._tasks.get((account, region), {}).get(task_id)
        if task is None:
            raise EC2ClientError(
                "InvalidConversionTaskId.Malformed",
                f"The import task ID '{task_id}' is malformed or does not exist.",
            )
        return task

    def _find_id(self, task_id: str) -> ImportTask | None:
        for tasks in self._tasks.values():
            if task_id in tasks:
                return tasks[task_id]
        return None

    def _apply(self, task: ImportTask, fault: TaskFault, stage: int) -> None:
        if fault.kind == "corrupt":
            task.corrupt = True
        elif fault.kind == "stall":
            task.stall_stage = stage
        else:
            task.failures["fault"] = (stage, fault.message)

    def _by_time(self, task: ImportTask, now: float) -> int:
        return stages.by_time(task, now, self.import_seconds)

    def _state(self, task: ImportTask, now: float) -> tuple[int, str]:
        return stages.state(task, now, self.import_seconds)

    def _ended_at(self, task: ImportTask, now: float) -> float | None:
        return stages.ended_at(task, now, self.import_seconds)

    def _view(self, task: ImportTask, now: float) -> dict[str, Any]:
        return stages.task_view(task, now, self.import_seconds)

    def _expire(self, now: float) -> None:
        """Forget the tasks that ended more than RETENTION_SECONDS ago (and their tokens)."""
        for tasks in self._tasks.values():
            for task_id, task in list(tasks.items()):
                ended_at = self._ended_at(task, now)
                if ended_at is not None and now - ended_at >= RETENTION_SECONDS:
                    del tasks[task_id]
        for token, task_id in list(self._tokens.items()):
            if task_id not in self._tasks.get(token[:2], {}):
                del self._tokens[token]

    def _advance(self, task: ImportTask, now: float) -> None:
        if not task.validated and task.cancelled_at is None:
            reached = self._by_time(task, now)
            if task.stall_stage is not None:
                reached = min(reached, task.stall_stage)
            if reached >= VALIDATING:
                task.validated = True
                failure = self.validator(task) if self.validator is not None else None
                if failure is not None:
                    stage_name, message = failure
                    task.failures["check"] = (STAGE_NAMES.index(stage_name), message)
        stage, outcome = self._state(task, now)
        if stage >= VALIDATED and task.disk_sizes is None:
            task.disk_sizes = [resources.disk_size(task, disk) for disk in task.disks]
        if outcome in (ACTIVE, DONE) and stage >= PREPARING_AMI and not task.snapshot_ids:
            task.snapshot_ids = resources.create_snapshots(task)
        if outcome == FAILED and task.snapshot_ids:
            resources.delete_snapshots(task)
        if outcome == DONE and task.image_id is None:
            task.image_id = resources.register_image(task)


def _matches(view: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Whether a task view passes every filter (task-state, tag:KEY); values are ORed."""
    tags = {tag["Key"]: tag["Value"] for tag in view["Tags"]}
    for name, values in filters.items():
        value = view["Status"] if name == "task-state" else tags.get(name[len("tag:") :])
        if value not in values:
            return False
    return True


def _token_for(view: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(view["ImportTaskId"].encode()).decode()


def _token_position(token: str | None, views: list[dict[str, Any]]) -> int:
    """Where the page that `token` asks for starts in `views`."""
    if not token:
        return 0
    try:
        task_id = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        task_id = ""
    for n, view in enumerate(views):
        if view["ImportTaskId"] == task_id:
            return n
    raise EC2ClientError("InvalidPaginationToken", f"The pagination token {token} is not valid or has expired.")
