"""The wizard's seven steps, and where each rule finding belongs (step and form field).

Pure apart from reading a request's spec: the views render these, the review step and the
submission list the findings with links to their step and field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wizard.requests import finishspec, importspec


@dataclass(frozen=True)
class Step:
    name: str
    title: str


STEPS: tuple[Step, ...] = (
    Step("upload", "Upload"),
    Step("disks", "Disk containers"),
    Step("encryption", "Encryption"),
    Step("licence", "Licence and boot"),
    Step("details", "Details"),
    Step("finish", "Finishing the AMI"),
    Step("review", "Review"),
)
INDEX = {s.name: i for i, s in enumerate(STEPS)}

# Top-level API member -> (step, form field).
_TOP = {
    "Encrypted": ("encryption", "encrypted"),
    "KmsKeyId": ("encryption", "kms_key_id"),
    "LicenseType": ("licence", "licensing"),
    "UsageOperation": ("licence", "usage_operation"),
    "LicenseSpecifications": ("licence", "license_configuration_arns"),
    "Platform": ("licence", "platform"),
    "Architecture": ("licence", "architecture"),
    "BootMode": ("licence", "boot_mode"),
    "Hypervisor": ("licence", "hypervisor"),
    "Description": ("details", "description"),
    "TagSpecifications": ("details", "tags"),
    "RoleName": ("details", "role_name"),
    "ClientData": ("details", "comment"),
    "ClientToken": ("details", "client_token"),
}
_DISK = re.compile(r"^DiskContainers\[(\d+)\](?:\.(\w+))?")
_DISK_FIELDS = {"Format": "format", "DeviceName": "device_name", "Description": "description"}


@dataclass(frozen=True)
class Placed:
    """A rule finding placed on a step and a field (`field` is the form field's html id suffix)."""

    step: str
    field: str
    path: str
    message: str
    severity: str = "error"  # "warning": shown; a submission needs it acknowledged (wizard.preflight.acknowledgements)
    code: str = ""  # the finding's code (an image's report, or the account check's)
    disk: int | None = None  # the DiskContainer's pk, for a finding of one disk's image or source

    @property
    def title(self) -> str:
        return STEPS[INDEX[self.step]].title


def place(finding: importspec.Finding) -> Placed:
    disk = _DISK.match(finding.path)
    if disk:
        index, member = int(disk[1]), disk[2]
        if member in _DISK_FIELDS:
            return Placed("disks", f"disk-{index}-{_DISK_FIELDS[member]}", finding.path, finding.message)
        return Placed("upload", f"disk-{index}", finding.path, finding.message)
    if finding.path == "DiskContainers":
        return Placed("upload", "sources", finding.path, finding.message)
    top = finding.path.split(".")[0].split("[")[0]
    step, field = _TOP.get(top, ("review", ""))
    return Placed(step, field, finding.path, finding.message)


def placed_findings(spec: importspec.ImportSpec) -> list[Placed]:
    return [place(f) for f in importspec.validate(spec)]


# Finishing (wizard.requests.finishspec) path -> form field of the "finish" step.
_FINISH = {
    "Name": "ami_name",
    "Description": "ami_description",
    "Tags": "ami_tags",
    "LaunchPermission.UserIds": "launch_user_ids",
    "LaunchPermission.OrganizationArns": "launch_organization_arns",
    "LaunchPermission.OrganizationalUnitArns": "launch_organizational_unit_arns",
    "RegionCopies": "region_copies",
    "DeprecateAt": "deprecation_time",
}


def place_finishing(finding: importspec.Finding) -> Placed:
    top = re.sub(r"\[\d+\].*$", "", finding.path)
    return Placed("finish", _FINISH.get(top, ""), finding.path, finding.message)


def finishing_findings(spec: finishspec.FinishSpec, source_region: str) -> list[Placed]:
    return [place_finishing(f) for f in finishspec.validate(spec, source_region=source_region)]


@dataclass(frozen=True)
class StepState:
    step: Step
    index: int
    reached: bool  # the user may jump here
    problems: int
    current: bool

    @property
    def css(self) -> str:
        if self.current:
            return "current"
        if self.problems and self.reached:
            return "problems"
        return "complete" if self.reached else "todo"


def step_states(findings: list[Placed], furthest: int, current: str) -> list[StepState]:
    counts: dict[str, int] = {}
    for f in findings:
        if f.severity != "error":
            continue
        counts[f.step] = counts.get(f.step, 0) + 1
    return [StepState(s, i, i <= furthest, counts.get(s.name, 0), s.name == current) for i, s in enumerate(STEPS)]
