"""Each way AWS fails an import, driven through the sandbox: the request ends failed with AWS's
message, and its page explains it. (The wizard's pre-flight would have stopped most of these
before submission; here they are dispatched regardless, as if the checks had been skipped.)"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.flows import grant, poll_until_final
from tests.images import raw_mbr
from tests.sandbox.images import raw_disk, vmdk_sparse
from wizard.imports import dispatch
from wizard.models import DiskContainer, ImportRequest

CASES = {
    "missing object": (None, "RAW", {}, "We do not have access to the given resource. Reason 403 Forbidden"),
    "declared format": (raw_mbr(128 * 1024), "VHD", {}, "Unsupported specified file format"),
    "sparse vmdk": (vmdk_sparse(raw_disk(2**20)), "VMDK", {}, "Unsupported VMDK File Format"),
    "no partitions": (bytes(128 * 1024), "RAW", {}, "No valid partitions. Not a valid volume."),
    "kms key": (raw_mbr(128 * 1024), "RAW", {"encrypted": True, "kms_key_id": "alias/gone"}, "KMS key"),
    "unknown os": (raw_mbr(128 * 1024), "RAW", {"fault": "Unknown OS / Missing OS files."}, "Unknown OS"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_failed_import_shows_awss_message_and_what_to_do(client, sandbox, requester, case, monkeypatch):
    body, fmt, extra, expected = CASES[case]
    monkeypatch.setattr("wizard.tasks.kick_poller", lambda: None)
    fault = extra.pop("fault", None)
    if fault:
        sandbox.faults(fail={"stage": "booting", "message": f"ClientError: {fault}"})
    key = f"uploads/{case.replace(' ', '-')}.img"
    if body is not None:
        sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=key, Body=body)
    grant(requester, s3_bucket=sandbox.bucket, s3_prefix="uploads/")  # the owner may import from there
    req = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.APPROVED, **extra)
    DiskContainer.objects.create(request=req, format=fmt, s3_bucket=sandbox.bucket, s3_key=key)
    assert dispatch.dispatch(req.pk)
    poll_until_final(req, sandbox)
    assert req.status == ImportRequest.Status.FAILED
    assert expected in req.failure_message
    client.force_login(requester)
    page = client.get(reverse("request-detail", args=[req.pk])).content.decode()
    assert expected in page.replace("&#x27;", "'")
    assert 'id="failure-meaning"' in page and 'id="failure-action"' in page
    assert 'class="stage-failed"' in page


@pytest.mark.parametrize(
    "message, words",
    [
        ("ClientError: Invalid configuration - Could not read fstab", "/etc/fstab"),
        ("ClientError: Unsupported configuration - Logical volume group activation failed", "volume group"),
        ("FirstBootFailure: This import request failed because the Windows instance failed to boot", "Windows 11"),
    ],
)
def test_the_sandboxs_guest_failures_are_explained(message, words):
    from wizard.imports.failures import explain

    explanation = explain(message)
    assert explanation is not None and words in explanation.meaning + explanation.action
