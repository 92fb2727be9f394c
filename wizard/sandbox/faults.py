"""Faults the sandbox can be told to inject, as AWS shows them: off unless asked for.

Faults are set over HTTP (`POST /_sandbox/faults`, see `wizard.sandbox.server`)
or at start from the env var SANDBOX_FAULTS; both take the same JSON object,
whose keys are fault kinds:

Call faults act on EC2 calls before moto sees them (a failed call has no
effect, as a throttled EC2 call has none):

    {"throttle": {...}}        HTTP 503, EC2 error code RequestLimitExceeded
                               ("Request limit exceeded."), which botocore's
                               retry logic (legacy and standard) retries
    {"internal_error": {...}}  HTTP 500, EC2 error code InternalError
    {"slow": {"seconds": 2, ...}}  the answer comes `seconds` (real time) later

  Each takes:
    "actions": ["ImportImage", ...]  EC2 actions it applies to (default: all)
    "rate": 0.3     share of the matching calls it hits (default 1.0), drawn
                    from a random generator seeded with "seed" (default 0), so
                    the same sequence of calls is hit the same way every time
    "every": N      instead of a rate: every Nth matching call (N, 2N, ...)
    "count": N      at most N hits, then the fault is spent (stays listed)
    "task_ids": ["import-ami-..."]  only calls that name one of these tasks
                    (ImportTaskId, or one of a DescribeImportImageTasks batch's
                    ImportTaskIds): e.g. one batch answered with 500 while the
                    others are fine

Task faults act on import tasks created while they are set, or on one
existing task if they name its "task_id":

    {"stall": {"stage": "updating"}}
        the task stops advancing at that stage (StatusMessage stays); one that
        is already past it stops where it is. Clearing the faults (DELETE)
        lets stalled tasks go on from the start of the stage they stalled at.
    {"fail": {"stage": "booting", "message": "ClientError: Unknown OS / Missing OS files."}}
        the task shows that stage, then ends at the stage's end with Status
        "deleted" and StatusMessage `message` (default "ClientError: Sandbox
        fault at <stage>"). One already past the stage fails at the end of
        the stage it is at.

  Both also take "count": N (only the next N new tasks); "stage" is one of
  pending, validating, validated, converting, updating, booting, preparing ami.

    {"corrupt": {"task_id": "import-ami-..."}}
        every answer that shows this task (DescribeImportImageTasks, or an
        ImportImage with its ClientToken) is not well-formed XML: its
        StatusMessage carries a NUL, as the answers did after a value stored
        before the sandbox checked its input (botocore raises
        ResponseParserError). Only for an existing task; DELETE undoes it.

A POST merges: each kind given replaces that kind's setting, a kind set to null
is removed; task-specific faults are applied to their task at once.
"""

from __future__ import annotations

import copy
import json
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

CALL_KINDS = ("throttle", "internal_error", "slow")
TASK_KINDS = ("stall", "fail", "corrupt")
KINDS = CALL_KINDS + TASK_KINDS
STAGE_NAMES = (
    "pending",
    "validating",
    "validated",
    "converting",
    "updating",
    "booting",
    "preparing ami",
)


class FaultSpecError(ValueError):
    """A fault specification the sandbox cannot use; the message says why."""


@dataclass(frozen=True)
class CallError:
    """An error answer in EC2's query-protocol XML."""

    status: int
    code: str
    message: str

    def body(self, request_id: str) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{escape(self.code)}</Code>"
            f"<Message>{escape(self.message)}</Message></Error></Errors>"
            f"<RequestID>{escape(request_id)}</RequestID></Response>"
        ).encode()


THROTTLED = CallError(503, "RequestLimitExceeded", "Request limit exceeded.")
INTERNAL_ERROR = CallError(500, "InternalError", "An internal error has occurred.")


@dataclass
class CallFault:
    """One call fault: which calls it hits, and how often."""

    kind: str
    spec: dict[str, Any]  # as given, for GET
    actions: frozenset[str] | None
    task_ids: frozenset[str] | None
    rate: float
    every: int | None
    count: int | None
    seconds: float
    matched: int = 0
    injected: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def hits(self, action: str, task_ids: frozenset[str] = frozenset()) -> bool:
        """Whether this call (naming `task_ids`) is hit (counts it either way); not thread-safe."""
        if self.actions is not None and action not in self.actions:
            return False
        if self.task_ids is not None and not self.task_ids & task_ids:
            return False
        self.matched += 1
        if self.count is not None and self.injected >= self.count:
            return False
        hit = self.matched % self.every == 0 if self.every is not None else self.rng.random() < self.rate
        if hit:
            self.injected += 1
        return hit

    def status(self) -> dict[str, Any]:
        return {**self.spec, "matched": self.matched, "injected": self.injected}


@dataclass(frozen=True)
class TaskFault:
    """A stall or failure for tasks: at which stage, and the failure's message."""

    kind: str
    stage: int  # index into STAGE_NAMES
    message: str = ""

    def describe(self) -> dict[str, Any]:
        if self.kind == "corrupt":
            return {}
        spec: dict[str, Any] = {"stage": STAGE_NAMES[self.stage]}
        if self.kind == "fail":
            spec["message"] = self.message
        return spec


@dataclass
class NewTaskFault:
    """A task fault for tasks created while it is set (at most `count` of them)."""

    fault: TaskFault
    spec: dict[str, Any]
    count: int | None
    applied: int = 0

    def status(self) -> dict[str, Any]:
        return {**self.spec, "applied": self.applied}


def parse(document: Any) -> dict[str, Any]:
    """Check a faults document (a dict, or JSON text); returns it as a dict.

    Raises FaultSpecError naming what is wrong.
    """
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document or "{}")
        except ValueError as error:
            raise FaultSpecError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise FaultSpecError("the faults must be a JSON object of kind: spec")
    for kind, spec in document.items():
        if kind not in KINDS:
            raise FaultSpecError(f"unknown fault kind {kind!r}; the kinds are {', '.join(KINDS)}")
        if spec is None:
            continue
        if not isinstance(spec, dict):
            raise FaultSpecError(f"{kind}: the spec must be an object or null")
        if kind in CALL_KINDS:
            make_call_fault(kind, spec)
        else:
            make_task_fault(kind, spec)
    return document


def _number(kind: str, spec: dict[str, Any], name: str, low: float, high: float | None = None) -> float | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultSpecError(f"{kind}.{name} must be a number, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise FaultSpecError(f"{kind}.{name} must be {bound}, not {value}")
    return value


def _integer(kind: str, spec: dict[str, Any], name: str, low: int) -> int | None:
    value = _number(kind, spec, name, low)
    if value is not None and value != int(value):
        raise FaultSpecError(f"{kind}.{name} must be a whole number, not {value}")
    return None if value is None else int(value)


def _check_keys(kind: str, spec: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise FaultSpecError(f"{kind}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def make_call_fault(kind: str, spec: dict[str, Any]) -> CallFault:
    allowed = ("actions", "task_ids", "rate", "seed", "every", "count") + (("seconds",) if kind == "slow" else ())
    _check_keys(kind, spec, allowed)
    actions = spec.get("actions")
    if actions is not None and (not isinstance(actions, list) or not all(isinstance(a, str) and a for a in actions)):
        raise FaultSpecError(f"{kind}.actions must be a list of EC2 action names")
    task_ids = spec.get("task_ids")
    if task_ids is not None and (
        not isinstance(task_ids, list) or not task_ids or not all(isinstance(t, str) and t for t in task_ids)
    ):
        raise FaultSpecError(f"{kind}.task_ids must be a non-empty list of import task ids")
    rate = _number(kind, spec, "rate", 0.0, 1.0)
    every = _integer(kind, spec, "every", 1)
    if rate is not None and every is not None:
        raise FaultSpecError(f"{kind}: give rate or every, not both")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, str)):
        raise FaultSpecError(f"{kind}.seed must be an integer or a string")
    seconds = _number(kind, spec, "seconds", 0.0, 300.0)
    if kind == "slow" and seconds is None:
        raise FaultSpecError("slow.seconds is required")
    return CallFault(
        kind=kind,
        spec=copy.deepcopy(spec),
        actions=frozenset(actions) if actions is not None else None,
        task_ids=frozenset(task_ids) if task_ids is not None else None,
        rate=1.0 if rate is None else rate,
        every=every,
        count=_integer(kind, spec, "count", 0),
        seconds=seconds or 0.0,
        rng=random.Random(seed),
    )


def make_task_fault(kind: str, spec: dict[str, Any]) -> tuple[TaskFault, str | None, int | None]:
    """The fault, the task id it names (if any) and its count (if any)."""
    if kind == "corrupt":
        _check_keys(kind, spec, ("task_id",))
        task_id = spec.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise FaultSpecError("corrupt.task_id is required: the id of the task whose answers break")
        return TaskFault(kind, 0), task_id, None
    allowed = ("stage", "task_id", "count") + (("message",) if kind == "fail" else ())
    _check_keys(kind, spec, allowed)
    stage = spec.get("stage")
    if stage not in STAGE_NAMES:
        raise FaultSpecError(f"{kind}.stage must be one of {', '.join(STAGE_NAMES)}, not {stage!r}")
    message = spec.get("message", f"ClientError: Sandbox fault at {stage}")
    if not isinstance(message, str) or not message:
        raise FaultSpecError(f"{kind}.message must be a non-empty string")
    task_id = spec.get("task_id")
    if task_id is not None and not isinstance(task_id, str):
        raise FaultSpecError(f"{kind}.task_id must be a string")
    count = _integer(kind, spec, "count", 0)
    if task_id is not None and count is not None:
        raise FaultSpecError(f"{kind}: give task_id or count, not both")
    return TaskFault(kind, STAGE_NAMES.index(stage), message if kind == "fail" else ""), task_id, count


def pinned(document: dict[str, Any]) -> list[tuple[TaskFault, str]]:
    """The task-specific faults of a checked document: (fault, task id)."""
    found = []
    for kind in TASK_KINDS:
        spec = document.get(kind)
        if spec is not None:
            fault, task_id, _ = make_task_fault(kind, spec)
            if task_id is not None:
                found.append((fault, task_id))
    return found


class Faults:
    """The faults in force in one sandbox; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, CallFault] = {}
        self._new_tasks: dict[str, NewTaskFault] = {}

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self._new_tasks.clear()

    def update(self, document: dict[str, Any]) -> None:
        """Merge a checked document in (its task-specific faults are left to `pinned`)."""
        parse(document)
        with self._lock:
            for kind, spec in document.items():
                if spec is None:
                    self._calls.pop(kind, None)
                    self._new_tasks.pop(kind, None)
                elif kind in CALL_KINDS:
                    self._calls[kind] = make_call_fault(kind, spec)
                else:
                    fault, task_id, count = make_task_fault(kind, spec)
                    if task_id is None:
                        self._new_tasks[kind] = NewTaskFault(fault, copy.deepcopy(spec), count)

    @property
    def active(self) -> bool:
        """Whether any call fault is set (only then do calls need looking at)."""
        return bool(self._calls)

    def for_call(self, action: str, task_ids: Iterable[str] = ()) -> tuple[float, CallError | None]:
        """What to do to an EC2 call (naming `task_ids`): seconds to delay it, and the error to answer instead."""
        named = frozenset(task_ids)
        with self._lock:
            delay = 0.0
            slow = self._calls.get("slow")
            if slow is not None and slow.hits(action, named):
                delay = slow.seconds
            for kind, error in (("throttle", THROTTLED), ("internal_error", INTERNAL_ERROR)):
                fault = self._calls.get(kind)
                if fault is not None and fault.hits(action, named):
                    return delay, error
            return delay, None

    def for_new_task(self) -> list[TaskFault]:
        """The task faults a task created now gets (counting it against their `count`)."""
        with self._lock:
            given = []
            for new in self._new_tasks.values():
                if new.count is None or new.applied < new.count:
                    new.applied += 1
                    given.append(new.fault)
            return given

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                **{kind: fault.status() for kind, fault in self._calls.items()},
                **{kind: new.status() for kind, new in self._new_tasks.items()},
            }
