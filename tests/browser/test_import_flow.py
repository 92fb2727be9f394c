"""The walking skeleton in a real browser: log in, upload, submit, approve, watch it to an AMI."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.images import raw_mbr
from tests.browser.pages import log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_import_from_the_browser_to_an_ami(stack, browser, tmp_path):
    image = tmp_path / "web01.raw"
    image.write_bytes(raw_mbr(64 * 1024))

    requester = log_in(browser, stack, "demo")
    requester.click("text=New import")
    requester.set_input_files("#id_image", str(image))
    requester.fill("#id_description", "browser test")
    requester.click("button[name=submit]")
    expect(requester.locator("#request-status")).to_have_text("Waiting for review")
    pk = re.search(r"/imports/(\d+)/$", requester.url)[1]
    requester.click("text=My imports")
    expect(requester.locator("table.list")).to_contain_text("browser test")
    requester.goto(f"{stack.url}/imports/{pk}/")

    reviewer = log_in(browser, stack, "reviewer")
    reviewer.goto(stack.url + "/admin/wizard/importrequest/")
    reviewer.check(f"input[name=_selected_action][value='{pk}']")
    reviewer.select_option("select[name=action]", "approve_selected")
    reviewer.click("button[name=index]")
    expect(reviewer.locator(".messagelist")).to_contain_text(f"Approved #{pk}")

    # The requester's page, never reloaded, follows the task through its stages by htmx polling.
    expect(requester.locator("#import-task-id")).to_have_text(re.compile(r"^import-ami-"), timeout=30_000)
    expect(requester.locator("#task-status")).to_have_text("completed", timeout=60_000)
    expect(requester.locator("#image-id")).to_have_text(re.compile(r"^ami-[0-9a-f]+$"))
    expect(requester.locator("#progress")).not_to_have_attribute("hx-trigger", re.compile(".*"))
