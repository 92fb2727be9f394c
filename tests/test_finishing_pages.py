"""The "Finishing the AMI" step and the request page's finishing rows (no AWS: the database only)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from tests.conftest import make_user
from tests.flows import grant
from wizard.models import AuditEvent, DiskContainer, FinishingStep, ImportRequest, ImportTask
from wizard.requests import drafts, statemachine

ORG = "arn:aws:organizations::123456789012:organization/o-abcdefghij"


@pytest.fixture
def draft(requester):
    grant(requester, s3_bucket="bucket-one")
    d = drafts.create_draft(requester, description="web01")
    DiskContainer.objects.create(request=d, position=0, format="VMDK", s3_bucket="bucket-one", s3_key="a.vmdk")
    return d


@pytest.fixture
def alice(client, requester):
    client.force_login(requester)
    return client


def url(d, name="finish"):
    return reverse("wizard-step", args=[d.pk, name])


def post(client, d, data, **extra):
    base = {"version": ImportRequest.objects.get(pk=d.pk).version, "share_snapshots": "on", "deregister_import": "on"}
    return client.post(url(d), {**base, **data}, **extra)


def test_the_step_sits_before_review(alice, draft, monkeypatch):
    monkeypatch.setattr("wizard.views.wizard._safe", lambda lookup: ([], ""))
    page = alice.get(url(draft, "details")).content.decode()
    assert "Next: Finishing the AMI" in page
    page = alice.get(url(draft)).content.decode()
    assert 'data-step="finish"' in page and "Next: Review" in page and 'id="field-ami_tags"' in page


def test_what_is_chosen_is_saved_and_audited(alice, draft):
    response = post(
        alice,
        draft,
        {
            "ami_name": " web01 (2026) ",
            "ami_description": "the web server",
            "ami_tag_key": ["team", "", "env"],
            "ami_tag_value": ["web", "", "prod"],
            "launch_user_ids": "222233334444\n333344445555, ",
            "launch_organization_arns": ORG,
            "region_copies": "eu-west-1 alias/west\n\neu-central-1",
            "imds_v2": "on",
            "deprecation_time": "2031-05-06T07:08",
            "delete_source": "yes",
            "nav": "next",
        },
    )
    assert response.status_code == 302 and response["Location"] == url(draft, "review")
    draft.refresh_from_db()
    assert draft.ami_name == "web01 (2026)" and draft.ami_description == "the web server"
    assert draft.ami_tags == [{"Key": "team", "Value": "web"}, {"Key": "env", "Value": "prod"}]
    assert draft.launch_user_ids == ["222233334444", "333344445555"]
    assert draft.launch_organization_arns == [ORG]
    assert draft.region_copies == [
        {"Region": "eu-west-1", "KmsKeyId": "alias/west"},
        {"Region": "eu-central-1", "KmsKeyId": ""},
    ]
    assert draft.imds_v2 and draft.share_snapshots and draft.deregister_import and draft.delete_source is True
    assert draft.deprecation_time == datetime(2031, 5, 6, 7, 8, tzinfo=UTC)
    saved = AuditEvent.objects.filter(action="draft saved", request=draft).latest("pk")
    assert {"ami_name", "ami_tags", "region_copies", "launch_user_ids"} <= set(saved.details["fields"])
    # The form shows it back as saved; the review lists it for the reviewer.
    page = alice.get(url(draft)).content.decode()
    assert "333344445555" in page and "eu-west-1 alias/west" in page and 'value="env"' in page
    review = alice.get(url(draft, "review")).content.decode()
    assert 'id="finishing-choices"' in review and "web01 (2026)" in review and "eu-central-1" in review


def test_a_rule_broken_is_shown_next_to_its_field_and_blocks_the_submission(alice, draft):
    post(alice, draft, {"ami_name": "a#b", "launch_user_ids": "12345", "region_copies": "us-east-1"})
    draft.refresh_from_db()
    assert draft.ami_name == "a#b" and draft.launch_user_ids == ["12345"]  # saved: nothing typed is lost
    page = alice.get(url(draft)).content.decode()
    for field in ("ami_name", "launch_user_ids", "region_copies"):
        assert f'id="field-{field}"' in page
        block = page.split(f'id="field-{field}"', 1)[1].split('<div class="field', 1)[0]
        assert 'class="error finding"' in block, field
    review = alice.get(url(draft, "review")).content.decode()
    assert "Finishing the AMI" in review and 'id="submit-request" disabled' in review


def test_what_cannot_be_stored_is_refused_with_what_was_typed_kept(alice, draft):
    response = post(alice, draft, {"ami_name": "web01", "deprecation_time": "next tuesday", "ami_tag_key": ["a\x01"]})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Not saved" in page and 'value="web01"' in page
    draft.refresh_from_db()
    assert draft.ami_name == "" and draft.deprecation_time is None


def finishing_request(owner, *states):
    req = ImportRequest.objects.create(owner=owner, status=ImportRequest.Status.FINISHING, ami_name="web01")
    ImportTask.objects.create(
        request=req, import_task_id="import-ami-0123456789abcdef0", status="completed", image_id="ami-1"
    )
    for position, (action, state) in enumerate(states):
        FinishingStep.objects.create(
            request=req,
            position=position,
            action=action,
            state=state,
            error="AWS answered X: no" if state == "failed" else "",
        )
    return req


def test_the_request_page_shows_each_step_and_offers_a_retry_only_to_who_may(alice, requester):
    req = finishing_request(requester, ("CopyImage", "done"), ("CreateTags", "failed"), ("DeleteObject", "pending"))
    page = alice.get(req.get_absolute_url()).content.decode()
    assert page.count('class="finishing-step') == 3
    assert 'data-action="CreateTags" data-region="" data-state="failed"' in page
    assert "AWS answered X: no" in page and "finishing-retry" in page and 'id="finishing-failed"' in page
    assert 'hx-get="' in page  # still polled while finishing
    assert "Cancel this import" not in page
    auditor = make_user("aud", "auditor")
    alice.force_login(auditor)
    seen = alice.get(req.get_absolute_url()).content.decode()
    assert "AWS answered X: no" in seen and "finishing-retry" not in seen


def test_a_completed_request_offers_no_cancel(alice, requester):
    req = finishing_request(requester, ("CopyImage", "done"))
    statemachine.change_status(req, "complete", action="completed")
    page = alice.get(req.get_absolute_url()).content.decode()
    assert "Cancel this import" not in page and 'id="cancel"' not in page
    assert "Completed" in page and 'data-state="done"' in page
