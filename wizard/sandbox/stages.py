"""The stages of an import image task, where the sandbox clock puts a task, and what it shows there.

A task's progress is a function of the sandbox clock: `import_seconds` after
it was created it is completed. On the way it goes through the stages AWS
reports (Status stays "active" while StatusMessage names the stage):

    pending "2" -> validating "3" -> validated "6" -> converting "28"
    -> updating "39" -> booting "58" -> preparing ami "80" -> completed

Completed carries Status "completed" and neither StatusMessage nor Progress.
`state` says which stage a task is at and whether it is running or how it
ended; a stall keeps it at a stage, a failure ends it at the end of the stage
it failed at, a cancel ends it "deleting" for `DELETING_SHARE` of an import,
then "deleted". `ended_at` says when a task reached its final state.

`task_view` is the task as DescribeImportImageTasks shows it (an ImportImageTask):
the request's fields, Status, StatusMessage and Progress of its stage, and per
disk a SnapshotDetail with what the stages so far have found out (Format,
DiskImageSize, DeviceName, SnapshotId).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wizard.sandbox.faults import STAGE_NAMES

if TYPE_CHECKING:
    from wizard.sandbox.taskstore import ImportTask

TASK_RESOURCE_TYPE = "import-image-task"
# How long a cancelled task shows "deleting" before "deleted", as a share of import_seconds.
DELETING_SHARE = 0.05


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


def by_time(task: ImportTask, now: float, import_seconds: float) -> int:
    """The stage the clock alone puts the task at (COMPLETED when its time is up)."""
    share = (now - task.created) / import_seconds
    if share >= 1:
        return COMPLETED
    return max(n for n, stage in enumerate(STAGES) if stage.starts_at <= share)


def state(task: ImportTask, now: float, import_seconds: float) -> tuple[int, str]:
    """The task's stage (the last one it reached, if it ended) and ACTIVE/DONE/FAILED/CANCELLED."""
    if task.cancelled_stage is not None:
        return task.cancelled_stage, CANCELLED
    stage = by_time(task, now, import_seconds)
    if task.stall_stage is not None:
        stage = min(stage, task.stall_stage)
    failure = task.failure
    if failure is not None and stage > failure[0]:
        return failure[0], FAILED
    return stage, DONE if stage == COMPLETED else ACTIVE


def ended_at(task: ImportTask, now: float, import_seconds: float) -> float | None:
    """When the task reached its final state, if it has."""
    outcome = state(task, now, import_seconds)[1]
    if outcome == CANCELLED:
        deleted_at = task.cancelled_at + DELETING_SHARE * import_seconds  # type: ignore[operator]
        return deleted_at if now >= deleted_at else None
    if outcome == FAILED:
        ends = task.failure[0] + 1  # type: ignore[index]
        share = STAGES[ends].starts_at if ends < len(STAGES) else 1.0
        return task.created + share * import_seconds
    if outcome == DONE:
        return task.created + import_seconds
    return None


def task_view(task: ImportTask, now: float, import_seconds: float) -> dict[str, Any]:
    """The task as DescribeImportImageTasks shows it at `now` (an ImportImageTask)."""
    stage, outcome = state(task, now, import_seconds)
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
        view["Status"] = "deleted" if ended_at(task, now, import_seconds) is not None else "deleting"
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


def _device_name(n: int) -> str:
    return "/dev/sda1" if n == 0 else f"/dev/sd{chr(ord('a') + n)}"


def _task_tags(params: dict[str, Any]) -> list[dict[str, str]]:
    return [
        tag
        for spec in params.get("TagSpecifications") or []
        if spec.get("ResourceType") == TASK_RESOURCE_TYPE
        for tag in spec.get("Tags") or []
    ]
