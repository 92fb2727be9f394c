"""Warnings need an acknowledgement, through the pages and the API, with real inspected images: a Debian
guest whose network is static (warning `static-network`), then one without a boot loader configuration
too (`no-boot-config`), built with mkfs.ext4 -d and sfdisk (tests/inspect/guests.py), put in the
sandbox's S3 and inspected by the worker's task as the wizard does."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.test import TestCase
from django.urls import reverse

from tests.conftest import make_user
from tests.flows import draft_with_image
from tests.inspect import guests
from tests.inspect.conftest import require_tools
from wizard.api import tokens
from wizard.models import AuditEvent, ImportRequest, WarningAcknowledgement
from wizard.preflight import acknowledgements, preflight
from wizard.requests import review, submission

KEY = "uploads/test/web01.raw"
BOX = "I have read these warnings and want to import anyway"


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> dict[str, bytes]:
    """Two real guest disks of 16 MiB: static network only, and static network without a boot configuration."""
    require_tools()
    out = tmp_path_factory.mktemp("ack-images")
    made = {}
    for name, kw in (("static", {}), ("static-noboot", {"boot": "none"})):
        root, boot = guests.linux(**kw)
        root["etc/network/interfaces"] = b"auto eth0\niface eth0 inet static\n  address 10.0.0.5/24\n"
        made[name] = guests.build_disk(out / f"{name}.raw", root, boot, size_mib=16).read_bytes()
    return made


@pytest.fixture
def alice(client, requester):
    client.force_login(requester)
    return client


def warned(requester, sandbox, images, key: str = KEY) -> ImportRequest:
    draft = draft_with_image(requester, sandbox, body=images["static"], key=key)
    container = draft.disk_containers.get()
    assert [f["code"] for f in container.inspection["findings"] if f["severity"] == "warning"] == ["static-network"]
    return draft


def review_page(client, draft) -> str:
    return client.get(reverse("wizard-step", args=[draft.pk, "review"])).content.decode()


def token_of(page: str) -> str:
    return unescape(re.search(r'name="warnings" value="([^"]*)"', page)[1])


def submit(client, draft, **data):
    return client.post(reverse("request-submit", args=[draft.pk]), data)


def test_a_warning_is_listed_and_submission_waits_for_the_box(alice, requester, sandbox, images):
    draft = warned(requester, sandbox, images)
    page = review_page(alice, draft)
    assert 'id="warnings-acknowledgement"' in page and BOX in page
    assert 'data-code="static-network"' in page and "Switch the interfaces to DHCP" in page  # the fix, said
    assert 'id="submit-request" disabled' not in page  # a warning does not block; the box is asked for

    refused = submit(alice, draft, warnings=token_of(page))  # the box not ticked
    assert refused.status_code == 400
    message = re.search(r'id="acknowledge-error"[^>]*>([^<]*)<', refused.content.decode())[1]
    assert "1 warning above" in unescape(message) and BOX in unescape(message)
    draft.refresh_from_db()
    assert draft.status == "draft" and not WarningAcknowledgement.objects.exists()
    with pytest.raises(submission.WarningsNotAcknowledged):
        submission.submit(draft, requester)  # the service refuses it too (batches, the API)

    done = submit(alice, draft, acknowledge="yes", warnings=token_of(page))
    assert done.status_code == 302 and done["Location"] == draft.get_absolute_url()
    draft.refresh_from_db()
    assert draft.status == "submitted"
    (ack,) = WarningAcknowledgement.objects.filter(request=draft)
    container = draft.disk_containers.get()
    assert ack.warnings == [{"disk": container.pk, "code": "static-network"}] and ack.by == requester
    event = AuditEvent.objects.get(request=draft, action="warnings acknowledged")
    assert event.actor == requester and event.details["codes"] == ["static-network"]
    assert list(AuditEvent.objects.filter(request=draft).values_list("action", flat=True))[-2:] == [
        "warnings acknowledged",
        "submitted",
    ]
    history = alice.get(reverse("request-history", args=[draft.pk])).content.decode()
    assert "alice acknowledged the warnings of" in history and "static-network on disk 1" in history

    # The reviewer sees the warning, and that, when and by whom it was acknowledged.
    rita = make_user("rita", "reviewer", is_staff=True)
    alice.force_login(rita)
    reviewer = alice.get(reverse("review-detail", args=[draft.pk])).content.decode()
    by = re.search(r'id="acknowledged-by">(.*?)</p>', reviewer, re.S)[1]
    assert "<strong>alice</strong>" in by and ack.at.strftime("%Y-%m-%d %H:%M") in by
    listed = re.search(r'id="acknowledged-warnings">(.*?)</ul>', reviewer, re.S)[1]
    assert 'data-code="static-network"' in listed and "not acknowledged" not in listed
    assert 'data-os="debian"' in reviewer  # the disk's inspection summary beside its provenance


def test_a_stale_page_acknowledges_nothing_and_a_new_warning_asks_again(alice, requester, sandbox, images):
    draft = warned(requester, sandbox, images)
    old_page = review_page(alice, draft)
    # The image is replaced and inspected again: a second warning.
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=KEY, Body=images["static-noboot"])
    with TestCase.captureOnCommitCallbacks(execute=True):
        preflight.inspect_container(draft.disk_containers.get())
    stale = submit(alice, draft, acknowledge="yes", warnings=token_of(old_page))
    assert stale.status_code == 400
    text = unescape(stale.content.decode())
    assert "The warnings changed since this page was shown" in text and "no-boot-config" in text
    assert 'data-code="no-boot-config"' in text  # the page shown again lists the new one, box unticked
    draft.refresh_from_db()
    assert draft.status == "draft" and not WarningAcknowledgement.objects.exists()
    assert not AuditEvent.objects.filter(action="warnings acknowledged").exists()

    fresh = token_of(stale.content.decode())
    assert json.loads(fresh) == [
        [draft.disk_containers.get().pk, "no-boot-config"],
        [draft.disk_containers.get().pk, "static-network"],
    ]
    assert submit(alice, draft, acknowledge="yes", warnings=fresh).status_code == 302
    draft.refresh_from_db()
    assert draft.status == "submitted"

    # Rejected, then a second disk with its own warning: the acknowledgement no longer covers the findings.
    review.reject(draft, make_user("rita", "reviewer"), "add the data disk")
    page = review_page(alice, draft)
    assert 'id="warnings-acknowledged"' in page and "Acknowledged by alice" in page  # still covered: no box
    assert submission.submit(ImportRequest.objects.get(pk=draft.pk), requester).status == "submitted"
    review.reject(draft, make_user("rob", "reviewer"), "and the data disk?")
    draft.refresh_from_db()
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key="uploads/test/data.raw", Body=images["static"])
    alice.post(
        reverse("wizard-source", args=[draft.pk]),
        {"kind": "s3", "s3_bucket": sandbox.bucket, "s3_key": "uploads/test/data.raw"},
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        preflight.inspect_container(draft.disk_containers.get(position=1))
    page = review_page(alice, draft)
    assert BOX in page and page.count("(acknowledged)") == 2  # the first disk's two, not the new one
    assert submit(alice, draft).status_code == 400
    assert submit(alice, draft, acknowledge="yes", warnings=token_of(page)).status_code == 302
    assert ImportRequest.objects.get(pk=draft.pk).status == "submitted"
    assert AuditEvent.objects.filter(request=draft, action="warnings acknowledged").count() == 2


@pytest.mark.parametrize(
    "posted",
    [
        '[[{other},"static-network"]]',  # another disk
        '[[{pk},"static-network"],[{pk},"no-such-code"]]',  # a code that is not there
        "[]",
        "not json",
        '[[{pk},"static-network"]' + "]" * 3,
        "[" * 3000,
        '[[{pk},"\\ud800"]]',
        "x" * 70_000,
    ],
)
def test_a_tampered_acknowledgement_gets_a_message_by_the_box_and_saves_nothing(
    alice, requester, sandbox, images, posted
):
    draft = warned(requester, sandbox, images)
    before = draft.version
    pk = draft.disk_containers.get().pk
    response = submit(
        alice, draft, acknowledge="yes", warnings=posted.replace("{pk}", str(pk)).replace("{other}", str(pk + 1000))
    )
    assert response.status_code == 400
    assert re.search(r'id="acknowledge-error"[^>]*>[^<]+<', response.content.decode())
    draft.refresh_from_db()
    assert (draft.status, draft.version) == ("draft", before) and not WarningAcknowledgement.objects.exists()
    assert draft.disk_containers.get().inspection["findings"]  # the stored report is intact


def test_only_the_owner_acknowledges(client, requester, sandbox, images):
    draft = warned(requester, sandbox, images)
    client.force_login(requester)
    token = token_of(review_page(client, draft))
    for user in (make_user("bob", "requester"), make_user("rita", "reviewer", is_staff=True)):
        client.force_login(user)
        assert submit(client, draft, acknowledge="yes", warnings=token).status_code == 404
        with pytest.raises(submission.WarningsNotAcknowledged) as refused:
            submission.submit(draft, user, acknowledge=acknowledgements.parse_token(token))
        assert "Only the owner" in refused.value.stale
    draft.refresh_from_db()
    assert draft.status == "draft" and not WarningAcknowledgement.objects.exists()


def test_an_account_warning_needs_it_too(alice, requester, sandbox, images):
    """The service role trusts vmie.amazonaws.com without the external id: a warning of the account check."""
    from wizard.aws import policies

    trust = policies.trust_policy()
    del trust["Statement"][0]["Condition"]
    iam = sandbox.client("iam")
    iam.create_role(RoleName="no-condition", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName="no-condition", PolicyName="p", PolicyDocument=json.dumps(policies.role_policy([sandbox.bucket]))
    )
    draft = draft_with_image(requester, sandbox)  # an image without warnings
    ImportRequest.objects.filter(pk=draft.pk).update(role_name="no-condition")
    draft.refresh_from_db()
    page = review_page(alice, draft)
    (code,) = re.findall(r'data-code="(account-rolename-[0-9a-f]{8})"', page)
    assert "sts:Externalid" in page
    assert submit(alice, draft).status_code == 400
    assert submit(alice, draft, acknowledge="yes", warnings=token_of(page)).status_code == 302
    assert WarningAcknowledgement.objects.get(request=draft).warnings == [{"disk": None, "code": code}]


def test_the_api_answers_422_with_the_codes_to_acknowledge(requester, sandbox, images):
    from tests.test_api import Api

    draft = warned(requester, sandbox, images)
    api = Api(tokens.create(requester, "test")[1])
    read = api.get(f"/requests/{draft.pk}").json()
    assert [(f["severity"], f["code"]) for f in read["findings"]] == [("warning", "static-network")]

    refused = api.post(f"/requests/{draft.pk}/submit", raw="")  # no body, as before
    assert refused.status_code == 422, refused.content
    body = refused.json()
    assert body["warnings_to_acknowledge"] == ["static-network"] and "acknowledge_warnings" in body["message"]
    assert body["errors"][0]["code"] == "static-network" and "DHCP" in body["errors"][0]["message"]

    wrong = api.post(f"/requests/{draft.pk}/submit", {"acknowledge_warnings": ["static-network", "luks"]})
    assert wrong.status_code == 422 and "luks" in wrong.json()["message"]
    assert api.post(f"/requests/{draft.pk}/submit", {"acknowledge_warnings": []}).status_code == 422
    assert api.post(f"/requests/{draft.pk}/submit", {"acknowledge_warnings": "static-network"}).status_code == 422
    assert ImportRequest.objects.get(pk=draft.pk).status == "draft" and not WarningAcknowledgement.objects.exists()

    done = api.post(f"/requests/{draft.pk}/submit", {"acknowledge_warnings": ["static-network"]})
    assert done.status_code == 200 and done.json()["status"] == "submitted"
    assert WarningAcknowledgement.objects.get(request=draft).by == requester
    # Another requester's: 404, as before.
    other = Api(tokens.create(make_user("bob", "requester"), "t")[1])
    assert other.post(f"/requests/{draft.pk}/submit", {"acknowledge_warnings": ["static-network"]}).status_code == 404


def test_a_request_without_warnings_submits_as_before(alice, requester, sandbox):
    draft = draft_with_image(requester, sandbox)
    page = review_page(alice, draft)
    assert 'id="warnings-acknowledgement"' not in page
    assert submit(alice, draft).status_code == 302 and ImportRequest.objects.get(pk=draft.pk).status == "submitted"
    assert not WarningAcknowledgement.objects.exists()
