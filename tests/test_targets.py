"""Targets: other accounts and regions through an assumed role, in the sandbox over HTTP (moto
models accounts through AssumeRole); nothing made in one is seen from another, and the finishing
of a request runs in its target's account and region."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from tests.conftest import make_user
from tests.sandbox.conftest import DISK_IMAGE
from wizard import targets
from wizard.aws import clients, sts
from wizard.aws.policies import role_policy
from wizard.imports import finishing
from wizard.models import AuditEvent, ImportRequest, ImportTask, Target

A, B = "111122223333", "444455556666"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "vmie.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@pytest.fixture(autouse=True)
def fresh_credentials():
    sts.forget()
    yield
    sts.forget()


@pytest.fixture
def two(db, sandbox) -> tuple[Target, Target]:
    a = Target.objects.create(
        name="team-a",
        account_id=A,
        region="eu-west-1",
        bucket="images-a",
        role_arn=f"arn:aws:iam::{A}:role/ImportWizard",
        external_id="ext-a",
    )
    b = Target.objects.create(
        name="team-b",
        account_id=B,
        region="ap-southeast-2",
        bucket="images-b",
        role_arn=f"arn:aws:iam::{B}:role/ImportWizard",
        external_id="ext-b",
    )
    return a, b


def own_images(target: Target | None, region: str | None = None) -> list[str]:
    ec2 = clients.client("ec2", target=target, region=region)
    return [i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]]


def test_each_target_is_its_own_account_and_region(two):
    a, b = two
    assert clients.client("sts", target=a).get_caller_identity()["Account"] == A
    assert clients.client("sts", target=b).get_caller_identity()["Account"] == B
    assert clients.client("sts").get_caller_identity()["Account"] != A  # the default target is unchanged
    assert clients.client("ec2", target=a).meta.region_name == "eu-west-1"
    made = clients.client("ec2", target=a).register_image(Name="only-in-a")["ImageId"]
    assert own_images(a) == [made]
    assert made not in own_images(b) and made not in own_images(None)
    assert made not in own_images(a, region="ap-southeast-2")  # the same account, another region


def test_finishing_runs_in_the_targets_account_and_region(two, sandbox, requester, settings, monkeypatch):
    a, b = two
    settings.FINISH_WAIT_SECONDS = 30
    monkeypatch.setattr(finishing, "WAIT_POLL_SECONDS", 0.2)
    # Account A has its bucket, the image and its vmimport role; the import runs there.
    s3 = clients.client("s3", target=a)
    s3.create_bucket(Bucket=a.bucket, CreateBucketConfiguration={"LocationConstraint": a.region})
    s3.put_object(Bucket=a.bucket, Key="disk.vmdk", Body=DISK_IMAGE)
    iam = clients.client("iam", target=a)
    iam.create_role(RoleName="vmimport", AssumeRolePolicyDocument=json.dumps(TRUST))
    iam.put_role_policy(
        RoleName="vmimport", PolicyName="vmimport", PolicyDocument=json.dumps(role_policy([a.bucket], ["*"]))
    )
    ec2 = clients.client("ec2", target=a)
    disk = {"Format": "VMDK", "UserBucket": {"S3Bucket": a.bucket, "S3Key": "disk.vmdk"}}
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    sandbox.advance(120)  # the session's sandbox runs imports of 60 s
    (described,) = ec2.describe_import_image_tasks(ImportTaskIds=[task_id])["ImportImageTasks"]
    assert described["Status"] == "completed", described
    req = ImportRequest.objects.create(
        owner=requester,
        status=ImportRequest.Status.IMPORTING,
        target=a,
        ami_name="team-a-web",
        ami_tags=[{"Key": "team", "Value": "a"}],
        region_copies=[{"Region": "eu-central-1"}],
    )
    task = ImportTask.objects.create(
        request=req,
        import_task_id=task_id,
        status="completed",
        image_id=described["ImageId"],
        snapshot_details=described["SnapshotDetails"],
    )
    assert finishing.start(req, task)
    finishing.run(req.pk)  # django-q2 in sync mode: every step, one after the other
    req.refresh_from_db()
    assert req.status == ImportRequest.Status.COMPLETED, [(s.action, s.error) for s in req.finishing_steps.all()]
    copy = req.finishing_steps.get(action="CopyImage").image_id
    west_copy = req.finishing_steps.get(action="CopyImageToRegion").image_id
    assert own_images(a) == [copy]  # the import's own AMI deregistered; the named copy in A's region
    assert own_images(a, region="eu-central-1") == [west_copy]
    for elsewhere in (own_images(None), own_images(b), own_images(None, region="eu-central-1")):
        assert copy not in elsewhere and west_copy not in elsewhere


def test_who_may_use_a_target(two, requester):
    a, b = two
    team = Group.objects.create(name="team-a")
    a.groups.add(team)
    assert not targets.may_use(requester, a)
    requester.groups.add(team)
    assert targets.may_use(requester, a) and not targets.may_use(requester, b)
    assert targets.may_use(requester, None)  # the default target is everyone's
    assert list(targets.allowed_targets(requester)) == [a]
    assert targets.label(a) == f"team-a ({A}, eu-west-1)" and targets.label(None).startswith("default")


def test_targets_are_edited_in_the_audited_admin_without_their_external_id(db, client):
    admin_user = make_user("root", None, is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    data = {
        "name": "team-c",
        "account_id": "777788889999",
        "region": "eu-west-3",
        "bucket": "images-c",
        "role_arn": "arn:aws:iam::777788889999:role/ImportWizard",
        "external_id": "s3cr3t-external-id",
        "note": "",
    }
    response = client.post(reverse("admin:wizard_target_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="target added")
    assert "s3cr3t-external-id" not in json.dumps([event.before, event.after, event.details])
    bad = client.post(reverse("admin:wizard_target_add"), {**data, "name": "x", "role_arn": "arn:aws:iam::1:role/x"})
    assert bad.status_code == 200 and "a role ARN" in bad.content.decode()
    other = client.post(
        reverse("admin:wizard_target_add"),
        {**data, "name": "y", "role_arn": "arn:aws:iam::123456789012:role/ImportWizard"},
    )
    assert "not in the target" in other.content.decode()
    reviewer = make_user("rev", "reviewer", is_staff=True)
    client.force_login(reviewer)
    assert client.get(reverse("admin:wizard_target_changelist")).status_code == 403
