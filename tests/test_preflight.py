"""Pre-flight: images are inspected where they lie (S3 over HTTP), and their problems stop a submission."""

from __future__ import annotations

import struct

import pytest
from django.test import TestCase
from django.urls import reverse

from tests.flows import grant
from tests.images import raw_mbr
from wizard.models import ImportRequest
from wizard.preflight import preflight
from wizard.requests import drafts, submission


@pytest.fixture
def alice(client, requester, sandbox):
    grant(requester, s3_bucket=sandbox.bucket, s3_prefix="uploads/")  # the images below lie there
    client.force_login(requester)
    return client


def put(sandbox, key: str, body: bytes) -> None:
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=key, Body=body)


def add_s3(client, draft, bucket, key):
    """Add the object as the wizard does; the inspection queued after the commit runs (inline in tests)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        client.post(reverse("wizard-source", args=[draft.pk]), {"kind": "s3", "s3_bucket": bucket, "s3_key": key})
    return client.get(reverse("wizard-step", args=[draft.pk, "upload"]))


def gpt_with_esp(size: int = 2 * 1024 * 1024) -> bytes:
    """A protective MBR and a GPT header whose only entry is an EFI System Partition."""
    import uuid
    import zlib

    disk = bytearray(size)
    disk[446:462] = struct.pack("<B3sB3sII", 0, b"\0\2\0", 0xEE, b"\xff\xff\xff", 1, size // 512 - 1)
    disk[510:512] = b"\x55\xaa"
    esp = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B").bytes_le
    entry = (
        esp + uuid.uuid4().bytes_le + struct.pack("<QQQ", 2048, 4095, 0) + "EFI".encode("utf-16-le").ljust(72, b"\0")
    )
    entries = entry.ljust(128 * 128, b"\0")
    last = size // 512 - 1
    header = bytearray(
        struct.pack(
            "<8sIIIIQQQQ16sQIII",
            b"EFI PART",
            0x10000,
            92,
            0,
            0,
            1,
            last,
            34,
            last - 33,
            uuid.uuid4().bytes_le,
            2,
            128,
            128,
            zlib.crc32(entries),
        )
    )
    struct.pack_into("<I", header, 16, zlib.crc32(bytes(header[:92])))
    disk[512 : 512 + 92] = header[:92]
    disk[1024 : 1024 + len(entries)] = entries
    return bytes(disk)


def test_a_good_image_is_inspected_and_its_format_taken_from_it(alice, sandbox, requester):
    put(sandbox, "uploads/disk.vhd", raw_mbr(64 * 1024))  # named .vhd, really RAW
    draft = drafts.create_draft(requester)
    add_s3(alice, draft, sandbox.bucket, "uploads/disk.vhd")
    container = draft.disk_containers.get()
    assert container.format == "RAW" and container.inspection["partition_table"] == "mbr"
    assert container.inspection["ok"] is True


def test_an_image_without_partitions_is_shown_and_cannot_be_submitted(alice, sandbox, requester):
    put(sandbox, "uploads/blank.raw", bytes(64 * 1024))
    draft = drafts.create_draft(requester)
    page = add_s3(alice, draft, sandbox.bucket, "uploads/blank.raw").content.decode()
    assert "No valid partitions" in page
    with pytest.raises(submission.SubmitRefused, match="No valid partitions"):
        submission.submit(draft, requester)
    review = alice.get(reverse("wizard-step", args=[draft.pk, "review"])).content.decode()
    assert 'id="submit-request" disabled' in review


def test_a_missing_object_is_reported_as_aws_would(alice, sandbox, requester):
    draft = drafts.create_draft(requester)
    add_s3(alice, draft, sandbox.bucket, "uploads/nothing-here.raw")
    report = draft.disk_containers.get().inspection
    assert report["findings"][0]["code"] == "unreadable" and "403 Forbidden" in report["findings"][0]["message"]


def test_a_uefi_image_with_legacy_bios_boot_mode_is_an_error_on_the_licence_step(alice, sandbox, requester):
    put(sandbox, "uploads/uefi.raw", gpt_with_esp())
    draft = drafts.create_draft(requester, boot_mode="legacy-bios")
    add_s3(alice, draft, sandbox.bucket, "uploads/uefi.raw")
    report = draft.disk_containers.get().inspection
    assert report["partition_table"] == "gpt" and report["boot_mode_hint"] == "uefi", report
    findings = preflight.all_findings(ImportRequest.objects.get(pk=draft.pk))
    mismatch = [f for f in findings if f.path == "BootMode"]
    assert mismatch and mismatch[0].step == "licence" and "Set BootMode to uefi" in mismatch[0].message
