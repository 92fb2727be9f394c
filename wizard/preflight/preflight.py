"""Pre-flight: inspect each disk image where it lies (S3, by ranged reads) before any import runs.

The inspection (wizard.inspect) is pure, and image bytes are hostile: it runs in the worker, in
a child process with a time and a memory limit (wizard.preflight.inspection), never in a web request.
`inspect_container` queues it (the container is "pending" until the report is in);
`run_inspection` is the worker's part: it stores the report on the container, takes the Format
from the image itself and writes an audit event. `placed` turns reports (and pending
inspections) into findings placed on the wizard's steps. Errors block submission: VM Import
would fail on them, an hour in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from wizard import targets
from wizard.audit import audit
from wizard.aws import account, kms
from wizard.aws.s3 import S3RangeReader
from wizard.models import DiskContainer, ImportRequest, SourceGrant, Target
from wizard.preflight import acknowledgements, inspection
from wizard.requests.steps import Placed, finishing_findings, placed_findings
from wizard.uploads import sources

log = logging.getLogger(__name__)
IMPORTABLE = {"OVA", "VMDK", "VHD", "VHDX", "RAW"}
LOOKS = {"uefi": "GPT with an EFI System Partition", "legacy-bios": "MBR without an EFI System Partition"}
PENDING, DONE = "pending", "done"  # DiskContainer.inspection_status
STILL_INSPECTING = (
    "The image is still being inspected: submission waits for its findings (usually a few seconds; "
    "this page updates by itself)."
)


def s3_location(container: DiskContainer) -> tuple[str, str] | None:
    if container.s3_key:
        return container.s3_bucket, container.s3_key
    if container.url.startswith("s3://"):
        parts = urlsplit(container.url)
        return parts.netloc, parts.path.lstrip("/")
    return None  # https URLs and snapshots are not read here


NOT_PERMITTED = "not-permitted"


def _refusal_report(refused: str) -> dict:
    return {
        "format": "UNKNOWN",
        "ok": False,
        "findings": [{"severity": "error", "code": NOT_PERMITTED, "message": refused}],
    }


def _store_refusal(container: DiskContainer, refused: str, **match: object) -> dict:
    report = _refusal_report(refused)
    fields = {"inspection": report, "inspected_at": timezone.now(), "inspection_status": DONE}
    DiskContainer.objects.filter(pk=container.pk, **match).update(**fields)
    for name, value in fields.items():
        setattr(container, name, value)
    return report


def inspect_container(container: DiskContainer, judged: bool = False) -> dict | None:
    """Queue the inspection of the container's image if it is in S3 (else nothing to do).

    A location the request's owner may not import (wizard.uploads.sources) is not read at all: the
    stored report is the refusal, returned at once, the same whether or not the object exists.
    `judged`: the caller has just made the container after judging its source in the same
    request (drafts.add_container refuses what the owner may not import), so it is not judged
    twice here; the worker judges it again in any case before it reads a byte (run_inspection).

    Otherwise the old report is cleared and the container is "pending" until the worker has
    stored the new one; `inspected_at` holds when this inspection was asked for, so that a
    result of an earlier one, finishing later, does not overwrite it (see `run_inspection`).
    The task is queued after the commit, so that the worker sees the pending container.
    """
    if s3_location(container) is None:
        return None
    request = container.request
    if not judged and (refused := sources.container_refusal(request.owner, container, target=request.target)):
        return _store_refusal(container, refused)
    asked_at = timezone.now()
    fields = {"inspection": None, "inspected_at": asked_at, "inspection_status": PENDING}
    DiskContainer.objects.filter(pk=container.pk).update(**fields)
    for name, value in fields.items():
        setattr(container, name, value)
    from wizard.tasks import enqueue_inspection

    transaction.on_commit(lambda: enqueue_inspection(container.pk, asked_at.isoformat()))
    return None


def stale_after() -> timedelta:
    """How long a pending inspection may wait: its task's timeout plus django-q2's `retry`, by
    when a task taken by a worker that died has been delivered again (ORM broker)."""
    from wizard.tasks import inspect_margin_seconds

    seconds = math.ceil(settings.WIZARD_INSPECT_SECONDS) + inspect_margin_seconds() + settings.Q_RETRY
    return timedelta(seconds=seconds)


def requeue_if_stale(container: DiskContainer) -> bool:
    """Queue a pending inspection again if it has waited longer than `stale_after()`, e.g. its
    task was lost with a worker (a Redis broker does not deliver it again). At most once per
    that period (a cache key per asked inspection), and harmless: the task is the same one
    (same `asked_at`), which stores and audits once whichever delivery runs first."""
    if container.inspection_status != PENDING or container.inspected_at is None:
        return False
    wait = stale_after()
    if timezone.now() - container.inspected_at < wait:
        return False
    asked_at = container.inspected_at.isoformat()
    if not cache.add(f"wizard:inspect-requeued:{container.pk}:{asked_at}", 1, wait.total_seconds()):
        return False
    from wizard.tasks import enqueue_inspection

    log.warning("inspection of container %s pending since %s: queued again", container.pk, asked_at)
    enqueue_inspection(container.pk, asked_at)
    return True


def run_inspection(container_id: int, asked_at: str) -> str:
    """The worker's part: inspect the image in a limited child, store the report, take the Format
    from it and record "image inspected"; once per asked inspection, however often delivered.

    Returns what happened: "done", or "superseded" (inspected again since, or already done by
    an earlier delivery of this task), or "gone" (the container was removed), or "refused" (its
    owner may no longer import it: nothing was read).
    """
    asked = datetime.fromisoformat(asked_at)
    container = DiskContainer.objects.select_related("request__target").filter(pk=container_id).first()
    if container is None:
        return "gone"
    if container.inspection_status != PENDING or container.inspected_at != asked:
        return "superseded"
    location = s3_location(container)
    if location is None:  # no longer an S3 source: nothing to inspect
        DiskContainer.objects.filter(pk=container_id, inspected_at=asked).update(inspection_status="")
        return "gone"
    # Judged again here: a grant may have been revoked while the task waited in the queue.
    target = container.request.target
    if refused := sources.container_refusal(container.request.owner, container, target=target):
        _store_refusal(container, refused, inspection_status=PENDING, inspected_at=asked)
        return "refused"
    report = _inspect_in(target, *location)
    fields = {"inspection": report, "inspected_at": timezone.now(), "inspection_status": DONE}
    if report.get("format") in IMPORTABLE and container.format != report["format"]:
        fields["format"] = report["format"]  # the image says what it is; the file name only guessed
    with transaction.atomic():
        stored = DiskContainer.objects.filter(pk=container_id, inspection_status=PENDING, inspected_at=asked)
        if not stored.update(**fields):
            return "superseded"
        audit.record("image inspected", container.request, details=_summary(container, location, report, fields))
    return "done"


def _inspect_in(target: Target | None, bucket: str, key: str) -> dict:
    """Inspect s3://bucket/key in the limited child. The object is read here, with the worker's
    client (the application's own credentials, or the target's role), and handed to the child
    byte range by byte range: no credentials reach the process that parses the hostile bytes,
    and the child need not load boto3 nor make a client (a third of its start-up)."""
    seconds, memory_mb = settings.WIZARD_INSPECT_SECONDS, settings.WIZARD_INSPECT_MEMORY_MB
    try:
        reader = S3RangeReader(bucket, key, target=target)
    except (ClientError, BotoCoreError) as exc:
        return inspection.unreadable_report(bucket, key, exc)
    return inspection.inspect_reader(reader, seconds=seconds, memory_mb=memory_mb)


def _summary(container: DiskContainer, location: tuple[str, str], report: dict, fields: dict) -> dict:
    """What the audit log keeps of an inspection: where, what, and the findings' codes."""
    findings = report.get("findings") or []
    details = {
        "container": container.pk,
        "position": container.position,
        "source": f"s3://{location[0]}/{location[1]}",
        "format": report.get("format", ""),
        "ok": bool(report.get("ok")),
        "errors": [f.get("code", "") for f in findings if f.get("severity") == "error"],
        "warnings": [f.get("code", "") for f in findings if f.get("severity") == "warning"],
    }
    if "format" in fields:
        details["format_changed"] = {"from": container.format, "to": fields["format"]}
    return details


def inspect_request(request: ImportRequest) -> None:
    for container in request.disk_containers.all():
        inspect_container(container)


def placed(request: ImportRequest, containers: list[DiskContainer] | None = None) -> list[Placed]:
    """The stored reports' errors and warnings, placed on the upload step (and BootMode's mismatch
    on the licence step)."""
    found: list[Placed] = []
    hints = set()
    for i, container in enumerate(containers if containers is not None else request.disk_containers.all()):
        if container.inspection_status == PENDING:
            found.append(Placed("upload", f"disk-{i}", f"DiskContainers[{i}] (image)", STILL_INSPECTING))
            continue
        report = container.inspection or {}
        for f in report.get("findings", []):
            # A stored refusal is stale once a grant is made; all_findings judges the source afresh.
            if f["severity"] in ("error", "warning") and f.get("code") != NOT_PERMITTED:
                found.append(
                    Placed(
                        "upload",
                        f"disk-{i}",
                        f"DiskContainers[{i}] (image)",
                        f["message"],
                        severity=f["severity"],
                        code=str(f.get("code") or ""),
                        disk=container.pk,
                    )
                )
        if i == 0 and report.get("boot_mode_hint"):
            hints.add(report["boot_mode_hint"])
    if request.boot_mode and hints and request.boot_mode not in hints:
        hint = hints.pop()
        found.append(
            Placed(
                "licence",
                "boot_mode",
                "BootMode",
                (
                    f"BootMode is {request.boot_mode}, but the boot disk looks {hint} "
                    f"({LOOKS[hint]}): "
                    f"the imported AMI would not boot. Set BootMode to {hint}."
                ),
                severity="error",
            )
        )
    return found


def source_findings(
    request: ImportRequest,
    containers: list[DiskContainer],
    check_aws: bool = False,
    grants: list[SourceGrant] | None = None,
) -> list[Placed]:
    """A blocking finding for every disk the request's owner may not import (grants can be
    revoked after a disk was added); snapshots whose tags only EC2 can tell are judged with
    `check_aws` only. `grants`: the owner's, when already read."""
    grants = sources.grants_of(request.owner) if grants is None else grants
    found = []
    for i, container in enumerate(containers):
        verdict = sources.container_verdict(
            request.owner, container, ask_aws=check_aws, grants=grants, target=request.target
        )
        why = verdict.refusal
        if why:
            found.append(Placed("upload", f"disk-{i}", sources.source_path(container, i), why))
    return found


def all_findings(
    request: ImportRequest, check_aws: bool = False, viewer: Any = None, grants: list[SourceGrant] | None = None
) -> list[Placed]:
    """Every finding of a request: the ImportImage rules, whether its owner may import each
    disk, and the images' inspections; with `check_aws`, also what only AWS can tell (the
    KMS key exists and is usable, a snapshot carries a granted tag). `viewer`: who reads them
    (a reviewer's page names the owner; None is the owner). `grants`: the owner's source
    grants, when the caller has read them already."""
    containers = list(request.disk_containers.all())
    owner = request.owner
    who = "You" if viewer is None or viewer.pk == owner.pk else f"The owner, {owner},"
    if refused := targets.refusal(owner, request.target, who=who):
        # Nothing is asked of a target its owner may not use (no look-up runs in its account).
        return [Placed("upload", "target", "Target", refused), *placed_findings(request.to_spec())]
    found = (
        placed_findings(request.to_spec())
        + finishing_findings(
            request.to_finish_spec(), targets.region_of(request.target)
        )  # the "finish" step (wizard.requests.finishspec)
        + source_findings(request, containers, check_aws=check_aws, grants=grants)
        + placed(request, containers)
    )
    if check_aws and request.encrypted and request.kms_key_id and not any(f.path == "KmsKeyId" for f in found):
        problem = kms.key_problem(request.kms_key_id, target=request.target)
        if problem:
            found.append(
                Placed(
                    "encryption",
                    "kms_key_id",
                    "KmsKeyId",
                    (
                        f"KmsKeyId: {problem}. AWS accepts the call and fails the import later; choose an enabled "
                        "symmetric key of this account and region."
                    ),
                )
            )
    if check_aws:
        found += account_findings(request, containers)
    return found


def account_sources(containers: Iterable[DiskContainer]) -> list[account.Source]:
    sources = []
    for i, container in enumerate(containers):
        location = s3_location(container)
        if location is not None:
            sources.append(account.Source(i, bucket=location[0], key=location[1]))
        elif container.snapshot_id:
            sources.append(account.Source(i, snapshot_id=container.snapshot_id))
    return sources


def account_problems(
    request: ImportRequest, containers: Iterable[DiskContainer] | None = None, fresh: bool = False
) -> list[account.Problem]:
    """What the AWS account lacks for this request (wizard.aws.account): the service role, its
    trust and permissions, the buckets' region, snapshot sources. `fresh`: ask AWS now, not
    the answer of the last seconds (wizard.aws.recent)."""
    containers = list(containers if containers is not None else request.disk_containers.all())
    return account.problems(
        target=request.target,
        role_name=request.role_name,
        region=targets.region_of(request.target),
        sources=account_sources(containers),
        kms_key_id=request.kms_key_id,
        encrypted=bool(request.encrypted),
        fresh=fresh,
    )


ACCOUNT_FIELDS = {
    "RoleName": ("details", "role_name"),
    "KmsKeyId": ("encryption", "kms_key_id"),
    "Target": ("upload", "target"),
}


def account_findings(request: ImportRequest, containers: Iterable[DiskContainer]) -> list[Placed]:
    """The account's problems placed on the wizard's steps: the role on Details, the key on
    Encryption, buckets and snapshots on their disk."""
    containers = list(containers)
    found = []
    for p in account_problems(request, containers):
        disk = None
        if p.disk is not None:
            step, field = "upload", f"disk-{p.disk}"
            disk = containers[p.disk].pk if 0 <= p.disk < len(containers) else None
        else:
            step, field = ACCOUNT_FIELDS.get(p.path, ("details", "role_name"))
        code = acknowledgements.account_code(p.path, p.message)
        found.append(Placed(step, field, p.path, p.message, severity=p.severity, code=code, disk=disk))
    return found


def blocking(findings: list[Placed]) -> list[Placed]:
    return [f for f in findings if f.severity == "error"]
