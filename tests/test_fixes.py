"""One-click fixes: the boot disk's image settles BootMode, Platform and Architecture; the owner
applies one with a click, the value comes from the stored report (never from the post), and the
change is audited like any edit."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from wizard.models import AuditEvent, ImportRequest
from wizard.preflight import fixes

REPORT = {
    "format": "RAW",
    "ok": True,
    "boot_mode_hint": "uefi",
    "findings": [
        {"severity": "info", "code": "uefi", "message": "The disk boots with UEFI only.", "fix": {"BootMode": "uefi"}},
        {"severity": "info", "code": "os-supported", "message": "Debian 12.", "fix": {"Platform": "Linux"}},
        {"severity": "info", "code": "architecture-x86_64", "message": "x86_64.", "fix": {"Architecture": "x86_64"}},
        {"severity": "info", "code": "odd", "message": "a value no one may set", "fix": {"BootMode": "uefi-preferred"}},
        {"severity": "info", "code": "odd2", "message": "not a fixable parameter", "fix": {"RoleName": "admin"}},
    ],
}


def draft_with_image(owner, **fields) -> ImportRequest:
    draft = ImportRequest.objects.create(owner=owner, description="with image", **fields)
    draft.disk_containers.create(
        format="RAW", s3_bucket="b", s3_key="k.raw", inspection=REPORT, inspection_status="done"
    )
    draft.disk_containers.create(
        format="RAW", s3_bucket="b", s3_key="data.raw", position=1, inspection_status="done",
        inspection={"findings": [{"severity": "info", "code": "x", "message": "m", "fix": {"Platform": "Windows"}}]},
    )  # fmt: skip
    return draft


def test_suggested_fixes_come_from_the_boot_disk_only(requester) -> None:
    draft = draft_with_image(requester, boot_mode="legacy-bios", platform="Linux")
    found = {f.parameter: (f.value, f.current) for f in fixes.suggested(draft)}
    assert found == {"BootMode": ("uefi", "legacy-bios"), "Architecture": ("x86_64", "")}


def test_the_owner_applies_a_fix_with_one_click(requester) -> None:
    draft = draft_with_image(requester, boot_mode="legacy-bios")
    client = Client()
    client.force_login(requester)
    page = client.get(reverse("wizard-step", args=[draft.pk, "licence"]))
    assert b"Set BootMode to uefi" in page.content and b"(now legacy-bios)" in page.content
    answer = client.post(reverse("wizard-fix", args=[draft.pk]), {"parameter": "BootMode", "value": "legacy-bios"})
    assert answer.status_code == 302 and answer["Location"].endswith("/edit/licence/")
    draft.refresh_from_db()
    assert draft.boot_mode == "uefi"  # the image's value, not the posted one
    event = AuditEvent.objects.filter(request=draft, action="draft saved").latest("pk")
    assert event.details["fields"] == ["boot_mode"]
    again = client.post(reverse("wizard-fix", args=[draft.pk]), {"parameter": "BootMode"})
    assert again.status_code == 400 and b"suggests no such change" in again.content


def test_no_fix_for_what_the_image_does_not_settle(requester) -> None:
    draft = draft_with_image(requester)
    client = Client()
    client.force_login(requester)
    for parameter in ("RoleName", "Platform ", "bootmode", ""):
        assert client.post(reverse("wizard-fix", args=[draft.pk]), {"parameter": parameter}).status_code == 400
    draft.refresh_from_db()
    assert (draft.role_name, draft.boot_mode) == ("", "")


def test_a_submitted_request_takes_no_fix(requester) -> None:
    draft = draft_with_image(requester, status=ImportRequest.Status.SUBMITTED)
    client = Client()
    client.force_login(requester)
    assert client.post(reverse("wizard-fix", args=[draft.pk]), {"parameter": "BootMode"}).status_code == 404
    draft.refresh_from_db()
    assert draft.boot_mode == ""
