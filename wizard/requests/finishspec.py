"""Finishing the AMI as data: what the requester chose, its rules, and the plan of steps.

VM Import makes an AMI named after its task, untagged and unshared. What is chosen here is
applied by the worker once the import has completed (wizard.imports.finishing), one step at a time,
each a call of the EC2 API named after it (CopyImage, CreateTags, ModifyImageAttribute...).

Pure: no Django, no boto3. `validate` gives findings (API path, message) in the style of
wizard.requests.importspec; `plan` gives the steps in the order the worker applies them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from wizard.requests.importspec import (
    KMS_KEY_ID_FORMS,
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    MAX_TAGS,
    Finding,
    Tag,
    text_problem,
)

# CopyImage Name: 3 to 128 characters of letters, digits, ( ) [ ] space . / - ' @ _ (EC2 API reference).
NAME_CHARS = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]+")
MIN_NAME, MAX_NAME = 3, 128
MAX_DESCRIPTION = 255
ACCOUNT_ID = re.compile(r"\d{12}")
_PARTITION = r"aws(?:-[a-z]+)*"
ORGANIZATION_ARN = re.compile(rf"arn:{_PARTITION}:organizations::\d{{12}}:organization/o-[a-z0-9]{{10,32}}")
OU_ARN = re.compile(
    rf"arn:{_PARTITION}:organizations::\d{{12}}:ou/o-[a-z0-9]{{10,32}}/ou-[a-z0-9]{{4,32}}-[a-z0-9]{{8,32}}"
)
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+")
ARN_REGION = re.compile(rf"arn:{_PARTITION}:kms:([a-z0-9-]+):")
# What one request may ask for: far above what a person types, low enough to stay one call each.
MAX_SHARES = 100
MAX_REGION_COPIES = 10
# EnableImageDeprecation: at most 10 years ahead; AWS rounds to the minute.
MAX_DEPRECATION = timedelta(days=3652)


@dataclass(frozen=True)
class RegionCopy:
    region: str
    kms_key_id: str = ""  # encrypt the copy with this key of that region; "" keeps the source's encryption


@dataclass(frozen=True)
class FinishSpec:
    name: str = ""
    description: str = ""
    tags: list[Tag] = field(default_factory=list)  # on the AMI and on each of its snapshots
    user_ids: list[str] = field(default_factory=list)
    organization_arns: list[str] = field(default_factory=list)
    organizational_unit_arns: list[str] = field(default_factory=list)
    share_snapshots: bool = True  # createVolumePermission for the accounts of `user_ids`
    region_copies: list[RegionCopy] = field(default_factory=list)
    imds_v2: bool = False
    deprecation_time: datetime | None = None
    deregister_import: bool = True  # after the named copy: the import's own AMI and snapshots go
    delete_source: bool = False  # DeleteObject of the uploaded images once all is done


# The steps, in the order they are applied (an action name is the API call it makes).
COPY = "CopyImage"
DEREGISTER = "DeregisterImage"
TAGS = "CreateTags"
IMDS = "ImdsSupport"
LAUNCH = "LaunchPermission"
VOLUME = "CreateVolumePermission"
DEPRECATE = "EnableImageDeprecation"
REGION_COPY = "CopyImageToRegion"
DELETE_OBJECT = "DeleteObject"
ACTIONS = (COPY, DEREGISTER, TAGS, IMDS, LAUNCH, VOLUME, DEPRECATE, REGION_COPY, DELETE_OBJECT)
TITLES = {
    COPY: "Copy under its name",
    DEREGISTER: "Deregister the import's AMI and its snapshots",
    TAGS: "Tag the AMI and its snapshots",
    IMDS: "Require IMDSv2",
    LAUNCH: "Share (launch permission)",
    VOLUME: "Share the snapshots (create-volume permission)",
    DEPRECATE: "Deprecation time",
    REGION_COPY: "Copy to another region",
    DELETE_OBJECT: "Delete the uploaded image from S3",
}


@dataclass(frozen=True)
class PlannedStep:
    action: str
    region: str = ""  # REGION_COPY only
    kms_key_id: str = ""

    @property
    def title(self) -> str:
        return TITLES[self.action] + (f" {self.region}" if self.region else "")


def plan(spec: FinishSpec, *, has_uploads: bool) -> list[PlannedStep]:
    """The steps that apply `spec`, in order; `has_uploads`: the request has images uploaded here
    (only those are deleted: never an object of a bucket an administrator granted)."""
    steps: list[PlannedStep] = []
    if spec.name:
        steps.append(PlannedStep(COPY))
        if spec.deregister_import:
            steps.append(PlannedStep(DEREGISTER))
    if spec.tags:
        steps.append(PlannedStep(TAGS))
    if spec.imds_v2:
        steps.append(PlannedStep(IMDS))
    if spec.user_ids or spec.organization_arns or spec.organizational_unit_arns:
        steps.append(PlannedStep(LAUNCH))
    if spec.user_ids and spec.share_snapshots:
        steps.append(PlannedStep(VOLUME))
    if spec.deprecation_time is not None:
        steps.append(PlannedStep(DEPRECATE))
    steps += [PlannedStep(REGION_COPY, c.region, c.kms_key_id) for c in spec.region_copies]
    if spec.delete_source and has_uploads:
        steps.append(PlannedStep(DELETE_OBJECT))
    return steps


# --- rules ------------------------------------------------------------------------------------


def _text(path: str, label: str, value: str, limit: int) -> list[Finding]:
    if problem := text_problem(value):
        return [Finding(path, f"{label} {problem}")]
    if len(value) > limit:
        return [Finding(path, f"{label} must be at most {limit} characters (it has {len(value)})")]
    return []


def _check_name(spec: FinishSpec) -> list[Finding]:
    found: list[Finding] = []
    name = spec.name
    if name:
        if not MIN_NAME <= len(name) <= MAX_NAME:
            found.append(Finding("Name", f"Name must be {MIN_NAME} to {MAX_NAME} characters (it has {len(name)})"))
        elif not NAME_CHARS.fullmatch(name):
            bad = next(c for c in name if not NAME_CHARS.fullmatch(c))
            found.append(
                Finding(
                    "Name",
                    f"Name may hold only letters, digits, spaces and ( ) [ ] . / - ' @ _ ({bad!r} is not allowed)",
                )
            )
    if spec.description:
        found += _text("Description", "Description", spec.description, MAX_DESCRIPTION)
        if not name:
            found.append(Finding("Description", "Description is set by the copy under a name: give the AMI a name"))
    return found


def _check_tags(tags: list[Tag]) -> list[Finding]:
    found: list[Finding] = []
    if len(tags) > MAX_TAGS:
        found.append(Finding("Tags", f"Tags may hold at most {MAX_TAGS} tags (there are {len(tags)})"))
    seen: set[str] = set()
    for i, tag in enumerate(tags):
        at = f"Tags[{i}]"
        if not 1 <= len(tag.key) <= MAX_TAG_KEY:
            found.append(Finding(f"{at}.Key", f"Key must be 1 to {MAX_TAG_KEY} characters (it has {len(tag.key)})"))
        elif tag.key.lower().startswith("aws:"):
            found.append(Finding(f"{at}.Key", "Key must not start with aws: (that prefix is reserved for AWS)"))
        elif tag.key in seen:
            found.append(Finding(f"{at}.Key", f"Key must be unique; {tag.key!r} is used twice"))
        else:
            found += _text(f"{at}.Key", "Key", tag.key, MAX_TAG_KEY)
        seen.add(tag.key)
        found += _text(f"{at}.Value", "Value", tag.value, MAX_TAG_VALUE)
    return found


def _check_list(path: str, label: str, values: list[str], pattern: re.Pattern[str], example: str) -> list[Finding]:
    found: list[Finding] = []
    if len(values) > MAX_SHARES:
        found.append(Finding(path, f"{label}: at most {MAX_SHARES} (there are {len(values)})"))
    seen: set[str] = set()
    for i, value in enumerate(values):
        if not pattern.fullmatch(value):
            shown = value if not text_problem(value) and len(value) <= 80 else "this value"
            found.append(Finding(f"{path}[{i}]", f"{label}: {shown!r} is not of the form {example}"))
        elif value in seen:
            found.append(Finding(f"{path}[{i}]", f"{label}: {value} is given twice"))
        seen.add(value)
    return found


def _check_shares(spec: FinishSpec, own_account: str) -> list[Finding]:
    found = _check_list("LaunchPermission.UserIds", "Account", spec.user_ids, ACCOUNT_ID, "123456789012")
    found += [
        Finding(f"LaunchPermission.UserIds[{i}]", f"Account {a} owns the AMI: it needs no share")
        for i, a in enumerate(spec.user_ids)
        if own_account and a == own_account
    ]
    found += _check_list(
        "LaunchPermission.OrganizationArns",
        "Organisation",
        spec.organization_arns,
        ORGANIZATION_ARN,
        "arn:aws:organizations::123456789012:organization/o-exampleorgid",
    )
    found += _check_list(
        "LaunchPermission.OrganizationalUnitArns",
        "Organisational unit",
        spec.organizational_unit_arns,
        OU_ARN,
        "arn:aws:organizations::123456789012:ou/o-exampleorgid/ou-examplerootid-exampleouid",
    )
    return found


def kms_key_problem(key: str, region: str) -> str:
    """What is wrong with `key` as the KmsKeyId of a copy to `region`, or ""."""
    if not any(p.fullmatch(key) for p in KMS_KEY_ID_FORMS.values()):
        return "must be a key id, key ARN, alias name (alias/...) or alias ARN"
    arn = ARN_REGION.match(key)
    if arn and arn.group(1) != region:
        return f"is a key of {arn.group(1)}: a copy to {region} needs a key of {region}"
    return ""


def _check_region_copies(spec: FinishSpec, source_region: str) -> list[Finding]:
    found: list[Finding] = []
    if len(spec.region_copies) > MAX_REGION_COPIES:
        found.append(
            Finding("RegionCopies", f"At most {MAX_REGION_COPIES} copies (there are {len(spec.region_copies)})")
        )
    seen: set[str] = set()
    for i, copy in enumerate(spec.region_copies):
        at = f"RegionCopies[{i}]"
        if not REGION.fullmatch(copy.region):
            shown = copy.region if not text_problem(copy.region) and len(copy.region) <= 40 else "this value"
            found.append(Finding(f"{at}.Region", f"Region {shown!r} is not a region name such as eu-west-1"))
        elif copy.region == source_region:
            found.append(Finding(f"{at}.Region", f"Region {copy.region} is where the AMI is already"))
        elif copy.region in seen:
            found.append(Finding(f"{at}.Region", f"Region {copy.region} is given twice"))
        seen.add(copy.region)
        if copy.kms_key_id and (problem := kms_key_problem(copy.kms_key_id, copy.region)):
            found.append(Finding(f"{at}.KmsKeyId", f"KmsKeyId {problem}"))
    return found


def _check_deprecation(spec: FinishSpec, now: datetime) -> list[Finding]:
    when = spec.deprecation_time
    if when is None:
        return []
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        return [Finding("DeprecateAt", "DeprecateAt must be in the future")]
    if when - now > MAX_DEPRECATION:
        return [Finding("DeprecateAt", "DeprecateAt may be at most 10 years ahead")]
    return []


def validate(
    spec: FinishSpec, *, source_region: str = "", own_account: str = "", now: datetime | None = None
) -> list[Finding]:
    """Every rule finding of `spec` (empty when it can be applied as chosen)."""
    moment = now or datetime.now(UTC)
    return (
        _check_name(spec)
        + _check_tags(spec.tags)
        + _check_shares(spec, own_account)
        + _check_region_copies(spec, source_region)
        + _check_deprecation(spec, moment)
    )


def copy_token(client_token: str, action: str, region: str = "") -> str:
    """The ClientToken of a CopyImage step: the same for every attempt of that step, at most 64
    ASCII characters, different for each step of the request."""
    suffix = "c" if action == COPY else f"r-{region}"
    return f"{client_token[:40]}-{suffix}"[:64]


# --- the form's text boxes ----------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s,]+")


def parse_list(text: str) -> list[str]:
    """Account ids or ARNs typed one a line (or separated by commas or spaces), in order, blanks dropped."""
    return [item for item in _SEPARATORS.split(text) if item]


def format_list(values: list[str]) -> str:
    return "\n".join(values)


def parse_region_copies(text: str) -> list[dict[str, str]]:
    """One copy a line: a region, then optionally the KMS key to encrypt it with, e.g.
    "eu-west-1 alias/images". Blank lines are dropped; a third word is kept in the key, so the
    rule on KmsKeyId shows it rather than it being lost."""
    copies = []
    for line in text.splitlines():
        words = line.split(None, 1)
        if not words:
            continue
        copies.append({"Region": words[0], "KmsKeyId": words[1].strip() if len(words) > 1 else ""})
    return copies


def format_region_copies(copies: list[dict[str, str]]) -> str:
    return "\n".join(f"{c['Region']} {c.get('KmsKeyId', '')}".rstrip() for c in copies)
