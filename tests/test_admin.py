from __future__ import annotations

from django.urls import reverse

from wizard.models import AuditEvent, ImportRequest

CHANGELIST = reverse("admin:wizard_importrequest_changelist")


def test_the_admin_rejects_with_a_reason_through_the_same_checks(client, reviewer, requester):
    req = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.SUBMITTED)
    client.force_login(reviewer)
    ask = client.post(CHANGELIST, {"action": "reject_selected", "_selected_action": [req.pk]})
    assert ask.status_code == 200 and b"The requester sees the reason" in ask.content
    empty = client.post(CHANGELIST, {"action": "reject_selected", "_selected_action": [req.pk], "confirm": "1"})
    assert b"Say why" in empty.content
    client.post(
        CHANGELIST,
        {"action": "reject_selected", "_selected_action": [req.pk], "confirm": "1", "reason": "wrong region"},
    )
    req.refresh_from_db()
    assert (req.status, req.review_reason) == (ImportRequest.Status.REJECTED, "wrong region")
    assert AuditEvent.objects.get(action="rejected").details == {"reason": "wrong region"}


def test_the_admin_refuses_to_approve_ones_own_request(client, reviewer):
    req = ImportRequest.objects.create(owner=reviewer, status=ImportRequest.Status.SUBMITTED)
    client.force_login(reviewer)
    response = client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [req.pk]}, follow=True)
    assert b"nobody approves or rejects their own request" in response.content
    req.refresh_from_db()
    assert req.status == ImportRequest.Status.SUBMITTED


def test_the_admin_lists_requests_with_filters(client, reviewer, requester):
    ImportRequest.objects.create(owner=requester, description="visible-one")
    client.force_login(reviewer)
    page = client.get(CHANGELIST, {"status__exact": "draft"}).content.decode()
    assert "visible-one" in page and "By status" in page and "By owner" in page


def test_audit_events_cannot_be_changed_in_the_admin(client, db):
    from tests.conftest import make_user
    from wizard import audit

    admin = make_user("root", None, is_staff=True, is_superuser=True)
    event = audit.record("something")
    client.force_login(admin)
    url = reverse("admin:wizard_auditevent_change", args=[event.pk])
    assert client.post(url, {"action": "x"}).status_code == 403
    assert client.post(reverse("admin:wizard_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
