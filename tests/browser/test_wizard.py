"""The whole wizard in a real browser: steps, indicator, autosave, a conflict between two tabs,
review, the reviewer's queue, and the import followed live to its AMI."""

from __future__ import annotations

import re

import boto3
import pytest
from playwright.sync_api import expect

from tests.images import raw_mbr
from tests.browser.pages import log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def saved(page):
    expect(page.locator("#save-status")).to_contain_text("Saved")


def test_a_new_user_completes_every_step(stack, browser):
    s3 = boto3.client("s3", endpoint_url=stack.sandbox_url, region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="x")
    s3.put_object(Bucket="import-wizard-uploads", Key="shared/web01.raw", Body=raw_mbr(1024 * 1024))
    kms = boto3.client("kms", endpoint_url=stack.sandbox_url, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    kms.create_alias(AliasName="alias/imports", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])

    page = log_in(browser, stack, "demo")
    page.goto(stack.url + "/imports/new/")
    page.click("#start-wizard")
    expect(page).to_have_url(re.compile(r"/edit/upload/$"))
    expect(page.locator("#step-indicator li[data-step=upload]")).to_have_attribute("aria-current", "step")

    # 1. Upload: an object already in S3; the pre-flight reads it.
    page.fill("#add-s3 input[name=s3_bucket]", "import-wizard-uploads")
    page.fill("#add-s3 input[name=s3_key]", "shared/web01.raw")
    page.click("#add-s3 button")
    expect(page.locator("#container-list")).to_contain_text("s3://import-wizard-uploads/shared/web01.raw")
    expect(page.locator("#container-list .inspection")).to_contain_text("RAW")
    page.click("#next")

    # 2. Disks: autosave on change, kept across a reload.
    expect(page).to_have_url(re.compile(r"/edit/disks/$"))
    page.fill("#id_form-0-description", "boot disk")
    page.locator("#id_form-0-description").blur()
    saved(page)
    page.reload()
    expect(page.locator("#id_form-0-description")).to_have_value("boot disk")
    page.click("#next")

    # 3. Encryption: a key that does not exist, then a rule shown next to its field.
    page.fill("#id_kms_key_id", "alias/no-such-key")
    page.check("#id_encrypted")
    saved(page)
    page.reload()
    expect(page.locator("#field-kms_key_id .finding")).to_contain_text("no KMS key alias/no-such-key")
    page.uncheck("#id_encrypted")
    page.fill("#id_kms_key_id", "alias/imports")
    page.locator("#id_kms_key_id").blur()
    saved(page)
    page.reload()
    expect(page.locator("#field-kms_key_id .finding")).to_contain_text("Encrypted")
    expect(page.locator("#step-indicator li[data-step=encryption]")).to_have_class(re.compile("step-current"))
    page.check("#id_encrypted")
    saved(page)
    page.click("#next")

    # 4. Licence and boot.
    page.check("input[name=licensing][value=BYOL]")
    page.select_option("#id_platform", "Linux")
    page.select_option("#id_architecture", "x86_64")
    page.select_option("#id_boot_mode", "legacy-bios")
    saved(page)
    page.click("#next")

    # 5. Details, with a second tab editing the same draft: the later save is refused, both values shown.
    page.fill("#id_description", "web01 from the wizard")
    page.locator("#id_description").blur()
    saved(page)
    other = page.context.new_page()
    other.goto(page.url)
    other.fill("#id_description", "changed in the other tab")
    other.locator("#id_description").blur()
    expect(other.locator("#save-status")).to_contain_text("Saved")
    page.fill("#id_comment", "from the first tab")
    page.locator("#id_comment").blur()
    expect(page.locator("#conflict")).to_contain_text("changed elsewhere")
    page.click("#save-mine")
    expect(page.locator("#id_comment")).to_have_value("from the first tab")
    page.fill("input[name=tag_key] >> nth=0", "team")
    page.fill("input[name=tag_value] >> nth=0", "infra")
    page.locator("input[name=tag_value] >> nth=0").blur()
    saved(page)
    page.click("#next")

    # 6. Review: every step complete, the CLI equivalent, the dry run, submit.
    expect(page.locator("#review-findings")).to_have_text("Every rule passes.")
    for step in ("upload", "disks", "encryption", "licence", "details"):
        expect(page.locator(f"#step-indicator li[data-step={step}]")).to_have_class("step-complete")
    expect(page.locator("#cli-command")).to_contain_text("aws ec2 import-image")
    page.click("#dry-run-button")
    expect(page.locator("#dry-run-permitted")).to_be_visible()
    page.click("#submit-request")
    expect(page.locator("#request-status")).to_have_text("Waiting for review")
    pk = re.search(r"/imports/(\d+)/$", page.url)[1]

    # The reviewer works the queue in the browser.
    reviewer = log_in(browser, stack, "reviewer")
    reviewer.click("text=Review")
    reviewer.click(f"#review-queue a[href$='/review/{pk}/'] >> nth=0")
    expect(reviewer.locator("#api-json")).to_contain_text('"Platform": "Linux"')
    reviewer.click("#approve")
    expect(reviewer.locator(".message")).to_contain_text(f"Approved #{pk}")

    # The requester's page follows the import to its AMI without a reload.
    expect(page.locator("#import-task-id")).to_have_text(re.compile(r"^import-ami-"), timeout=30_000)
    expect(page.locator("#task-status")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#image-id")).to_have_text(re.compile(r"^ami-"))
    expect(page.locator("#stage-stepper li.stage-done")).to_have_count(7)
