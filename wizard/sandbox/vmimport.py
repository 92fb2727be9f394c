"""VM Import's image tasks for moto: ImportImage, DescribeImportImageTasks, CancelImportTask.

moto 5.2.5 answers these three EC2 actions with NotImplementedError. `install`
adds them to `moto.ec2.responses.EC2Response` (moto dispatches a query action
to the method named `camelcase_to_underscores(Action)`), so boto3 and the AWS
CLI get answers shaped by botocore's ec2 model, as from AWS.

A task's progress is a function of the sandbox clock: `import_seconds` after
it was created it is completed. On the way it goes through the stages AWS
reports (Status stays "active" while StatusMessage names the stage):

    pending "2" -> validating "3" -> validated "6" -> converting "28"
    -> updating "39" -> booting "58" -> preparing ami "80" -> completed

Completed carries Status "completed" and neither StatusMessage nor Progress.
What a stage brings is produced when the task is first seen at or past it:
disk sizes are read from moto's S3 at "validated" (DiskImageSize is in bytes,
as AWS reports it despite the API reference saying GiB), EBS snapshots are
created in moto's EC2 at "preparing ami", and the AMI is registered at
"completed". `ImportTasks.tick` brings every task up to date; the sandbox
server calls it before each request so the AMI exists as soon as the clock
says so, whichever call looks first.

A task can also fail, as on AWS after the call was accepted: it shows the stage
it failed at until that stage's end, then Status "deleted" with a StatusMessage
"ClientError: ..." (any snapshots it made are deleted, no AMI is registered).
Failures come from the `validator` (the checks of the disk images, the role and
the KMS key, see `wizard.sandbox.imagecheck`), run once when the task reaches
"validating", and from the faults set on the sandbox (`wizard.sandbox.faults`):
a "fail" fault does the same at a chosen stage, a "stall" fault keeps a task at
a stage until the faults are cleared.

A task that has ended (completed, failed, or deleted after a cancel) stays
visible for `RETENTION_SECONDS` (7 days, sandbox clock), as on AWS; after
that it is gone, and asking for its id is the error an unknown id gets.
"""

from __future__ import annotations

import base64
import binascii
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami
from moto.ec2.responses import EC2Response
from moto.ec2.utils import random_ami_id, random_id
from moto.iam.exceptions import NotFoundException as IAMNotFound
from moto.iam.models import iam_backends
from moto.utilities.utils import get_partition

from wizard.sandbox import imagecheck
from wizard.sandbox.clock import SandboxClock
from wizard.sandbox.faults import STAGE_NAMES, Faults, FaultSpecError, TaskFault

DEFAULT_ROLE = "vmimport"
VMIE_PRINCIPAL = "vmie.amazonaws.com"
TASK_RESOURCE_TYPE = "import-image-task"
ARCHITECTURES = ("i386", "x86_64")
BOOT_MODES = ("legacy-bios", "uefi")
DISK_SOURCES = ("UserBucket", "Url", "SnapshotId")
GIB = 2**30
# Size of a snapshot whose source size the sandbox cannot see (a Url or SnapshotId source).
UNKNOWN_DISK_GIB = 8
# How long a cancelled task shows "deleting" before "deleted", as a share of import_seconds.
DELETING_SHARE = 0.05
# How long an ended task stays visible to DescribeImportImageTasks (sandbox seconds).
RETENTION_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Stage:
    """One step of a running import, as DescribeImportImageTasks reports it."""

    message: str  # the StatusMessage
    progress: str  # the Progress
    starts_at: float  # when it begins, as a share of the import's duration


STAGES = (
    Stage("pending", "2", 0.0),
    Stage("validating", "3", 0.05),
    Stage("validated", "6", 0.10),
    Stage("converting", "28", 0.15),
    Stage("updating", "39", 0.45),
    Stage("booting", "58", 0.65),
    Stage("preparing ami", "80", 0.80),
)
PENDING, VALIDATING, VALIDATED, CONVERTING, UPDATING, BOOTING, PREPARING_AMI = range(7)
COMPLETED = len(STAGES)
assert tuple(stage.message for stage in STAGES) == STAGE_NAMES

# What a task is doing: running, or how it ended.
ACTIVE, DONE, FAILED, CANCELLED = "active", "completed", "failed", "cancelled"


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
            _delete_snapshots(task)
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
        """The stage the clock alone puts the task at (COMPLETED when its time is up)."""
        share = (now - task.created) / self.import_seconds
        if share >= 1:
            return COMPLETED
        return max(n for n, stage in enumerate(STAGES) if stage.starts_at <= share)

    def _state(self, task: ImportTask, now: float) -> tuple[int, str]:
        """The task's stage (the last one it reached, if it ended) and ACTIVE/DONE/FAILED/CANCELLED."""
        if task.cancelled_stage is not None:
            return task.cancelled_stage, CANCELLED
        stage = self._by_time(task, now)
        if task.stall_stage is not None:
            stage = min(stage, task.stall_stage)
        failure = task.failure
        if failure is not None and stage > failure[0]:
            return failure[0], FAILED
        return stage, DONE if stage == COMPLETED else ACTIVE

    def _ended_at(self, task: ImportTask, now: float) -> float | None:
        """When the task reached its final state, if it has."""
        outcome = self._state(task, now)[1]
        if outcome == CANCELLED:
            deleted_at = task.cancelled_at + DELETING_SHARE * self.import_seconds  # type: ignore[operator]
            return deleted_at if now >= deleted_at else None
        if outcome == FAILED:
            ends = task.failure[0] + 1  # type: ignore[index]
            share = STAGES[ends].starts_at if ends < len(STAGES) else 1.0
            return task.created + share * self.import_seconds
        if outcome == DONE:
            return task.created + self.import_seconds
        return None

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
            task.disk_sizes = [_disk_size(task, disk) for disk in task.disks]
        if outcome in (ACTIVE, DONE) and stage >= PREPARING_AMI and not task.snapshot_ids:
            task.snapshot_ids = _create_snapshots(task)
        if outcome == FAILED and task.snapshot_ids:
            _delete_snapshots(task)
        if outcome == DONE and task.image_id is None:
            task.image_id = _register_image(task)

    def _view(self, task: ImportTask, now: float) -> dict[str, Any]:
        stage, outcome = self._state(task, now)
        params = task.params
        view: dict[str, Any] = {"ImportTaskId": task.task_id}
        for key in (
            "Architecture",
            "BootMode",
            "Description",
            "Encrypted",
            "Hypervisor",
            "KmsKeyId",
            "LicenseSpecifications",
            "LicenseType",
            "Platform",
            "UsageOperation",
        ):
            if params.get(key) is not None:
                view[key] = params[key]
        view["Tags"] = _task_tags(params)  # AWS always sends the tag set, empty or not
        if stage >= UPDATING:  # what the service detects in the image
            view.setdefault("Architecture", "x86_64")
            view.setdefault("Platform", "Linux")
            if "UsageOperation" not in view:
                view.setdefault("LicenseType", "AWS" if view["Platform"] == "Windows" else "BYOL")
        if outcome == CANCELLED:
            view["Status"] = "deleted" if self._ended_at(task, now) is not None else "deleting"
            view["StatusMessage"] = task.cancel_message
        elif outcome == FAILED:
            view["Status"] = "deleted"
            view["StatusMessage"] = task.failure[1]  # type: ignore[index]
        elif outcome == DONE:
            view["Status"] = "completed"
            view["ImageId"] = task.image_id
        else:
            view["Status"] = "active"
            view["StatusMessage"] = STAGES[stage].message
            view["Progress"] = STAGES[stage].progress
        view["SnapshotDetails"] = [_disk_view(task, n, disk, stage) for n, disk in enumerate(task.disks)]
        if task.corrupt:  # moto writes it as it is: the answer is no longer well-formed XML
            view["StatusMessage"] = view.get("StatusMessage", "") + "\x00"
        return view


def _disk_view(task: ImportTask, n: int, disk: dict[str, Any], stage: int) -> dict[str, Any]:
    """One SnapshotDetail: the request's disk plus what the stage has found out."""
    view: dict[str, Any] = {"DiskImageSize": 0.0}
    for key in ("Description", "DeviceName", "Url", "UserBucket"):
        if disk.get(key):
            view[key] = disk[key]
    disk_format = str(disk.get("Format", "")).upper()
    if disk_format:
        # An OVA is unpacked during validation; its disk is converted as a VMDK.
        view["Format"] = "VMDK" if disk_format == "OVA" and stage >= CONVERTING else disk_format
    if stage >= VALIDATING:
        view["Status"] = "active" if stage == VALIDATING else "completed"
    if stage >= VALIDATED and task.disk_sizes and task.disk_sizes[n] is not None:
        view["DiskImageSize"] = task.disk_sizes[n]
    if stage >= UPDATING:
        view.setdefault("DeviceName", _device_name(n))
    if task.snapshot_ids:
        view["SnapshotId"] = task.snapshot_ids[n]
    return view


def _matches(view: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Whether a task view passes every filter (task-state, tag:KEY); values are ORed."""
    tags = {tag["Key"]: tag["Value"] for tag in view["Tags"]}
    for name, values in filters.items():
        value = view["Status"] if name == "task-state" else tags.get(name[len("tag:") :])
        if value not in values:
            return False
    return True


def _device_name(n: int) -> str:
    return "/dev/sda1" if n == 0 else f"/dev/sd{chr(ord('a') + n)}"


def _task_tags(params: dict[str, Any]) -> list[dict[str, str]]:
    return [
        tag
        for spec in params.get("TagSpecifications") or []
        if spec.get("ResourceType") == TASK_RESOURCE_TYPE
        for tag in spec.get("Tags") or []
    ]


def _disk_size(task: ImportTask, disk: dict[str, Any]) -> float | None:
    """The size in bytes of the disk's S3 object (UserBucket or s3:// Url), if it is in moto's S3."""
    location = imagecheck.s3_location(disk)
    if location is None:
        return None
    reader = imagecheck.open_object(task.account, task.region, *location)
    return float(reader.size) if reader is not None else None


def _create_snapshots(task: ImportTask) -> list[str]:
    """One EBS snapshot per disk, sized like the disk, as VM Import makes them."""
    backend = ec2_backends[task.account][task.region]
    encrypted = bool(task.params.get("Encrypted"))
    key_id = task.params.get("KmsKeyId") if encrypted else None
    if key_id:  # snapshots name their key by ARN, however the request named it
        key = imagecheck.kms_key(task.account, task.region, key_id)
        key_id = key.arn if key is not None else key_id
    ids = []
    for size in task.disk_sizes or [None] * len(task.disks):
        volume = backend.create_volume(
            size=max(1, math.ceil(size / GIB)) if size else UNKNOWN_DISK_GIB,
            zone_name=f"{task.region}a",
            encrypted=encrypted,
            kms_key_id=key_id,
        )
        snapshot = backend.create_snapshot(volume.id, f"Created by AWS-VMImport service for {task.task_id}")
        snapshot.kms_key_id = volume.kms_key_id  # moto's create_snapshot drops it
        backend.delete_volume(volume.id)
        ids.append(snapshot.id)
    return ids


def _delete_snapshots(task: ImportTask) -> None:
    """Delete the snapshots an import made (it was cancelled or failed)."""
    backend = ec2_backends[task.account][task.region]
    for snapshot_id in task.snapshot_ids:
        backend.delete_snapshot(snapshot_id)
    task.snapshot_ids = []


def _register_image(task: ImportTask) -> str:
    """Register the AMI of a completed task, its root device on the first snapshot."""
    backend = ec2_backends[task.account][task.region]
    params = task.params
    ami = Ami(
        backend,
        random_ami_id(),
        name=task.task_id,
        description=params.get("Description"),
        architecture=params.get("Architecture") or "x86_64",
        platform="windows" if params.get("Platform") == "Windows" else None,
        virtualization_type="hvm",
        hypervisor="xen",
        root_device_type="ebs",
        boot_mode=params.get("BootMode") or "legacy-bios",
        region_name=f"{task.region}a",
    )
    # moto's Ami makes its own 15 GiB snapshot; the import's root snapshot replaces it.
    backend.delete_snapshot(ami.ebs_snapshot.id)
    ami.ebs_snapshot = backend.get_snapshot(task.snapshot_ids[0])
    ami.ebs_snapshot.from_ami = ami.id
    backend.amis[ami.id] = ami
    return ami.id


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


# The task store the installed actions use; set by `install`.
_tasks: ImportTasks | None = None


def install(tasks: ImportTasks) -> None:
    """Make moto's EC2 answer the three VM Import image actions from `tasks`."""
    global _tasks
    _tasks = tasks
    EC2Response.import_image = _import_image  # type: ignore[attr-defined]
    EC2Response.describe_import_image_tasks = _describe_import_image_tasks  # type: ignore[attr-defined]
    EC2Response.cancel_import_task = _cancel_import_task  # type: ignore[attr-defined]


def _store() -> ImportTasks:
    if _tasks is None:
        raise RuntimeError("wizard.sandbox.vmimport.install() has not been called")
    return _tasks


def _import_image(self: EC2Response) -> ActionResult:
    params = {
        key: value for key, value in self.params.items() if key not in ("ClientToken", "DryRun") and value is not None
    }
    _validate_import(params)
    self.error_on_dryrun()
    store = _store()
    account, region = self.current_account, self.region
    client_token = self._get_param("ClientToken")
    task = store.find(account, region, client_token, params)
    if task is None:
        _require_role(account, region, params.get("RoleName") or DEFAULT_ROLE)
        task = store.create(account, region, params, client_token)
    return ActionResult(store.view(task))


def _validate_import(params: dict[str, Any]) -> None:
    """Reject what EC2 rejects at once with InvalidParameter."""
    disks = params.get("DiskContainers") or []
    if not disks:
        raise EC2ClientError("InvalidParameter", "The request must contain the parameter DiskContainers")
    for n, disk in enumerate(disks, start=1):
        sources = [key for key in DISK_SOURCES if disk.get(key)]
        if len(sources) != 1:
            raise EC2ClientError(
                "InvalidParameter",
                f"DiskContainer.{n} must have exactly one of UserBucket, Url or SnapshotId.",
            )
        bucket = disk.get("UserBucket")
        if bucket and not (bucket.get("S3Bucket") and bucket.get("S3Key")):
            raise EC2ClientError("InvalidParameter", f"DiskContainer.{n}.UserBucket needs S3Bucket and S3Key.")
    architecture = params.get("Architecture")
    if architecture is not None and architecture not in ARCHITECTURES:
        raise EC2ClientError("InvalidParameter", f"architecture={architecture} has an invalid format")
    boot_mode = params.get("BootMode")
    if boot_mode is not None and boot_mode not in BOOT_MODES:
        raise EC2ClientError("InvalidParameter", f"boot-mode={boot_mode} has an invalid format")
    for spec in params.get("TagSpecifications") or []:
        if spec.get("ResourceType") != TASK_RESOURCE_TYPE:
            raise EC2ClientError(
                "InvalidParameter",
                f"'{spec.get('ResourceType')}' is not a valid taggable resource type for this operation.",
            )


def _require_role(account: str, region: str, role_name: str) -> None:
    """The service role must exist and trust vmie.amazonaws.com."""
    try:
        role = iam_backends[account][get_partition(region)].get_role(role_name)
    except IAMNotFound:
        role = None
    if role is None or VMIE_PRINCIPAL not in role.assume_role_policy_document:
        raise EC2ClientError(
            "InvalidParameter",
            f"The service role {role_name} provided does not exist or does not have sufficient permissions",
        )


def _describe_import_image_tasks(self: EC2Response) -> ActionResult:
    self.error_on_dryrun()
    # moto annotates it dict[str, str]: the values are the filters' lists of Values
    filters = cast("dict[str, list[str]]", self._filters_from_querystring())
    for name in filters:
        if name != "task-state" and not name.startswith("tag:"):
            raise EC2ClientError("InvalidParameterValue", f"The filter '{name}' is invalid")
    max_results = self._get_param("MaxResults")
    if max_results is not None and max_results < 1:
        raise EC2ClientError("InvalidParameterValue", f"Value ({max_results}) for parameter maxResults is invalid.")
    tasks, next_token = _store().describe(
        self.current_account,
        self.region,
        self._get_param("ImportTaskIds") or [],
        filters,
        max_results,
        self._get_param("NextToken"),
    )
    result: dict[str, Any] = {"ImportImageTasks": tasks}
    if next_token:
        result["NextToken"] = next_token
    return ActionResult(result)


def _cancel_import_task(self: EC2Response) -> ActionResult:
    self.error_on_dryrun()
    task_id = self._get_param("ImportTaskId")
    if not task_id:
        raise EC2ClientError("MissingParameter", "The request must contain the parameter ImportTaskId")
    _store().cancel(self.current_account, self.region, task_id, self._get_param("CancelReason"))
    return ActionResult({"ImportTaskId": task_id, "PreviousState": "active", "State": "deleting"})
