from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.conftest import make_user
from tests.flows import grant
from wizard.models import AuditEvent, DiskContainer, ImportRequest
from wizard.requests import submission


@pytest.fixture
def two_waiting(requester):
    now = timezone.now()
    reqs = []
    grant(requester, s3_bucket="bucket-one", note="team images")
    for i, age in enumerate((1, 5)):
        req = ImportRequest.objects.create(owner=requester, description=f"req{i}", architecture="x86_64")
        DiskContainer.objects.create(request=req, format="VMDK", s3_bucket="bucket-one", s3_key=f"k{i}.vmdk")
        submission.submit(req, requester)
        ImportRequest.objects.filter(pk=req.pk).update(submitted_at=now - timedelta(hours=age))
        reqs.append(req)
    return reqs


def test_the_queue_lists_the_oldest_first_with_its_age(client, reviewer, two_waiting):
    client.force_login(reviewer)
    page = client.get(reverse("review-queue")).content.decode()
    assert page.index("req1") < page.index("req0")
    assert "5\xa0hours" in page and "1\xa0hour" in page


def test_the_review_page_shows_the_exact_call_and_who_submitted(client, reviewer, two_waiting):
    client.force_login(reviewer)
    page = client.get(reverse("review-detail", args=[two_waiting[0].pk])).content.decode()
    assert "&quot;ClientToken&quot;: &quot;" + two_waiting[0].client_token in page
    assert "&quot;S3Key&quot;: &quot;k0.vmdk&quot;" in page
    assert "submitted by <strong>alice</strong>" in page
    assert "Every rule passes." in page


def test_the_review_page_reads_the_disks_and_the_owners_grants_once(client, reviewer, two_waiting, sandbox):
    client.force_login(reviewer)
    url = reverse("review-detail", args=[two_waiting[0].pk])
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url).content.decode()
    assert "k0.vmdk" in page and "team images" in page  # the disk, and the grant it comes from
    sql = [q["sql"] for q in queries.captured_queries]
    assert sum('FROM "wizard_diskcontainer"' in s for s in sql) == 1
    assert sum('FROM "wizard_sourcegrant"' in s for s in sql) == 1


def test_a_reviewer_approves_in_the_browser(client, reviewer, two_waiting, monkeypatch):
    monkeypatch.setattr("wizard.tasks.enqueue_dispatch", lambda pk: None)
    client.force_login(reviewer)
    response = client.post(reverse("review-decide", args=[two_waiting[0].pk]), {"decision": "approve"})
    assert response.status_code == 302
    two_waiting[0].refresh_from_db()
    assert two_waiting[0].status == ImportRequest.Status.APPROVED


def test_a_rejection_needs_a_reason_and_the_requester_sees_it(client, reviewer, requester, two_waiting):
    client.force_login(reviewer)
    url = reverse("review-decide", args=[two_waiting[0].pk])
    response = client.post(url, {"decision": "reject", "reason": ""}, follow=True)
    assert "say why the request is rejected" in response.content.decode()
    client.post(url, {"decision": "reject", "reason": "use BYOL"})
    client.force_login(requester)
    page = client.get(two_waiting[0].get_absolute_url()).content.decode()
    assert "use BYOL" in page and "Submit for review" in page


def test_a_reviewer_cannot_approve_their_own_request(client, db):
    reviewer = make_user("self", "reviewer")
    req = ImportRequest.objects.create(owner=reviewer, status=ImportRequest.Status.SUBMITTED)
    client.force_login(reviewer)
    assert "your own request" in client.get(reverse("review-detail", args=[req.pk])).content.decode()
    response = client.post(reverse("review-decide", args=[req.pk]), {"decision": "approve"}, follow=True)
    assert "nobody approves or rejects their own request" in response.content.decode()
    req.refresh_from_db()
    assert req.status == ImportRequest.Status.SUBMITTED


def test_without_required_approval_a_submission_is_dispatched_at_once(
    requester, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.APPROVAL_REQUIRED = False
    queued = []
    monkeypatch.setattr("wizard.tasks.enqueue_dispatch", queued.append)
    grant(requester, "url", host="example.com")
    req = ImportRequest.objects.create(owner=requester)
    DiskContainer.objects.create(request=req, format="RAW", url="https://example.com/disk.raw")
    with django_capture_on_commit_callbacks(execute=True):
        submission.submit(req, requester)
    assert req.status == ImportRequest.Status.APPROVED and queued == [req.pk]
    event = AuditEvent.objects.get(action="approved")
    assert event.actor_name == "system" and "approval not required" in event.details["reason"]
