"""Pre-flight: inspect each disk image where it lies (S3, by ranged reads) before any import runs.

The inspection (wizard.inspect) is pure; this module fetches the bytes, stores the report on
the container, takes the Format from the image itself, and turns reports into findings
placed on the wizard's steps. Errors block submission: VM Import would fail on them, an
hour in.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from django.utils import timezone

from wizard import sources
from wizard.aws import kms
from wizard.aws.s3 import S3RangeReader
from wizard.inspect import inspect_image
from wizard.models import DiskContainer, ImportRequest
from wizard.steps import Placed, placed_findings

log = logging.getLogger(__name__)
IMPORTABLE = {"OVA", "VMDK", "VHD", "VHDX", "RAW"}
LOOKS = {"uefi": "GPT with an EFI System Partition", "legacy-bios": "MBR without an EFI System Partition"}


def s3_location(container: DiskContainer) -> tuple[str, str] | None:
    if container.s3_key:
        return container.s3_bucket, container.s3_key
    if container.url.startswith("s3://"):
        parts = urlsplit(container.url)
        return parts.netloc, parts.path.lstrip("/")
    return None  # https URLs and snapshots are not read here


NOT_PERMITTED = "not-permitted"


def inspect_container(container: DiskContainer) -> dict | None:
    """Inspect the container's image if it is in S3; store and return the report.

    A location the request's owner may not import (wizard.sources) is not read at all: the
    stored report is the refusal, the same whether or not the object exists."""
    location = s3_location(container)
    if location is None:
        return None
    refused = sources.container_refusal(container.request.owner, container)
    if refused:
        report = {
            "format": "UNKNOWN",
            "ok": False,
            "findings": [{"severity": "error", "code": NOT_PERMITTED, "message": refused}],
        }
        fields = {"inspection": report, "inspected_at": timezone.now(), "inspection_status": "done"}
        DiskContainer.objects.filter(pk=container.pk).update(**fields)
        for name, value in fields.items():
            setattr(container, name, value)
        return report
    try:
        report = inspect_image(S3RangeReader(*location)).to_dict()
    except (ClientError, BotoCoreError) as exc:
        report = {
            "format": "UNKNOWN",
            "ok": False,
            "findings": [
                {
                    "severity": "error",
                    "code": "unreadable",
                    "message": f"The image s3://{location[0]}/{location[1]} cannot be read ({exc}). "
                    'VM Import would fail with "Disk validation failed [We do not have access to the given resource. '
                    'Reason 403 Forbidden]". Check the bucket, the key and the permissions.',
                }
            ],
        }
    fields = {"inspection": report, "inspected_at": timezone.now()}
    if report.get("format") in IMPORTABLE and container.format != report["format"]:
        fields["format"] = report["format"]  # the image says what it is; the file name only guessed
    DiskContainer.objects.filter(pk=container.pk).update(**fields)
    for name, value in fields.items():
        setattr(container, name, value)
    return report


def inspect_request(request: ImportRequest) -> None:
    for container in request.disk_containers.all():
        inspect_container(container)


def placed(request: ImportRequest, containers=None) -> list[Placed]:
    """The stored reports' errors and warnings, placed on the upload step (and BootMode's mismatch
    on the licence step)."""
    found: list[Placed] = []
    hints = set()
    for i, container in enumerate(containers if containers is not None else request.disk_containers.all()):
        report = container.inspection or {}
        for f in report.get("findings", []):
            # A stored refusal is stale once a grant is made; all_findings judges the source afresh.
            if f["severity"] in ("error", "warning") and f.get("code") != NOT_PERMITTED:
                found.append(
                    Placed("upload", f"disk-{i}", f"DiskContainers[{i}] (image)", f["message"], severity=f["severity"])
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


def source_findings(request: ImportRequest, containers, check_aws: bool = False) -> list[Placed]:
    """A blocking finding for every disk the request's owner may not import (grants can be
    revoked after a disk was added); snapshots whose tags only EC2 can tell are judged with
    `check_aws` only."""
    grants = sources.grants_of(request.owner)
    found = []
    for i, container in enumerate(containers):
        why = sources.container_verdict(request.owner, container, ask_aws=check_aws, grants=grants).refusal
        if why:
            found.append(Placed("upload", f"disk-{i}", sources.source_path(container, i), why))
    return found


def all_findings(request: ImportRequest, check_aws: bool = False) -> list[Placed]:
    """Every finding of a request: the ImportImage rules, whether its owner may import each
    disk, and the images' inspections; with `check_aws`, also what only AWS can tell (the
    KMS key exists and is usable, a snapshot carries a granted tag)."""
    containers = list(request.disk_containers.all())
    found = (
        placed_findings(request.to_spec())
        + source_findings(request, containers, check_aws=check_aws)
        + placed(request, containers)
    )
    if check_aws and request.encrypted and request.kms_key_id and not any(f.path == "KmsKeyId" for f in found):
        problem = kms.key_problem(request.kms_key_id)
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
    return found


def blocking(findings: list[Placed]) -> list[Placed]:
    return [f for f in findings if f.severity == "error"]
