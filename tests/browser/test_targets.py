"""A request into a second account and region, in a real browser: the administrator's target (an
account, a region, a bucket, a role assumed with STS), chosen on the wizard's first step; the
image taken from that target's bucket; imported, finished (a name, tags, a share, a copy to
another region) in that account through the assumed role; every finishing step shown done."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import boto3
import pytest
from playwright.sync_api import expect

from tests.browser.pages import log_in
from tests.images import raw_mbr
from wizard.aws import policies

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ACCOUNT, REGION, COPY_REGION = "111122223333", "eu-west-1", "eu-central-1"
BUCKET, KEY = "images-team-a", "images/web01.raw"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ImportWizard"
SHARE = "222233334444"


def in_account(stack, service: str, region: str = REGION):
    """A client in the target's account of the stack's sandbox, through sts:AssumeRole (as the app does)."""
    own = {"endpoint_url": stack.sandbox_url, "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    creds = boto3.client("sts", region_name=REGION, **own).assume_role(
        RoleArn=ROLE, RoleSessionName="test", ExternalId="ext-a"
    )["Credentials"]
    return boto3.client(
        service,
        endpoint_url=stack.sandbox_url,
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def administrator_defines_the_target(stack) -> None:
    """What an administrator does in the admin: the target, for a group of the demo user, and a grant
    of the target bucket's images/ to that group (in the stack's own database)."""
    script = f"""
from django.contrib.auth.models import Group, User
from wizard.models import SourceGrant, Target
group, _ = Group.objects.get_or_create(name="team-a")
User.objects.get(username="demo").groups.add(group)
target, _ = Target.objects.get_or_create(name="team-a", defaults=dict(account_id="{ACCOUNT}", region="{REGION}",
    bucket="{BUCKET}", role_arn="{ROLE}", external_id="ext-a"))
target.groups.add(group)
grant, _ = SourceGrant.objects.get_or_create(kind="s3", s3_bucket="{BUCKET}", s3_prefix="images/")
grant.groups.add(group)
"""
    subprocess.run([sys.executable, "manage.py", "shell", "-c", script], env=stack.env, check=True, timeout=120)


def test_an_image_is_imported_and_finished_in_a_second_account_and_region(stack, browser):
    s3 = in_account(stack, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=raw_mbr(4 * 1024 * 1024))
    iam = in_account(stack, "iam")
    iam.create_role(RoleName="vmimport", AssumeRolePolicyDocument=json.dumps(policies.trust_policy()))
    iam.put_role_policy(
        RoleName="vmimport", PolicyName="vmimport", PolicyDocument=json.dumps(policies.role_policy([BUCKET], ["*"]))
    )
    administrator_defines_the_target(stack)
    label = f"team-a ({ACCOUNT}, {REGION})"

    page = log_in(browser, stack, "demo")
    page.goto(stack.url + "/imports/new/")
    page.click("#start-wizard")
    expect(page).to_have_url(re.compile(r"/edit/upload/$"))
    # The URL is the new page's from its first byte; its autosave listens once its scripts ran (a
    # change before then is not autosaved: the form still sends it with "Next").
    page.wait_for_load_state("load")
    # 1. The target: chosen (autosaved; the page comes back as the target's), then its object.
    page.select_option("#id_target", label=label)
    expect(page.locator("#upload-widget-off")).to_contain_text(BUCKET, timeout=15_000)  # saved, then reloaded
    expect(page.locator("#id_target option:checked")).to_have_text(label)
    page.fill("#id_s3_bucket", BUCKET)
    page.fill("#id_s3_key", KEY)
    page.click("#add-s3 button[type=submit]")
    expect(page.locator("#container-list")).to_contain_text(f"s3://{BUCKET}/{KEY}")
    expect(page.locator("#container-list .inspection")).to_contain_text("RAW", timeout=30_000)  # read through the role
    page.click("#next")
    page.click("#next")  # disks
    page.click("#next")  # encryption
    page.check("input[name=licensing][value=BYOL]")
    page.select_option("#id_platform", "Linux")
    page.select_option("#id_architecture", "x86_64")
    page.select_option("#id_boot_mode", "legacy-bios")
    page.wait_for_timeout(1500)
    page.click("#next")
    page.fill("#id_description", "web01 in team-a")
    page.click("#next")
    # 6. Finishing: a name, a tag, one share, one copy to another region of that account.
    expect(page).to_have_url(re.compile(r"/edit/finish/$"))
    page.fill("#id_ami_name", "web01 (team-a)")
    page.fill("input[name=ami_tag_key] >> nth=0", "team")
    page.fill("input[name=ami_tag_value] >> nth=0", "a")
    page.fill("#id_launch_user_ids", SHARE)
    page.fill("#id_region_copies", COPY_REGION)
    page.wait_for_timeout(1500)
    page.click("#next")
    # 7. Review: the target named, every rule passes, submit.
    expect(page.locator("#target-label")).to_have_text(label)
    expect(page.locator("#review-findings")).to_have_text("Every rule passes.")
    page.click("#submit-request")
    expect(page.locator("#request-status")).to_have_text("Waiting for review")
    pk = re.search(r"/imports/(\d+)/$", page.url)[1]

    reviewer = log_in(browser, stack, "reviewer")
    reviewer.goto(f"{stack.url}/review/{pk}/")
    expect(reviewer.locator("#target-label")).to_have_text(label)
    reviewer.click("#approve")
    expect(reviewer.locator(".message")).to_contain_text(f"Approved #{pk}")

    # The request's page follows the import in account A, then every finishing step done.
    expect(page.locator("#target-label")).to_have_text(label)
    expect(page.locator("#request-status")).to_have_text("Completed", timeout=120_000)
    rows = page.locator("#finishing-steps tr.finishing-step")
    assert [r.get_attribute("data-action") for r in rows.all()] == [
        "CopyImage",
        "DeregisterImage",
        "CreateTags",
        "LaunchPermission",
        "CreateVolumePermission",
        "CopyImageToRegion",
    ]
    expect(page.locator("#finishing-steps tr.finishing-step[data-state=done]")).to_have_count(6)
    expect(page.locator("#finishing-steps")).to_contain_text(f"Copy to another region {COPY_REGION}")

    # In account A: the named AMI, tagged and shared, and its copy in the other region; nothing in the
    # application's own account.
    name = [{"Name": "name", "Values": ["web01 (team-a)"]}]
    ec2 = in_account(stack, "ec2")
    (ami,) = ec2.describe_images(Owners=["self"], Filters=name)["Images"]
    assert {"Key": "team", "Value": "a"} in ami["Tags"] and ami["OwnerId"] == ACCOUNT
    shared = ec2.describe_image_attribute(ImageId=ami["ImageId"], Attribute="launchPermission")["LaunchPermissions"]
    assert shared == [{"UserId": SHARE}]
    (copy,) = in_account(stack, "ec2", COPY_REGION).describe_images(Owners=["self"], Filters=name)["Images"]
    assert copy["State"] == "available"
    own = {"endpoint_url": stack.sandbox_url, "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    for region in ("us-east-1", REGION, COPY_REGION):
        default = boto3.client("ec2", region_name=region, **own)
        assert default.describe_images(Owners=["self"], Filters=name)["Images"] == []
    # The history names the target.
    page.goto(f"{stack.url}/imports/{pk}/history/")
    expect(page.locator("#target-label")).to_have_text(label)
