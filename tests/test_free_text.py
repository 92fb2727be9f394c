"""Free text for AWS is checked against AWS's rules before it is sent: shown next to its field in
the wizard, and for a cancel reason on the request's page (CancelImportTask is not called)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.flows import draft_with_image
from wizard import tasks
from wizard.imports import cancelling
from wizard.models import AuditEvent, ImportRequest
from wizard.requests import review, submission

BELL = "\x07"


def test_the_wizard_shows_each_text_problem_next_to_its_field(client, sandbox, requester):
    draft = draft_with_image(requester, sandbox, description=f"web{BELL}01")
    ImportRequest.objects.filter(pk=draft.pk).update(comment=f"note{BELL}", tags=[{"Key": "Name", "Value": f"v{BELL}"}])
    draft.disk_containers.update(description=f"boot{BELL}")
    client.force_login(requester)
    said = "must not contain control characters such as U+0007"
    details = client.get(reverse("wizard-step", args=[draft.pk, "details"])).content.decode()
    for field in ("description", "comment", "tags"):
        block = details.split(f'id="field-{field}"', 1)[1].split("</fieldset>" if field == "tags" else "</div>", 1)[0]
        assert said in block, field
    disks = client.get(reverse("wizard-step", args=[draft.pk, "disks"])).content.decode()
    assert f"Description {said} (character 5)" in disks


@pytest.fixture
def importing(sandbox, requester, reviewer, monkeypatch, django_capture_on_commit_callbacks) -> ImportRequest:
    monkeypatch.setattr(tasks, "kick_poller", lambda: None)
    req = draft_with_image(requester, sandbox)
    submission.submit(req, requester)
    with django_capture_on_commit_callbacks(execute=True):
        review.approve(req, reviewer)
    req.refresh_from_db()
    assert req.status == ImportRequest.Status.IMPORTING
    return req


def test_a_reason_with_a_nul_is_refused_on_the_page_and_never_sent(client, sandbox, requester, importing):
    client.force_login(requester)
    url = reverse("request-cancel", args=[importing.pk])
    page = client.post(url, {"reason": "wrong\x00image", "confirm": "yes"}, follow=True).content.decode()
    # Refused by the form (Django refuses NUL in every text field) before the AWS rule is asked.
    assert "Not cancelled, nothing was sent to AWS:" in page and "Null characters are not allowed" in page
    assert not AuditEvent.objects.filter(action="cancel requested").exists()
    importing.refresh_from_db()
    assert importing.cancel_reason == "" and importing.status == ImportRequest.Status.IMPORTING
    (task,) = sandbox.client("ec2").describe_import_image_tasks()["ImportImageTasks"]  # still readable
    assert task["Status"] == "active"


def test_a_reason_too_long_is_refused(requester, importing):
    with pytest.raises(cancelling.CancelError, match="CancelReason must be at most 255 characters"):
        cancelling.cancel(importing, requester, "r" * 300)


def test_a_plain_reason_is_sent(sandbox, requester, importing):
    assert cancelling.cancel(importing, requester, "  wrong image  ")["State"] == "deleting"
    importing.refresh_from_db()
    assert importing.cancel_reason == "wrong image"
