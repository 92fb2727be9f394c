"""Who may import what (wizard.uploads.sources): a request imports only what its owner may read.

Through real HTTP to the sandbox wherever S3 or EC2 is touched. `aws_calls` records every
request the application's boto3 clients send (botocore's before-send event), so a test can
show that nothing was read from a location the user may not use.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import sys
from urllib.parse import unquote

import pytest
import requests
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import TestCase
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from tests.conftest import make_user
from tests.flows import grant
from tests.images import raw_mbr
from wizard.imports import dispatch
from wizard.models import AuditEvent, DiskContainer, ImportRequest, ImportTask, SourceGrant, Upload
from wizard.preflight import preflight
from wizard.requests import drafts, importspec, submission
from wizard.uploads import sources, uploads

REFUSED = "You may not import from this location"


# --- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def bob(db):
    return make_user("bob", "requester")


@pytest.fixture
def alice(client, requester):
    client.force_login(requester)
    return client


class Calls(list):
    """What reached AWS from now on: the requests this process's boto3 clients send (botocore's
    before-send event), and the sandbox's own log of what it served, which also sees the reads
    of the inspection's child process. `clear()` starts both afresh."""

    def __init__(self, sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.log_start = len(sandbox.log())

    def clear(self) -> None:
        super().clear()
        self.log_start = len(self.sandbox.log())

    def served(self) -> str:
        return self.sandbox.log()[self.log_start :]


@pytest.fixture
def aws_calls(sandbox, settings):
    """(event, method, url) of every request the application's boto3 clients send from now on."""
    from wizard.aws.clients import _session, forget

    seen = Calls(sandbox)

    def record(request, event_name, **kwargs):
        seen.append((event_name, request.method, unquote(request.url)))

    events = _session(settings.AWS_SANDBOX, settings.AWS_REGION).events
    events.register("before-send", record)
    forget()  # clients made from now on carry the handler
    yield seen
    events.unregister("before-send", record)
    forget()


def reads_of(calls: Calls, key: str) -> list[str]:
    """Every request for `key`, sent from here or served by the sandbox (GET, HEAD)."""
    sent = [f"{c[1]} {c[2]}" for c in calls if c[0].startswith("before-send.s3.") and key in c[2]]
    served = [
        line for line in calls.served().splitlines() if key in unquote(line) and ("GET" in line or "HEAD" in line)
    ]
    return sent + served


def real_upload(user, body: bytes | None = None, name: str = "disk.raw") -> Upload:
    """An image uploaded as the browser does: start, PUT to the presigned URL, complete."""
    body = raw_mbr(64 * 1024) if body is None else body
    draft = drafts.create_draft(user, description=f"{user.get_username()}'s upload")
    up = uploads.start(user, draft, file_name=name, size=len(body))
    crc = uploads.crc32_b64(body)
    url, headers = uploads.sign_parts(up, [{"PartNumber": 1, "ChecksumCRC32": crc}])[1]
    answer = requests.put(url, data=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    uploads.complete(up, user, [{"PartNumber": 1, "ETag": answer.headers["ETag"], "ChecksumCRC32": crc}])
    up.refresh_from_db()
    assert up.status == Upload.Status.COMPLETED
    return up


def add(client, draft, **data):
    return client.post(reverse("wizard-source", args=[draft.pk]), data)


def snapshot(sandbox, tags: dict[str, str] | None = None) -> str:
    ec2 = sandbox.client("ec2")
    volume = ec2.create_volume(AvailabilityZone=f"{sandbox.region}a", Size=8)["VolumeId"]
    specs = [{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    return ec2.create_snapshot(VolumeId=volume, TagSpecifications=specs)["SnapshotId"]


def made_by_import(owner, snapshot_id: str) -> ImportTask:
    """An import of `owner`'s that made `snapshot_id` (as the poller stores it)."""
    done = ImportRequest.objects.create(owner=owner, status=ImportRequest.Status.COMPLETED)
    return ImportTask.objects.create(
        request=done, import_task_id=f"import-ami-{done.pk:017x}", snapshot_details=[{"SnapshotId": snapshot_id}]
    )


# --- another user's upload, by every path -----------------------------------------------------------


def test_another_users_upload_as_an_s3_source_is_refused_unread(alice, requester, bob, sandbox, aws_calls):
    theirs = real_upload(bob)
    missing = f"uploads/{bob.pk}/{'0' * 32}.raw"
    draft = drafts.create_draft(requester)
    aws_calls.clear()

    answers = {}
    for key in (theirs.key, missing):
        response = add(alice, draft, kind="s3", s3_bucket=theirs.bucket, s3_key=key)
        assert response.status_code == 400
        page = response.content.decode()
        [message] = re.findall(r'<p class="error" id="error-s3_key">([^<]*)</p>', page)
        assert message.startswith(REFUSED) and "ask an administrator" in message
        assert f'value="{key}"' in page  # what was typed is kept
        assert "cannot be read" not in page and "403 Forbidden" not in page  # (a bare "403" may be in a port)
        answers[key] = message.replace(key, "KEY")
    assert answers[theirs.key] == answers[missing]  # the same whether or not the object exists
    assert not draft.disk_containers.exists()
    assert not reads_of(aws_calls, theirs.key) and not reads_of(aws_calls, missing)
    assert not AuditEvent.objects.filter(request=draft, action="disk added").exists()


def test_another_users_upload_as_an_s3_url_is_refused_unread(alice, requester, bob, sandbox, aws_calls):
    theirs = real_upload(bob)
    draft = drafts.create_draft(requester)
    aws_calls.clear()
    response = add(alice, draft, kind="url", url=f"s3://{theirs.bucket}/{theirs.key}")
    assert response.status_code == 400
    assert re.search(rf'<p class="error" id="error-url">{REFUSED}: s3://', response.content.decode())
    assert not draft.disk_containers.exists() and not reads_of(aws_calls, theirs.key)


def test_a_superuser_gets_no_bypass(client, sandbox, bob, aws_calls):
    root = make_user("root", None, is_staff=True, is_superuser=True)
    theirs = real_upload(bob)
    draft = drafts.create_draft(root)
    client.force_login(root)
    assert add(client, draft, kind="s3", s3_bucket=theirs.bucket, s3_key=theirs.key).status_code == 400
    assert not draft.disk_containers.exists()


def cli_document(bucket: str, key: str) -> str:
    return json.dumps(
        {
            "Description": "theirs",
            "DiskContainers": [{"Format": "RAW", "UserBucket": {"S3Bucket": bucket, "S3Key": key}}],
        }
    )


def test_a_cli_document_naming_another_users_upload_saves_nothing(alice, requester, bob, sandbox, aws_calls):
    theirs = real_upload(bob)
    aws_calls.clear()
    page = alice.post(
        reverse("cli-import"), {"document": cli_document(theirs.bucket, theirs.key), "format": "json"}
    ).content.decode()
    assert f"<code>DiskContainers[0].UserBucket</code>: {REFUSED}: s3://{theirs.bucket}/{theirs.key}" in page
    assert "nothing was saved" in page
    assert not ImportRequest.objects.filter(owner=requester).exists()
    assert not reads_of(aws_calls, theirs.key)


def test_the_management_command_refuses_another_users_upload(tmp_path, requester, bob, sandbox):
    theirs = real_upload(bob)
    path = tmp_path / "input.json"
    path.write_text(cli_document(theirs.bucket, theirs.key))
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was saved"):
        call_command("import_image", "--cli-input-json", str(path), "--user", "alice", stderr=err)
    assert f"DiskContainers[0].UserBucket: {REFUSED}: s3://{theirs.bucket}/{theirs.key}" in err.getvalue()
    assert not ImportRequest.objects.filter(owner=requester).exists()


def test_the_management_command_reads_standard_input(requester, monkeypatch, capsys):
    grant(requester, s3_bucket="bucket-one", s3_prefix="disks/")
    monkeypatch.setattr(sys, "stdin", io.StringIO(cli_document("bucket-one", "disks/web01.raw")))
    call_command("import_image", "--cli-input-json", "-", "--user", "alice")
    assert "draft #" in capsys.readouterr().out
    assert ImportRequest.objects.get(owner=requester).description == "theirs"


def test_draft_from_spec_and_add_container_refuse_without_saving(requester, bob, sandbox):
    theirs = real_upload(bob)
    spec = importspec.ImportSpec(
        disk_containers=[
            importspec.DiskContainer(format="RAW", url="https://example.com/disk.raw"),
            importspec.DiskContainer(format="RAW", snapshot_id="snap-0123456789abcdef0"),
        ]
    )
    with pytest.raises(drafts.SourceRefused) as refused:
        drafts.draft_from_spec(requester, spec, source="test")
    assert [f.path for f in refused.value.findings] == ["DiskContainers[0].Url", "DiskContainers[1].SnapshotId"]
    assert not ImportRequest.objects.filter(owner=requester).exists()
    draft = drafts.create_draft(requester)
    with pytest.raises(drafts.SourceRefused, match=REFUSED):
        drafts.add_container(draft, requester, s3_bucket=theirs.bucket, s3_key=theirs.key)
    assert not draft.disk_containers.exists()


# --- what a user may import ---------------------------------------------------------------------


def test_an_own_upload_is_allowed_as_an_s3_source_and_as_an_s3_url(alice, requester, sandbox, aws_calls):
    mine = real_upload(requester)
    draft = drafts.create_draft(requester)
    with TestCase.captureOnCommitCallbacks(execute=True):  # the inspections queued
        assert add(alice, draft, kind="s3", s3_bucket=mine.bucket, s3_key=mine.key).status_code == 302
        assert add(alice, draft, kind="url", url=f"s3://{mine.bucket}/{mine.key}").status_code == 302
    first, second = draft.disk_containers.all()
    assert first.inspection["ok"] and second.inspection["ok"]  # read, as it may be
    assert reads_of(aws_calls, mine.key)
    assert sources.provenance(first).upload == mine


def test_an_upload_still_in_progress_or_aborted_does_not_count(requester, sandbox):
    draft = drafts.create_draft(requester)
    up = uploads.start(requester, draft, file_name="disk.raw", size=1024)
    assert sources.refusal(requester, s3_bucket=up.bucket, s3_key=up.key).startswith(REFUSED)
    uploads.cancel(up, requester)
    assert sources.refusal(requester, s3_bucket=up.bucket, s3_key=up.key).startswith(REFUSED)


def test_a_granted_prefix_is_allowed_and_its_sibling_refused(requester, db):
    grant(requester, s3_bucket="team-images", s3_prefix="images/team-a/", note="team A's golden images")
    allowed = dict(s3_bucket="team-images", s3_key="images/team-a/web01.vmdk")
    assert sources.refusal(requester, **allowed) == ""
    assert sources.refusal(requester, url="s3://team-images/images/team-a/web01.vmdk") == ""
    for bucket, key in [
        ("team-images", "images/team-b/web01.vmdk"),
        ("team-images", "images/team-ab/web01.vmdk"),
        ("team-images", "images/web01.vmdk"),
        ("other-images", "images/team-a/web01.vmdk"),
    ]:
        assert sources.refusal(requester, s3_bucket=bucket, s3_key=key).startswith(REFUSED), key


def test_a_whole_bucket_grant_covers_every_plain_key(requester, db):
    grant(requester, s3_bucket="team-images")
    assert sources.refusal(requester, s3_bucket="team-images", s3_key="any/where/disk.raw") == ""
    assert sources.refusal(requester, s3_bucket="team-images-2", s3_key="disk.raw").startswith(REFUSED)


@pytest.mark.parametrize(
    "key",
    [
        "images/team-a/../team-b/web01.vmdk",
        "images/team-a/./../team-b/web01.vmdk",
        "images/team-a/%2e%2e/team-b/web01.vmdk",
        "images/team-a/%2E%2E%2Fteam-b/web01.vmdk",
        "images/team-a/..%2fteam-b/web01.vmdk",
        "images/team-a/..\\team-b\\web01.vmdk",
        "images/team-a//../team-b/web01.vmdk",
        "images/team-a/\x00/../../team-b/web01.vmdk",
        "images/team-a/..",
    ],
)
def test_prefix_bypass_attempts_are_refused(requester, db, key):
    grant(requester, s3_bucket="team-images", s3_prefix="images/team-a/")
    assert sources.refusal(requester, s3_bucket="team-images", s3_key=key).startswith(REFUSED)
    assert sources.refusal(requester, url=f"s3://team-images/{key}").startswith(REFUSED)


def test_a_whole_bucket_grant_cannot_be_left_through_dot_segments(requester, db):
    grant(requester, s3_bucket="team-images")
    assert sources.refusal(requester, s3_bucket="team-images", s3_key="../other-bucket/disk.raw").startswith(REFUSED)


@pytest.mark.parametrize(
    "url,allowed",
    [
        ("https://images.example.com/disk.raw", True),
        ("https://IMAGES.Example.com/disk.raw", True),
        ("https://images.example.com:443/disk.raw?X-Amz-Signature=abc", True),
        ("https://images.example.com:8443/disk.raw", False),
        ("https://user@images.example.com/disk.raw", False),
        ("https://images.example.com@evil.example/disk.raw", False),
        ("https://images.example.com\\@evil.example/disk.raw", False),
        ("https://images.example.com.evil.example/disk.raw", False),
        ("https://evil.example/disk.raw?host=images.example.com", False),
        ("http://images.example.com/disk.raw", False),
        ("https://images.example.com:abc/disk.raw", False),
    ],
)
def test_https_urls_need_a_granted_host(requester, db, url, allowed):
    grant(requester, "url", host="images.example.com")
    assert (sources.refusal(requester, url=url) == "") is allowed


def test_a_presigned_url_of_the_upload_bucket_needs_a_host_grant(requester, sandbox):
    mine = real_upload(requester)
    from wizard.aws.clients import client

    presigned = client("s3").generate_presigned_url("get_object", Params={"Bucket": mine.bucket, "Key": mine.key})
    assert sources.refusal(requester, url=presigned).startswith(REFUSED)


def test_a_grant_to_another_group_does_not_count(requester, bob, db):
    grant(bob, s3_bucket="team-images")
    grant(bob, "url", host="images.example.com")
    assert sources.refusal(requester, s3_bucket="team-images", s3_key="disk.raw").startswith(REFUSED)
    assert sources.refusal(requester, url="https://images.example.com/disk.raw").startswith(REFUSED)


# --- snapshots --------------------------------------------------------------------------------------


def test_a_snapshot_of_an_own_import_is_allowed_and_anothers_refused(alice, requester, bob, sandbox):
    mine, theirs = snapshot(sandbox), snapshot(sandbox)
    made_by_import(requester, mine)
    made_by_import(bob, theirs)
    draft = drafts.create_draft(requester)
    assert add(alice, draft, kind="snapshot", snapshot_id=mine).status_code == 302
    response = add(alice, draft, kind="snapshot", snapshot_id=theirs)
    assert response.status_code == 400
    page = response.content.decode()
    assert re.search(rf'<p class="error" id="error-snapshot_id">{REFUSED}: snapshot {theirs}', page)
    assert f'value="{theirs}"' in page
    assert [c.snapshot_id for c in draft.disk_containers.all()] == [mine]


def test_a_snapshot_with_a_granted_tag_is_allowed_exactly(alice, requester, bob, sandbox):
    golden = snapshot(sandbox, {"golden": "yes"})
    other = snapshot(sandbox, {"golden": "no"})
    grant(requester, SourceGrant.Kind.SNAPSHOT_TAG, tag_key="golden", tag_value="yes")
    grant(bob, SourceGrant.Kind.SNAPSHOT_TAG, tag_key="golden", tag_value="*")  # no wildcards
    draft = drafts.create_draft(requester)
    assert add(alice, draft, kind="snapshot", snapshot_id=golden).status_code == 302
    assert add(alice, draft, kind="snapshot", snapshot_id=other).status_code == 400
    assert sources.refusal(bob, snapshot_id=golden).startswith(REFUSED)
    assert sources.refusal(requester, snapshot_id="snap-0123456789abcdef0").startswith(REFUSED)  # none such


def test_the_snapshot_picker_lists_only_permitted_snapshots(alice, requester, bob, sandbox):
    mine, theirs, golden, plain = (
        snapshot(sandbox),
        snapshot(sandbox),
        snapshot(sandbox, {"golden": "yes"}),
        snapshot(sandbox),
    )
    made_by_import(requester, mine)
    made_by_import(bob, theirs)
    grant(requester, SourceGrant.Kind.SNAPSHOT_TAG, tag_key="golden", tag_value="yes")
    draft = drafts.create_draft(requester)
    page = alice.get(reverse("wizard-step", args=[draft.pk, "upload"])).content.decode()
    listed = re.findall(r'<option value="(snap-[0-9a-f]+)"', page)
    assert sorted(listed) == sorted([mine, golden])
    assert theirs not in page and plain not in page
    assert [s["SnapshotId"] for s in sources.permitted_snapshots(bob)] == [theirs]


def test_the_picker_asks_ec2_once_within_the_seconds_kept_and_adding_asks_afresh(
    alice, requester, sandbox, aws_calls, settings
):
    settings.AWS_ANSWER_SECONDS = 30
    golden = snapshot(sandbox, {"golden": "yes"})
    grant(requester, SourceGrant.Kind.SNAPSHOT_TAG, tag_key="golden", tag_value="yes")
    draft = drafts.create_draft(requester)
    aws_calls.clear()

    def described() -> int:
        return sum(1 for c in aws_calls if c[0] == "before-send.ec2.DescribeSnapshots")

    step = reverse("wizard-step", args=[draft.pk, "upload"])
    for _ in range(3):  # the page after the draft starts, after a disk is added, the step again
        assert f'<option value="{golden}"' in alice.get(step).content.decode()
    assert described() == 1
    # The tag goes: the picker may show it until the answer expires, but adding it asks EC2 now.
    sandbox.client("ec2").delete_tags(Resources=[golden], Tags=[{"Key": "golden"}])
    assert add(alice, draft, kind="snapshot", snapshot_id=golden).status_code == 400
    assert described() == 2 and not draft.disk_containers.exists()
    # Another question (a snapshot an import of theirs made) is asked, not answered from the old one.
    mine = snapshot(sandbox)
    made_by_import(requester, mine)
    assert f'<option value="{mine}"' in alice.get(step).content.decode()
    assert described() == 4  # one DescribeSnapshots per filter: the ids, the tag


def test_a_user_with_nothing_granted_sees_no_snapshot_and_asks_aws_nothing(requester, sandbox, aws_calls):
    snapshot(sandbox)
    aws_calls.clear()
    assert sources.permitted_snapshots(requester) == []
    assert not aws_calls


# --- duplicate -------------------------------------------------------------------------------------


def test_duplicate_of_another_users_request_drops_their_upload(client, requester, reviewer, sandbox):
    theirs = real_upload(requester)
    grant(requester, s3_bucket="team-images")
    grant(reviewer, s3_bucket="team-images")
    original = theirs.request
    drafts.add_container(original, requester, s3_bucket="team-images", s3_key="shared/data.raw")
    client.force_login(reviewer)
    response = client.post(reverse("request-duplicate", args=[original.pk]), follow=True)
    copy = ImportRequest.objects.filter(owner=reviewer).get()
    assert [c.source_label for c in copy.disk_containers.all()] == ["s3://team-images/shared/data.raw"]
    kept = copy.disk_containers.get()
    assert (kept.upload, kept.file_name, kept.size_bytes) == (None, "", None)
    assert copy.upload_start is None and copy.upload_size is None
    page = response.content.decode()
    assert f"DiskContainers[0] (s3://{theirs.bucket}/{theirs.key}) was not copied: {REFUSED}" in page
    event = AuditEvent.objects.get(request=copy, action="draft created")
    assert event.details["not_copied"] == [f"s3://{theirs.bucket}/{theirs.key}"]


def test_duplicate_of_an_own_request_keeps_the_upload(alice, requester, sandbox):
    mine = real_upload(requester)
    alice.post(reverse("request-duplicate", args=[mine.request.pk]))
    copy = ImportRequest.objects.filter(owner=requester).exclude(pk=mine.request.pk).get()
    kept = copy.disk_containers.get()
    assert (kept.upload, kept.file_name, kept.size_bytes) == (mine, "disk.raw", mine.size)
    assert copy.upload_start == mine.created_at


# --- grants revoked after a disk was added ---------------------------------------------------------


@pytest.fixture
def granted_draft(requester, sandbox):
    given = grant(requester, s3_bucket=sandbox.bucket, s3_prefix="team/")
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key="team/disk.raw", Body=raw_mbr(64 * 1024))
    draft = drafts.create_draft(requester, description="granted")
    with TestCase.captureOnCommitCallbacks(execute=True):
        preflight.inspect_container(
            drafts.add_container(draft, requester, s3_bucket=sandbox.bucket, s3_key="team/disk.raw")
        )
    assert preflight.blocking(preflight.all_findings(draft, check_aws=True)) == []
    return draft, given


def test_a_revoked_grant_blocks_submission(granted_draft, requester):
    draft, given = granted_draft
    given.delete()
    with pytest.raises(submission.SubmitRefused, match=REFUSED) as refused:
        submission.submit(draft, requester)
    [finding] = refused.value.findings
    assert (finding.step, finding.field, finding.path) == ("upload", "disk-0", "DiskContainers[0].UserBucket")
    draft.refresh_from_db()
    assert draft.status == ImportRequest.Status.DRAFT


def test_a_revoked_grant_fails_the_dispatch_without_calling_importimage(granted_draft, requester, sandbox, aws_calls):
    draft, given = granted_draft
    submission.submit(draft, requester)
    ImportRequest.objects.filter(pk=draft.pk).update(status=ImportRequest.Status.APPROVED)
    given.groups.clear()
    aws_calls.clear()
    assert dispatch.dispatch(draft.pk) is None
    draft.refresh_from_db()
    assert draft.status == ImportRequest.Status.FAILED
    assert draft.failure_message.startswith(f"DiskContainers[0].UserBucket: {REFUSED}")
    event = AuditEvent.objects.get(request=draft, action="failed source check")
    assert event.details["message"] == draft.failure_message
    assert not [c for c in aws_calls if c[0] == "before-send.ec2.ImportImage"]
    assert not sandbox.client("ec2").describe_import_image_tasks()["ImportImageTasks"]


def test_the_pre_flight_stores_a_refusal_and_reads_nothing(requester, bob, sandbox, aws_calls):
    theirs = real_upload(bob)
    draft = drafts.create_draft(requester)
    container = DiskContainer.objects.create(request=draft, s3_bucket=theirs.bucket, s3_key=theirs.key)
    aws_calls.clear()
    report = preflight.inspect_container(container)
    assert report["findings"][0]["code"] == "not-permitted" and report["format"] == "UNKNOWN"
    container.refresh_from_db()
    assert container.inspection == report and container.inspection_status == "done"
    assert not reads_of(aws_calls, theirs.key)
    messages = [f.message for f in preflight.all_findings(draft)]
    assert len([m for m in messages if m.startswith(REFUSED)]) == 1  # once, not again from the stored report


# --- the review page ----------------------------------------------------------------------------


def test_the_review_page_shows_where_each_disk_comes_from(
    client, requester, bob, reviewer, sandbox, monkeypatch, django_capture_on_commit_callbacks
):
    mine = real_upload(requester)
    theirs = real_upload(bob)
    req = mine.request
    grant(requester, s3_bucket="team-images", s3_prefix="images/", note="team A's golden images")
    drafts.add_container(req, requester, s3_bucket="team-images", s3_key="images/web01.raw")
    # A disk added before the rule (or by hand): the review page must flag it.
    DiskContainer.objects.create(request=req, position=2, s3_bucket=theirs.bucket, s3_key=theirs.key, format="RAW")
    ImportRequest.objects.filter(pk=req.pk).update(status=ImportRequest.Status.SUBMITTED)
    client.force_login(reviewer)
    page = client.get(reverse("review-detail", args=[req.pk])).content.decode()

    provenance = page[page.index('id="provenance"') :]
    first = provenance[provenance.index('id="provenance-0"') : provenance.index('id="provenance-1"')]
    assert "uploaded here by <strong>alice</strong>" in first
    assert mine.checksum_crc32 and f"CRC32 <code>{mine.checksum_crc32}</code>" in first
    assert f"({mine.size} bytes)" in first and mine.completed_at.strftime("%Y-%m-%d") in first
    second = provenance[provenance.index('id="provenance-1"') : provenance.index('id="provenance-2"')]
    assert "granted location <code>s3://team-images/images/</code>" in second and "golden images" in second
    third = provenance[provenance.index('id="provenance-2"') :]
    assert 'class="error"' in third and "not permitted for the owner, alice" in third
    assert f"<code>DiskContainers[2].UserBucket</code>: {REFUSED}" in page  # a blocking finding too

    # Approving it is refused by the service, with the reason; nothing is dispatched.
    monkeypatch.setattr("wizard.tasks.kick_poller", lambda: None)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(reverse("review-decide", args=[req.pk]), {"decision": "approve"}, follow=True)
    assert "the owner may not import every source" in answer.content.decode()
    req.refresh_from_db()
    assert req.status == ImportRequest.Status.SUBMITTED and req.reviewed_by is None
    assert not ImportTask.objects.filter(request=req).exists()


# --- the source forms' own errors -------------------------------------------------------------------


def test_a_source_form_error_is_shown_next_to_its_field(alice, requester, sandbox):
    draft = drafts.create_draft(requester)
    response = add(alice, draft, kind="s3", s3_bucket="bucket-one", s3_key="")
    assert response.status_code == 400
    assert re.search(r'<p class="error" id="error-s3_key">This field is required', response.content.decode())
    assert 'value="bucket-one"' in response.content.decode()


@pytest.mark.parametrize("container", ["abc", "", "1.5", "²", "9" * 40])
def test_removing_a_disk_by_a_bad_id_is_a_400_with_a_message(alice, requester, sandbox, container):
    draft = drafts.create_draft(requester)
    response = add(alice, draft, kind="remove", container=container)
    assert response.status_code == 400
    assert "Choose one of this draft" in response.content.decode()


# --- properties of the rule --------------------------------------------------------------------------

SEGMENTS = st.sampled_from(["a", "b", "team-a", "team-b", "disk.raw", ".", "..", "%2e%2e", "%2F", "", "x\\y", ".%2e"])
KEYS = st.lists(SEGMENTS, min_size=1, max_size=5).map("/".join)
PLAIN_PREFIXES = st.lists(st.sampled_from(["a", "b", "team-a", "images"]), max_size=3).map(
    lambda parts: "/".join(parts) + "/" if parts else ""
)
BUCKETS = st.sampled_from(["bucket-one", "bucket-two"])


def _variants(key: str) -> list[str]:
    """How some client, proxy or service might read a key: decoded, with backslashes as
    slashes, and its dot segments resolved."""
    out = []
    for decoded in (key, unquote(key), unquote(unquote(key))):
        for slashed in (decoded, decoded.replace("\\", "/")):
            out.append(posixpath.normpath("/" + slashed))
    return out


@given(bucket=BUCKETS, key=KEYS, grants=st.lists(st.tuples(BUCKETS, PLAIN_PREFIXES), max_size=3))
def test_no_reading_of_a_key_a_grant_covers_escapes_its_prefix(bucket, key, grants):
    made = [SourceGrant(kind="s3", s3_bucket=b, s3_prefix=p) for b, p in grants]
    covering = sources.covering_grant(made, bucket, key)
    if covering is not None:
        assert covering.s3_bucket == bucket and key.startswith(covering.s3_prefix)
        for variant in _variants(key):
            assert (variant + "/").startswith("/" + covering.s3_prefix), (key, variant)


def _plain(key: str) -> bool:
    """A key a grant may cover: an object's (not empty), without encodings, dot segments or empty folders."""
    segments = re.split(r"[/\\]", unquote(key))
    if key == "" or unquote(key) != key or "\\" in key:
        return False
    return not ({".", ".."} & set(segments)) and "" not in segments[:-1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bucket=BUCKETS,
    key=KEYS,
    as_url=st.booleans(),
    grants=st.lists(st.tuples(BUCKETS, PLAIN_PREFIXES), max_size=3),
    uploaded=st.lists(st.tuples(st.sampled_from(["alice", "bob"]), BUCKETS, KEYS, st.booleans()), max_size=3),
)
@example(bucket="bucket-one", key="", as_url=False, grants=[("bucket-one", "")], uploaded=[])  # no object: refused
def test_allowed_iff_an_own_upload_or_a_grants_prefix_covers_it(requester, bob, bucket, key, as_url, grants, uploaded):
    users = {"alice": requester, "bob": bob}
    with transaction.atomic():
        for i, (owner, b, k, completed) in enumerate(uploaded):
            Upload.objects.create(
                owner=users[owner],
                bucket=b,
                key=k if not Upload.objects.filter(key=k).exists() else f"{k}#{i}",
                status=Upload.Status.COMPLETED if completed else Upload.Status.UPLOADING,
                file_name="disk.raw",
                size=1,
            )
        for b, p in grants:
            grant(requester, s3_bucket=b, s3_prefix=p)
        owned = set(Upload.objects.filter(owner=requester, status=Upload.Status.COMPLETED).values_list("bucket", "key"))
        expected = (bucket, key) in owned or (_plain(key) and any(b == bucket and key.startswith(p) for b, p in grants))
        source = {"url": f"s3://{bucket}/{key}"} if as_url else {"s3_bucket": bucket, "s3_key": key}
        assert (sources.refusal(requester, **source) == "") is expected, (source, grants, uploaded)
        transaction.set_rollback(True)


URLS = st.builds(
    lambda scheme, user, host, port, rest: f"{scheme}{user}{host}{port}{rest}",
    st.sampled_from(["https://", "http://", "HTTPS://", "s3://", "https:/"]),
    st.sampled_from(["", "user@", "granted.example@", "a:b@", "granted.example\\@"]),
    st.sampled_from(["granted.example", "GRANTED.example", "granted.example.evil", "evil", "evil\\.granted.example"]),
    st.sampled_from(["", ":443", ":8443", ":", ":abc", ":0443"]),
    st.sampled_from(["", "/", "/disk.raw", "?h=granted.example", "#@granted.example", "/@evil", " /x", "\t"]),
)


@given(url=URLS)
def test_a_url_is_allowed_only_when_every_parser_sees_the_granted_host(url):
    granted = [SourceGrant(kind="url", host="granted.example")]
    if sources.host_grant(granted, url) is not None:
        parsed = parse_url(url)
        assert parsed.scheme == "https" and parsed.auth is None and parsed.port in (None, 443)
        assert parsed.host.lower() == "granted.example"
        assert requests.Request("GET", url).prepare().url.startswith("https://granted.example")
