"""What VM Import finds wrong with a task once it runs, as AWS reports it.

AWS accepts an ImportImage call without looking at the disk images, the S3
objects or the KMS key; what is wrong with them shows later: the task fails
(Status "deleted", StatusMessage "ClientError: ...") at "validating" or
further on. `ImageChecks` is the sandbox's `taskstore.Validator`: it looks at a
task as it reaches "validating" and answers the first failure, if any, as
(stage name, StatusMessage):

- the service role (RoleName, default vmimport) no longer exists, or does not
  trust vmie.amazonaws.com ("validating": "ClientError: The service role ...");
- the KmsKeyId does not exist in the sandbox's KMS (in the import's region;
  key id, key ARN, alias name or alias ARN), is disabled or pending deletion,
  or is not a symmetric key ("validating": "ClientError: The specified KMS
  key is not accessible ...");
- per disk from S3 (UserBucket, or a Url of the form s3://bucket/key; other
  Urls and SnapshotIds are not looked at), in this order:
  - the bucket or object does not exist, or the role's policies do not allow
    s3:GetObject on it ("validating": "ClientError: Disk validation failed
    [We do not have access to the given resource. Reason 403 Forbidden]");
  - the declared Format is not what the file is ("validating": "ClientError:
    Disk validation failed [Unsupported specified file format]");
  - a VMDK that is not stream-optimized, e.g. monolithicSparse, a
    descriptor-only VMDK, or such a disk in an OVA ("validating":
    "ClientError: Disk validation failed [Unsupported VMDK File Format]");
  - no partition table ("converting": "ClientError: No valid partitions. Not
    a valid volume.");
  - the guest OS, as `wizard.inspect.linux` reads it: a distribution VM Import
    does not support, no release files, no Linux root, or a LUKS volume
    ("converting": "ClientError: Unknown OS / Missing OS files."); no kernel
    ("updating": "ClientError: Unable to determine kernel version."); BLS
    entries without a default ("updating": "ClientError: BLSC-style GRUB
    found, but unable to detect default kernel"); / in a Btrfs subvolume
    ("converting", Unknown OS); the root's logical volume on a disk not in the
    image ("converting": "ClientError: Unsupported configuration - Logical
    volume group activation failed"); no /etc/fstab ("updating":
    "ClientError: Invalid configuration - Could not read fstab"); NTFS without
    a Windows ("converting", Unknown OS); a Windows 11 without UEFI, a
    non-US-English client edition or under 6 GiB free ("booting":
    "FirstBootFailure: ...", the guide naming no message of their own).

Leniency: the content checks (the last three) apply only to objects of at
least `min_bytes` (default 64 KiB, SANDBOX_INSPECT_MIN_BYTES): tests and demos
upload small dummy files ("KDMV" and zeros, a few KB named .vhd) and expect
them to import. A task tag `sandbox:inspect` decides per task: "off" skips
every disk check (missing objects too), "on" inspects objects of any size.
Other findings of the inspector (damaged or truncated files, boot mode
hints, ...) do not fail the task: only the findings in FAILING_FINDINGS do.

The content is judged by `wizard.inspect.inspect_image`, run as the application
runs it: in a child process with the same time and memory limits
(`wizard.preflight.inspection`; WIZARD_INSPECT_SECONDS, default 30, and
WIZARD_INSPECT_MEMORY_MB, default 256), the child asking this process for each
byte range, so a hostile image can hold the sandbox for the time limit at most.
An inspector that raises, or an inspection that exceeds the limits or crashes, leaves the disk
alone (logged). Only the byte ranges the inspection asks for are read from
moto's in-memory S3 object.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from moto.iam.exceptions import NotFoundException as IAMNotFound
from moto.iam.models import iam_backends
from moto.kms.models import kms_backends
from moto.s3.exceptions import MissingBucket
from moto.s3.models import FakeKey, s3_backends
from moto.utilities.utils import get_partition

from wizard.preflight import inspection

if TYPE_CHECKING:
    from wizard.sandbox.taskstore import ImportTask

DEFAULT_MIN_BYTES = 64 * 1024
INSPECT_TAG = "sandbox:inspect"
VMIE_PRINCIPAL = "vmie.amazonaws.com"

NO_ACCESS = "ClientError: Disk validation failed [We do not have access to the given resource. Reason 403 Forbidden]"
WRONG_FORMAT = "ClientError: Disk validation failed [Unsupported specified file format]"
BAD_VMDK = "ClientError: Disk validation failed [Unsupported VMDK File Format]"
NO_PARTITIONS = "ClientError: No valid partitions. Not a valid volume."
UNKNOWN_OS = "ClientError: Unknown OS / Missing OS files."
NO_KERNEL = "ClientError: Unable to determine kernel version."
BLS_NO_DEFAULT = "ClientError: BLSC-style GRUB found, but unable to detect default kernel"
# The guide's troubleshooting page ("Linux VM Errors", "Windows VM Errors"):
NO_FSTAB = "ClientError: Invalid configuration - Could not read fstab"
LVM_ACTIVATION = "ClientError: Unsupported configuration - Logical volume group activation failed"
FIRST_BOOT = (
    "FirstBootFailure: This import request failed because the Windows instance failed to boot and establish "
    "network connectivity."
)

# The inspector's finding codes the sandbox fails a task for, in the order they count.
FAILING_FINDINGS = (
    ("format-mismatch", "validating", WRONG_FORMAT),
    ("vmdk-not-stream-optimized", "validating", BAD_VMDK),
    ("vmdk-descriptor-only", "validating", BAD_VMDK),
    ("ova-disk-not-stream-optimized", "validating", BAD_VMDK),
    ("no-partitions", "converting", NO_PARTITIONS),
    # the guest OS (wizard.inspect.linux): AWS finds these while converting and updating the guest
    ("unsupported-os", "converting", UNKNOWN_OS),
    ("unknown-os", "converting", UNKNOWN_OS),
    ("no-os", "converting", UNKNOWN_OS),
    ("luks", "converting", UNKNOWN_OS),
    ("btrfs-subvolume", "converting", UNKNOWN_OS),  # / in a subvolume: no /etc where AWS looks
    ("lvm-spans-disks", "converting", LVM_ACTIVATION),  # (an error only when the root's LV is cut)
    ("windows-no-system", "converting", UNKNOWN_OS),
    ("no-kernel", "updating", NO_KERNEL),
    ("bls-no-default", "updating", BLS_NO_DEFAULT),
    ("fstab-missing", "updating", NO_FSTAB),
    # Windows that VM Import converts but cannot boot, license or fit its drivers into: the guide
    # names no message of their own, only the first boot's failure.
    ("windows-11-bios", "booting", FIRST_BOOT),
    ("windows-language", "booting", FIRST_BOOT),
    ("windows-free-space", "booting", FIRST_BOOT),
)

Failure = tuple[str, str]  # (stage name, StatusMessage)


class S3ObjectReader:
    """Random access to an object of moto's in-memory S3: `.size` and `.read(offset, length)`.

    Reads only the range asked for, from the object's buffer, under its lock.
    """

    def __init__(self, key: FakeKey) -> None:
        self.key = key
        self.size = int(key.size)
        self.reads: list[tuple[int, int]] = []  # (offset, length) asked for, for tests

    def read(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0 or offset < 0:
            return b""
        self.reads.append((offset, length))
        buffer = getattr(self.key, "_value_buffer", None)
        if buffer is None:  # another moto: fall back to the whole value
            return bytes(self.key.value[offset : offset + length])
        with self.key.lock:
            buffer.seek(offset)
            return buffer.read(length)


def s3_location(disk: dict[str, Any]) -> tuple[str, str] | None:
    """(bucket, key) of a disk's S3 source: its UserBucket, or a Url s3://bucket/key."""
    bucket = disk.get("UserBucket")
    if bucket:
        return bucket["S3Bucket"], bucket["S3Key"]
    url = disk.get("Url") or ""
    if url.startswith("s3://") and "/" in url[5:]:
        name, _, key = url[5:].partition("/")
        return name, unquote(key)
    return None


def open_object(account: str, region: str, bucket: str, key: str) -> S3ObjectReader | None:
    """A reader of the object, or None if the bucket or the object does not exist."""
    backend = s3_backends[account][get_partition(region)]
    try:
        obj = backend.get_object(bucket, key)
    except MissingBucket:
        return None
    return S3ObjectReader(obj) if isinstance(obj, FakeKey) else None


# --- the service role -------------------------------------------------------------------------


def _role(account: str, region: str, role_name: str) -> Any:
    try:
        return iam_backends[account][get_partition(region)].get_role(role_name)
    except IAMNotFound:
        return None


def _policy_documents(role: Any) -> list[dict[str, Any]]:
    """The role's inline and attached (default version) policy documents."""
    texts = list(getattr(role, "policies", {}).values())
    for policy in getattr(role, "managed_policies", {}).values():
        texts += [v.document for v in getattr(policy, "versions", []) if getattr(v, "is_default", False)]
    documents = []
    for text in texts:
        try:
            document = json.loads(text) if isinstance(text, str) else text
        except ValueError:
            continue
        if isinstance(document, dict):
            documents.append(document)
    return documents


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statement_matches(statement: dict[str, Any], action: str, resource: str) -> bool:
    """Whether a policy statement covers the action on the resource (conditions are ignored;
    NotAction / NotResource statements are taken to cover it: the sandbox errs to allowing)."""
    actions = _as_list(statement.get("Action", []))
    if "Action" in statement and not any(fnmatch.fnmatchcase(action.lower(), str(a).lower()) for a in actions):
        return False
    resources = _as_list(statement.get("Resource", []))
    return "Resource" not in statement or any(fnmatch.fnmatchcase(resource, str(r)) for r in resources)


def role_may(role: Any, action: str, resource: str) -> bool:
    """Whether the role's policies allow `action` on `resource` (an explicit Deny wins)."""
    allowed = False
    for document in _policy_documents(role):
        for statement in _as_list(document.get("Statement", [])):
            if not isinstance(statement, dict) or not _statement_matches(statement, action, resource):
                continue
            if statement.get("Effect") == "Deny":
                return False
            if statement.get("Effect") == "Allow":
                allowed = True
    return allowed


def role_problem(account: str, region: str, role_name: str) -> str | None:
    role = _role(account, region, role_name)
    if role is None or VMIE_PRINCIPAL not in str(role.assume_role_policy_document):
        return (
            f"ClientError: The service role {role_name} provided does not exist or does not have sufficient permissions"
        )
    return None


# --- the KMS key ------------------------------------------------------------------------------


def kms_key(account: str, region: str, key_id: str) -> Any:
    """The KMS key that a key id, key ARN, alias name or alias ARN names, or None."""
    backend = kms_backends[account][region]
    try:
        return backend.keys[backend.any_id_to_key_id(key_id)]
    except Exception:  # moto raises KeyError, TypeError or NotFoundException by input
        return None


def kms_problem(account: str, region: str, key_id: str) -> str | None:
    """Why the key cannot encrypt the import's snapshots, or None if it can."""
    key = kms_key(account, region, key_id)
    if key is None:
        return (
            f"ClientError: The specified KMS key is not accessible: {key_id} does not exist "
            f"in {region}, or the import is not allowed to use it"
        )
    if not key.enabled or key.key_state != "Enabled":
        return f"ClientError: The specified KMS key is not accessible: {key_id} is {key.key_state.lower()}"
    spec, usage = key.key_spec or "SYMMETRIC_DEFAULT", key.key_usage or "ENCRYPT_DECRYPT"
    if spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT":
        return f"ClientError: The specified KMS key {key_id} is not a symmetric encryption key"
    return None


# --- the image's content ----------------------------------------------------------------------


class InspectionStopped(Exception):
    """The limited inspection ran out of time or memory, or its child crashed."""


def limits() -> tuple[float, int]:
    """(seconds, MiB) of one inspection: the application's settings, from the same environment."""
    seconds = float(os.environ.get("WIZARD_INSPECT_SECONDS", inspection.DEFAULT_SECONDS))
    return seconds, int(os.environ.get("WIZARD_INSPECT_MEMORY_MB", inspection.DEFAULT_MEMORY_MB))


def bounded(seconds: float, memory_mb: int) -> Callable[..., Any]:
    """`wizard.inspect.inspect_image` in a limited child (`wizard.preflight.inspection`), as the application runs it."""

    def inspect(reader: Any, declared_format: str | None = None) -> dict[str, Any]:
        report = inspection.inspect_reader(
            reader, seconds=seconds, memory_mb=memory_mb, declared_format=declared_format or ""
        )
        for finding in report.get("findings", []):
            if finding.get("code") in (inspection.LIMITS_CODE, inspection.FAILED_CODE):
                raise InspectionStopped(finding["message"])
        return report

    return inspect


def _inspector(seconds: float | None = None, memory_mb: int | None = None) -> Callable[..., Any]:
    """`wizard.inspect.inspect_image`, bounded as the application bounds it."""
    default_seconds, default_memory = limits()
    return bounded(default_seconds if seconds is None else seconds, memory_mb or default_memory)


def _codes(report: Any) -> set[str]:
    """The codes of a report's errors (warnings never fail a task), an object (ImageReport) or its
    dict, plus "no-partitions" when it found no partition table."""
    if isinstance(report, dict):
        codes = {str(f.get("code", "")) for f in report.get("findings") or [] if f.get("severity") == "error"}
        table = report.get("partition_table", "")
    else:
        codes = {finding.code for finding in report.findings if finding.severity == "error"}
        table = getattr(report, "partition_table", "")
    if table == "none":
        codes.add("no-partitions")
    return codes


def content_failure(
    reader: Any, declared_format: str | None, inspect: Callable[..., Any] | None = None
) -> Failure | None:
    """The failure a disk's content leads to, if any."""
    inspect = inspect or _inspector()
    try:
        report = inspect(reader, declared_format=declared_format or None)
    except Exception as error:  # an inspector's bug must not break the sandbox: the disk is fine
        print(f"sandbox: inspecting the image failed: {error!r}", file=sys.stderr, flush=True)
        return None
    codes = _codes(report)
    # The earliest stage wins (validating before converting before updating), then the order above.
    order = {"validating": 0, "converting": 1, "updating": 2, "booting": 3}
    for code, stage, message in sorted(FAILING_FINDINGS, key=lambda f: order.get(f[1], 3)):
        if code in codes:
            return stage, message
    return None


# --- all of it, for one task ------------------------------------------------------------------


def _inspect_mode(task: ImportTask) -> str:
    """ "on", "off" or "auto", from the task's sandbox:inspect tag."""
    for spec in task.params.get("TagSpecifications") or []:
        for tag in spec.get("Tags") or []:
            if tag.get("Key") == INSPECT_TAG:
                value = str(tag.get("Value", "")).lower()
                return value if value in ("on", "off") else "auto"
    return "auto"


class ImageChecks:
    """The sandbox's validator: role, KMS key and disks of a task that starts validating."""

    def __init__(
        self,
        min_bytes: int = DEFAULT_MIN_BYTES,
        inspect: Callable[..., Any] | None = None,
        seconds: float | None = None,
        memory_mb: int | None = None,
    ) -> None:
        self.min_bytes = min_bytes
        self.inspect = inspect or _inspector(seconds, memory_mb)

    def __call__(self, task: ImportTask) -> Failure | None:
        account, region, params = task.account, task.region, task.params
        role_name = params.get("RoleName") or "vmimport"
        problem = role_problem(account, region, role_name)
        if problem:
            return "validating", problem
        key_id = params.get("KmsKeyId")
        if key_id:
            problem = kms_problem(account, region, key_id)
            if problem:
                return "validating", problem
        mode = _inspect_mode(task)
        if mode == "off":
            return None
        role = _role(account, region, role_name)
        failures = [self.disk_failure(account, region, role, disk, mode) for disk in task.disks]
        found = [f for f in failures if f is not None]
        # The earliest stage wins; among equals, the first disk.
        order = {"validating": 0, "converting": 1, "updating": 2, "booting": 3}
        return min(found, key=lambda f: order.get(f[0], 3)) if found else None

    def disk_failure(self, account: str, region: str, role: Any, disk: dict[str, Any], mode: str) -> Failure | None:
        location = s3_location(disk)
        if location is None:
            return None  # an https Url or a snapshot: nothing the sandbox can look at
        bucket, key = location
        reader = open_object(account, region, bucket, key)
        if reader is None or not role_may(role, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"):
            return "validating", NO_ACCESS
        if mode != "on" and reader.size < self.min_bytes:
            return None
        return content_failure(reader, disk.get("Format"), self.inspect)
