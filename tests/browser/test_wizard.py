"""The whole wizard in a real browser: steps, indicator, autosave, a conflict between two tabs,
review, the reviewer's queue, and the import followed live to its AMI."""

from __future__ import annotations

import re

import boto3
import pytest
from playwright.sync_api import expect

from tests.browser.pages import log_in
from tests.images import raw_mbr

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def saved(page):
    expect(page.locator("#save-status")).to_contain_text("Saved")


def settle(page):
    """Let the autosaves of the last changes end (each waits 200 ms, then they queue), so that the next
    full save is not made with a version they have moved on: the status already said "Saved" before."""
    page.wait_for_timeout(1500)
    saved(page)


def test_a_new_user_completes_every_step(stack, browser, tmp_path):
    image = tmp_path / "web01.raw"
    image.write_bytes(raw_mbr(20 * 1024 * 1024))  # three parts of 8 MiB
    kms = boto3.client(
        "kms", endpoint_url=stack.sandbox_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    kms.create_alias(AliasName="alias/imports", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])

    page = log_in(browser, stack, "demo")
    page.goto(stack.url + "/imports/new/")
    page.click("#start-wizard")
    expect(page).to_have_url(re.compile(r"/edit/upload/$"))
    expect(page.locator("#step-indicator li[data-step=upload]")).to_have_attribute("aria-current", "step")

    # 1. Upload: from the browser straight to S3 in parts; the pre-flight then reads the image there.
    part_puts = []
    page.on("request", lambda r: part_puts.append(r.url) if r.method == "PUT" and "partNumber=" in r.url else None)
    expect(page.locator("[data-upload-widget]")).to_have_attribute("data-ready", "true")
    page.set_input_files("[data-upload-widget] input[type=file]", str(image))
    expect(page.locator("#container-list")).to_contain_text("web01.raw", timeout=60_000)
    expect(page.locator("#container-list .inspection")).to_contain_text("RAW")
    expect(page.locator("#container-list .inspection")).to_contain_text("MBR")
    assert len(part_puts) == 3
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

    # 6. Finishing the AMI: a name, a tag on the AMI and its snapshots, one share, one copy to another region.
    expect(page).to_have_url(re.compile(r"/edit/finish/$"))
    page.fill("#id_ami_name", "web01 (wizard)")
    page.fill("input[name=ami_tag_key] >> nth=0", "app")
    page.fill("input[name=ami_tag_value] >> nth=0", "web")
    page.fill("#id_launch_user_ids", "222233334444")
    page.fill("#id_region_copies", "eu-west-1")
    page.check("#id_imds_v2")
    settle(page)
    page.click("#next")
    finish_url = page.url.replace("/edit/review/", "/edit/finish/")
    page.goto(finish_url)
    expect(page.locator("input[name=ami_tag_key] >> nth=0")).to_have_value("app")
    expect(page.locator("#id_region_copies")).to_have_value("eu-west-1")
    expect(page.locator("#id_imds_v2")).to_be_checked()
    page.fill("#id_launch_user_ids", "12345")  # a rule shown next to its field, then mended
    page.locator("#id_launch_user_ids").blur()
    settle(page)
    page.click("#next")
    expect(page.locator("#review-findings")).to_contain_text("is not of the form 123456789012")
    page.goto(finish_url)
    expect(page.locator("#field-launch_user_ids .finding")).to_contain_text("is not of the form 123456789012")
    page.fill("#id_launch_user_ids", "222233334444")
    page.locator("#id_launch_user_ids").blur()
    settle(page)
    page.click("#next")

    # 7. Review: every step complete, the CLI equivalent, the dry run, submit.
    expect(page.locator("#review-findings")).to_have_text("Every rule passes.")
    for step in ("upload", "disks", "encryption", "licence", "details", "finish"):
        expect(page.locator(f"#step-indicator li[data-step={step}]")).to_have_class("step-complete")
    expect(page.locator("#finishing-choices")).to_contain_text("web01 (wizard)")
    expect(page.locator("#cli-command")).to_contain_text("aws ec2 import-image")
    page.click("#dry-run-button")
    expect(page.locator("#dry-run-permitted")).to_be_visible()
    page.click("#submit-request")
    expect(page.locator("#request-status")).to_have_text("Waiting for review")
    pk = re.search(r"/imports/(\d+)/$", page.url)[1]

    # It is listed on My imports; the reviewer works the queue in the browser.
    page.goto(stack.url + "/imports/")
    expect(page.locator("table.list")).to_contain_text("web01 from the wizard")
    page.goto(f"{stack.url}/imports/{pk}/")
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

    # Then the worker finishes the AMI, each step shown done, and only then is the request completed.
    expect(page.locator("#request-status")).to_have_text("Completed", timeout=90_000)
    rows = page.locator("#finishing-steps tr.finishing-step")
    assert [r.get_attribute("data-action") for r in rows.all()] == [
        "CopyImage",
        "DeregisterImage",
        "CreateTags",
        "ImdsSupport",
        "LaunchPermission",
        "CreateVolumePermission",
        "CopyImageToRegion",
    ]
    expect(page.locator("#finishing-steps tr.finishing-step[data-state=done]")).to_have_count(7)
    expect(page.locator("#finishing-steps")).to_contain_text("Copy to another region eu-west-1")
    expect(page.locator("#cancel")).to_have_count(0)
    ec2 = boto3.client(
        "ec2", endpoint_url=stack.sandbox_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    (ami,) = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["web01 (wizard)"]}])["Images"]
    assert {"Key": "app", "Value": "web"} in ami["Tags"] and ami["ImdsSupport"] == "v2.0"
    shared = ec2.describe_image_attribute(ImageId=ami["ImageId"], Attribute="launchPermission")["LaunchPermissions"]
    assert shared == [{"UserId": "222233334444"}]
    west = boto3.client(
        "ec2", endpoint_url=stack.sandbox_url, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    assert west.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["web01 (wizard)"]}])["Images"]


def test_warnings_are_acknowledged_on_the_review_step_then_submitted(stack, browser, tmp_path):
    """A real guest disk whose network is static (warning static-network): uploaded, inspected, its
    warning shown on its row and on the review step; the box ticked, then submitted."""
    from tests.inspect import guests
    from tests.inspect.conftest import require_tools

    require_tools()
    root, boot = guests.linux()
    root["etc/network/interfaces"] = b"auto eth0\niface eth0 inet static\n  address 10.0.0.5/24\n"
    image = guests.build_disk(tmp_path / "static.raw", root, boot, size_mib=16)

    page = log_in(browser, stack, "demo")
    page.goto(stack.url + "/imports/new/")
    page.click("#start-wizard")
    expect(page.locator("[data-upload-widget]")).to_have_attribute("data-ready", "true")
    page.set_input_files("[data-upload-widget] input[type=file]", str(image))
    expect(page.locator("#container-list")).to_contain_text("static.raw", timeout=60_000)
    expect(page.locator("#container-list .guest")).to_contain_text("debian", timeout=30_000)
    # The section is fetched again once the inspection is done (inspection-done): after the guest shows.
    expect(page.locator("#sources .finding.warning")).to_contain_text("static IP addresses", timeout=30_000)
    page.goto(page.url.replace("/edit/upload/", "/edit/disks/"))
    expect(page.locator("#disk-0 .finding.warning")).to_contain_text("Switch the interfaces to DHCP")

    page.goto(page.url.replace("/edit/disks/", "/edit/review/"))
    expect(page.locator("#warnings-list li[data-code=static-network]")).to_contain_text("static IP addresses")
    page.click("#submit-request")  # the box is required: the browser does not send the form without it
    expect(page).to_have_url(re.compile(r"/edit/review/$"))
    page.check("#acknowledge-warnings")
    page.click("#submit-request")
    expect(page.locator("#request-status")).to_have_text("Waiting for review")
    pk = re.search(r"/imports/(\d+)/$", page.url)[1]

    reviewer = log_in(browser, stack, "reviewer")
    reviewer.goto(f"{stack.url}/review/{pk}/")
    expect(reviewer.locator("#acknowledged-by")).to_contain_text("Acknowledged by demo")
    expect(reviewer.locator("#acknowledged-warnings li[data-code=static-network]")).to_contain_text("acknowledged")
