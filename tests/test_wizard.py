"""The wizard's steps: saving, autosave, conflicts, disks, sources, findings, submit."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.flows import grant
from wizard.models import AuditEvent, DiskContainer, ImportRequest, ImportTask
from wizard.requests import drafts
from wizard.requests.steps import INDEX


@pytest.fixture
def draft(requester):
    grant(requester, s3_bucket="bucket-one", note="the team's images")
    d = drafts.create_draft(requester, description="web01")
    DiskContainer.objects.create(request=d, position=0, format="VMDK", s3_bucket="bucket-one", s3_key="a.vmdk")
    DiskContainer.objects.create(request=d, position=1, format="VHD", s3_bucket="bucket-one", s3_key="b.vhd")
    return d


@pytest.fixture
def alice(client, requester):
    client.force_login(requester)
    return client


def url(d, name):
    return reverse("wizard-step", args=[d.pk, name])


def post(client, d, name, data, **extra):
    return client.post(url(d, name), {"version": ImportRequest.objects.get(pk=d.pk).version, **data}, **extra)


def test_start_makes_a_draft_and_opens_the_first_step(alice, requester):
    response = alice.post(reverse("wizard-start"))
    d = ImportRequest.objects.get(owner=requester)
    assert response["Location"] == url(d, "upload")
    assert AuditEvent.objects.filter(action="draft created", request=d).exists()


@pytest.mark.parametrize("name", ["upload", "disks", "encryption", "licence", "details", "review"])
def test_every_step_renders_with_its_indicator(alice, draft, name, monkeypatch):
    monkeypatch.setattr("wizard.views.wizard._safe", lambda lookup: ([], ""))
    page = alice.get(url(draft, name)).content.decode()
    assert 'id="step-indicator"' in page and 'aria-current="step"' in page
    assert f'data-step="{name}"' in page


def test_the_furthest_step_reached_only_grows(alice, draft):
    alice.get(url(draft, "licence"))
    assert ImportRequest.objects.get(pk=draft.pk).furthest_step == 3
    alice.get(url(draft, "disks"))
    assert ImportRequest.objects.get(pk=draft.pk).furthest_step == 3  # going back keeps it
    alice.get(url(draft, "review"))
    assert ImportRequest.objects.get(pk=draft.pk).furthest_step == 6


@pytest.mark.parametrize("name", ["upload", "disks", "encryption", "licence", "details", "finish", "review"])
def test_a_step_page_seen_again_writes_nothing_and_reads_disks_grants_and_user_once(alice, draft, name, sandbox):
    alice.get(url(draft, name))
    with CaptureQueriesContext(connection) as queries:
        page = alice.get(url(draft, name))
    assert page.status_code == 200 and f'data-step="{name}"' in page.content.decode()
    sql = [q["sql"] for q in queries.captured_queries]
    # A write would queue every page view behind SQLite's one writer (a no-op UPDATE included).
    assert [s for s in sql if s.split(None, 1)[0].upper() in ("UPDATE", "INSERT", "DELETE")] == []
    assert sum('FROM "wizard_diskcontainer"' in s for s in sql) == 1
    assert sum('FROM "wizard_sourcegrant"' in s for s in sql) == 1
    assert not [s for s in sql if "_prefetch_related_val_sourcegrant_id" in s]  # grants' groups: the reviewer's
    assert sum('FROM "auth_user" ' in s for s in sql) == 1  # the session's user, who is the owner


def test_next_saves_and_moves_on(alice, draft):
    response = post(
        alice,
        draft,
        "licence",
        {"licensing": "BYOL", "platform": "Linux", "architecture": "x86_64", "boot_mode": "uefi", "nav": "next"},
    )
    assert response["Location"] == url(draft, "details")
    draft.refresh_from_db()
    assert (draft.license_type, draft.platform, draft.architecture, draft.boot_mode) == (
        "BYOL",
        "Linux",
        "x86_64",
        "uefi",
    )
    # The save moves the draft on in the same UPDATE: the step it goes to, reached.
    assert draft.version == 2 and draft.wizard_step == "details" and draft.furthest_step == 4
    assert AuditEvent.objects.get(action="draft saved").details["fields"] == [
        "architecture",
        "boot_mode",
        "license_type",
        "platform",
    ]


LICENCE = {"licensing": "BYOL", "platform": "Linux", "architecture": "x86_64", "boot_mode": "uefi"}


@pytest.mark.parametrize(
    "nav, goes", [("next", "details"), ("back", "encryption"), ("goto:review", "review"), ("", "licence")]
)
def test_a_step_opened_after_its_save_writes_nothing_more(alice, draft, nav, goes):
    before = ImportRequest.objects.get(pk=draft.pk).furthest_step
    saved = post(alice, draft, "licence", {**LICENCE, "nav": nav})
    assert saved["Location"] == url(draft, goes)
    with CaptureQueriesContext(connection) as queries:
        page = alice.get(saved["Location"])
    assert page.status_code == 200
    assert [q["sql"] for q in queries if q["sql"].split(None, 1)[0].upper() in ("UPDATE", "INSERT", "DELETE")] == []
    draft.refresh_from_db()
    assert draft.wizard_step == goes and draft.furthest_step == max(before, INDEX[goes])


def test_an_autosave_stays_on_its_step_whatever_button_it_carries(alice, draft):
    saved = post(alice, draft, "licence", {**LICENCE, "nav": "next"}, HTTP_HX_REQUEST="true")
    assert saved.status_code == 200 and 'value="2"' in saved.content.decode()  # the new version, not read again
    draft.refresh_from_db()
    assert draft.wizard_step == "licence" and draft.version == 2 and draft.furthest_step == INDEX["licence"]


def test_autosave_answers_htmx_with_the_new_version(alice, draft):
    response = post(
        alice,
        draft,
        "details",
        {"description": "db01", "tag_key": ["team", ""], "tag_value": ["infra", ""]},
        HTTP_HX_REQUEST="true",
    )
    body = response.content.decode()
    assert response.status_code == 200 and "Saved" in body
    assert 'id="version" value="2"' in body and 'hx-swap-oob="true"' in body
    draft.refresh_from_db()
    assert draft.description == "db01" and draft.tags == [{"Key": "team", "Value": "infra"}]


def test_an_autosave_never_navigates_even_with_a_focused_buttons_nav(alice, draft):
    """htmx adds the last focused submit button (Tab onto "Back") to the autosave's values."""
    response = post(alice, draft, "details", {"description": "db01", "nav": "back"}, HTTP_HX_REQUEST="true")
    assert (
        response.status_code == 200 and "Saved" in response.content.decode() and "<h1" not in response.content.decode()
    )
    draft.refresh_from_db()
    assert draft.description == "db01"


def test_a_rule_breaking_value_is_saved_and_shown_next_to_its_field(alice, draft):
    post(alice, draft, "encryption", {"kms_key_id": "alias/my-key", "nav": "stay"})
    draft.refresh_from_db()
    assert draft.kms_key_id == "alias/my-key"  # kept, though KmsKeyId needs Encrypted
    page = alice.get(url(draft, "encryption")).content.decode()
    assert 'id="field-kms_key_id"' in page and "Encrypted" in page.split('id="field-kms_key_id"')[1][:1500]
    assert 'class="step-current"' in page


def test_a_save_from_a_stale_tab_is_refused_and_shows_both_values(alice, draft):
    stale = draft.version
    post(alice, draft, "details", {"description": "from tab one", "nav": "stay"})
    response = alice.post(url(draft, "details"), {"version": stale, "description": "from tab two", "nav": "stay"})
    page = response.content.decode()
    assert "This draft was changed elsewhere" in page
    assert "from tab two" in page and "from tab one" in page
    draft.refresh_from_db()
    assert draft.description == "from tab one"
    # "Save mine" posts again with the version it was shown.
    alice.post(url(draft, "details"), {"version": draft.version, "description": "from tab two", "nav": "stay"})
    draft.refresh_from_db()
    assert draft.description == "from tab two"


def test_disks_are_edited_and_reordered(alice, draft):
    a, b = draft.disk_containers.all()
    data = {
        "form-TOTAL_FORMS": 2,
        "form-INITIAL_FORMS": 2,
        "form-0-id": a.pk,
        "form-0-format": "VMDK",
        "form-0-device_name": "/dev/sda1",
        "form-0-description": "boot",
        "form-1-id": b.pk,
        "form-1-format": "VHD",
        "form-1-device_name": "",
        "form-1-description": "data",
        "move": f"{b.pk}:up",
    }
    post(alice, draft, "disks", data)
    rows = list(draft.disk_containers.order_by("position"))
    assert [r.pk for r in rows] == [b.pk, a.pk]
    assert rows[1].device_name == "/dev/sda1" and rows[0].description == "data"


def test_sources_are_added_and_removed(alice, draft, requester):
    grant(requester, "url", host="example.com")
    earlier = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.COMPLETED)
    ImportTask.objects.create(
        request=earlier, import_task_id="import-ami-1", snapshot_details=[{"SnapshotId": "snap-0123456789abcdef0"}]
    )
    source = reverse("wizard-source", args=[draft.pk])
    alice.post(source, {"kind": "url", "url": "https://example.com/images/disk.vhdx"})
    alice.post(source, {"kind": "snapshot", "snapshot_id": "snap-0123456789abcdef0"})
    alice.post(source, {"kind": "s3", "s3_bucket": "bucket-one", "s3_key": "c.raw"})
    kinds = [(c.position, c.format, c.source_label) for c in draft.disk_containers.all()]
    assert kinds[2:] == [
        (2, "VHDX", "https://example.com/images/disk.vhdx"),
        (3, "", "snap-0123456789abcdef0"),
        (4, "RAW", "s3://bucket-one/c.raw"),
    ]
    first = draft.disk_containers.first()
    alice.post(source, {"kind": "remove", "container": first.pk})
    assert [c.position for c in draft.disk_containers.all()] == [0, 1, 2, 3]
    assert AuditEvent.objects.filter(action="disk removed").count() == 1


def test_review_links_each_finding_to_its_step_and_field(alice, draft):
    post(alice, draft, "licence", {"licensing": "AWS", "platform": "Linux", "architecture": "x86_64", "nav": "stay"})
    page = alice.get(url(draft, "review")).content.decode()
    assert f'href="{url(draft, "licence")}#field-licensing"' in page
    assert 'id="submit-request" disabled' in page


def test_a_draft_with_errors_cannot_be_submitted(alice, draft):
    draft.architecture = "arm64"
    draft.save()
    response = alice.post(reverse("request-submit", args=[draft.pk]), follow=True)
    assert "Not submitted" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == ImportRequest.Status.DRAFT


def test_a_valid_draft_is_submitted_from_the_review_step(alice, draft):
    response = alice.post(reverse("request-submit", args=[draft.pk]))
    draft.refresh_from_db()
    assert draft.status == ImportRequest.Status.SUBMITTED and response["Location"] == draft.get_absolute_url()
    # Submitted: the wizard no longer edits it.
    assert alice.get(url(draft, "details"))["Location"] == draft.get_absolute_url()


def test_my_drafts_lists_step_last_change_and_problems(alice, draft):
    draft.architecture = "arm64"
    draft.wizard_step = "licence"
    draft.save()
    page = alice.get(reverse("my-drafts")).content.decode()
    assert "web01" in page and "Licence and boot" in page and "arm64" in page
    assert f'href="{url(draft, "licence")}"' in page


def test_duplicate_copies_settings_and_disks_with_a_new_token(alice, draft):
    draft.platform = "Windows"
    draft.save()
    alice.post(reverse("request-duplicate", args=[draft.pk]))
    copy = ImportRequest.objects.exclude(pk=draft.pk).get()
    assert copy.platform == "Windows" and copy.client_token != draft.client_token
    assert [c.source_label for c in copy.disk_containers.all()] == [c.source_label for c in draft.disk_containers.all()]


def test_import_again_keeps_the_finishing_choices_but_not_the_target(alice, draft):
    from wizard.models import Target

    target = Target.objects.create(
        name="prod", account_id="111122223333", region="eu-west-1", role_arn="arn:aws:iam::111122223333:role/x"
    )
    ImportRequest.objects.filter(pk=draft.pk).update(
        ami_name="web01-2026",
        ami_tags=[{"Key": "team", "Value": "web"}],
        launch_user_ids=["444455556666"],
        region_copies=[{"Region": "eu-west-1", "KmsKeyId": ""}],
        imds_v2=True,
        target=target,
    )
    alice.post(reverse("request-duplicate", args=[draft.pk]))
    copy = ImportRequest.objects.exclude(pk=draft.pk).get()
    assert (copy.ami_name, copy.ami_tags, copy.launch_user_ids) == (
        "web01-2026",
        [{"Key": "team", "Value": "web"}],
        ["444455556666"],
    )
    assert copy.region_copies == [{"Region": "eu-west-1", "KmsKeyId": ""}] and copy.imds_v2
    assert copy.target is None


def test_delete_asks_first_then_keeps_the_history(alice, draft):
    page = alice.get(reverse("draft-delete", args=[draft.pk])).content.decode()
    assert "Delete draft #" in page
    alice.post(reverse("draft-delete", args=[draft.pk]))
    draft.refresh_from_db()
    assert draft.status == ImportRequest.Status.DELETED
    assert "web01" not in alice.get(reverse("my-drafts")).content.decode()
    assert AuditEvent.objects.filter(action="draft deleted", request=draft).exists()


def test_another_user_cannot_touch_the_draft(client, draft, django_user_model):
    from tests.conftest import make_user

    client.force_login(make_user("mallory", "requester"))
    assert client.get(url(draft, "details")).status_code == 404
    assert (
        client.post(reverse("wizard-source", args=[draft.pk]), {"kind": "url", "url": "https://x.io/a.vhd"}).status_code
        == 404
    )
    assert client.post(reverse("draft-delete", args=[draft.pk])).status_code == 404
