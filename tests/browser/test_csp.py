"""Every page under the Content-Security-Policy in a real browser, and no secret in the logs.

The whole application runs (`make run`, the `stack` fixture). A listener added before any
page script collects `securitypolicyviolation` events; console errors and uncaught page
errors are collected too. The requester walks the wizard (uploading a small image through
the widget, whose CRC32 worker is a static file, autosaving each step, the tag rows and the
KMS key button of wizard.js), the reviewer works the queue and the admin; nothing may be
reported. Then the run's log (web, worker and sandbox) must hold no part URL's signature or
credential, no session id and no password of a failed login.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from playwright.sync_api import expect

from tests.images import raw_mbr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COLLECT = """
window.__problems = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__problems.push(`CSP ${e.violatedDirective}: ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber} ${e.sample}`);
});
"""


class Watched:
    """A browser context whose every page reports CSP violations, console errors and page errors."""

    def __init__(self, browser, stack):
        self.stack = stack
        self.context = browser.new_context()
        self.context.add_init_script(COLLECT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.problems: list[str] = []
        self.part_urls: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                self.problems.append(f"console: {m.text} ({m.location.get('url')})") if m.type == "error" else None
            ),
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.part_urls.append(r.url) if "partNumber=" in r.url else None)
        self.seen: list[str] = []

    def collect(self) -> None:
        """The violations of the document shown now (they live on its window)."""
        self.problems.extend(self.page.evaluate("window.__problems || []"))
        self.page.evaluate("window.__problems = []")

    def visit(self, path: str) -> None:
        self.collect_if_open()
        self.page.goto(self.stack.url + path)
        self.page.wait_for_load_state("networkidle")
        self.seen.append(urlsplit(self.page.url).path)
        self.collect()

    def collect_if_open(self) -> None:
        if self.page.url.startswith("http"):
            self.collect()

    def log_in(self, username: str, password: str | None = None) -> None:
        self.visit("/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password or username)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state("networkidle")
        self.collect()

    def saved(self) -> None:
        expect(self.page.locator("#save-status")).to_contain_text("Saved")


def test_every_page_works_under_the_policy_and_none_is_violated(stack, browser, tmp_path):
    image = tmp_path / "csp01.raw"
    image.write_bytes(raw_mbr(1024 * 1024))
    kms = boto3.client(
        "kms", endpoint_url=stack.sandbox_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    key_arn = kms.create_key(Description="csp test")["KeyMetadata"]["Arn"]

    demo = Watched(browser, stack)
    demo.log_in("demo")
    expect(demo.page).to_have_url(re.compile(r"/imports/$"))
    demo.visit("/imports/new/")
    demo.page.click("#start-wizard")
    expect(demo.page).to_have_url(re.compile(r"/edit/upload/$"))
    pk = re.search(r"/imports/(\d+)/edit/", demo.page.url)[1]

    # The upload widget: Uppy, the part worker static/js/crc32-worker.js (CRC32, PUT), parts to the sandbox.
    expect(demo.page.locator("[data-upload-widget]")).to_have_attribute("data-ready", "true")
    demo.page.set_input_files("[data-upload-widget] input[type=file]", str(image))
    expect(demo.page.locator("#container-list")).to_contain_text("csp01.raw", timeout=60_000)
    assert demo.part_urls and all(u.startswith(stack.sandbox_url) for u in demo.part_urls)
    demo.collect()

    # Each step, autosaving under the policy (htmx, its indicator style off).
    demo.visit(f"/imports/{pk}/edit/disks/")
    demo.page.fill("#id_form-0-description", "boot disk")
    demo.page.locator("#id_form-0-description").blur()
    demo.saved()
    demo.visit(f"/imports/{pk}/edit/encryption/")
    demo.page.click(f"button[data-kms-arn='{key_arn}']")  # wizard.js: the key's ARN, Encrypted ticked
    expect(demo.page.locator("#id_kms_key_id")).to_have_value(key_arn)
    expect(demo.page.locator("#id_encrypted")).to_be_checked()
    demo.saved()
    demo.visit(f"/imports/{pk}/edit/licence/")
    demo.page.check("input[name=licensing][value=BYOL]")
    demo.page.select_option("#id_platform", "Linux")
    demo.page.select_option("#id_architecture", "x86_64")
    demo.page.select_option("#id_boot_mode", "legacy-bios")
    demo.saved()
    demo.visit(f"/imports/{pk}/edit/details/")
    demo.page.fill("#id_description", "csp01 under the policy")
    demo.page.locator("#id_description").blur()
    demo.saved()
    demo.page.click("#add-tag")  # wizard.js: a second, empty row
    expect(demo.page.locator("#tag-rows .tag-row")).to_have_count(2)
    demo.page.fill("input[name=tag_key] >> nth=1", "team")
    demo.page.fill("input[name=tag_value] >> nth=1", "infra")
    demo.page.locator("input[name=tag_value] >> nth=1").blur()
    demo.saved()
    demo.page.click("#tag-rows .tag-row >> nth=0 >> button[data-remove-tag]")
    expect(demo.page.locator("#tag-rows .tag-row")).to_have_count(1)
    demo.saved()
    demo.visit(f"/imports/{pk}/edit/review/")
    expect(demo.page.locator("#review-findings")).to_have_text("Every rule passes.")
    demo.page.click("button.copy[data-copy=cli-command]")  # wizard.js: copied, or asks to select
    expect(demo.page.locator("button.copy[data-copy=cli-command]")).to_have_text(re.compile("Copied|Select and copy"))
    demo.page.click("#dry-run-button")
    expect(demo.page.locator("#dry-run-permitted")).to_be_visible()
    demo.collect()
    demo.page.click("#submit-request")
    expect(demo.page.locator("#request-status")).to_have_text("Waiting for review")
    demo.collect()

    for path in ("/imports/", "/drafts/", "/imports/cli/", f"/imports/{pk}/edit/upload/", f"/imports/{pk}/history/"):
        demo.visit(path)
    demo.visit("/audit/")

    reviewer = Watched(browser, stack)
    reviewer.log_in("reviewer")
    reviewer.visit("/review/")
    reviewer.visit(f"/review/{pk}/")
    reviewer.page.click("#approve")
    expect(reviewer.page.locator(".message")).to_contain_text(f"Approved #{pk}")
    reviewer.collect()
    reviewer.visit("/audit/")
    reviewer.visit("/admin/")
    expect(reviewer.page.locator("#site-name")).to_be_visible()
    reviewer.visit("/admin/wizard/importrequest/")

    # The request's page follows the import through its progress partial (htmx, every 2 s).
    demo.visit(f"/imports/{pk}/")
    expect(demo.page.locator("#task-status")).to_have_text("completed", timeout=90_000)
    demo.collect()

    assert demo.problems == [] and reviewer.problems == []
    assert {"/imports/new/", "/drafts/", "/imports/cli/", "/audit/", "/review/", "/admin/"} <= set(
        demo.seen + reviewer.seen
    )


def test_no_secret_reaches_the_logs(stack, browser, tmp_path):
    password = "hunter2-is-not-the-password-0417"
    image = tmp_path / "log01.raw"
    image.write_bytes(raw_mbr(1024 * 1024))

    someone = Watched(browser, stack)
    someone.log_in("demo", password)
    expect(someone.page.locator(".error")).to_be_visible()  # refused, and logged by django-axes

    demo = Watched(browser, stack)
    demo.log_in("demo")
    demo.visit("/imports/new/")
    demo.page.click("#start-wizard")
    expect(demo.page.locator("[data-upload-widget]")).to_have_attribute("data-ready", "true")
    demo.page.set_input_files("[data-upload-widget] input[type=file]", str(image))
    expect(demo.page.locator("#container-list")).to_contain_text("log01.raw", timeout=60_000)
    session_id = next(c["value"] for c in demo.context.cookies() if c["name"] == "sessionid")

    secrets = {password, session_id}
    for url in demo.part_urls:
        query = parse_qs(urlsplit(url).query)
        secrets |= {query["X-Amz-Signature"][0], query["X-Amz-Credential"][0]}
    log = stack.log()
    assert demo.part_urls and '"logger": "wizard.sandbox"' in log and '"logger": "gunicorn.access"' in log
    assert "X-Amz-Signature=***" in log  # the part PUTs were logged, masked
    assert [s for s in secrets if s in log] == []
    assert not re.search(r"X-Amz-(Signature|Credential)=(?!\*\*\*)", log)
