"""The life cycle table: every transition from every status, and the questions asked of it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from wizard.models import AuditEvent, ImportRequest, ImportTask
from wizard.requests import statemachine
from wizard.requests.statemachine import TRANSITIONS, TransitionError, change_status

STATUSES = [s for s, _ in ImportRequest.Status.choices]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("transition", sorted(TRANSITIONS))
def test_a_transition_happens_exactly_from_its_source_statuses(requester, status, transition):
    req = ImportRequest.objects.create(owner=requester, status=status)
    move = TRANSITIONS[transition]
    if status in move.sources:
        change_status(req, transition, actor=requester)
        assert req.status == move.target
        event = AuditEvent.objects.get(request=req)
        assert (event.before, event.after, event.action) == ({"status": status}, {"status": move.target}, move.target)
    else:
        with pytest.raises(TransitionError):
            change_status(req, transition, actor=requester)
        req.refresh_from_db()
        assert req.status == status and not AuditEvent.objects.filter(request=req).exists()


def test_every_status_is_reachable_and_final_ones_lead_nowhere():
    reached = {ImportRequest.Status.DRAFT} | {t.target for t in TRANSITIONS.values()}
    assert reached == set(STATUSES)
    for move in TRANSITIONS.values():
        assert not set(move.sources) & set(statemachine.FINAL)


@pytest.mark.parametrize("status", STATUSES)
def test_only_drafts_and_rejected_requests_are_editable(requester, status):
    req = ImportRequest(owner=requester, status=status)
    assert statemachine.is_editable(req) == (status in ("draft", "rejected"))


@pytest.mark.parametrize(
    "status,task_status,expected",
    [
        ("importing", "active", True),
        ("importing", "completed", False),  # AWS finished it; the poller has not recorded it yet
        ("importing", None, False),
        ("completed", "completed", False),
        ("approved", None, False),
        ("failed", "deleted", False),
    ],
)
def test_an_import_can_be_cancelled_only_while_its_task_runs(requester, client, status, task_status, expected):
    req = ImportRequest.objects.create(owner=requester, status=status)
    if task_status:
        ImportTask.objects.create(request=req, import_task_id=f"import-ami-{req.pk:017x}", status=task_status)
    req = ImportRequest.objects.select_related("import_task").get(pk=req.pk)
    assert statemachine.can_cancel(req) is expected
    client.force_login(requester)
    page = client.get(reverse("request-detail", args=[req.pk])).content.decode()
    assert ("Cancel this import" in page) is expected
