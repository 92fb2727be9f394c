"""The EC2 ``ImportImage`` request as plain data.

Everything the wizard knows about an import request lives in one `ImportSpec`. The spec is
checked by `validate` (the rules VM Import enforces, many of which AWS only reports hours
into a failed task), turned into boto3 keyword arguments by `to_api_params` and read back by
`from_api_params`. Field names are the snake_case of the API's member names; ``""``, ``None``
and empty lists mean "unset", so a spec maps one to one onto the request AWS receives.

Pure Python on purpose: no Django, no boto3, so forms, the CLI import/export
(`wizard.requests.cli_format`), the dispatcher and the tests all share it without a database.

Decisions worth knowing:

* ``Format`` is accepted in any case, as the API does ("vmdk" works), but stored upper case:
  `from_api_params` normalises it and `to_api_params` always sends upper case.
* Finding paths use the API's names and zero-based indexes (``DiskContainers[1].UserBucket.S3Key``,
  ``TagSpecifications[0].Tags[3].Key``), so a finding can be shown next to the form field, the
  CLI document line or the API error that it corresponds to.
* Naive datetimes in `ClientData` are read as UTC, as botocore does when it serialises them.
* Every text sent to AWS is checked by `text_problem` (`_check_texts`): EC2 answers in XML 1.0,
  whose Char production cannot carry NUL, most C0 controls, lone surrogates or U+FFFE/U+FFFF.
  A value EC2 accepts but cannot put in its answer breaks every later DescribeImportImageTasks
  answer that shows it (EC2 itself refuses such a query value with InvalidParameterValue,
  "Invalid or illegal XML character specified"; aws/aws-cli#53). The rule here is a little
  stricter: no control character at all (Unicode category Cc: tabs and line breaks too, which
  XML would carry but its end-of-line handling changes), as these are all one-line texts.
"""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ClientData",
    "DiskContainer",
    "Finding",
    "ImportSpec",
    "Tag",
    "UserBucket",
    "cancel_reason_problem",
    "from_api_params",
    "new_client_token",
    "text_problem",
    "to_api_params",
    "validate",
]


# --------------------------------------------------------------------------------------------
# The data


@dataclass
class UserBucket:
    s3_bucket: str = ""
    s3_key: str = ""


@dataclass
class DiskContainer:
    format: str = ""  # OVA | VHD | VHDX | VMDK | RAW (the API accepts any case; we store upper case)
    description: str = ""
    device_name: str = ""
    url: str = ""  # https:// or s3://
    snapshot_id: str = ""
    user_bucket: UserBucket | None = None


@dataclass
class Tag:
    key: str
    value: str = ""


@dataclass
class ClientData:
    comment: str = ""
    upload_start: datetime | None = None
    upload_end: datetime | None = None
    upload_size: float | None = None  # GiB


@dataclass
class ImportSpec:
    disk_containers: list[DiskContainer] = field(default_factory=list)
    architecture: str = ""  # i386 | x86_64
    boot_mode: str = ""  # legacy-bios | uefi
    client_data: ClientData | None = None
    client_token: str = ""
    description: str = ""
    dry_run: bool = False
    encrypted: bool | None = None
    hypervisor: str = ""  # xen
    kms_key_id: str = ""
    license_type: str = ""  # AWS | BYOL
    platform: str = ""  # Windows | Linux
    role_name: str = ""
    license_configuration_arns: list[str] = field(
        default_factory=list
    )  # LicenseSpecifications[].LicenseConfigurationArn
    tags: list[Tag] = field(default_factory=list)  # TagSpecifications[{ResourceType: import-image-task, Tags}]
    usage_operation: str = ""


@dataclass(frozen=True)
class Finding:
    """One problem with a request: where (API path, e.g. ``DiskContainers[0].Url``) and what."""

    path: str
    message: str


# --------------------------------------------------------------------------------------------
# Limits and patterns (VM Import/Export User Guide, EC2/S3/IAM/KMS references)

MAX_DISK_CONTAINERS = 21
MAX_TAGS = 50
MAX_TAG_KEY = 127  # the CLI reference says 127; the tagging guide 128: the stricter one is safe
MAX_TAG_VALUE = 255  # the EC2 API reference says 256; the CLI reference 255: the stricter one is safe
# AWS documents no length for these Strings; the AMI gets the task's Description, and an AMI's
# description is at most 255 characters (RegisterImage), so 255 is kept for every free text.
MAX_DESCRIPTION = 255
MAX_COMMENT = 255
MAX_CANCEL_REASON = 255
MAX_CLIENT_TOKEN = 64
MAX_S3_KEY_BYTES = 1024
TAG_RESOURCE_TYPE = "import-image-task"

_PARTITION = r"aws(?:-[a-z]+)*"  # aws, aws-cn, aws-us-gov, aws-iso-b, ...
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"  # us-east-1, us-gov-west-1, eu-isoe-west-1
_ACCOUNT = r"\d{12}"
_KEY_ID = r"(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|mrk-[0-9a-fA-F]{32})"
_ALIAS = r"alias/[A-Za-z0-9/_-]{1,250}"  # at most 256 characters with the prefix

KMS_KEY_ID_FORMS: dict[str, re.Pattern[str]] = {
    "key id": re.compile(_KEY_ID),
    "key ARN": re.compile(rf"arn:{_PARTITION}:kms:{_REGION}:{_ACCOUNT}:key/{_KEY_ID}"),
    "alias name": re.compile(_ALIAS),
    "alias ARN": re.compile(rf"arn:{_PARTITION}:kms:{_REGION}:{_ACCOUNT}:{_ALIAS}"),
}
LICENSE_CONFIGURATION_ARN = re.compile(
    rf"arn:{_PARTITION}:license-manager:{_REGION}:{_ACCOUNT}:license-configuration:lic-[0-9a-f]+"
)
SNAPSHOT_ID = re.compile(r"snap-(?:[0-9a-f]{8}|[0-9a-f]{17})")
ROLE_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{1,64}")
USAGE_OPERATION = re.compile(r"RunInstances(?::\d{4})?")
BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")

# S3 general purpose bucket naming rules: reserved prefixes and suffixes.
BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


@dataclass(frozen=True)
class Choice:
    """An enumerated parameter: what is allowed and why some tempting values are not."""

    allowed: tuple[str, ...]
    refused: Mapping[str, str] = field(default_factory=dict)  # value -> reason
    case_insensitive: bool = False


FORMAT = Choice(
    ("OVA", "VHD", "VHDX", "VMDK", "RAW"),
    {
        "QCOW2": "convert it to RAW or VMDK first, e.g. with qemu-img",
        "VDI": "convert it to RAW, VHD or VMDK first, e.g. with VBoxManage or qemu-img",
        "OVF": "package the OVF descriptor and its disks as one OVA file",
        "ISO": "an installer ISO is not a disk image; install the VM and export its disk",
        "IMG": "upload the image as RAW",
    },
    case_insensitive=True,
)
CHOICES: dict[str, Choice] = {
    "Architecture": Choice(
        ("i386", "x86_64"),
        {
            "arm64": "ARM64 VMs cannot be imported",
            "aarch64": "ARM64 VMs cannot be imported",
            "x86_64_mac": "Mac instances cannot be imported",
            "arm64_mac": "Mac instances cannot be imported",
        },
    ),
    "BootMode": Choice(
        ("legacy-bios", "uefi"),
        {"uefi-preferred": "imports must say how the VM boots: uefi or legacy-bios"},
    ),
    "Hypervisor": Choice(("xen",)),
    "LicenseType": Choice(("AWS", "BYOL")),
    "Platform": Choice(("Windows", "Linux")),
}


# --------------------------------------------------------------------------------------------
# Small helpers


def _words(values: Iterable[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``: the allowed values in a sentence."""
    items = list(values)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _check_choice(path: str, name: str, value: str, choice: Choice) -> list[Finding]:
    if not value:
        return []
    probe = value.upper() if choice.case_insensitive else value
    if probe in choice.allowed:
        return []
    reason = choice.refused.get(probe) or choice.refused.get(value)
    allowed = _words(choice.allowed) + (" (any letter case)" if choice.case_insensitive else "")
    if reason:
        return [Finding(path, f"{name} must be {allowed}; {value} is not supported by VM Import ({reason})")]
    return [Finding(path, f"{name} must be {allowed}, not {value!r}")]


def _check_length(path: str, name: str, value: str, limit: int) -> list[Finding]:
    if len(value) > limit:
        return [Finding(path, f"{name} must be at most {limit} characters (it has {len(value)})")]
    return []


# Control characters people may recognise by name; the others are shown by code point only.
_CONTROL_NAMES = {
    0x00: "NUL",
    0x09: "a tab",
    0x0A: "a line break",
    0x0D: "a carriage return",
    0x1B: "ESC",
    0x7F: "DEL",
}


def text_problem(value: str) -> str:
    """What makes `value` unfit to send to AWS as text, or "" if nothing.

    Refused: control characters (Unicode category Cc: U+0000-U+001F and U+007F-U+009F, which
    covers every C0 control XML 1.0 lacks), lone surrogates (U+D800-U+DFFF, not characters
    at all: they cannot even be encoded as UTF-8) and the noncharacters U+FFFE and U+FFFF
    (outside XML 1.0's Char production). Everything else, any script, emoji included, is fine.
    """
    for position, char in enumerate(value, start=1):
        code = ord(char)
        point = f"U+{code:04X}"
        if unicodedata.category(char) == "Cc":
            name = f"{_CONTROL_NAMES[code]} ({point}, " if code in _CONTROL_NAMES else f"{point} ("
            return (
                f"must not contain control characters such as {name}character {position}): "
                "use printable text on one line (AWS answers in XML, which cannot carry most of them)"
            )
        if 0xD800 <= code <= 0xDFFF:
            return (
                f"must not contain a lone surrogate ({point}, character {position}): "
                "it is not a character and cannot be sent to AWS"
            )
        if code in (0xFFFE, 0xFFFF):
            return f"must not contain the noncharacter {point} (character {position}): AWS's XML cannot carry it"
    return ""


def cancel_reason_problem(reason: str) -> str:
    """What is wrong with a CancelImportTask CancelReason, as a sentence, or "" if nothing."""
    if len(reason) > MAX_CANCEL_REASON:
        return f"CancelReason must be at most {MAX_CANCEL_REASON} characters (it has {len(reason)})"
    if problem := text_problem(reason):
        return f"CancelReason {problem}"
    return ""


def bucket_name_problem(name: str) -> str:
    """What is wrong with an S3 bucket name under the S3 naming rules, or "" if nothing."""
    if not 3 <= len(name) <= 63:
        return f"must be 3 to 63 characters long (it has {len(name)})"
    if not BUCKET_CHARS.fullmatch(name):
        return "may use only lowercase letters, digits, dots and hyphens, and must start and end with a letter or digit"
    if ".." in name:
        return "must not contain two dots in a row"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        return "must not look like an IP address"
    for prefix in BUCKET_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"must not start with {prefix!r} (reserved by S3)"
    for suffix in BUCKET_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"must not end with {suffix!r} (reserved by S3)"
    return ""


def s3_key_problem(key: str) -> str:
    """What is wrong with an S3 object key, or "" if nothing."""
    if not key:
        return "is required: the object's key (path) in the bucket"
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_S3_KEY_BYTES:
        return f"must be 1 to {MAX_S3_KEY_BYTES} bytes of UTF-8 (it has {size})"
    return ""


# --------------------------------------------------------------------------------------------
# Validation: one function per part of the request, each returning findings


def _check_disk_container(index: int, disk: DiskContainer, count: int) -> list[Finding]:
    at = f"DiskContainers[{index}]"
    found = _check_choice(f"{at}.Format", "Format", disk.format, FORMAT)
    found += _check_length(f"{at}.Description", "Description", disk.description, MAX_DESCRIPTION)
    if disk.format.upper() == "OVA" and count > 1:
        found.append(
            Finding(
                f"{at}.Format", "Format OVA must be the only disk container: an OVA already holds all of the VM's disks"
            )
        )

    sources = [
        name
        for name, value in (("UserBucket", disk.user_bucket), ("Url", disk.url), ("SnapshotId", disk.snapshot_id))
        if value
    ]
    if len(sources) != 1:
        given = f"it has {' and '.join(sources)}" if sources else "it has none"
        found.append(
            Finding(at, f"each disk container needs exactly one source: UserBucket, Url or SnapshotId ({given})")
        )

    if disk.user_bucket is not None:
        bucket = disk.user_bucket
        if not bucket.s3_bucket:
            found.append(
                Finding(
                    f"{at}.UserBucket.S3Bucket", "S3Bucket is required: the name of the bucket that holds the image"
                )
            )
        elif problem := bucket_name_problem(bucket.s3_bucket):
            found.append(Finding(f"{at}.UserBucket.S3Bucket", f"S3Bucket {problem}"))
        if problem := s3_key_problem(bucket.s3_key):
            found.append(Finding(f"{at}.UserBucket.S3Key", f"S3Key {problem}"))
    if disk.url:
        found += _check_url(f"{at}.Url", disk.url)
    if disk.snapshot_id and not SNAPSHOT_ID.fullmatch(disk.snapshot_id):
        found.append(
            Finding(
                f"{at}.SnapshotId",
                f"SnapshotId must be snap- followed by 8 or 17 lowercase hex digits, not {disk.snapshot_id!r}",
            )
        )
    return found


def _check_url(path: str, url: str) -> list[Finding]:
    if url.startswith("s3://"):
        bucket, _, key = url[len("s3://") :].partition("/")
        if problem := bucket_name_problem(bucket):
            return [Finding(path, f"Url must be s3://bucket/key with a valid bucket name: the bucket {problem}")]
        if problem := s3_key_problem(key):
            return [Finding(path, f"Url must be s3://bucket/key: the key {problem}")]
        return []
    if url.startswith("https://"):
        parts = urlsplit(url)
        if not parts.hostname or any(c.isspace() for c in url):
            return [Finding(path, "Url must be a complete https:// address with a host name and no spaces")]
        return []
    return [Finding(path, "Url must start with https:// (e.g. a presigned S3 URL) or s3:// (s3://bucket/key)")]


def _check_kms_key(spec: ImportSpec) -> list[Finding]:
    if not spec.kms_key_id:
        return []
    found = []
    if not any(p.fullmatch(spec.kms_key_id) for p in KMS_KEY_ID_FORMS.values()):
        found.append(
            Finding(
                "KmsKeyId",
                "KmsKeyId must be a key id (1234abcd-12ab-34cd-56ef-1234567890ab or mrk-...), a key ARN "
                "(arn:aws:kms:region:account:key/...), an alias name (alias/...) or an alias ARN "
                "(arn:aws:kms:region:account:alias/...)",
            )
        )
    if spec.encrypted is not True:
        found.append(
            Finding("KmsKeyId", "KmsKeyId can only be used with Encrypted set to true; set Encrypted or remove the key")
        )
    return found


def _check_licensing(spec: ImportSpec) -> list[Finding]:
    found = []
    if spec.license_type and spec.usage_operation:
        found.append(Finding("UsageOperation", "LicenseType and UsageOperation cannot both be set; choose one of them"))
    if spec.platform == "Linux" and spec.license_type not in ("", "BYOL"):
        found.append(
            Finding(
                "LicenseType",
                "LicenseType must be BYOL (or unset) when Platform is Linux: Linux imports support BYOL only",
            )
        )
    if spec.usage_operation and not USAGE_OPERATION.fullmatch(spec.usage_operation):
        found.append(
            Finding(
                "UsageOperation",
                "UsageOperation must be RunInstances or RunInstances:NNNN (e.g. RunInstances:0800), "
                f"not {spec.usage_operation!r}",
            )
        )
    for i, arn in enumerate(spec.license_configuration_arns):
        if not LICENSE_CONFIGURATION_ARN.fullmatch(arn):
            found.append(
                Finding(
                    f"LicenseSpecifications[{i}].LicenseConfigurationArn",
                    "LicenseConfigurationArn must be "
                    "arn:aws:license-manager:<region>:<account>:license-configuration:lic-<hex digits>",
                )
            )
    return found


def _check_platform_fit(spec: ImportSpec) -> list[Finding]:
    found = []
    if spec.architecture == "i386" and spec.platform == "Linux":
        found.append(
            Finding("Architecture", "Architecture must be x86_64 for Linux: 32-bit Linux is not supported by VM Import")
        )
    if spec.boot_mode == "uefi" and not spec.platform and any(d.snapshot_id for d in spec.disk_containers):
        found.append(
            Finding(
                "Platform",
                "Platform (Windows or Linux) must be set to import a uefi image from an EBS snapshot (SnapshotId)",
            )
        )
    return found


def _check_tags(spec: ImportSpec) -> list[Finding]:
    at = "TagSpecifications[0].Tags"
    found = []
    if len(spec.tags) > MAX_TAGS:
        found.append(Finding(at, f"Tags may hold at most {MAX_TAGS} tags (there are {len(spec.tags)})"))
    seen: set[str] = set()
    for i, tag in enumerate(spec.tags):
        if not 1 <= len(tag.key) <= MAX_TAG_KEY:
            found.append(
                Finding(f"{at}[{i}].Key", f"Key must be 1 to {MAX_TAG_KEY} characters (it has {len(tag.key)})")
            )
        elif tag.key.lower().startswith("aws:"):
            found.append(Finding(f"{at}[{i}].Key", "Key must not start with aws: (that prefix is reserved for AWS)"))
        elif tag.key in seen:
            found.append(Finding(f"{at}[{i}].Key", f"Key must be unique; {tag.key!r} is used twice"))
        seen.add(tag.key)
        found += _check_length(f"{at}[{i}].Value", "Value", tag.value, MAX_TAG_VALUE)
    return found


def _check_client_data(data: ClientData | None) -> list[Finding]:
    if data is None:
        return []
    found = _check_length("ClientData.Comment", "Comment", data.comment, MAX_COMMENT)
    if data.upload_size is not None and not (math.isfinite(data.upload_size) and data.upload_size >= 0):
        found.append(Finding("ClientData.UploadSize", "UploadSize must be a number of GiB, 0 or more"))
    if data.upload_start and data.upload_end and _as_utc(data.upload_start) > _as_utc(data.upload_end):
        found.append(Finding("ClientData.UploadEnd", "UploadEnd must be at or after UploadStart"))
    return found


def _check_scalars(spec: ImportSpec) -> list[Finding]:
    found = []
    for name, choice in CHOICES.items():
        found += _check_choice(name, name, getattr(spec, _snake(name)), choice)
    found += _check_length("Description", "Description", spec.description, MAX_DESCRIPTION)
    if spec.client_token and not (len(spec.client_token) <= MAX_CLIENT_TOKEN and spec.client_token.isascii()):
        found.append(Finding("ClientToken", f"ClientToken must be at most {MAX_CLIENT_TOKEN} ASCII characters"))
    if spec.role_name and not ROLE_NAME.fullmatch(spec.role_name):
        found.append(
            Finding(
                "RoleName",
                "RoleName must be an IAM role name: 1 to 64 letters, digits or + = , . @ _ - (e.g. vmimport)",
            )
        )
    return found


def _check_disk_containers(disks: list[DiskContainer]) -> list[Finding]:
    if not disks:
        return [Finding("DiskContainers", "DiskContainers must hold at least one disk to import")]
    found = []
    if len(disks) > MAX_DISK_CONTAINERS:
        found.append(
            Finding(
                "DiskContainers",
                f"DiskContainers may hold at most {MAX_DISK_CONTAINERS} disks (there are {len(disks)})",
            )
        )
    for i, disk in enumerate(disks):
        found += _check_disk_container(i, disk, len(disks))
    return found


def _texts(spec: ImportSpec) -> Iterable[tuple[str, str, str]]:
    """Every text of the request that goes to AWS: (API path, member name, value)."""
    yield "ClientToken", "ClientToken", spec.client_token
    yield "Description", "Description", spec.description
    for i, disk in enumerate(spec.disk_containers):
        at = f"DiskContainers[{i}]"
        yield f"{at}.Description", "Description", disk.description
        yield f"{at}.DeviceName", "DeviceName", disk.device_name
        yield f"{at}.Url", "Url", disk.url
        if disk.user_bucket is not None:
            yield f"{at}.UserBucket.S3Key", "S3Key", disk.user_bucket.s3_key
    if spec.client_data is not None:
        yield "ClientData.Comment", "Comment", spec.client_data.comment
    for i, tag in enumerate(spec.tags):
        yield f"TagSpecifications[0].Tags[{i}].Key", "Key", tag.key
        yield f"TagSpecifications[0].Tags[{i}].Value", "Value", tag.value
    # The other members (ids, ARNs, names, choices) have patterns that already refuse such characters.


def _check_texts(spec: ImportSpec) -> list[Finding]:
    return [Finding(path, f"{name} {problem}") for path, name, text in _texts(spec) if (problem := text_problem(text))]


CHECKS: tuple[Callable[[ImportSpec], list[Finding]], ...] = (
    _check_texts,
    _check_scalars,
    lambda spec: _check_disk_containers(spec.disk_containers),
    lambda spec: _check_client_data(spec.client_data),
    _check_kms_key,
    _check_licensing,
    _check_platform_fit,
    _check_tags,
)


def validate(spec: ImportSpec) -> list[Finding]:
    """Every problem VM Import would have with this request, found before it is sent.

    Returns an empty list for a request AWS should accept; the order follows the checks,
    roughly the API's own parameter order.
    """
    return [finding for check in CHECKS for finding in check(spec)]


# --------------------------------------------------------------------------------------------
# To and from boto3 keyword arguments


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _drop_unset(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Keep the members that are set: no "", None, [] or {}."""
    return {k: v for k, v in items if v not in ("", None, [], {})}


def _disk_params(disk: DiskContainer) -> dict[str, Any]:
    bucket = disk.user_bucket
    return _drop_unset(
        [
            ("Description", disk.description),
            ("DeviceName", disk.device_name),
            ("Format", disk.format.upper()),
            ("SnapshotId", disk.snapshot_id),
            ("Url", disk.url),
            ("UserBucket", _drop_unset([("S3Bucket", bucket.s3_bucket), ("S3Key", bucket.s3_key)]) if bucket else None),
        ]
    )


def _client_data_params(data: ClientData | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return _drop_unset(
        [
            ("Comment", data.comment),
            ("UploadEnd", data.upload_end),
            ("UploadSize", data.upload_size),
            ("UploadStart", data.upload_start),
        ]
    )


def to_api_params(spec: ImportSpec) -> dict[str, Any]:
    """Keyword arguments for boto3's ``ec2.import_image(**params)``.

    Keys follow the order of the API's own member list; unset members are left out entirely
    (boto3 would send an empty string otherwise), DryRun only when true, Encrypted whenever it
    was decided (false is a decision too).
    """
    tags = [_drop_unset([("Key", t.key), ("Value", t.value)]) for t in spec.tags]
    return _drop_unset(
        [
            ("Architecture", spec.architecture),
            ("ClientData", _client_data_params(spec.client_data)),
            ("ClientToken", spec.client_token),
            ("Description", spec.description),
            ("DiskContainers", [p for p in map(_disk_params, spec.disk_containers) if p]),
            ("DryRun", True if spec.dry_run else None),
            ("Encrypted", spec.encrypted),
            ("Hypervisor", spec.hypervisor),
            ("KmsKeyId", spec.kms_key_id),
            ("LicenseType", spec.license_type),
            ("Platform", spec.platform),
            ("RoleName", spec.role_name),
            ("LicenseSpecifications", [{"LicenseConfigurationArn": a} for a in spec.license_configuration_arns if a]),
            ("TagSpecifications", [{"ResourceType": TAG_RESOURCE_TYPE, "Tags": tags}] if tags else []),
            ("UsageOperation", spec.usage_operation),
            ("BootMode", spec.boot_mode),
        ]
    )


def _str(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    return value if isinstance(value, str) else ""


def _map(params: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = params.get(key)
    return value if isinstance(value, Mapping) else {}


def _maps(params: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = params.get(key)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def parse_timestamp(value: Any) -> datetime | None:
    """A timestamp as boto3 takes it (datetime, ISO 8601 text, epoch seconds), or None."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return _as_utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            return None
    return None


def _client_data_from(params: Mapping[str, Any]) -> ClientData | None:
    data = params.get("ClientData")
    if not isinstance(data, Mapping):
        return None
    size = data.get("UploadSize")
    result = ClientData(
        comment=_str(data, "Comment"),
        upload_start=parse_timestamp(data.get("UploadStart")),
        upload_end=parse_timestamp(data.get("UploadEnd")),
        upload_size=float(size) if isinstance(size, (int, float)) and not isinstance(size, bool) else None,
    )
    return None if result == ClientData() else result


def _disk_from(params: Mapping[str, Any]) -> DiskContainer:
    bucket = params.get("UserBucket")
    user_bucket = UserBucket(_str(bucket, "S3Bucket"), _str(bucket, "S3Key")) if isinstance(bucket, Mapping) else None
    return DiskContainer(
        format=_str(params, "Format").upper(),
        description=_str(params, "Description"),
        device_name=_str(params, "DeviceName"),
        url=_str(params, "Url"),
        snapshot_id=_str(params, "SnapshotId"),
        user_bucket=None if user_bucket == UserBucket() else user_bucket,
    )


def from_api_params(params: Mapping[str, Any]) -> ImportSpec:
    """The spec for ``import_image`` keyword arguments: the inverse of `to_api_params`.

    Lenient by design: members of the wrong type are skipped and unknown members ignored, so
    it can read anything (stored requests, CloudTrail records); `wizard.requests.cli_format` is where
    a user's document is checked strictly and every problem reported.
    """
    encrypted = params.get("Encrypted")
    return ImportSpec(
        disk_containers=[_disk_from(d) for d in _maps(params, "DiskContainers")],
        architecture=_str(params, "Architecture"),
        boot_mode=_str(params, "BootMode"),
        client_data=_client_data_from(params),
        client_token=_str(params, "ClientToken"),
        description=_str(params, "Description"),
        dry_run=params.get("DryRun") is True,
        encrypted=encrypted if isinstance(encrypted, bool) else None,
        hypervisor=_str(params, "Hypervisor"),
        kms_key_id=_str(params, "KmsKeyId"),
        license_type=_str(params, "LicenseType"),
        platform=_str(params, "Platform"),
        role_name=_str(params, "RoleName"),
        license_configuration_arns=[
            arn for s in _maps(params, "LicenseSpecifications") if (arn := _str(s, "LicenseConfigurationArn"))
        ],
        tags=[
            Tag(key=_str(t, "Key"), value=_str(t, "Value"))
            for s in _maps(params, "TagSpecifications")
            for t in _maps(s, "Tags")
        ],
        usage_operation=_str(params, "UsageOperation"),
    )


def new_client_token() -> str:
    """A fresh idempotency token: 40 hex characters from `secrets`.

    EC2 returns the original task for a repeated call with the same token and parameters, so
    each request gets one token when it is created and keeps it through every retry. Hex keeps
    it ASCII, well under the 64-character limit, and never starting with "-" (which a shell
    command line would read as an option).
    """
    return secrets.token_hex(20)
