"""Separation of duties on every path: nobody approves (or rejects) a request they had a hand in.

Each test goes through the real pages and the real admin with Django's test client, against a
real sandbox, and checks that the approval is refused on both the review page and the admin's
action, and that nothing changed.
"""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.test import Client, TestCase
from django.urls import reverse

from tests.conftest import make_user
from tests.flows import draft_with_image
from tests.images import raw_mbr
from wizard.models import AuditEvent, ImportRequest, SourceGrant

CHANGELIST = reverse("admin:wizard_importrequest_changelist")


@pytest.fixture
def people(db, sandbox, monkeypatch):
    monkeypatch.setattr("wizard.tasks.enqueue_dispatch", lambda pk: None)
    people = {
        "alice": make_user("alice", "requester"),
        "rita": make_user("rita", "reviewer", is_staff=True),
        "rob": make_user("rob", "reviewer", is_staff=True),
        "root": make_user("root", None, is_staff=True, is_superuser=True),
    }
    # Whoever submits below may import the sandbox's images (wizard.uploads.sources), so that each
    # test reaches the approval it is about.
    grant = SourceGrant.objects.create(kind=SourceGrant.Kind.S3, s3_bucket=sandbox.bucket, note="tests")
    grant.groups.add(*Group.objects.filter(name__in=["requester", "reviewer"]))
    return people


def _as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _submit(user, req: ImportRequest) -> ImportRequest:
    _as(user).post(reverse("request-submit", args=[req.pk]))
    req.refresh_from_db()
    assert req.status == ImportRequest.Status.SUBMITTED, "the request did not reach review"
    return req


def _refused_everywhere(user, req: ImportRequest, reason: str) -> None:
    """`user` tries to approve `req` on the review page and in the admin, and to reject it: all refused."""
    before = model_to_dict(ImportRequest.objects.get(pk=req.pk))
    events = AuditEvent.objects.count()
    client = _as(user)
    page = client.post(reverse("review-decide", args=[req.pk]), {"decision": "approve"}, follow=True)
    assert reason in page.content.decode()
    page = client.post(reverse("review-decide", args=[req.pk]), {"decision": "reject", "reason": "x"}, follow=True)
    assert reason in page.content.decode()
    action = client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [req.pk]}, follow=True)
    assert f"#{req.pk}: {reason}" in action.content.decode()
    assert model_to_dict(ImportRequest.objects.get(pk=req.pk)) == before
    assert AuditEvent.objects.count() == events


def _approved_by(user, req: ImportRequest) -> None:
    _as(user).post(reverse("review-decide", args=[req.pk]), {"decision": "approve"})
    req.refresh_from_db()
    assert (req.status, req.reviewed_by) == (ImportRequest.Status.APPROVED, user)


def test_the_admin_change_form_changes_nothing(people, sandbox):
    req = _submit(people["alice"], draft_with_image(people["alice"], sandbox))
    disk = req.disk_containers.get()
    before, disks, events = model_to_dict(req), list(req.disk_containers.values()), AuditEvent.objects.count()
    url = reverse("admin:wizard_importrequest_change", args=[req.pk])
    forged = {
        "owner": people["rita"].pk,
        "submitted_by": people["rob"].pk,
        "status": "approved",
        "description": "changed in the admin",
        "architecture": "arm64",
        "role_name": "someone-elses-role",
        "kms_key_id": "alias/theirs",
        "client_token": "forged",
        "reviewed_by": people["rob"].pk,
        "disk_containers-TOTAL_FORMS": "1",
        "disk_containers-INITIAL_FORMS": "1",
        "disk_containers-0-id": disk.pk,
        "disk_containers-0-request": req.pk,
        "disk_containers-0-s3_bucket": "another-bucket",
        "disk_containers-0-s3_key": "secret/disk.raw",
        "_save": "Save",
    }
    for who in ("rita", "root"):
        client = _as(people[who])
        page = client.get(url).content.decode()
        assert 'name="description"' not in page and 'name="owner"' not in page and "web01" in page
        assert client.post(url, forged).status_code == 403
        assert client.get(reverse("admin:wizard_importrequest_add")).status_code == 403
        assert (
            client.post(reverse("admin:wizard_importrequest_delete", args=[req.pk]), {"post": "yes"}).status_code == 403
        )
    req.refresh_from_db()
    assert model_to_dict(req) == before and list(req.disk_containers.values()) == disks
    assert AuditEvent.objects.count() == events
    _approved_by(people["rita"], req)


def test_nobody_approves_their_own_request_in_the_admin_or_the_pages(people, sandbox):
    req = _submit(people["rita"], draft_with_image(people["rita"], sandbox, description="rita's own"))
    _refused_everywhere(people["rita"], req, "nobody approves or rejects their own request")
    _approved_by(people["rob"], req)


def test_a_duplicate_belongs_to_whoever_made_it(people, sandbox):
    original = _submit(people["alice"], draft_with_image(people["alice"], sandbox))
    with TestCase.captureOnCommitCallbacks(execute=True):  # the copy's disk is inspected
        response = _as(people["rita"]).post(reverse("request-duplicate", args=[original.pk]))
    copy = ImportRequest.objects.exclude(pk=original.pk).get()
    assert response.status_code == 302 and copy.owner == people["rita"]
    _submit(people["rita"], copy)
    _refused_everywhere(people["rita"], copy, "nobody approves or rejects their own request")
    _approved_by(people["rob"], copy)
    _approved_by(people["rita"], original)  # she had no hand in alice's request


def test_a_cli_import_belongs_to_its_user_even_when_an_operator_runs_it(people, sandbox, tmp_path):
    """`import_image --user NAME` is an operator's tool: the draft is NAME's, in NAME's name in the log.
    An operator who is also a reviewer and imports for themselves cannot approve what they submit."""
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key="uploads/cli/disk.raw", Body=raw_mbr(64 * 1024))
    document = tmp_path / "import.json"
    disk = {"Format": "RAW", "UserBucket": {"S3Bucket": sandbox.bucket, "S3Key": "uploads/cli/disk.raw"}}
    document.write_text(json.dumps({"Description": "from the CLI", "DiskContainers": [disk]}))
    for user in ("rita", "alice"):
        with TestCase.captureOnCommitCallbacks(execute=True):  # the draft's disk is inspected
            call_command("import_image", "--cli-input-json", str(document), "--user", user, stdout=io.StringIO())
    ritas, alices = (ImportRequest.objects.get(owner=people[u]) for u in ("rita", "alice"))
    assert AuditEvent.objects.get(request=ritas, action="draft created").actor == people["rita"]
    _submit(people["rita"], ritas)
    _refused_everywhere(people["rita"], ritas, "nobody approves or rejects their own request")
    _submit(people["alice"], alices)
    _approved_by(people["rita"], alices)


def test_moving_ownership_does_not_let_the_author_approve(people, sandbox):
    """Ownership is not moved on any user path; done in the database, the log still names the author."""
    submitted = _submit(people["alice"], draft_with_image(people["alice"], sandbox, key="uploads/a/1.raw"))
    ImportRequest.objects.filter(pk=submitted.pk).update(owner=people["rob"])
    created = draft_with_image(people["alice"], sandbox, key="uploads/a/2.raw")
    ImportRequest.objects.filter(pk=created.pk).update(owner=people["rob"])
    created = _submit(people["rob"], created)
    people["alice"].is_staff = True
    people["alice"].save()
    people["alice"].groups.add(Group.objects.get(name="reviewer"))

    _refused_everywhere(people["alice"], submitted, "nobody approves or rejects a request they submitted")
    _refused_everywhere(
        people["alice"],
        created,
        "nobody approves or rejects a request they created or changed (its history names them)",
    )
    _approved_by(people["rita"], created)


def test_a_requester_made_reviewer_still_cannot_approve_their_own(people, sandbox):
    alice, root = people["alice"], people["root"]
    req = _submit(alice, draft_with_image(alice, sandbox))
    reviewer = Group.objects.get(name="reviewer")
    response = _as(root).post(
        reverse("admin:auth_user_change", args=[alice.pk]),
        {
            "username": "alice",
            "is_active": "on",
            "is_staff": "on",
            "groups": [g.pk for g in alice.groups.all()] + [reviewer.pk],
            "date_joined_0": "2024-01-01",
            "date_joined_1": "00:00:00",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    alice.refresh_from_db()
    assert alice.has_perm("wizard.review_importrequest") and alice.is_staff
    event = AuditEvent.objects.get(action="user changed")
    assert event.actor == root and "requester" in event.before["groups"] and "reviewer" not in event.before["groups"]
    assert sorted(event.after["groups"]) == sorted([*event.before["groups"], "reviewer"])
    assert event.after["is_staff"] is True

    _refused_everywhere(alice, req, "nobody approves or rejects their own request")
    _approved_by(people["rita"], req)
