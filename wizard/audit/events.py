"""An audit event as a sentence a person reads: what happened, with the changes spelled out.

Pure: `describe(action, actor=..., request=..., before=..., after=..., details=...)` takes the
event's stored fields (any JSON: old events, hand-made ones, future actions) and returns the
sentence as parts, text and `Ref`s (a request, batch, import task, AMI or snapshot id). Nothing
it is given makes it raise; an action it does not know gets a generic sentence. `as_text` joins
the parts (the CSV export); `as_html` escapes the text and links each Ref for which the caller's
`link` gives an address (only what the viewer may see: the caller decides).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape
from typing import Any

from wizard.models import ImportRequest

ARROW = " → "
# Keys told first, in this order, when an event changes several; the others follow by name.
FIRST_KEYS = ("status", "Status", "StatusMessage", "Progress")
MAX_VALUE = 160  # characters of one value in a sentence; the raw event has all of it
MAX_ITEMS = 8  # values of a list, changes of an event, ids of a batch outcome

STATUS_LABELS = dict(ImportRequest.Status.choices)

# The request's fields as the API names them (drafts' "draft saved" lists model field names).
API_NAMES = {
    "description": "Description",
    "architecture": "Architecture",
    "platform": "Platform",
    "boot_mode": "BootMode",
    "license_type": "LicenseType",
    "usage_operation": "UsageOperation",
    "hypervisor": "Hypervisor",
    "encrypted": "Encrypted",
    "kms_key_id": "KmsKeyId",
    "role_name": "RoleName",
    "license_configuration_arns": "LicenseSpecifications",
    "tags": "TagSpecifications",
    "comment": "ClientData.Comment",
    "target": "Target",
    "upload_start": "ClientData.UploadStart",
    "upload_end": "ClientData.UploadEnd",
    "upload_size": "ClientData.UploadSize",
    "disk_containers": "DiskContainers",
}

TASK_ID = re.compile(r"import-ami-[0-9a-zA-Z]{1,40}")
IMAGE_ID = re.compile(r"ami-[0-9a-f]{8,17}")
SNAPSHOT_ID = re.compile(r"snap-[0-9a-f]{8,17}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class Ref:
    """An id in a sentence: `kind` is request, batch, task, image or snapshot. A task's `request`
    is the request it runs (its page shows the task)."""

    kind: str
    value: str
    request: int | None = None

    @property
    def text(self) -> str:
        if self.kind == "request":
            return f"#{self.value}"
        if self.kind == "batch":
            return f"batch #{self.value}"
        return self.value


Part = str | Ref
Link = Callable[[Ref], str | None]


# --- values --------------------------------------------------------------------------------------


def clean(text: str, limit: int = MAX_VALUE) -> str:
    """One line of text: control characters as one space, lone surrogates as U+FFFD, at most `limit`."""
    text = SURROGATE.sub("\ufffd", CONTROL.sub(" ", text)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def value(v: Any, limit: int = MAX_VALUE) -> str:
    """Any JSON value as a person reads it."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return clean(repr(v) if isinstance(v, float) else str(v), limit)
    if isinstance(v, str):
        return clean(v, limit) if v.strip() else "empty"
    if isinstance(v, list | tuple):
        if not v:
            return "none"
        shown = ", ".join(value(i, limit) for i in list(v)[:MAX_ITEMS])
        return clean(shown + (f" and {len(v) - MAX_ITEMS} more" if len(v) > MAX_ITEMS else ""), limit)
    if isinstance(v, dict):
        return clean(json.dumps(v, ensure_ascii=False, default=str, sort_keys=True), limit)
    return clean(str(v), limit)


def size(n: Any) -> str:
    """Bytes as KiB/MiB/GiB."""
    if not isinstance(n, int | float) or isinstance(n, bool) or n < 0 or n != n:
        return ""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def status_label(v: Any) -> str:
    return STATUS_LABELS.get(v, value(v)) if isinstance(v, str) else value(v)


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    return clean(v) if isinstance(v, str) else "" if v is None else value(v)


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if abs(v) < 2**63 else None  # a database id fits 64 bits; a larger one names nothing
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) < 19:
        return int(v)
    return None


def flatten(d: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Nested dicts as dotted keys (two levels; deeper ones stay values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{clean(str(k), 60)}"
        if isinstance(v, dict) and v and depth < 2:
            out.update(flatten(v, key + ".", depth + 1))
        else:
            out[key] = v
    return out


# --- refs ----------------------------------------------------------------------------------------


def request_ref(v: Any) -> Part:
    n = _int(v)
    return Ref("request", str(n)) if n is not None and n > 0 else value(v)


def batch_ref(v: Any) -> Part:
    n = _int(v)
    return Ref("batch", str(n)) if n is not None and n > 0 else f"batch {value(v)}"


def task_ref(v: Any, request: int | None = None) -> Part:
    if isinstance(v, str) and TASK_ID.fullmatch(v):
        return Ref("task", v, request)
    return value(v)


def aws_id_ref(v: Any) -> Part:
    """An AMI or snapshot id as a Ref; anything else as text."""
    if isinstance(v, str) and IMAGE_ID.fullmatch(v):
        return Ref("image", v)
    if isinstance(v, str) and SNAPSHOT_ID.fullmatch(v):
        return Ref("snapshot", v)
    if isinstance(v, str) and TASK_ID.fullmatch(v):
        return Ref("task", v)
    return value(v)


def requests_list(ids: Any) -> list[Part]:
    """`#1, #2 and 3 more`."""
    items = ids if isinstance(ids, list) else []
    parts: list[Part] = []
    for i, pk in enumerate(items[:MAX_ITEMS]):
        if i:
            parts.append(", ")
        parts.append(request_ref(pk))
    if len(items) > MAX_ITEMS:
        parts.append(f" and {len(items) - MAX_ITEMS} more")
    return parts or ["none"]


# --- changes -------------------------------------------------------------------------------------


def changes(
    before: Any,
    after: Any,
    *,
    colon: bool = True,
    labels: dict[str, str] | None = None,
    show: Callable[[str, Any], Part] | None = None,
) -> list[Part]:
    """`Key: old → new` for each value that differs (dicts are compared key by key, nested ones flattened)."""
    show = show or (lambda key, v: value(v))
    if not isinstance(before, dict) and not isinstance(after, dict):
        if before == after:
            return []
        return [show("", before), ARROW, show("", after)]
    b, a = flatten(_dict(before)), flatten(_dict(after))
    # A fixed order: PostgreSQL's jsonb keeps a dict's keys in its own order, not the written one.
    rank = {key: i for i, key in enumerate(FIRST_KEYS)}
    keys = sorted({*b, *a}, key=lambda k: (rank.get(k.rsplit(".", 1)[-1], len(rank)), k))
    parts: list[Part] = []
    shown = 0
    for key in keys:
        if b.get(key) == a.get(key) and (key in b) == (key in a):
            continue
        if shown == MAX_ITEMS:
            parts.append(f", and {sum(1 for k in keys if b.get(k) != a.get(k)) - MAX_ITEMS} more")
            break
        if shown:
            parts.append(", ")
        label = (labels or {}).get(key, key)
        parts.append(f"{label}: " if colon else f"{label} ")
        parts += [show(key, b.get(key)) if key in b else "none", ARROW, show(key, a.get(key)) if key in a else "none"]
        shown += 1
    return parts


def _status_changes(before: Any, after: Any) -> list[Part]:
    """`Status: Waiting for review → Approved, dispatching.` (and any other field that changed)."""
    found = changes(
        before,
        after,
        labels={"status": "Status"},
        show=lambda key, v: status_label(v) if key.endswith("status") else value(v),
    )
    return [" ", *found, "."] if found else []


def _aws_value(key: str, v: Any) -> Part:
    if key.endswith("Progress") and v is not None and not isinstance(v, bool | dict | list):
        return f"{value(v)}%"
    if key.endswith("ImageId") or key.endswith("SnapshotId"):
        return aws_id_ref(v)
    if key.endswith("StatusMessage") and v == "":
        return "empty"
    return value(v)


# --- the sentences -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    action: str
    actor: str
    request: Part | None
    request_id: int | None
    before: Any
    after: Any
    details: dict[str, Any]

    @property
    def who(self) -> str:
        return "The system" if self.actor == "system" else self.actor or "Somebody"

    @property
    def req(self) -> list[Part]:
        return [self.request] if self.request is not None else ["a request"]

    def task(self) -> Part:
        return task_ref(self.details.get("import_task_id"), self.request_id)

    def reason(self, key: str = "reason", lead: str = ": ", end: str = "") -> list[Part]:
        text = _str(self.details, key)
        return [lead, text, end] if text else []


def _origin(e: Event) -> list[Part]:
    source = _str(e.details, "from")
    if not source:
        return []
    if m := re.fullmatch(r"copy of #(\d+)", source):
        return [" as a copy of ", request_ref(m[1])]
    if m := re.fullmatch(r"batch #(\d+)(?: row (\d+))?", source):
        return [" in ", batch_ref(m[1]), *([f" (row {m[2]})"] if m[2] else [])]
    if m := re.fullmatch(r"cli-input-(\w+)( via manage\.py)?", source):
        return [f" from a --cli-input-{m[1]} document" + (" (manage.py import_image)" if m[2] else "")]
    if source == "api":
        return [" through the JSON API"]
    return [f" (from {source})"]


def _draft_created(e: Event) -> list[Part]:
    parts: list[Part] = [e.who, " created draft ", *e.req, *_origin(e)]
    left = e.details.get("not_copied")
    if isinstance(left, list) and left:
        parts.append(f"; not copied (not permitted for {e.actor}): {value(left)}")
    return [*parts, "."]


def _draft_saved(e: Event) -> list[Part]:
    fields = e.details.get("fields")
    names = (
        [API_NAMES.get(f, clean(f, 60)) if isinstance(f, str) else value(f) for f in fields]
        if isinstance(fields, list)
        else []
    )
    moved = _dict(e.details.get("target"))
    target = [f"; target {value(moved.get('from'))} → {value(moved.get('to'))}"] if moved else []
    return [e.who, " saved ", *e.req, *([": ", value(names)] if names else []), *target, "."]


def _in_target(e: Event) -> list[Part]:
    """ " in <target>" for the events that name the request's target (wizard.targets.label)."""
    target = e.details.get("target")
    return [f" in {value(target)}"] if isinstance(target, str) and target else []


def _position(d: dict[str, Any]) -> str:
    n = _int(d.get("position"))
    return f"disk {n + 1}" if n is not None else "a disk"


def _disk_added(e: Event) -> list[Part]:
    return [e.who, f" added {_position(e.details)} to ", *e.req, *e.reason("source"), "."]


def _disk_removed(e: Event) -> list[Part]:
    source = _str(e.details, "source")
    return [e.who, " removed the disk ", *([source, " "] if source else []), "from ", *e.req, "."]


def _file(d: dict[str, Any]) -> str:
    name = _str(d, "file_name") or "an image"
    n = size(d.get("size_bytes"))
    return f"{name} ({n})" if n else name


def _upload_completed(e: Event) -> list[Part]:
    d = e.details
    fmt = _str(d, "format")
    crc = _str(d, "checksum_crc32")
    if e.request is None and "container" not in d:  # a loose upload, an image for a batch
        return [e.who, f" uploaded {_file(d)}, to choose for a batch", f", CRC32 {crc}" if crc else "", "."]
    return [
        e.who,
        f" uploaded {_file(d)} to ",
        *e.req,
        f" as {_position(d)}",
        f" ({fmt})" if fmt else "",
        f", CRC32 {crc}" if crc else "",
        ".",
    ]


def _upload_cancelled(e: Event) -> list[Part]:
    return [e.who, f" cancelled the upload of {_file(e.details)} to ", *e.req, "."]


def _upload_failed(e: Event) -> list[Part]:
    return [f"The upload of {_file(e.details)} to ", *e.req, " failed", *e.reason("message"), "."]


def _codes(v: Any) -> str:
    return value(v) if isinstance(v, list) and v else ""


def _image_inspected(e: Event) -> list[Part]:
    d = e.details
    source = _str(d, "source")
    fmt = _str(d, "format")
    errors, warnings = _codes(d.get("errors")), _codes(d.get("warnings"))
    verdict = "; ".join(x for x in (errors and f"errors: {errors}", warnings and f"warnings: {warnings}") if x)
    if not verdict:
        verdict = "no problems found" if d.get("ok") is not False else "not importable"
    parts: list[Part] = [f"The image of {_position(d)} of ", *e.req]
    parts += [f" ({source})" if source else "", " was inspected: ", f"{fmt}, " if fmt else "", verdict]
    changed = _dict(d.get("format_changed"))
    if changed:
        parts += ["; Format: ", value(changed.get("from")), ARROW, value(changed.get("to")), " (what the image is)"]
    return [*parts, "."]


def _submitted(e: Event) -> list[Part]:
    return [e.who, " submitted ", *e.req, *_in_target(e), " for review.", *_status_changes(e.before, e.after)]


def _warnings_acknowledged(e: Event) -> list[Part]:
    """`alice acknowledged the warnings of #12, to import it anyway: static-network on disk 1, ...`."""
    items = e.details.get("warnings")
    listed: list[Any] = []
    for item in items if isinstance(items, list) else []:
        w = _dict(item)
        code = _str(w, "code") or "a warning"
        listed.append(f"{code} on {_position(w)}" if _int(w.get("position")) is not None else code)
    codes = e.details.get("codes")
    listed = listed or (codes if isinstance(codes, list) else [])
    return [
        e.who,
        " acknowledged the warnings of ",
        *e.req,
        ", to import it anyway",
        *([": ", value(listed)] if listed else []),
        ".",
    ]


def _approved(e: Event) -> list[Part]:
    return [e.who, " approved ", *e.req, *_in_target(e), *e.reason(), ".", *_status_changes(e.before, e.after)]


def _rejected(e: Event) -> list[Part]:
    return [e.who, " rejected ", *e.req, *e.reason(), ".", *_status_changes(e.before, e.after)]


def _dispatched(e: Event) -> list[Part]:
    ended = _str(e.details, "Status")
    return [
        *e.req,
        " was dispatched to AWS (ImportImage) as import task ",
        e.task(),
        *_in_target(e),
        f" (the task had already ended: {ended})" if ended else "",
        ".",
        *_status_changes(e.before, e.after),
    ]


def _completed(e: Event) -> list[Part]:
    image = e.details.get("image_id")
    return [
        "The import of ",
        *e.req,
        " completed",
        *([": AMI ", aws_id_ref(image)] if image else []),
        " (import task ",
        e.task(),
        ").",
        *_status_changes(e.before, e.after),
    ]


def _finishing(e: Event) -> list[Part]:
    image, steps, target = e.details.get("image_id"), e.details.get("steps"), _str(e.details, "target")
    count = len(steps) if isinstance(steps, list) else 0
    return [
        "AWS imported ",
        *e.req,
        *([" as AMI ", aws_id_ref(image)] if image else []),
        f" in {target}" if target else "",
        *([f"; {count} finishing step{'s' if count != 1 else ''} follow: ", value(steps)] if count else []),
        ".",
        *_status_changes(e.before, e.after),
    ]


def _cancelled(e: Event) -> list[Part]:
    return ["The import of ", *e.req, " was cancelled (import task ", e.task(), ")", *e.reason(), "."] + (
        _status_changes(e.before, e.after)
    )


def _withdrawn(e: Event) -> list[Part]:
    return [e.who, " withdrew ", *e.req, " before its dispatch", *e.reason(), ".", *_status_changes(e.before, e.after)]


def _failed(what: str) -> Callable[[Event], list[Part]]:
    def sentence(e: Event) -> list[Part]:
        task = [" (import task ", e.task(), ")"] if e.details.get("import_task_id") else []
        return [*e.req, what, *task, *e.reason("message"), ".", *_status_changes(e.before, e.after)]

    return sentence


def _draft_deleted(e: Event) -> list[Part]:
    return [e.who, " deleted draft ", *e.req, ".", *_status_changes(e.before, e.after)]


def _aws_status_changed(e: Event) -> list[Part]:
    found = changes(e.before, e.after, colon=False, show=_aws_value)
    return ["Import task ", e.task(), " of ", *e.req, ": ", *(found or ["no change"]), "."]


def _needs_attention(e: Event) -> list[Part]:
    return ["Import task ", e.task(), " of ", *e.req, " needs attention", *e.reason("error"), "."]


def _attention_cleared(e: Event) -> list[Part]:
    return ["AWS answers for import task ", e.task(), " of ", *e.req, " again: the note is gone."]


def _reconciled(e: Event) -> list[Part]:
    found = changes(e.before, e.after, labels={"status": "Status"}, show=_reconciled_value)
    return ["Reconciled ", *e.req, *e.reason("repair"), ".", *([" ", *found, "."] if found else [])]


def _reconciled_value(key: str, v: Any) -> Part:
    return status_label(v) if key == "status" else _aws_value(key, v)


def _cancel_requested(e: Event) -> list[Part]:
    d = e.details
    state = [" (State ", value(d.get("PreviousState")), ARROW, value(d.get("State")), ")"] if d.get("State") else []
    return [e.who, " asked AWS to cancel import task ", e.task(), " of ", *e.req, *state, *e.reason(), "."]


def _outcome(d: dict[str, Any], done: str = "") -> list[Part]:
    parts: list[Part] = [done or ": ", *requests_list(d.get("done"))]
    refused = _dict(d.get("refused"))
    if refused:
        parts.append("; refused: ")
        for i, (pk, why) in enumerate(list(refused.items())[:MAX_ITEMS]):
            parts += [", " if i else "", request_ref(pk), f" ({value(why)})"]
        if len(refused) > MAX_ITEMS:
            parts.append(f" and {len(refused) - MAX_ITEMS} more")
    return parts


def _batch_created(e: Event) -> list[Part]:
    d = e.details
    name = _str(d, "name")
    count = _int(d.get("requests"))
    skipped = d.get("skipped_rows")
    parts: list[Part] = [e.who, " created ", batch_ref(d.get("batch")), f" “{name}”" if name else ""]
    parts += [f" from {_str(d, 'source')}" if d.get("source") else ""]
    parts += [f" with {count} request{'s' if count != 1 else ''}" if count is not None else ""]
    if isinstance(skipped, list) and skipped:
        parts.append(f"; rows left out: {value(skipped)}")
    return [*parts, "."]


def _batch(verb: str, done: str = ": ") -> Callable[[Event], list[Part]]:
    def sentence(e: Event) -> list[Part]:
        reason = e.reason(lead=" (", end=")")
        return [e.who, f" {verb} ", batch_ref(e.details.get("batch")), *reason, *_outcome(e.details, done), "."]

    return sentence


def _finishing_step(e: Event) -> list[Part]:
    """`“Copy under its name” (in eu-west-1) of #7: ami-0123...`: a finishing step and its AMI."""
    d = e.details
    title, region, image = _str(d, "title") or _str(d, "step") or "a step", _str(d, "region"), d.get("image_id")
    return [
        f"“{title}”",
        f" (in {region})" if region else "",
        " of ",
        *e.req,
        *([", ", aws_id_ref(image)] if image else []),
    ]


def _finishing_done(e: Event) -> list[Part]:
    return ["Finishing step ", *_finishing_step(e), ": done."]


def _finishing_failed(e: Event) -> list[Part]:
    return ["Finishing step ", *_finishing_step(e), " failed", *e.reason("error"), "."]


def _finishing_retried(e: Event) -> list[Part]:
    return [e.who, " retried finishing step ", *_finishing_step(e), "."]


def _batch_item_not_submitted(e: Event) -> list[Part]:
    findings = e.details.get("findings")
    why = [": ", value(findings)] if isinstance(findings, list) and findings else []
    return [*e.req, " of ", batch_ref(e.details.get("batch")), " was not submitted", *why, "."]


def _token(d: dict[str, Any]) -> str:
    name, prefix = _str(d, "name"), _str(d, "prefix")
    return "API token" + (f" “{name}”" if name else "") + (f" (iw_{prefix}_…)" if prefix else "")


def _token_created(e: Event) -> list[Part]:
    return [e.who, f" created the {_token(e.details)}."]


def _token_revoked(e: Event) -> list[Part]:
    return [e.who, f" revoked the {_token(e.details)}."]


def _login_failed(e: Event) -> list[Part]:
    d = e.details
    where = _str(d, "address")
    count = _int(d.get("failures"))
    return [
        f"A login as “{_str(d, 'username')}” failed",
        f" from {where}" if where else "",
        f" (failure {count})" if count is not None else "",
        ".",
    ]


def _login_locked_out(e: Event) -> list[Part]:
    d = e.details
    where = _str(d, "address")
    minutes = _int(d.get("minutes"))
    count = _int(d.get("failures"))
    return [
        f"Logging in as “{_str(d, 'username')}”" + (f" or from {where}" if where else ""),
        f" is refused for {minutes} minutes" if minutes is not None else " is refused",
        f" after {count} failures" if count is not None else "",
        ".",
    ]


ADMIN = re.compile(r"(?P<model>[a-z][a-z0-9 _-]{0,60}) (?P<verb>added|changed|deleted)")
ADMIN_HIDDEN = {"id", "password", "last_login", "date_joined", "created_at"}


def _admin(e: Event, model: str, verb: str) -> list[Part]:
    d = e.details
    name = _str(d, "name")
    parts: list[Part] = [e.who, f" {verb} {model}", f" “{name}”" if name else "", " in the admin"]
    if verb == "changed":
        before, after = dict(_dict(e.before)), dict(_dict(e.after))
        # A secret field (a password) is recorded as "<name> changed", never its value.
        secrets = [k for k, v in after.items() if v == f"{k} changed" and k not in before]
        for k in secrets:
            del after[k]
        found = changes(before, after)
        if secrets:
            found = [*found, "; " if found else "", f"{value(secrets)} changed"]
        parts += [": ", *found] if found else [" (no field changed)"]
    elif verb == "added":
        fields = {k: v for k, v in _dict(e.after).items() if k not in ADMIN_HIDDEN and v not in ("", None, [], False)}
        if fields:
            shown = [f"{clean(str(k), 60)} {value(v)}" for k, v in list(fields.items())[:MAX_ITEMS]]
            parts += [": ", "; ".join(shown), f" and {len(fields) - MAX_ITEMS} more" if len(fields) > MAX_ITEMS else ""]
    return [*parts, "."]


def _generic(e: Event) -> list[Part]:
    parts: list[Part] = [e.who, f" — {clean(e.action, 64) or 'an event'}"]
    if e.request is not None:
        parts += [" on ", e.request]
    found = changes(e.before, e.after)
    if found:
        parts += [": ", *found]
    details = flatten(e.details)
    if details:
        shown = [f"{k} {value(v, 60)}" for k, v in list(details.items())[:MAX_ITEMS]]
        more = f" and {len(details) - MAX_ITEMS} more" if len(details) > MAX_ITEMS else ""
        parts += [" (", "; ".join(shown), more, ")"]
    return [*parts, "."]


SENTENCES: dict[str, Callable[[Event], list[Part]]] = {
    "draft created": _draft_created,
    "draft saved": _draft_saved,
    "draft deleted": _draft_deleted,
    "disk added": _disk_added,
    "disk removed": _disk_removed,
    "upload completed": _upload_completed,
    "upload cancelled": _upload_cancelled,
    "upload failed": _upload_failed,
    "image inspected": _image_inspected,
    "submitted": _submitted,
    "warnings acknowledged": _warnings_acknowledged,
    "approved": _approved,
    "rejected": _rejected,
    "dispatched": _dispatched,
    "completed": _completed,
    "finishing": _finishing,
    "cancelled": _cancelled,
    "withdrawn": _withdrawn,
    "failed": _failed(" failed"),
    "failed validation": _failed(" failed its last check before ImportImage"),
    "failed source check": _failed(" failed the source check before ImportImage"),
    "failed account check": _failed(" failed the AWS account check before ImportImage"),
    "failed target check": _failed(" failed the target check before ImportImage (its owner may not use the target)"),
    "task lost": _failed(" failed: AWS no longer knows its import task"),
    "aws status changed": _aws_status_changed,
    "needs attention": _needs_attention,
    "attention cleared": _attention_cleared,
    "reconciled": _reconciled,
    "cancel requested": _cancel_requested,
    "finishing step done": _finishing_done,
    "finishing step failed": _finishing_failed,
    "finishing step retried": _finishing_retried,
    "batch created": _batch_created,
    "batch submitted": _batch("submitted"),
    "batch approved": _batch("approved"),
    "batch rejected": _batch("rejected"),
    "batch retried": _batch("retried the failed requests of", done=": new requests "),
    "batch cancelled": _batch("cancelled the rest of"),
    "batch item not submitted": _batch_item_not_submitted,
    "api token created": _token_created,
    "api token revoked": _token_revoked,
    "login failed": _login_failed,
    "login locked out": _login_locked_out,
}


def _event(action: Any, actor: Any, request: Any, before: Any, after: Any, details: Any) -> Event:
    request_id = _int(request)
    return Event(
        action=clean(action, 64) if isinstance(action, str) else value(action, 64),
        actor=clean(actor, 150) if isinstance(actor, str) else "",
        request=request_ref(request_id) if request_id else None,
        request_id=request_id,
        before=before,
        after=after,
        details=_dict(details),
    )


def sentence_of(e: Event) -> list[Part]:
    """The sentence of a known action (or of an admin change), else the generic one. May raise on a bug."""
    if e.action in SENTENCES:
        return SENTENCES[e.action](e)
    if (m := ADMIN.fullmatch(e.action)) and _dict(e.details).get("via") == "admin":
        return _admin(e, m["model"], m["verb"])
    return _generic(e)


def describe(
    action: Any,
    *,
    actor: Any = "",
    request: Any = None,
    before: Any = None,
    after: Any = None,
    details: Any = None,
) -> list[Part]:
    """The event's sentence, as text and Refs; never raises."""
    e = _event(action, actor, request, before, after, details)
    try:
        return _merge(sentence_of(e))
    except Exception:  # a value no handler foresaw: the generic sentence still says what happened
        try:
            return _merge(_generic(e))
        except Exception:
            return [f"{e.who} — {e.action}."]


def describe_event(event: Any) -> list[Part]:
    """`describe` of an AuditEvent (or anything with its attributes)."""
    return describe(
        event.action,
        actor=event.actor_name,
        request=event.request_id,
        before=event.before,
        after=event.after,
        details=event.details,
    )


def _merge(parts: Iterable[Part]) -> list[Part]:
    """Adjacent text joined, empty text dropped."""
    out: list[Part] = []
    for p in parts:
        if isinstance(p, str):
            if p.startswith(".") and out and isinstance(out[-1], str) and out[-1].endswith((".", "…", "!", "?")):
                p = p[1:]  # a message that ends its own sentence
            if not p:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += p
                continue
        out.append(p)
    return out


def as_text(parts: Iterable[Part]) -> str:
    return "".join(p.text if isinstance(p, Ref) else p for p in parts)


def as_html(parts: Iterable[Part], link: Link | None = None) -> str:
    """Escaped text; each Ref a link where `link` gives its address."""
    out = []
    for p in parts:
        if isinstance(p, Ref):
            href = link(p) if link else None
            text = escape(p.text, quote=False)
            out.append(f'<a href="{escape(href)}">{text}</a>' if href else f'<span class="id">{text}</span>')
        else:
            out.append(escape(p, quote=False))
    return "".join(out)


def refs(parts: Iterable[Part]) -> list[Ref]:
    return [p for p in parts if isinstance(p, Ref)]


def raw(event: Any) -> str:
    """The stored event as pretty JSON (what the hash covers, and the hashes)."""
    fields = {
        "id": getattr(event, "pk", None),
        "at": event.at.isoformat() if getattr(event, "at", None) else None,
        "actor": event.actor_name,
        "action": event.action,
        "request": event.request_id,
        "before": event.before,
        "after": event.after,
        "details": event.details,
        "prev_hash": getattr(event, "prev_hash", ""),
        "hash": getattr(event, "hash", ""),
    }
    return json_text(fields, indent=2)


def json_text(v: Any, indent: int | None = None) -> str:
    """JSON as written (not ASCII-escaped), lone surrogates as \\u escapes: valid JSON that UTF-8 can carry."""
    text = json.dumps(v, indent=indent, ensure_ascii=False, default=str)
    return SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def console_links(region: str) -> Callable[[Ref], str | None]:
    """Addresses of AMIs and snapshots in the EC2 console (real AWS only)."""

    def link(ref: Ref) -> str | None:
        if ref.kind == "image":
            return f"https://{region}.console.aws.amazon.com/ec2/home?region={region}#ImageDetails:imageId={ref.value}"
        if ref.kind == "snapshot":
            return f"https://{region}.console.aws.amazon.com/ec2/home?region={region}#SnapshotDetails:snapshotId={ref.value}"
        return None

    return link
