"""The authorization matrix: every role against every URL of the application, GET and POST."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import make_user
from wizard.audit import audit
from wizard.models import ImportRequest

ROLES = ["anonymous", "requester_a", "requester_b", "reviewer", "auditor", "admin"]
LOGIN = "login"  # a redirect to the login page


@pytest.fixture
def world(db):
    users = {
        "requester_a": make_user("a", "requester"),
        "requester_b": make_user("b", "requester"),
        "reviewer": make_user("rev", "reviewer", is_staff=True),
        "auditor": make_user("aud", "auditor"),
        "admin": make_user("root", None, is_staff=True, is_superuser=True),
    }
    draft = ImportRequest.objects.create(owner=users["requester_a"], description="a's draft")
    submitted = ImportRequest.objects.create(
        owner=users["requester_a"], description="a's import", status=ImportRequest.Status.SUBMITTED
    )
    audit.record("submitted", submitted, actor=users["requester_a"], details={"secret_of_a": True})
    submitted.disk_containers.create(format="RAW", s3_bucket="b", s3_key="k.raw", inspection_status="pending")
    return users, draft, submitted


# (method, url name, which object, expected answer per role)
MATRIX = [
    ("GET", "my-imports", None, {"anonymous": LOGIN, "*": 200}),
    ("GET", "new-import", None, {"anonymous": LOGIN, "auditor": 403, "*": 200}),
    ("GET", "request-detail", "submitted", {"anonymous": LOGIN, "requester_b": 404, "*": 200}),
    ("GET", "request-progress", "submitted", {"anonymous": LOGIN, "requester_b": 404, "*": 200}),
    ("GET", "request-history", "submitted", {"anonymous": LOGIN, "requester_b": 404, "*": 200}),
    ("GET", "container-inspection", "container", {"anonymous": LOGIN, "requester_b": 404, "*": 200}),
    ("POST", "request-submit", "draft", {"anonymous": LOGIN, "requester_a": 302, "*": 404}),
    ("GET", "review-queue", None, {"anonymous": LOGIN, "reviewer": 200, "admin": 200, "*": 403}),
    ("GET", "review-detail", "submitted", {"anonymous": LOGIN, "reviewer": 200, "admin": 200, "*": 403}),
    ("POST", "review-decide", "submitted", {"anonymous": LOGIN, "reviewer": 302, "admin": 302, "*": 403}),
    ("GET", "audit-log", None, {"anonymous": LOGIN, "*": 200}),
    # Only the owner reaches the sources endpoint of a draft, and even they may not add a
    # location nobody granted them (400, the message next to the field; nothing saved).
    ("POST", "wizard-source", "draft", {"anonymous": LOGIN, "requester_a": 400, "*": 404}),
    # A one-click fix: only the owner of a draft; the draft's image suggests nothing here (400).
    ("POST", "wizard-fix", "draft", {"anonymous": LOGIN, "requester_a": 400, "*": 404}),
    # "Import again" of a request: whoever may see it and make requests (the copy keeps only
    # the disks the new owner may import: test_a_duplicate_keeps_only_what_the_copier_may_import).
    ("POST", "request-duplicate", "submitted", {"anonymous": LOGIN, "requester_b": 404, "auditor": 403, "*": 302}),
    ("GET", "admin:wizard_importrequest_changelist", None, {"reviewer": 200, "admin": 200, "*": LOGIN}),
    ("GET", "admin:wizard_auditevent_changelist", None, {"reviewer": 200, "admin": 200, "*": LOGIN}),
    # The admin shows a request read-only to reviewers and superusers; nobody changes it there.
    ("GET", "admin:wizard_importrequest_change", "submitted", {"reviewer": 200, "admin": 200, "*": LOGIN}),
    ("POST", "admin:wizard_importrequest_change", "submitted", {"reviewer": 403, "admin": 403, "*": LOGIN}),
    ("GET", "admin:wizard_importrequest_add", None, {"reviewer": 403, "admin": 403, "*": LOGIN}),
    # Source grants, users and groups: superusers only (no role holds their permissions).
    ("GET", "admin:wizard_sourcegrant_changelist", None, {"reviewer": 403, "admin": 200, "*": LOGIN}),
    ("POST", "admin:wizard_sourcegrant_add", None, {"reviewer": 403, "admin": 200, "*": LOGIN}),
    ("GET", "admin:auth_user_changelist", None, {"reviewer": 403, "admin": 200, "*": LOGIN}),
    ("GET", "admin:wizard_target_changelist", None, {"reviewer": 403, "admin": 200, "*": LOGIN}),
    ("POST", "admin:wizard_target_add", None, {"reviewer": 403, "admin": 200, "*": LOGIN}),
    ("GET", "admin:auth_group_changelist", None, {"reviewer": 403, "admin": 200, "*": LOGIN}),
    # Batches: a's batch is a's; those who see every request see it too; reviewers review it.
    ("GET", "batch-list", None, {"anonymous": LOGIN, "*": 200}),
    ("GET", "batch-new", None, {"anonymous": LOGIN, "auditor": 403, "*": 200}),
    ("GET", "batch-detail", "batch", {"anonymous": LOGIN, "requester_b": 404, "*": 200}),
    ("GET", "batch-table", "batch", {"anonymous": LOGIN, "requester_b": 404, "*": 200}),
    ("GET", "batch-manifest", "batch", {"anonymous": LOGIN, "requester_b": 404, "*": 200}),
    ("POST", "batch-action", "batch-cancel", {"anonymous": LOGIN, "requester_b": 404, "auditor": 403, "*": 302}),
    ("POST", "batch-action", "batch-retry", {"anonymous": LOGIN, "requester_a": 302, "requester_b": 404, "*": 403}),
    ("GET", "batch-review-list", None, {"anonymous": LOGIN, "reviewer": 200, "admin": 200, "*": 403}),
    ("GET", "batch-review", "batch", {"anonymous": LOGIN, "reviewer": 200, "admin": 200, "*": 403}),
    ("POST", "batch-review", "batch", {"anonymous": LOGIN, "reviewer": 302, "admin": 302, "*": 403}),
    # A loose upload (an image for a batch): anyone who may make requests (400: this body is no JSON).
    ("POST", "upload-create-loose", None, {"anonymous": 401, "auditor": 403, "*": 400}),
    ("GET", "api-tokens", None, {"anonymous": LOGIN, "*": 200}),
    # Retrying a failed finishing step: the requester or a reviewer (wizard.views.finishing).
    (
        "POST",
        "finishing-retry",
        "finishing-step",
        {"anonymous": LOGIN, "requester_b": 404, "auditor": 403, "*": 302},
    ),
    ("POST", "api-token-revoke", "token", {"anonymous": LOGIN, "requester_a": 302, "*": 404}),
]


DATA = {
    "review-decide": {"decision": "approve"},
    "wizard-source": {"kind": "s3", "s3_bucket": "bucket-one", "s3_key": "somebody-elses/disk.raw"},
    "wizard-fix": {"parameter": "BootMode"},
    "batch-action": {"confirm": "yes"},
    "batch-review": {"decision": "approve"},
}


def _client(world, role: str, **kwargs) -> Client:
    client = Client(**kwargs)
    if role != "anonymous":
        client.force_login(world[0][role])
    return client


def _url(world, name: str, obj: str | None) -> str:
    from wizard.models import ApiToken, Batch, BatchItem

    users, draft, submitted = world
    if obj == "finishing-step":
        from wizard.models import FinishingStep

        finishing = ImportRequest.objects.create(owner=users["requester_a"], status=ImportRequest.Status.FINISHING)
        step = FinishingStep.objects.create(request=finishing, position=0, action="CreateTags", state="failed")
        return reverse(name, args=[finishing.pk, step.pk])
    if obj and (obj.startswith("batch") or obj == "token"):
        owner = users["requester_a"]
        if obj == "token":
            return reverse(
                name, args=[ApiToken.objects.create(user=owner, name="t", prefix="a" * 12, secret_hash="x").pk]
            )
        batch = Batch.objects.create(owner=owner, name="a's batch", source="manifest-csv")
        BatchItem.objects.create(batch=batch, request=submitted, position=0)
        if name == "batch-manifest":
            from wizard.batches.batches import _keep_manifest

            _keep_manifest(batch, "S3Bucket,S3Key\n", "csv")
        action = obj.partition("-")[2]
        return reverse(name, args=[batch.pk, action] if action else [batch.pk])
    target = {"draft": draft, "submitted": submitted, "container": submitted.disk_containers.first()}.get(obj)
    return reverse(name, args=[target.pk] if target else [])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method,name,obj,expected", MATRIX, ids=[f"{m} {n}" for m, n, _, _ in MATRIX])
def test_each_role_gets_exactly_what_it_may(world, role, method, name, obj, expected):
    client = _client(world, role)
    url = _url(world, name, obj)
    data = DATA.get(name, {})
    response = client.get(url) if method == "GET" else client.post(url, data)
    want = expected.get(role, expected["*"])
    if want == LOGIN:
        assert response.status_code == 302 and "login" in response["Location"], (role, url, response.status_code)
    else:
        assert response.status_code == want, (role, url)


@pytest.mark.parametrize("role", ROLES)
def test_a_conditional_progress_poll_gets_what_the_plain_one_gets(world, role):
    """request-progress with the owner's current ETag (If-None-Match), as the owner's open page
    polls it: a 304 (answered before Django's auth, wizard.views.progress_poll) for the owner
    only; everyone else gets exactly the plain GET's answer (their own page, 404 or the login)."""
    users, _, submitted = world
    url = reverse("request-progress", args=[submitted.pk])
    etag = _client(world, "requester_a").get(url)["ETag"]
    response = _client(world, role).get(url, HTTP_IF_NONE_MATCH=etag)
    want = {"requester_a": 304, "requester_b": 404, "anonymous": LOGIN}.get(role, 200)
    if want == LOGIN:
        assert response.status_code == 302 and "login" in response["Location"]
    else:
        assert response.status_code == want, role


def test_the_sources_endpoint_adds_nothing_for_anyone_but_the_owner(world):
    _, draft, _ = world
    for role in ROLES:
        _client(world, role).post(reverse("wizard-source", args=[draft.pk]), DATA["wizard-source"])
    assert not draft.disk_containers.exists()


def test_a_duplicate_keeps_only_what_the_copier_may_import(world):
    from tests.flows import grant
    from wizard.models import Upload

    users, _, submitted = world
    upload = Upload.objects.create(
        owner=users["requester_a"],
        status=Upload.Status.COMPLETED,
        bucket="uploads-bucket",
        key="uploads/1/a.raw",
        file_name="a.raw",
        size=1024,
    )
    submitted.disk_containers.create(s3_bucket=upload.bucket, s3_key=upload.key, upload=upload, format="RAW")
    grant(users["reviewer"], s3_bucket="shared-images")
    submitted.disk_containers.create(s3_bucket="shared-images", s3_key="b.raw", format="RAW", position=1)
    for role in ("requester_a", "reviewer", "admin"):
        _client(world, role).post(reverse("request-duplicate", args=[submitted.pk]))
        copy = ImportRequest.objects.filter(owner=users[role]).exclude(pk=submitted.pk).latest("pk")
        labels = [c.source_label for c in copy.disk_containers.all()]
        assert (
            labels
            == {
                "requester_a": ["s3://uploads-bucket/uploads/1/a.raw"],
                "reviewer": ["s3://shared-images/b.raw"],
                "admin": [],
            }[role]
        ), role


def test_only_the_owner_acknowledges_a_drafts_warnings(world):
    """request-submit with the review step's box ticked (wizard.preflight.acknowledgements): whoever may
    edit the draft, i.e. its owner; everybody else is answered as for any other draft of theirs, and
    nothing is stored."""
    from tests.flows import grant
    from wizard.models import WarningAcknowledgement
    from wizard.preflight import acknowledgements

    users, _, _ = world
    grant(users["requester_a"], s3_bucket="bucket-one")
    warned = ImportRequest.objects.create(owner=users["requester_a"], description="warned", platform="Linux")
    report = {
        "format": "RAW",
        "ok": True,
        "findings": [{"severity": "warning", "code": "static-network", "message": "s"}],
    }
    disk = warned.disk_containers.create(
        format="RAW", s3_bucket="bucket-one", s3_key="w.raw", inspection_status="done", inspection=report
    )
    data = {"acknowledge": "yes", "warnings": acknowledgements.token({(disk.pk, "static-network")})}
    url = reverse("request-submit", args=[warned.pk])
    for role in ["anonymous", "requester_b", "reviewer", "auditor", "admin"]:
        response = _client(world, role).post(url, data)
        if role == "anonymous":
            assert response.status_code == 302 and "login" in response["Location"]
        else:
            assert response.status_code == 404, role
    assert not WarningAcknowledgement.objects.exists()
    warned.refresh_from_db()
    assert warned.status == "draft"
    assert _client(world, "requester_a").post(url, data).status_code == 302
    (ack,) = WarningAcknowledgement.objects.all()
    assert ack.by == users["requester_a"] and ImportRequest.objects.get(pk=warned.pk).status == "submitted"


def test_a_requester_reads_only_their_own_history(world):
    assert b"a&#x27;s import" not in _client(world, "requester_b").get(reverse("my-imports")).content
    log_b = _client(world, "requester_b").get(reverse("audit-log") + "?format=csv").content.decode()
    log_a = _client(world, "requester_a").get(reverse("audit-log") + "?format=csv").content.decode()
    assert "secret_of_a" in log_a and "secret_of_a" not in log_b
    assert "secret_of_a" in _client(world, "auditor").get(reverse("audit-log") + "?format=csv").content.decode()


STATE_CHANGING = [
    ("request-submit", "draft", {}),
    ("review-decide", "submitted", {"decision": "approve"}),
    ("wizard-start", None, {}),
    ("wizard-source", "draft", {"kind": "remove", "container": "1"}),
    ("wizard-fix", "draft", {"parameter": "BootMode"}),
    ("request-duplicate", "submitted", {}),
    ("finishing-retry", "finishing-step", {}),
    ("logout", None, {}),
]


@pytest.mark.parametrize("name,obj,data", STATE_CHANGING, ids=[s[0] for s in STATE_CHANGING])
def test_csrf_is_enforced_on_every_state_change(world, name, obj, data):
    owner_acts = (
        "request-submit",
        "wizard-start",
        "wizard-source",
        "request-duplicate",
        "wizard-fix",
        "finishing-retry",
    )
    role = "requester_a" if name in owner_acts else "reviewer"
    client = _client(world, role, enforce_csrf_checks=True)
    response = client.post(_url(world, name, obj), data)
    assert response.status_code == 403
    _, draft, submitted = world
    draft.refresh_from_db()
    submitted.refresh_from_db()
    assert (draft.status, submitted.status) == ("draft", "submitted")


def test_an_auditor_changes_nothing(world):
    client = _client(world, "auditor")
    _, _, submitted = world
    assert client.post(reverse("review-decide", args=[submitted.pk]), {"decision": "approve"}).status_code == 403
    assert client.get(reverse("admin:index")).status_code == 302
    submitted.refresh_from_db()
    assert submitted.status == "submitted"


def test_a_finishing_step_is_retried_only_through_its_own_request(world):
    from wizard.models import AuditEvent, FinishingStep

    users, _, submitted = world
    theirs = ImportRequest.objects.create(owner=users["requester_b"], status=ImportRequest.Status.FINISHING)
    step = FinishingStep.objects.create(request=theirs, position=0, action="CreateTags", state="failed")
    mine = ImportRequest.objects.create(owner=users["requester_a"], status=ImportRequest.Status.FINISHING)
    client = _client(world, "requester_a")
    assert client.post(reverse("finishing-retry", args=[mine.pk, step.pk])).status_code == 404
    assert client.post(reverse("finishing-retry", args=[theirs.pk, step.pk])).status_code == 404
    step.refresh_from_db()
    assert step.state == "failed" and not AuditEvent.objects.filter(action="finishing step retried").exists()
    # The owner's retry is audited with them as the actor; the step waits for the worker again.
    assert _client(world, "requester_b").post(reverse("finishing-retry", args=[theirs.pk, step.pk])).status_code == 302
    step.refresh_from_db()
    assert step.state == "pending"
    assert AuditEvent.objects.get(action="finishing step retried").actor == users["requester_b"]


def test_a_target_is_chosen_only_by_the_drafts_owner_in_one_of_its_groups(world):
    """Choosing a target (the upload step): nobody but the draft's owner reaches it, and the owner
    only for a target of one of their groups; a refusal is a message next to the field (400)."""
    from django.contrib.auth.models import Group

    from wizard.models import Target

    users, draft, _ = world
    target = Target.objects.create(
        name="team-b", account_id="444455556666", region="eu-west-1", bucket="b", role_arn="arn:aws:iam::1:role/x"
    )
    group = Group.objects.create(name="team-b")
    target.groups.add(group)
    users["requester_b"].groups.add(group)  # b may use it, but it is not b's draft
    url = reverse("wizard-step", args=[draft.pk, "upload"])
    want = {"anonymous": LOGIN, "requester_a": 400, "*": 404}
    for role in ROLES:
        draft.refresh_from_db()
        response = _client(world, role).post(url, {"version": draft.version, "target": str(target.pk)})
        expected = want.get(role, want["*"])
        if expected == LOGIN:
            assert response.status_code == 302 and "login" in response["Location"], role
        else:
            assert response.status_code == expected, role
        if role == "requester_a":
            assert 'id="error-target"' in response.content.decode()
    assert ImportRequest.objects.get(pk=draft.pk).target is None
    users["requester_a"].groups.add(group)
    draft.refresh_from_db()
    chosen = _client(world, "requester_a").post(url, {"version": draft.version, "target": str(target.pk)})
    assert chosen.status_code == 302 and ImportRequest.objects.get(pk=draft.pk).target == target
