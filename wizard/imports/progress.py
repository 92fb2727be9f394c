"""The progress page's figures from a task's state (pure: no database, no AWS)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# The stages a user sees, in order; AWS's finer StatusMessages fold into them.
STEPPER = ("pending", "validating", "converting", "updating", "booting", "preparing ami", "completed")
_FOLD = {
    "validated": "validating",
    "updated": "updating",
    "preparing to boot": "booting",
    "booted": "booting",
}


def stage_of(status: str, status_message: str) -> str:
    if status == "completed":
        return "completed"
    message = (status_message or "").strip().lower()
    return _FOLD.get(message, message if message in STEPPER else "pending")


@dataclass(frozen=True)
class StepperItem:
    name: str
    state: str  # "done" | "current" | "todo" | "failed"


def stepper(status: str, status_message: str, failed: bool) -> list[StepperItem]:
    current = STEPPER.index(stage_of(status, status_message))
    items = []
    for i, name in enumerate(STEPPER):
        if i < current or (status == "completed" and i == current):
            state = "done"
        elif i == current:
            state = "failed" if failed else "current"
        else:
            state = "todo"
        items.append(StepperItem(name, state))
    return items


def time_left(elapsed: timedelta, progress: int | None) -> timedelta | None:
    """A plain estimate from the pace so far: the rest at the same speed (None until it moves)."""
    if progress is None or progress < 3 or progress >= 100:
        return None
    return elapsed * (100 - progress) / progress


def is_stalled(changed_at: datetime, now: datetime, final: bool, threshold: timedelta) -> bool:
    return not final and now - changed_at > threshold


def disk_progress(snapshot_details: list[dict]) -> list[dict]:
    """Per disk: its device, format, size and status as DescribeImportImageTasks reports them."""
    disks = []
    for i, d in enumerate(snapshot_details or []):
        progress: Any = d.get("Progress")
        disks.append(
            {
                "index": i,
                "device": d.get("DeviceName", ""),
                "format": d.get("Format", ""),
                "size": d.get("DiskImageSize"),
                "status": d.get("Status", ""),
                "message": d.get("StatusMessage", ""),
                "progress": int(progress)
                if str(progress or "").isdigit()
                else (100 if d.get("Status") == "completed" else None),
                "snapshot_id": d.get("SnapshotId", ""),
            }
        )
    return disks


def rough_duration(value: timedelta) -> str:
    """A running import's time to the minute (`under a minute`, `3 min`, `1 h 02 min`).

    To the minute: the words of the progress partial, as of its render. static/js/wizard.js
    writes the same words as the time goes by ([data-elapsed]), so the partial's ETag need not
    cover them and an unchanged poll is answered 304 however long the import runs.
    """
    minutes = max(0, int(value.total_seconds())) // 60
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min" if minutes else "under a minute"


def fingerprint(shown: list[object]) -> str:
    """A strong ETag (quoted) for the values a page shows: equal values, equal tags."""
    payload = json.dumps(shown, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(payload.encode()).hexdigest()[:32] + '"'
