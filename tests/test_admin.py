from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from wizard.admin import host_problem
from wizard.audit import audit
from wizard.models import AuditEvent, DiskContainer, ImportRequest, ImportTask, SourceGrant, Upload

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
    from wizard.audit import audit

    admin = make_user("root", None, is_staff=True, is_superuser=True)
    event = audit.record("something")
    client.force_login(admin)
    url = reverse("admin:wizard_auditevent_change", args=[event.pk])
    assert client.post(url, {"action": "x"}).status_code == 403
    assert client.post(reverse("admin:wizard_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403


# --- read-only: requests, tasks, uploads ---------------------------------------------------------


@pytest.fixture
def root(db):
    from tests.conftest import make_user

    return make_user("root", None, is_staff=True, is_superuser=True)


def test_a_request_shows_read_only_with_its_disks(client, reviewer, requester):
    req = ImportRequest.objects.create(owner=requester, description="web01", architecture="x86_64")
    DiskContainer.objects.create(request=req, format="VMDK", s3_bucket="bucket-one", s3_key="uploads/1/x.vmdk")
    client.force_login(reviewer)
    page = client.get(reverse("admin:wizard_importrequest_change", args=[req.pk])).content.decode()
    assert "uploads/1/x.vmdk" in page and req.client_token in page and "x86_64" in page
    form = page.split('id="importrequest_form"')[1].split("</form>")[0]
    fields = [tag for tag in re.findall(r"<(?:input|select|textarea)[^>]*>", form) if 'type="hidden"' not in tag]
    assert fields == [] and "Save" not in form


def test_tasks_and_uploads_are_read_only_even_for_a_superuser(client, root, requester):
    req = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.IMPORTING)
    task = ImportTask.objects.create(request=req, import_task_id="import-ami-0123456789abcdef0")
    upload = Upload.objects.create(owner=requester, bucket="b", key="uploads/1/a.raw", file_name="a.raw", size=1)
    client.force_login(root)
    for model, obj in (("importtask", task), ("upload", upload)):
        assert client.get(reverse(f"admin:wizard_{model}_change", args=[obj.pk])).status_code == 200
        assert client.post(reverse(f"admin:wizard_{model}_change", args=[obj.pk]), {}).status_code == 403
        assert client.get(reverse(f"admin:wizard_{model}_add")).status_code == 403
        assert client.post(reverse(f"admin:wizard_{model}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403


# --- audited: users, groups, source grants -------------------------------------------------------


def _user_form(user, **changes) -> dict:
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "is_active": "on",
        "groups": [g.pk for g in user.groups.all()],
        "date_joined_0": f"{user.date_joined:%Y-%m-%d}",
        "date_joined_1": f"{user.date_joined:%H:%M:%S}",
        "_save": "Save",
    }
    return {k: v for k, v in {**data, **changes}.items() if v is not None}


def test_a_user_changed_in_the_admin_is_an_audit_event_with_before_and_after(client, root, requester):
    client.force_login(root)
    reviewer = Group.objects.get(name="reviewer")
    url = reverse("admin:auth_user_change", args=[requester.pk])
    response = client.post(url, _user_form(requester, first_name="Alice", is_staff="on", groups=[reviewer.pk]))
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="user changed")
    assert event.actor == root and event.request is None
    assert event.details == {"object": f"auth.user #{requester.pk}", "name": "alice", "via": "admin"}
    assert event.before == {"first_name": "", "is_staff": False, "groups": ["requester"]}
    assert event.after == {"first_name": "Alice", "is_staff": True, "groups": ["reviewer"]}
    assert audit.verify_chain() is None


def test_passwords_are_audited_as_changed_never_as_hashes(client, root):
    client.force_login(root)
    response = client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "newbie",
            "usable_password": "true",
            "password1": "a-long-Pass-phrase-42",
            "password2": "a-long-Pass-phrase-42",
        },
    )
    assert response.status_code == 302
    newbie = User.objects.get(username="newbie")
    added = AuditEvent.objects.get(action="user added")
    assert added.after["username"] == "newbie" and added.after["password"] == "password set"
    response = client.post(
        reverse("admin:auth_user_password_change", args=[newbie.pk]),
        {"usable_password": "true", "password1": "another-Pass-phrase-43", "password2": "another-Pass-phrase-43"},
    )
    assert response.status_code == 302
    changed = AuditEvent.objects.get(action="user changed")
    assert changed.after == {"password": "password changed"} and changed.before == {}
    newbie.refresh_from_db()
    dumped = json.dumps([[e.before, e.after, e.details] for e in AuditEvent.objects.all()])
    assert newbie.password.startswith("pbkdf2") and "pbkdf2" not in dumped


def test_a_groups_permissions_changed_in_the_admin_are_audited(client, root):
    client.force_login(root)
    requester = Group.objects.get(name="requester")
    review = Permission.objects.get(codename="review_importrequest")
    url = reverse("admin:auth_group_change", args=[requester.pk])
    permissions = [p.pk for p in requester.permissions.all()] + [review.pk]
    assert client.post(url, {"name": "requester", "permissions": permissions}).status_code == 302
    event = AuditEvent.objects.get(action="group changed")
    assert event.before == {"permissions": ["wizard.add_importrequest"]}
    assert event.after == {"permissions": ["wizard.add_importrequest", "wizard.review_importrequest"]}


def _grant_form(**fields) -> dict:
    return {
        "kind": "s3",
        "s3_bucket": "",
        "s3_prefix": "",
        "host": "",
        "tag_key": "",
        "tag_value": "",
        "note": "",
        **fields,
    }


def test_source_grants_added_changed_and_deleted_are_audited(client, root):
    client.force_login(root)
    requester, reviewer = Group.objects.get(name="requester"), Group.objects.get(name="reviewer")
    add = client.post(
        reverse("admin:wizard_sourcegrant_add"),
        _grant_form(s3_bucket="team-images", s3_prefix="vm/", groups=[requester.pk], note="team A"),
    )
    assert add.status_code == 302, add.content.decode()
    grant = SourceGrant.objects.get()
    added = AuditEvent.objects.get(action="source grant added")
    assert added.after["s3_bucket"] == "team-images" and added.after["groups"] == ["requester"]
    change = client.post(
        reverse("admin:wizard_sourcegrant_change", args=[grant.pk]),
        _grant_form(s3_bucket="team-images", s3_prefix="vm/", groups=[requester.pk, reviewer.pk], note="team A"),
    )
    assert change.status_code == 302
    changed = AuditEvent.objects.get(action="source grant changed")
    assert (changed.before, changed.after) == ({"groups": ["requester"]}, {"groups": ["requester", "reviewer"]})
    client.post(reverse("admin:wizard_sourcegrant_delete", args=[grant.pk]), {"post": "yes"})
    deleted = AuditEvent.objects.get(action="source grant deleted")
    assert (
        deleted.before["groups"] == ["requester", "reviewer"]
        and deleted.details["object"] == f"wizard.sourcegrant #{grant.pk}"
    )
    assert not SourceGrant.objects.exists()


def test_deleting_selected_grants_audits_each(client, root):
    grants = [SourceGrant.objects.create(kind="url", host=f"h{i}.example.com") for i in range(2)]
    client.force_login(root)
    changelist = reverse("admin:wizard_sourcegrant_changelist")
    client.post(changelist, {"action": "delete_selected", "_selected_action": [g.pk for g in grants], "post": "yes"})
    assert not SourceGrant.objects.exists()
    assert sorted(e.before["host"] for e in AuditEvent.objects.filter(action="source grant deleted")) == [
        "h0.example.com",
        "h1.example.com",
    ]


def test_source_grants_are_listed_by_kind_and_group(client, root):
    grant = SourceGrant.objects.create(kind="snapshot-tag", tag_key="team", tag_value="infra")
    grant.groups.add(Group.objects.get(name="reviewer"))
    client.force_login(root)
    page = client.get(reverse("admin:wizard_sourcegrant_changelist"), {"kind__exact": "snapshot-tag"}).content.decode()
    assert "snapshots tagged team=infra" in page and "By kind" in page and "By groups" in page


GRANT_PROBLEMS = [
    ({"s3_bucket": "Not_A_Bucket"}, "s3_bucket", "the bucket name may use only lowercase letters"),
    ({"s3_bucket": ""}, "s3_bucket", "the bucket name must be 3 to 63 characters long"),
    ({"s3_bucket": "ok-bucket", "s3_prefix": "/abs/"}, "s3_prefix", "no leading slash"),
    ({"s3_bucket": "ok-bucket", "host": "example.com"}, "host", "leave this empty"),
    ({"kind": "url", "host": "https://example.com"}, "host", "without https://"),
    ({"kind": "url", "host": "example.com/images"}, "host", "no path, port"),
    ({"kind": "url", "host": "example.com:8443"}, "host", "no path, port"),
    ({"kind": "url", "host": "10.0.0.1"}, "host", "not an IP address"),
    ({"kind": "url", "host": "bad_name.example.com"}, "host", "letters, digits and hyphens"),
    ({"kind": "url", "host": "example.com", "tag_key": "team"}, "tag_key", "leave this empty"),
    ({"kind": "snapshot-tag", "tag_key": ""}, "tag_key", "give the tag"),
    ({"kind": "snapshot-tag", "tag_key": "aws:cloudformation:stack-name"}, "tag_key", "AWS's own"),
]


@pytest.mark.parametrize("fields,field,message", GRANT_PROBLEMS)
def test_a_grant_is_checked_for_its_kind(client, root, fields, field, message):
    client.force_login(root)
    group = Group.objects.get(name="requester")
    page = client.post(reverse("admin:wizard_sourcegrant_add"), _grant_form(groups=[group.pk], **fields))
    assert page.status_code == 200
    assert message in " ".join(page.context["adminform"].form.errors.get(field, []))
    assert not SourceGrant.objects.exists() and not AuditEvent.objects.exists()


def test_a_url_grant_keeps_the_host_in_lowercase(client, root):
    client.force_login(root)
    group = Group.objects.get(name="requester")
    client.post(
        reverse("admin:wizard_sourcegrant_add"), _grant_form(kind="url", host="Images.Example.COM.", groups=[group.pk])
    )
    assert SourceGrant.objects.get().host == "images.example.com"


@given(st.text(max_size=300))
def test_a_host_that_passes_is_exactly_the_host_of_its_url(host):
    from urllib.parse import urlsplit

    if host_problem(host) == "":
        assert urlsplit(f"https://{host}/disk.raw").hostname == host
        assert all(0 < len(label) <= 63 for label in host.split("."))


@given(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,20}[a-z0-9])?){1,4}", fullmatch=True))
def test_ordinary_host_names_pass(host):
    assert host_problem(host) == ""
