"""One-click fixes: ImportImage parameters the boot disk's image settles (BootMode, Platform,
Architecture), offered where the request says otherwise or nothing.

The values come only from the stored inspection of the request's first disk (the boot disk), as
the inspector wrote them in its findings' `fix`; a posted value is never taken: `apply` looks
the fix up again by its parameter name and saves it as any edit is saved (wizard.requests.drafts, with
its audit event "draft saved").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wizard.models import ImportRequest
from wizard.requests import drafts

FIELDS = {"BootMode": "boot_mode", "Platform": "platform", "Architecture": "architecture"}
CHOICES = {"BootMode": {"uefi", "legacy-bios"}, "Platform": {"Linux", "Windows"}, "Architecture": {"x86_64", "i386"}}


@dataclass(frozen=True)
class Fix:
    parameter: str  # the API member, e.g. BootMode
    value: str
    current: str  # what the request says now ("" when unset)
    reason: str  # the finding's message


def suggested(request: ImportRequest) -> list[Fix]:
    """The fixes the boot disk's image offers that the request does not have yet."""
    boot = next(iter(request.disk_containers.all()), None)  # ordered by position (the Meta); prefetched by pages
    report = (boot.inspection if boot is not None else None) or {}
    found: dict[str, Fix] = {}
    for finding in report.get("findings") or []:
        for parameter, value in ((finding or {}).get("fix") or {}).items():
            if parameter not in FIELDS or value not in CHOICES[parameter] or parameter in found:
                continue
            current = getattr(request, FIELDS[parameter]) or ""
            if current != value:
                found[parameter] = Fix(parameter, value, current, str(finding.get("message", ""))[:500])
    return list(found.values())


class NoSuchFix(Exception):
    pass


def apply(request: ImportRequest, user: Any, parameter: str) -> Fix:
    """Set `parameter` to the value the image settles; NoSuchFix if the image offers none."""
    fix = next((f for f in suggested(request) if f.parameter == parameter), None)
    if fix is None:
        raise NoSuchFix(parameter)
    drafts.save_fields(request, user, request.version, {FIELDS[parameter]: fix.value})
    return fix
