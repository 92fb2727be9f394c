"""A batch of 24 images in a real browser: a manifest (first with a mistake, nothing saved),
one review by the reviewer, the queue's places, and the dashboard, refreshed by one request
for the whole table, until every VM is completed."""

from __future__ import annotations

import re
import subprocess
import sys

import boto3
import pytest
from playwright.sync_api import expect

from tests.browser.pages import log_in
from tests.images import raw_mbr
from tests.stack import ROOT, running

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VMS = 24
LIMIT = 10
GRANT = """
from django.contrib.auth.models import Group, User
from wizard.models import SourceGrant
group, _ = Group.objects.get_or_create(name="migration-team")
User.objects.get(username="demo").groups.add(group)
grant, _ = SourceGrant.objects.get_or_create(kind="s3", s3_bucket="import-wizard-uploads", s3_prefix="migration/")
grant.groups.add(group)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running(tmp_path_factory.mktemp("stack"), WIZARD_MAX_ACTIVE_IMPORTS=str(LIMIT)) as stack:
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", GRANT], cwd=ROOT, env=stack.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        s3 = boto3.client(
            "s3",
            endpoint_url=stack.sandbox_url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        for i in range(VMS):
            s3.put_object(Bucket="import-wizard-uploads", Key=f"migration/vm{i:02d}.raw", Body=raw_mbr(64 * 1024))
        yield stack


def manifest(broken: bool = False) -> str:
    lines = ["S3Bucket,S3Key,Format,Description,Tags"]
    lines += [f"import-wizard-uploads,migration/vm{i:02d}.raw,RAW,vm{i:02d},wave=1" for i in range(VMS)]
    if broken:
        lines[3] = "import-wizard-uploads,,RAW,vm02,wave=1"
        lines.append("somebody-else,migration/x.raw,RAW,theirs,")
    return "\n".join(lines) + "\n"


def test_a_batch_goes_from_a_manifest_through_one_review_to_completed(stack, browser, tmp_path):
    page = log_in(browser, stack, "demo")
    page.goto(stack.url + "/imports/new/")
    page.click("#new-batch-link")

    # A manifest with mistakes: every one by row and path, and nothing saved.
    broken = tmp_path / "broken.csv"
    broken.write_text(manifest(broken=True))
    page.fill("#id_name", "wave 1")
    page.set_input_files("#id_manifest_file", str(broken))
    page.select_option("#id_Platform", "Linux")
    page.click("#create-batch")
    errors = page.locator("#manifest-errors")
    expect(errors).to_contain_text("row 3")
    expect(errors).to_contain_text("DiskContainers[0].UserBucket.S3Key")
    expect(errors).to_contain_text(f"row {VMS + 1}")
    expect(errors).to_contain_text("You may not import from this location")
    expect(page.locator(".message.error:not(.upload-notice)")).to_contain_text("Nothing was saved")
    expect(page.locator("#id_manifest")).to_have_value(re.compile("somebody-else"))  # the text is kept

    # Fixed: every row a request of its own, inspected, submitted.
    good = tmp_path / "wave1.csv"
    good.write_text(manifest())
    page.set_input_files("#id_manifest_file", str(good))
    page.fill("#id_manifest", "")
    page.click("#create-batch")
    expect(page).to_have_url(re.compile(r"/batches/\d+/$"), timeout=60_000)
    batch_url = page.url
    rows = page.locator("#batch-items tbody tr")
    expect(rows).to_have_count(VMS)
    # Each is submitted once the worker has inspected its image (a child process each: seconds).
    expect(page.locator("#batch-totals [data-status=submitted] .count")).to_have_text(str(VMS), timeout=180_000)

    # One review for the whole batch.
    reviewer = log_in(browser, stack, "reviewer")
    reviewer.click("text=Review")
    reviewer.click("#batch-review-link")
    reviewer.click("#batch-review-list a >> nth=0")
    expect(reviewer.locator("#review-items tbody tr")).to_have_count(VMS)
    reviewer.click("#approve-batch")
    expect(reviewer.locator(".message")).to_contain_text(f"Approved: {VMS}.")

    # The dashboard: one request for the whole table each refresh; the queue's places; then completed.
    tables, others = [], []
    page.on(
        "request", lambda r: (tables if "/table/" in r.url else others).append(r.url) if "/batches/" in r.url else None
    )
    page.goto(batch_url)
    expect(page.locator("#batch-items")).to_contain_text(re.compile(r"queued, \d+ ahead"), timeout=30_000)
    expect(page.locator("#batch-totals [data-status=completed] .count")).to_have_text(str(VMS), timeout=240_000)
    expect(page.locator("#batch-dashboard")).to_have_attribute("data-final", "true")
    assert len(tables) >= 2 and others == [batch_url], others
    expect(rows).to_have_count(VMS)
    expect(page.locator("#batch-items td.stage").first).to_have_text("completed")


def test_images_uploaded_in_one_go_become_a_batch(stack, browser, tmp_path):
    """Several files picked at once on the batch page: each goes to S3 through the widget,
    is ticked as soon as it is uploaded, and becomes one VM (request) of the batch."""
    files = []
    for name in ("app01.raw", "app02.raw", "app03.raw"):
        path = tmp_path / name
        path.write_bytes(raw_mbr(2 * 1024 * 1024))
        files.append(str(path))
    page = log_in(browser, stack, "demo")
    page.goto(stack.url + "/batches/new/")
    page.locator("[data-upload-widget] input[type=file]").set_input_files(files)
    done = page.locator(".upload-file.is-complete")
    expect(done).to_have_count(3, timeout=60_000)
    ticked = page.locator("#batch-uploads input[type=checkbox]:checked")
    expect(ticked).to_have_count(3)
    page.fill("#id_name", "uploaded in one go")
    page.click("#create-batch")
    expect(page).to_have_url(re.compile(r"/batches/\d+/$"), timeout=60_000)
    expect(page.locator("#batch-items tbody tr")).to_have_count(3)
    for name in ("app01.raw", "app02.raw", "app03.raw"):
        expect(page.locator("#batch-items")).to_contain_text(name)
