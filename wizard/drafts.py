"""Drafts: create, save (with conflict detection), duplicate, delete, and fill from a spec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import F

from wizard import audit, importspec
from wizard.models import DiskContainer, ImportRequest
from wizard.statemachine import change_status

EDITABLE = (ImportRequest.Status.DRAFT, ImportRequest.Status.REJECTED)

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


def create_draft(user, **fields: Any) -> ImportRequest:
    with transaction.atomic():
        request = ImportRequest.objects.create(owner=user, **fields)
        audit.record("draft created", request, actor=user, after={"status": request.status})
    return request


def save_fields(
    request: ImportRequest,
    user,
    version: int,
    values: dict[str, Any],
    step: str = "",
    also: Callable[[], list[str]] | None = None,
) -> ImportRequest:
    """Save `values` if the draft is still at `version`; raises Conflict otherwise.

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
    with transaction.atomic():
        updated = ImportRequest.objects.filter(pk=request.pk, version=version, status__in=EDITABLE).update(
            version=F("version") + 1, **changes
        )
        if not updated:
            raise Conflict(ImportRequest.objects.get(pk=request.pk))
        audited = sorted(k for k in changes if k != "wizard_step") + (also() if also else [])
        if audited:
            audit.record("draft saved", request, actor=user, details={"fields": audited})
    request.refresh_from_db()
    return request


def reach_step(request: ImportRequest, index: int) -> None:
    """Remember how far the user got (no version bump: it changes no value they typed)."""
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


def draft_from_spec(user, spec: importspec.ImportSpec, source: str) -> ImportRequest:
    """A new draft holding everything `spec` sets (a new ClientToken: it is a new request)."""
    with transaction.atomic():
        request = ImportRequest.objects.create(owner=user, **spec_values(spec))
        for position, disk in enumerate(spec.disk_containers):
            DiskContainer.objects.create(request=request, position=position, **container_values(disk))
        audit.record("draft created", request, actor=user, after={"status": request.status}, details={"from": source})
    return request


def duplicate(request: ImportRequest, user) -> ImportRequest:
    """A new draft with the same settings and disks ("import again with these settings")."""
    spec = request.to_spec()
    copy = draft_from_spec(user, spec, source=f"copy of #{request.pk}")
    # Keep what we know of uploaded images, which the spec does not carry.
    for original, new in zip(request.disk_containers.all(), copy.disk_containers.all(), strict=False):
        DiskContainer.objects.filter(pk=new.pk).update(
            file_name=original.file_name, size_bytes=original.size_bytes, upload=original.upload_id
        )
    return copy


def delete_draft(request: ImportRequest, user) -> None:
    """Delete a draft. The audit log is append-only and keeps its history, so the row stays,
    marked deleted, and is shown nowhere but in that history."""
    change_status(
        request,
        ImportRequest.Status.DELETED,
        actor=user,
        allowed_from=(ImportRequest.Status.DRAFT,),
        action="draft deleted",
    )


def add_container(request: ImportRequest, user, **fields: Any) -> DiskContainer:
    """Append a disk container (an S3 object, a URL or a snapshot) to a draft."""
    if fields.get("s3_key") and not fields.get("format"):
        fields["format"] = guess_format(fields["s3_key"])
    if fields.get("url") and not fields.get("format"):
        fields["format"] = guess_format(fields["url"])
    with transaction.atomic():
        position = request.disk_containers.count()
        container = DiskContainer.objects.create(request=request, position=position, **fields)
        audit.record(
            "disk added", request, actor=user, details={"position": position, "source": container.source_label}
        )
    return container


def remove_container(request: ImportRequest, user, container: DiskContainer) -> None:
    with transaction.atomic():
        label = container.source_label
        container.delete()
        for position, other in enumerate(request.disk_containers.order_by("position", "pk")):
            if other.position != position:
                DiskContainer.objects.filter(pk=other.pk).update(position=position)
        audit.record("disk removed", request, actor=user, details={"source": label})


FORMAT_BY_EXTENSION = {".ova": "OVA", ".vmdk": "VMDK", ".vhd": "VHD", ".vhdx": "VHDX", ".raw": "RAW", ".img": "RAW"}


def guess_format(name: str) -> str:
    """The Format a file name suggests ("" if it does not say); the inspector knows better."""
    lower = name.lower().split("?")[0]
    return next((fmt for ext, fmt in FORMAT_BY_EXTENSION.items() if lower.endswith(ext)), "")
