"""VM Import's image actions for moto: ImportImage, DescribeImportImageTasks, CancelImportTask.

moto 5.2.5 answers these three EC2 actions with NotImplementedError. `install`
adds them to `moto.ec2.responses.EC2Response` (moto dispatches a query action
to the method named `camelcase_to_underscores(Action)`), so boto3 and the AWS
CLI get answers shaped by botocore's ec2 model, as from AWS.

Each action checks its parameters as EC2 does before it accepts the call, with
EC2's own error codes and messages, then asks the task store
(`wizard.sandbox.taskstore`) installed with them:

- InvalidParameter: no DiskContainers, a disk without exactly one of UserBucket,
  Url or SnapshotId (or a UserBucket without S3Bucket and S3Key), an
  Architecture or BootMode EC2 does not take, a TagSpecifications resource type
  other than import-image-task; and, for a new task, a service role (RoleName,
  default vmimport) that does not exist or does not trust vmie.amazonaws.com;
- InvalidParameterValue: a DescribeImportImageTasks filter other than
  task-state and tag:KEY, or a MaxResults below 1;
- MissingParameter: a CancelImportTask without ImportTaskId;
- DryRunOperation (moto's `error_on_dryrun`) for a DryRun that passes the checks.
"""

from __future__ import annotations

from typing import Any, cast

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.responses import EC2Response
from moto.iam.exceptions import NotFoundException as IAMNotFound
from moto.iam.models import iam_backends
from moto.utilities.utils import get_partition

from wizard.sandbox.stages import TASK_RESOURCE_TYPE
from wizard.sandbox.taskstore import ImportTasks

DEFAULT_ROLE = "vmimport"
VMIE_PRINCIPAL = "vmie.amazonaws.com"
ARCHITECTURES = ("i386", "x86_64")
BOOT_MODES = ("legacy-bios", "uefi")
DISK_SOURCES = ("UserBucket", "Url", "SnapshotId")


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
        raise RuntimeError("wizard.sandbox.actions.install() has not been called")
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
