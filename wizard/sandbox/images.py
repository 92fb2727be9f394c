"""What moto lacks of the EC2 image calls the finishing uses (wizard.imports.finishing).

moto 5 copies, tags, shares and deregisters AMIs, but:

- CopyImage ignores ClientToken (so a repeated call makes a second AMI), Encrypted and
  KmsKeyId, allows a name already used in the account and region (EC2: InvalidAMIName.Duplicate),
  and makes the copy "available" at once. Here a ClientToken repeated with the same parameters
  answers the first copy's ImageId (other parameters: IdempotentParameterMismatch), the copy's
  snapshot is encrypted with the key asked for, and the copy is "pending" for `copy_seconds`
  of the sandbox clock, then "available".
- ModifyImageAttribute ignores ImdsSupport: here "v2.0" is set (and shown by DescribeImages and
  DescribeImageAttribute); any other value is InvalidParameterValue, as on EC2.
- EnableImageDeprecation does not exist: here it sets DeprecationTime (rounded down to the
  minute, as EC2 does), shown by DescribeImages.

The call faults of wizard.sandbox.faults apply to these actions like to any other (the
middleware applies them by action before moto is called).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.responses import EC2Response

from wizard.sandbox.clock import SandboxClock

_original: dict[str, Any] = {}


class ImageCopies:
    """The copies made through CopyImage: their tokens and when each becomes available."""

    def __init__(self, clock: SandboxClock, copy_seconds: float) -> None:
        self.clock = clock
        self.copy_seconds = copy_seconds
        self._lock = threading.RLock()
        self._tokens: dict[tuple[str, str, str], tuple[str, tuple[Any, ...]]] = {}
        self._due: dict[tuple[str, str, str], float] = {}  # (account, region, ami id) -> clock time

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._due.clear()

    def tick(self) -> None:
        """Copies whose time has come are available."""
        now = self.clock.now()
        with self._lock:
            for key, due in list(self._due.items()):
                if due <= now:
                    account, region, ami_id = key
                    ami = ec2_backends[account][region].amis.get(ami_id)
                    if ami is not None and ami.state == "pending":
                        ami.state = "available"
                    del self._due[key]


_copies: ImageCopies | None = None


def install(copies: ImageCopies) -> None:
    global _copies
    _copies = copies
    for name, function in (
        ("copy_image", _copy_image),
        ("modify_image_attribute", _modify_image_attribute),
        ("describe_images", _describe_images),
        ("describe_image_attribute", _describe_image_attribute),
    ):
        _original.setdefault(name, getattr(EC2Response, name))
        setattr(EC2Response, name, function)
    EC2Response.enable_image_deprecation = _enable_image_deprecation  # type: ignore[attr-defined]


def clear() -> None:
    if _copies is not None:
        _copies.clear()


def _store() -> ImageCopies:
    if _copies is None:
        raise RuntimeError("wizard.sandbox.images.install() has not been called")
    return _copies


def _copy_image(self: EC2Response) -> ActionResult:
    store = _store()
    self.error_on_dryrun()
    account, region = self.current_account, self.region
    backend = ec2_backends[account][region]
    name = self._get_param("Name")
    source_region = self._get_param("SourceRegion") or region
    kms_key_id = self._get_param("KmsKeyId")
    encrypted = bool(self._get_param("Encrypted")) or kms_key_id is not None
    token = self._get_param("ClientToken")
    params = (self._get_param("SourceImageId"), source_region, name, self._get_param("Description"), kms_key_id)
    with store._lock:
        if token:
            seen = store._tokens.get((account, region, token))
            if seen is not None:
                if seen[1] != params:
                    raise EC2ClientError(
                        "IdempotentParameterMismatch",
                        "The client token you have provided is associated with a resource that is already "
                        "deleted or has different parameters. Use a new client token.",
                    )
                return ActionResult({"ImageId": seen[0]})
        if not name:
            raise EC2ClientError("MissingParameter", "The request must contain the parameter name")
        if any(a.name == name and a.owner_id == account for a in backend.amis.values()):
            raise EC2ClientError("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI")
        result = _original["copy_image"](self)
        ami_id = result.result["ImageId"] if hasattr(result, "result") else None
        ami = backend.amis.get(ami_id) if ami_id else None
        if ami is not None:
            ami.state = "pending"
            if encrypted:
                ami.ebs_snapshot.encrypted = True
                ami.ebs_snapshot.kms_key_id = kms_key_id or f"alias/aws/ebs ({region})"
            store._due[(account, region, ami.id)] = store.clock.now() + store.copy_seconds
            if token:
                store._tokens[(account, region, token)] = (ami.id, params)
        return result


def _modify_image_attribute(self: EC2Response) -> ActionResult:
    imds = self._get_param("ImdsSupport")
    if imds is None:
        return _original["modify_image_attribute"](self)
    value = imds.get("Value") if isinstance(imds, dict) else imds
    if value != "v2.0":
        raise EC2ClientError("InvalidParameterValue", f"Value ({value}) for parameter imdsSupport is invalid.")
    self.error_on_dryrun()
    ami = self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0]
    ami.imds_support = "v2.0"
    ami.imds = "v2.0"
    return ActionResult({})


def _enable_image_deprecation(self: EC2Response) -> ActionResult:
    self.error_on_dryrun()
    ami = self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0]
    when = self._get_param("DeprecateAt")
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if not isinstance(when, datetime):
        raise EC2ClientError("MissingParameter", "The request must contain the parameter DeprecateAt")
    when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).replace(second=0, microsecond=0)
    ami.deprecation_time = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return ActionResult({"Return": True})


def _describe_images(self: EC2Response) -> ActionResult:
    _store().tick()
    return _original["describe_images"](self)


def _describe_image_attribute(self: EC2Response) -> ActionResult:
    if self._get_param("Attribute") == "imdsSupport":
        ami = self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0]
        if not hasattr(ami, "imds"):
            ami.imds = None
    return _original["describe_image_attribute"](self)
