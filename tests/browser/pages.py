"""Steps every browser test takes."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def log_in(browser, stack, username: str):
    """A new browser context logged in as `username` (demo users: password = user name)."""
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    page.goto(stack.url + "/login/")
    expect(page.locator("#sandbox-banner")).to_contain_text("Sandbox")
    page.fill("#id_username", username)
    page.fill("#id_password", username)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/imports/$"))
    return page
