"""Integration: a request with a target is chosen in the wizard, inspected, checked, imported, polled
and finished in that target's account and region, in the sandbox over HTTP (moto's AssumeRole
makes the second account); nothing of it appears in the default account, nor the other way round.
And who may use a target: someone not in its groups cannot choose it, and someone who lost it
cannot submit, have approved or have dispatched a request in it."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from tests.flows import draft_with_image, grant
from tests.images import raw_mbr
from wizard import tasks
from wizard.aws import clients, policies, sts
from wizard.imports import dispatch, finishing, polling
from wizard.models import AuditEvent, ImportRequest, Target
from wizard.preflight import preflight
from wizard.requests import drafts, review, submission

A = "111122223333"
KEY = "images/web01.raw"


@pytest.fixture(autouse=True)
def quick(settings, monkeypatch):
    sts.forget()
    settings.FINISH_WAIT_SECONDS = 30
    monkeypatch.setattr(finishing, "WAIT_POLL_SECONDS", 0.2)
    monkeypatch.setattr(finishing, "BACKOFF_SECONDS", 0)
    monkeypatch.setattr(tasks, "kick_poller", lambda: None)  # these tests poll by hand
    yield
    sts.forget()


def make_target(name: str, account: str, region: str) -> Target:
    """A target, and in its account what VM Import needs: the bucket (with an image) in its region,
    and the vmimport service role that reads it."""
    target = Target.objects.create(
        name=name,
        account_id=account,
        region=region,
        bucket=f"images-{name}",
        role_arn=f"arn:aws:iam::{account}:role/ImportWizard",
        external_id=f"ext-{name}",
    )
    s3 = clients.client("s3", target=target)
    s3.create_bucket(Bucket=target.bucket, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_object(Bucket=target.bucket, Key=KEY, Body=raw_mbr(64 * 1024))
    iam = clients.client("iam", target=target)
    iam.create_role(RoleName="vmimport", AssumeRolePolicyDocument=json.dumps(policies.trust_policy()))
    iam.put_role_policy(
        RoleName="vmimport",
        PolicyName="vmimport",
        PolicyDocument=json.dumps(policies.role_policy([target.bucket], ["*"])),
    )
    return target


@pytest.fixture
def team_a(db, sandbox, requester) -> Target:
    """Target team-a (account A, eu-west-1), for the requester's group; its bucket's images/ granted."""
    target = make_target("team-a", A, "eu-west-1")
    group = Group.objects.create(name="uses-team-a")
    target.groups.add(group)
    requester.groups.add(group)
    grant(requester, s3_bucket=target.bucket, s3_prefix="images/")
    return target


def own_images(target: Target | None, region: str | None = None) -> set[str]:
    ec2 = clients.client("ec2", target=target, region=region)
    return {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}


def known_tasks(target: Target | None) -> set[str]:
    ec2 = clients.client("ec2", target=target)
    return {t["ImportTaskId"] for t in ec2.describe_import_image_tasks()["ImportImageTasks"]}


def step(client, draft: ImportRequest, name: str, **data):
    draft.refresh_from_db()
    return client.post(reverse("wizard-step", args=[draft.pk, name]), {"version": draft.version, **data})


def wizard_draft_in(client, user, target: Target, capture) -> ImportRequest:
    """Through the wizard's pages: a new draft, the target chosen, the target's object added."""
    client.force_login(user)
    start = client.post(reverse("wizard-start"))
    draft = ImportRequest.objects.get(pk=int(start["Location"].split("/")[-4]))
    page = client.get(reverse("wizard-step", args=[draft.pk, "upload"])).content.decode()
    assert 'id="id_target"' in page and f'value="{target.pk}"' in page
    assert step(client, draft, "upload", target=str(target.pk), nav="next").status_code == 302
    with capture(execute=True):  # the inspection, queued after the commit (django-q2 in sync mode)
        added = client.post(
            reverse("wizard-source", args=[draft.pk]), {"kind": "s3", "s3_bucket": target.bucket, "s3_key": KEY}
        )
    assert added.status_code == 302, added.content.decode()[-3000:]
    draft.refresh_from_db()
    return draft


def test_a_request_with_a_target_runs_entirely_in_its_account_and_region(
    team_a, sandbox, requester, reviewer, client, django_capture_on_commit_callbacks
):
    draft = wizard_draft_in(client, requester, team_a, django_capture_on_commit_callbacks)
    assert draft.target == team_a
    saved = AuditEvent.objects.filter(request=draft, action="draft saved").last()
    assert saved.details["fields"] == ["target"] and saved.details["target"]["to"] == f"team-a ({A}, eu-west-1)"
    # The inspection read the image through the target's role (the app's own account has no such bucket).
    (container,) = draft.disk_containers.all()
    assert container.inspection_status == "done" and container.inspection["format"] == "RAW", container.inspection
    # An image of the application's own bucket is refused for this target, next to the field.
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=KEY, Body=b"x" * 512)
    grant(requester, s3_bucket=sandbox.bucket, s3_prefix="images/")
    refused = client.post(
        reverse("wizard-source", args=[draft.pk]), {"kind": "s3", "s3_bucket": sandbox.bucket, "s3_key": KEY}
    )
    assert refused.status_code == 400 and "reads images only from its bucket images-team-a" in refused.content.decode()
    # The upload widget is not offered (uploads go to the app's bucket), and its API refuses.
    upload_page = client.get(reverse("wizard-step", args=[draft.pk, "upload"])).content.decode()
    assert 'id="upload-widget-off"' in upload_page and "data-upload-widget" not in upload_page
    # The finishing: a name, tags, a share, a copy to another region of that account.
    finish = {
        "ami_name": "team-a-web",
        "ami_tag_key": ["team"],
        "ami_tag_value": ["a"],
        "launch_user_ids": "999988887777",
        "region_copies": "eu-central-1",
    }
    assert step(client, draft, "finish", **finish).status_code == 302
    review_page = client.get(reverse("wizard-step", args=[draft.pk, "review"])).content.decode()
    assert f"team-a ({A}, eu-west-1)" in review_page
    # A request in the default target, at the same time (the other way round).
    plain = draft_with_image(requester, sandbox)
    for req in (draft, plain):
        submission.submit(req, requester)
        with django_capture_on_commit_callbacks(execute=True):  # the dispatch, in sync mode
            review.approve(req, reviewer)
    draft.refresh_from_db()
    plain.refresh_from_db()
    assert draft.status == plain.status == ImportRequest.Status.IMPORTING, [
        draft.failure_message,
        plain.failure_message,
    ]
    in_a, in_default = draft.import_task.import_task_id, plain.import_task.import_task_id
    assert known_tasks(team_a) == {in_a} and known_tasks(None) == {in_default}
    # One poll follows both, each in its own account (no batch mixes them), until both are finished.
    for _ in range(40):
        with django_capture_on_commit_callbacks(execute=True):
            polling.poll_once()
        draft.refresh_from_db()
        plain.refresh_from_db()
        if not {draft.status, plain.status} & {ImportRequest.Status.IMPORTING}:
            break
        sandbox.advance(10)
    assert draft.status == ImportRequest.Status.COMPLETED, [
        (s.action, s.state, s.error) for s in draft.finishing_steps.all()
    ]
    assert plain.status == ImportRequest.Status.COMPLETED
    named = draft.finishing_steps.get(action="CopyImage").image_id
    copy = draft.finishing_steps.get(action="CopyImageToRegion").image_id
    assert all(s.state == "done" for s in draft.finishing_steps.all())
    assert named in own_images(team_a) and copy in own_images(team_a, region="eu-central-1")
    ec2_a = clients.client("ec2", target=team_a)
    (ami,) = ec2_a.describe_images(ImageIds=[named])["Images"]
    assert ami["Name"] == "team-a-web" and {(t["Key"], t["Value"]) for t in ami["Tags"]} == {("team", "a")}
    shared = ec2_a.describe_image_attribute(ImageId=named, Attribute="launchPermission")
    assert shared["LaunchPermissions"] == [{"UserId": "999988887777"}]
    # Nothing of A's request in the default account, in either region; nothing of the default one in A.
    default_images = own_images(None) | own_images(None, region="eu-central-1")
    assert not {named, copy, draft.import_task.image_id} & default_images
    assert plain.import_task.image_id in own_images(None)
    assert plain.import_task.image_id not in own_images(team_a)
    # The request's page, its history and the audit log name the target.
    label = f"team-a ({A}, eu-west-1)"
    assert label in client.get(draft.get_absolute_url()).content.decode()
    assert label in client.get(reverse("request-history", args=[draft.pk])).content.decode()
    dispatched = AuditEvent.objects.get(request=draft, action="dispatched")
    assert dispatched.details["target"] == label
    assert AuditEvent.objects.get(request=plain, action="dispatched").details["target"].startswith("default")


def test_cancelling_and_reconciling_run_in_the_target(
    team_a, sandbox, requester, reviewer, django_capture_on_commit_callbacks
):
    from wizard.imports import cancelling, reconcile

    draft = drafts.create_draft(requester, target=team_a)
    drafts.add_container(draft, requester, s3_bucket=team_a.bucket, s3_key=KEY)
    submission.submit(draft, requester)
    with django_capture_on_commit_callbacks(execute=True):
        review.approve(draft, reviewer)
    draft.refresh_from_db()
    task_id = draft.import_task.import_task_id
    cancelling.cancel(draft, requester, "changed my mind")
    assert task_id not in known_tasks(None)
    (seen,) = clients.client("ec2", target=team_a).describe_import_image_tasks(ImportTaskIds=[task_id])[
        "ImportImageTasks"
    ]
    assert seen["Status"] in ("deleting", "deleted")
    # The reconciliation asks A (in the default account the id is unknown: it would be "lost" there).
    sandbox.advance(600)
    repairs = reconcile.reconcile()
    draft.refresh_from_db()
    assert draft.status == ImportRequest.Status.CANCELLED, (draft.status, draft.failure_message, repairs)
    assert "lost" not in json.dumps([str(r) for r in repairs])


# --- who may use a target ---------------------------------------------------------------------


def test_a_user_not_in_the_targets_group_cannot_choose_it(db, sandbox, requester, client):
    other = make_target("team-b", "444455556666", "ap-southeast-2")  # not for the requester's groups
    client.force_login(requester)
    start = client.post(reverse("wizard-start"))
    draft = ImportRequest.objects.get(pk=int(start["Location"].split("/")[-4]))
    page = client.get(reverse("wizard-step", args=[draft.pk, "upload"])).content.decode()
    assert 'id="id_target"' not in page and "team-b" not in page  # only the default: no field at all
    hostile = step(client, draft, "upload", target=str(other.pk), nav="next")
    body = hostile.content.decode()
    assert hostile.status_code == 400 and 'id="error-target"' in body
    assert "You may not use that target" in body and "444455556666" not in body  # not named to outsiders
    for junk in ("999999", "x'; DROP", "-1", "1" * 30):
        answer = step(client, draft, "upload", target=junk)
        assert answer.status_code == 400 and 'id="error-target"' in answer.content.decode()
    draft.refresh_from_db()
    assert draft.target is None
    assert not AuditEvent.objects.filter(request=draft, action="draft saved").exists()
    # Nor through an htmx autosave: the note says why, nothing is saved.
    autosave = client.post(
        reverse("wizard-step", args=[draft.pk, "upload"]),
        {"version": draft.version, "target": str(other.pk)},
        HTTP_HX_REQUEST="true",
    )
    assert autosave.status_code == 200 and "Not saved" in autosave.content.decode()
    assert ImportRequest.objects.get(pk=draft.pk).target is None
    # The dry run does not run in a target the user may not use.
    ImportRequest.objects.filter(pk=draft.pk).update(target=other)
    dry = client.post(reverse("wizard-dry-run", args=[draft.pk])).content.decode()
    assert "may not use the target" in dry


def test_a_user_who_lost_the_target_cannot_save_submit_have_approved_or_dispatched(
    team_a, sandbox, requester, reviewer, client, django_capture_on_commit_callbacks
):
    draft = wizard_draft_in(client, requester, team_a, django_capture_on_commit_callbacks)
    lose = lambda: requester.groups.remove(Group.objects.get(name="uses-team-a"))  # noqa: E731
    regain = lambda: requester.groups.add(Group.objects.get(name="uses-team-a"))  # noqa: E731
    lose()
    # At save: the draft's own target, named, with what to do.
    again = step(client, draft, "upload", target=str(team_a.pk))
    assert again.status_code == 400 and "may not use the target team-a" in again.content.decode()
    # At submit: a blocking finding on the upload step's target field; nothing asked in A.
    answer = client.post(reverse("request-submit", args=[draft.pk]))
    assert answer.status_code == 302 and answer["Location"].endswith("/edit/review/")
    draft.refresh_from_db()
    assert draft.status == ImportRequest.Status.DRAFT
    with pytest.raises(submission.SubmitRefused) as refused:
        submission.submit(draft, requester)
    assert [f.path for f in refused.value.findings][0] == "Target"
    # At approval: submitted while a member, lost before the review.
    regain()
    submission.submit(draft, requester)
    lose()
    with pytest.raises(review.ReviewError, match="may not use the target"):
        review.approve(draft, reviewer)
    client.force_login(reviewer)
    reviewer_page = client.get(reverse("review-detail", args=[draft.pk])).content.decode()
    assert "The owner, alice, may not use the target team-a" in reviewer_page
    decided = client.post(reverse("review-decide", args=[draft.pk]), {"decision": "approve"}, follow=True)
    assert "may not use the target" in decided.content.decode()
    draft.refresh_from_db()
    assert draft.status == ImportRequest.Status.SUBMITTED
    # At dispatch: approved while a member, lost before the worker took it.
    regain()
    with django_capture_on_commit_callbacks(execute=False):  # the dispatch is not run now
        review.approve(draft, reviewer)
    lose()
    assert dispatch.dispatch(draft.pk) is None
    draft.refresh_from_db()
    assert draft.status == ImportRequest.Status.FAILED and "may not use the target" in draft.failure_message
    assert AuditEvent.objects.filter(request=draft, action="failed target check").exists()
    assert known_tasks(team_a) == set() and known_tasks(None) == set()  # no ImportImage anywhere


# --- the wizard's look-ups and the pre-flight in the target --------------------------------------


def test_the_look_ups_and_the_account_checks_are_the_targets(team_a, sandbox, requester, client):
    """The encryption step lists the target's KMS keys; the pre-flight asks the target's IAM for
    the service role and its KMS key; the default account's are not looked at."""
    theirs = clients.client("kms", target=team_a).create_key(Description="key-of-team-a")["KeyMetadata"]
    ours = sandbox.client("kms").create_key(Description="key-of-the-default-account")["KeyMetadata"]
    draft = drafts.create_draft(requester, target=team_a, encrypted=True, kms_key_id=theirs["Arn"])
    drafts.add_container(draft, requester, s3_bucket=team_a.bucket, s3_key=KEY)
    client.force_login(requester)
    page = client.get(reverse("wizard-step", args=[draft.pk, "encryption"])).content.decode()
    assert "key-of-team-a" in page and "key-of-the-default-account" not in page
    assert not [f for f in preflight.all_findings(draft, check_aws=True) if f.severity == "error"]
    # The default account's key does not exist in A; A's role check is A's own.
    ImportRequest.objects.filter(pk=draft.pk).update(kms_key_id=ours["KeyId"], role_name="only-in-default")
    sandbox.client("iam").create_role(
        RoleName="only-in-default", AssumeRolePolicyDocument=json.dumps(policies.trust_policy())
    )
    draft.refresh_from_db()
    found = {f.path: f.message for f in preflight.all_findings(draft, check_aws=True) if f.severity == "error"}
    assert "there is no KMS key" in found["KmsKeyId"]
    assert "there is no IAM role only-in-default in this account" in found["RoleName"]


def test_the_queue_counts_places_per_account_and_region(db, sandbox, requester, settings):
    """AWS's quota of concurrent imports is per account and Region: a full default account does not
    hold up a target's request, and a place in the queue counts the same account's requests only."""
    from django.utils import timezone

    from wizard.imports import dispatch_queue

    settings.MAX_ACTIVE_IMPORTS = 1
    a = Target.objects.create(name="a", account_id=A, region="eu-west-1", bucket="b", role_arn="arn:aws:iam::1:role/x")
    also_a = Target.objects.create(
        name="a-too", account_id=A, region="eu-west-1", bucket="c", role_arn="arn:aws:iam::1:role/y"
    )
    approved = ImportRequest.Status.APPROVED

    def make(target):
        return ImportRequest.objects.create(owner=requester, status=approved, target=target, reviewed_at=timezone.now())

    first, second, in_a, in_a_too = make(None), make(None), make(a), make(also_a)
    assert dispatch_queue.positions() == {first.pk: 0, second.pk: 1, in_a.pk: 0, in_a_too.pk: 1}
    assert dispatch_queue.kick() == [first.pk, in_a.pk]  # one place each: the default's, A's in eu-west-1
    assert dispatch_queue.positions() == {second.pk: 0, in_a_too.pk: 0}
    assert dispatch_queue.kick() == []  # both places taken (the two targets share A's)


@pytest.mark.slow  # botocore retries the throttled calls (standard mode) before the poll backs off
def test_an_account_that_cannot_be_asked_holds_up_no_other(
    team_a, sandbox, requester, reviewer, django_capture_on_commit_callbacks
):
    """One poll, two accounts: the default account throttled while A's task is followed to the end;
    then A's role unusable while the default's is followed: A's task says why it cannot be
    followed, and is followed again once the role is mended."""

    def importing(target=None, key="uploads/test/disk.raw"):
        if target is None:
            req = draft_with_image(requester, sandbox, key=key)
        else:
            req = drafts.create_draft(requester, target=target)
            drafts.add_container(req, requester, s3_bucket=target.bucket, s3_key=KEY)
        submission.submit(req, requester)
        with django_capture_on_commit_callbacks(execute=True):
            review.approve(req, reviewer)
        req.refresh_from_db()
        return req

    def poll():
        with django_capture_on_commit_callbacks(execute=True):
            polling.poll_once()

    plain, in_a = importing(), importing(team_a)
    sandbox.faults(throttle={"actions": ["DescribeImportImageTasks"], "task_ids": [plain.import_task.import_task_id]})
    sandbox.advance(120)
    with pytest.raises(polling.PollBackoff):
        poll()  # the default account throttled: backed off, but only once A was polled
    in_a.refresh_from_db()
    plain.refresh_from_db()
    assert in_a.status == ImportRequest.Status.COMPLETED and plain.status == ImportRequest.Status.IMPORTING
    sandbox.faults(throttle=None)
    # A's role unusable (a misconfigured target): its task gets attention that says so; nothing is lost.
    again = importing(team_a)
    good_arn = team_a.role_arn
    Target.objects.filter(pk=team_a.pk).update(role_arn="arn:bad")
    sandbox.advance(120)
    poll()
    plain.refresh_from_db()
    task = again.import_task
    task.refresh_from_db()
    assert plain.status == ImportRequest.Status.COMPLETED  # the default account was followed
    assert "the target team-a" in task.attention and task.status == "active"
    assert AuditEvent.objects.filter(request=again, action="needs attention").count() == 1
    Target.objects.filter(pk=team_a.pk).update(role_arn=good_arn)
    poll()
    again.refresh_from_db()
    task.refresh_from_db()
    assert task.attention == "" and again.status == ImportRequest.Status.COMPLETED, again.failure_message
