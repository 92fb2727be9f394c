from __future__ import annotations

import pytest

from tests.flows import grant
from wizard.models import AuditEvent, DiskContainer, ImportRequest
from wizard.requests import review, submission


@pytest.fixture
def submitted(db, requester, monkeypatch):
    grant(requester, s3_bucket="bucket-one", s3_prefix="uploads/1/")
    req = ImportRequest.objects.create(owner=requester, description="web01")
    DiskContainer.objects.create(request=req, format="VMDK", s3_bucket="bucket-one", s3_key="uploads/1/x.vmdk")
    return submission.submit(req, requester)


def test_submit_moves_a_draft_to_review_and_audits_it(submitted, requester):
    assert submitted.status == ImportRequest.Status.SUBMITTED
    assert submitted.submitted_at is not None
    event = AuditEvent.objects.get(action="submitted")
    assert (event.before, event.after, event.actor) == ({"status": "draft"}, {"status": "submitted"}, requester)


def test_approve_queues_the_dispatch(submitted, reviewer, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr("wizard.tasks.enqueue_dispatch", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        review.approve(submitted, reviewer)
    assert submitted.status == ImportRequest.Status.APPROVED
    assert submitted.reviewed_by == reviewer
    assert queued == [submitted.pk]
    assert AuditEvent.objects.filter(action="approved", actor=reviewer).count() == 1


def test_nobody_approves_their_own_request(submitted, requester):
    requester.is_superuser = True
    requester.save()
    with pytest.raises(review.ReviewError, match="own request"):
        review.approve(submitted, requester)
    submitted.refresh_from_db()
    assert submitted.status == ImportRequest.Status.SUBMITTED


def test_a_requester_cannot_review(submitted, django_user_model):
    other = django_user_model.objects.create_user("bob")
    with pytest.raises(review.ReviewError, match="may not review"):
        review.approve(submitted, other)


def test_it_approves_only_once(submitted, reviewer, monkeypatch):
    monkeypatch.setattr("wizard.tasks.enqueue_dispatch", lambda pk: None)
    review.approve(submitted, reviewer)
    with pytest.raises(review.ReviewError, match="cannot be approved"):
        review.approve(submitted, reviewer)
    assert AuditEvent.objects.filter(action="approved").count() == 1


def test_reject_needs_a_reason_and_keeps_it(submitted, reviewer):
    with pytest.raises(review.ReviewError, match="say why"):
        review.reject(submitted, reviewer, "  ")
    review.reject(submitted, reviewer, "wrong licence")
    assert submitted.status == ImportRequest.Status.REJECTED
    assert submitted.review_reason == "wrong licence"


def test_a_rejected_request_can_be_submitted_again(submitted, reviewer, requester):
    review.reject(submitted, reviewer, "wrong licence")
    submission.submit(submitted, requester)
    assert submitted.status == ImportRequest.Status.SUBMITTED
