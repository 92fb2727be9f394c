"""Drafts: create, save (with conflict detection), duplicate, delete, and fill from a spec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Max, Value
from django.db.models.functions import Greatest

from wizard import targets
from wizard.audit import audit
from wizard.models import DiskContainer, ImportRequest
from wizard.requests import importspec, statemachine
from wizard.requests.statemachine import change_status
from wizard.requests.steps import INDEX
from wizard.uploads import sources

EDITABLE = statemachine.EDITABLE

# The request's own ImportImage fields (everything a spec carries but containers and ClientData).
SPEC_FIELDS = (
    "description",
    "architecture",
    "platform",
    "boot_mode",
    "license_type",
    "usage_operation",
    "hypervisor",
    "encrypted",
    "kms_key_id",
    "role_name",
    "license_configuration_arns",
    "tags",
    "comment",
)


class Conflict(Exception):
    """The draft was saved elsewhere (another tab) since this form was loaded."""

    def __init__(self, current: ImportRequest):
        super().__init__(f"draft #{current.pk} changed since it was loaded (now version {current.version})")
        self.current = current


class NotEditable(Exception):
    pass


class SourceRefused(Exception):
    """The user may not import from a source (wizard.uploads.sources); nothing was saved.
    `findings` name each refused source by its API path."""

    def __init__(self, findings: list[importspec.Finding]):
        super().__init__("; ".join(f"{f.path}: {f.message}" for f in findings))
        self.findings = findings
        self.message = findings[0].message if len(findings) == 1 else str(self)


def create_draft(user: User, **fields: Any) -> ImportRequest:
    with transaction.atomic():
        request = ImportRequest.objects.create(owner=user, **fields)
        audit.record("draft created", request, actor=user, after={"status": request.status})
    return request


def save_fields(
    request: ImportRequest,
    user: User,
    version: int,
    values: dict[str, Any],
    step: str = "",
    also: Callable[[], list[str]] | None = None,
) -> ImportRequest:
    """Save `values` if the draft is still at `version`; raises Conflict otherwise.

    `step` is the step the user is on now (the one they move to when they navigate), reached as
    well (the furthest step only grows, as reach_step's): both go in the same UPDATE, so that the
    step's page, opened next, has nothing left to write.

    The check and the write are one UPDATE (compare-and-set), so two tabs saving at the
    same moment cannot both win. `also` runs in the same transaction (e.g. saving the disk
    rows) and returns the names of what it changed, for the audit log.
    """
    if request.status not in EDITABLE:
        raise NotEditable(
            f"request #{request.pk} is {request.get_status_display().lower()}: it can no longer be edited"
        )
    changes = {k: v for k, v in values.items() if getattr(request, k) != v}
    if step:
        changes["wizard_step"] = step
    reached = INDEX[step] if step else request.furthest_step
    moved: dict[str, Any] = {}
    if reached > request.furthest_step:
        moved["furthest_step"] = Greatest(F("furthest_step"), Value(reached))
    with transaction.atomic():
        updated = ImportRequest.objects.filter(pk=request.pk, version=version, status__in=EDITABLE).update(
            version=F("version") + 1, **changes, **moved
        )
        if not updated:
            raise Conflict(ImportRequest.objects.get(pk=request.pk))
        audited = sorted(k for k in changes if k != "wizard_step") + (also() if also else [])
        if audited:
            details: dict[str, Any] = {"fields": audited}
            if "target" in changes:  # the log names the account and region chosen, not a pk
                details["target"] = {"from": targets.label(request.target), "to": targets.label(changes["target"])}
            audit.record("draft saved", request, actor=user, details=details)
    # What the UPDATE wrote, without reading the row again: it matched `version`, so the row is now
    # version + 1 with these values (what changes a draft without a new version, its furthest step
    # and step name, is as fresh as when the draft was loaded, as on any loaded draft).
    for name, value in changes.items():
        setattr(request, name, value)
    request.version = version + 1
    request.furthest_step = max(request.furthest_step, reached)
    return request


def reach_step(request: ImportRequest, index: int) -> None:
    """Remember how far the user got (no version bump: it changes no value they typed).

    No statement at all when the loaded draft is already that far: an UPDATE that matches no row
    still takes SQLite's write lock, and every step page would queue behind other writers."""
    if request.furthest_step >= index:
        return
    ImportRequest.objects.filter(pk=request.pk, furthest_step__lt=index).update(furthest_step=index)
    request.furthest_step = max(request.furthest_step, index)


def spec_values(spec: importspec.ImportSpec) -> dict[str, Any]:
    """The request fields a spec sets (containers aside)."""
    data = spec.client_data
    return {
        "description": spec.description,
        "architecture": spec.architecture,
        "platform": spec.platform,
        "boot_mode": spec.boot_mode,
        "license_type": spec.license_type,
        "usage_operation": spec.usage_operation,
        "hypervisor": spec.hypervisor,
        "encrypted": spec.encrypted,
        "kms_key_id": spec.kms_key_id,
        "role_name": spec.role_name,
        "license_configuration_arns": list(spec.license_configuration_arns),
        "tags": [{"Key": t.key, "Value": t.value} for t in spec.tags],
        "comment": data.comment if data else "",
        "upload_start": data.upload_start if data else None,
        "upload_end": data.upload_end if data else None,
        "upload_size": data.upload_size if data else None,
    }


def container_values(disk: importspec.DiskContainer) -> dict[str, Any]:
    bucket = disk.user_bucket
    return {
        "format": disk.format.upper(),
        "description": disk.description,
        "device_name": disk.device_name,
        "url": disk.url,
        "snapshot_id": disk.snapshot_id,
        "s3_bucket": bucket.s3_bucket if bucket else "",
        "s3_key": bucket.s3_key if bucket else "",
    }


def draft_from_spec(user: User, spec: importspec.ImportSpec, source: str) -> ImportRequest:
    """A new draft holding everything `spec` sets (a new ClientToken: it is a new request).

    Raises SourceRefused, saving nothing, if `user` may not import one of its disks."""
    refused = sources.spec_refusals(user, spec)
    if refused:
        raise SourceRefused(refused)
    return _create_from_spec(user, spec, source)


def _create_from_spec(user: User, spec: importspec.ImportSpec, source: str, **details: Any) -> ImportRequest:
    """The draft and its disks; each S3 image is queued for inspection (after the commit)."""
    from wizard.preflight import preflight

    with transaction.atomic():
        request = ImportRequest.objects.create(owner=user, **spec_values(spec))
        containers = [
            DiskContainer.objects.create(request=request, position=position, **container_values(disk))
            for position, disk in enumerate(spec.disk_containers)
        ]
        audit.record(
            "draft created",
            request,
            actor=user,
            after={"status": request.status},
            details={"from": source, **details},
        )
        for container in containers:
            preflight.inspect_container(container)
    return request


def duplicate(request: ImportRequest, user: User) -> tuple[ImportRequest, list[str]]:
    """A new draft with the same settings and disks ("import again with these settings").

    The copy keeps only the disks `user` may import (wizard.uploads.sources): another user's upload
    is not theirs to import. Returns the copy and a sentence for each disk left out. What
    we know of an uploaded image (file name, size, the Upload) is kept only for the user's
    own uploads, and ClientData's upload times and size only on a copy of their own request.
    """
    spec = request.to_spec()
    originals = list(request.disk_containers.select_related("upload"))
    grants = sources.grants_of(user)
    kept: list[tuple[DiskContainer, importspec.DiskContainer]] = []
    dropped: list[str] = []
    not_copied: list[str] = []
    for i, (original, disk) in enumerate(zip(originals, spec.disk_containers, strict=True)):
        why = sources.container_verdict(user, disk, grants=grants).refusal
        if why:
            dropped.append(f"DiskContainers[{i}] ({original.source_label}) was not copied: {why}")
            not_copied.append(original.source_label)
        else:
            kept.append((original, disk))
    spec.disk_containers = [disk for _, disk in kept]
    if spec.client_data is not None and request.owner_id != user.pk:
        spec.client_data.upload_start = spec.client_data.upload_end = spec.client_data.upload_size = None
    copy = _create_from_spec(
        user,
        spec,
        source=f"copy of #{request.pk}",
        **({"not_copied": not_copied} if not_copied else {}),
    )
    for (original, _), new in zip(kept, copy.disk_containers.all(), strict=True):
        if original.upload is not None and original.upload.owner_id == user.pk:
            DiskContainer.objects.filter(pk=new.pk).update(upload=original.upload_id)
    # The finishing choices too (not ImportImage parameters, so not in the spec).
    ImportRequest.objects.filter(pk=copy.pk).update(**{f: getattr(request, f) for f in FINISH_FIELDS})
    copy.refresh_from_db()
    return copy, dropped


# The fields of "Finishing the AMI" (wizard.requests.finishspec), copied by "import again". The target is
# not: the copier may not be allowed to use it.
FINISH_FIELDS = (
    "ami_name",
    "ami_description",
    "ami_tags",
    "launch_user_ids",
    "launch_organization_arns",
    "launch_organizational_unit_arns",
    "share_snapshots",
    "region_copies",
    "imds_v2",
    "deprecation_time",
    "deregister_import",
    "delete_source",
)


def delete_draft(request: ImportRequest, user: User) -> None:
    """Delete a draft. The audit log is append-only and keeps its history, so the row stays,
    marked deleted, and is shown nowhere but in that history."""
    change_status(
        request,
        "delete",
        actor=user,
        action="draft deleted",
    )


def add_container(request: ImportRequest, user: User, inspect: bool = False, **fields: Any) -> DiskContainer:
    """Append a disk container (an S3 object, a URL or a snapshot) to a draft; with `inspect`, its
    image's inspection is queued in the same transaction (wizard.preflight.preflight.inspect_container).

    Raises SourceRefused, saving nothing, if `user` may not import from it (wizard.uploads.sources)."""
    source = {k: fields.get(k, "") for k in ("s3_bucket", "s3_key", "url", "snapshot_id")}
    why = sources.refusal(user, **source, target=request.target)
    if why:
        path = "UserBucket" if source["s3_bucket"] or source["s3_key"] else "Url" if source["url"] else "SnapshotId"
        raise SourceRefused([importspec.Finding(f"DiskContainers[{request.disk_containers.count()}].{path}", why)])
    if fields.get("s3_key") and not fields.get("format"):
        fields["format"] = guess_format(fields["s3_key"])
    if fields.get("url") and not fields.get("format"):
        fields["format"] = guess_format(fields["url"])
    with transaction.atomic():
        position = next_position(request)
        container = DiskContainer.objects.create(request=request, position=position, **fields)
        if inspect:
            from wizard.preflight import preflight

            # Judged above, so not again here; the worker judges it again before it reads a byte.
            preflight.inspect_container(container, judged=True)
        audit.record(
            "disk added", request, actor=user, details={"position": position, "source": container.source_label}
        )
    return container


def remove_container(request: ImportRequest, user: User, container: DiskContainer) -> None:
    with transaction.atomic():
        label = container.source_label
        container.delete()
        renumber(request)
        audit.record("disk removed", request, actor=user, details={"source": label})


def next_position(request: ImportRequest) -> int:
    """The position of a disk added last (0, 1, ... with no gaps: see `renumber`)."""
    last = request.disk_containers.aggregate(last=Max("position"))["last"]
    return 0 if last is None else last + 1


def renumber(request: ImportRequest, order: list[int] | None = None) -> None:
    """Positions 0, 1, ... for the request's disks: in `order` (container ids), else as they stand."""
    containers = {c.pk: c for c in request.disk_containers.order_by("position", "pk")}
    ids = [pk for pk in (order or []) if pk in containers]
    ids += [pk for pk in containers if pk not in ids]
    for position, pk in enumerate(ids):
        if containers[pk].position != position:
            DiskContainer.objects.filter(pk=pk).update(position=position)


FORMAT_BY_EXTENSION = {".ova": "OVA", ".vmdk": "VMDK", ".vhd": "VHD", ".vhdx": "VHDX", ".raw": "RAW", ".img": "RAW"}


def guess_format(name: str) -> str:
    """The Format a file name suggests ("" if it does not say); the inspector knows better."""
    lower = name.lower().split("?")[0]
    return next((fmt for ext, fmt in FORMAT_BY_EXTENSION.items() if lower.endswith(ext)), "")
