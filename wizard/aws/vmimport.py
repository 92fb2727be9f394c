"""The three VM Import calls: ImportImage, DescribeImportImageTasks, CancelImportTask."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from wizard.aws.clients import TargetLike, client
from wizard.aws.errors import AwsError

# DescribeImportImageTasks takes many ids per call; batches keep one call per this many tasks.
DESCRIBE_BATCH = 200


_raise_from = AwsError.from_client_error


def import_image(params: dict[str, Any], target: TargetLike | None = None) -> dict[str, Any]:
    """Start an import in `target` (None: the default target); returns the ImportImage answer (with ImportTaskId)."""
    try:
        return client("ec2", target=target).import_image(**params)
    except ClientError as exc:
        raise _raise_from(exc) from exc


def describe_import_image_tasks(
    task_ids: Iterable[str], ec2: Any = None, target: TargetLike | None = None
) -> Iterator[dict[str, Any]]:
    """Every task of `task_ids`, asking for up to DESCRIBE_BATCH ids per call, with pagination.

    `ec2`: a client to reuse (the poller makes one per target and cycle: making one costs more than
    a call); else one in `target`. Every id must be a task of that one target.
    """
    ids = list(task_ids)
    ec2 = ec2 or client("ec2", target=target)
    paginator = ec2.get_paginator("describe_import_image_tasks")
    for start in range(0, len(ids), DESCRIBE_BATCH):
        batch = ids[start : start + DESCRIBE_BATCH]
        try:
            for page in paginator.paginate(ImportTaskIds=batch):
                yield from page.get("ImportImageTasks", [])
        except ClientError as exc:
            raise _raise_from(exc) from exc


def cancel_import_task(task_id: str, reason: str = "", target: TargetLike | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"ImportTaskId": task_id}
    if reason:
        params["CancelReason"] = reason
    try:
        return client("ec2", target=target).cancel_import_task(**params)
    except ClientError as exc:
        raise _raise_from(exc) from exc


def describe_images(image_ids: list[str], target: TargetLike | None = None) -> list[dict[str, Any]]:
    return client("ec2", target=target).describe_images(ImageIds=image_ids).get("Images", [])


def dry_run(params: dict[str, Any], target: TargetLike | None = None) -> tuple[bool, str]:
    """ImportImage with DryRun: (permitted, AWS's message). It checks the caller's IAM
    permissions only, not the role, the object or the image."""
    try:
        client("ec2", target=target).import_image(**{**params, "DryRun": True})
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        if code == "DryRunOperation":
            return True, message or "Request would have succeeded, but DryRun flag is set."
        if code == "UnauthorizedOperation":
            return False, message
        raise _raise_from(exc) from exc
    return True, "The call was accepted."
