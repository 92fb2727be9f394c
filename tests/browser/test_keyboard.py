"""The whole wizard with the keyboard alone: no mouse click anywhere.

Only Tab, Shift+Tab, Enter, Space and the arrow keys move and act (and typing into text
fields). The one exception is the image itself: the test reaches the upload widget's file
input with Tab, and then, as a native file dialog cannot be driven from a test, gives the
file to that focused input with Playwright's `set_input_files` (what the dialog would do).
Every element focus lands on must be visible (no focus on something hidden), the skip link
comes first and moves focus to the content, and the request page reads out each new stage
of the import through its live region (`#progress-announcer`).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.images import raw_mbr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FOCUSED = """(selector) => {
  const e = document.activeElement;
  if (!e || e === document.body) return {matches: false, visible: true, what: 'body'};
  const box = e.getBoundingClientRect();
  const style = getComputedStyle(e);
  const hidden = style.visibility === 'hidden' || style.display === 'none' || box.width === 0 || box.height === 0;
  return {matches: e.matches(selector), visible: !hidden, what: e.outerHTML.slice(0, 120)};
}"""


def tab_to(page, selector: str, back: bool = False, limit: int = 150) -> None:
    """Press Tab (Shift+Tab with `back`) until focus is on `selector`; each stop must be visible."""
    key = "Shift+Tab" if back else "Tab"
    for _ in range(limit):
        page.keyboard.press(key)
        focused = page.evaluate(FOCUSED, selector)
        assert focused["visible"], f"focus on something invisible: {focused['what']}"
        if focused["matches"]:
            return
    raise AssertionError(f"{key} never reached {selector} on {page.url}")


def type_into(page, selector: str, text: str) -> None:
    tab_to(page, selector)
    page.keyboard.type(text)


def choose(page, selector: str, value: str, limit: int = 10) -> None:
    """A <select> or a radio group, by arrow keys."""
    tab_to(page, selector)
    for _ in range(limit):
        if page.evaluate("() => document.activeElement.value") == value and page.evaluate(
            "() => document.activeElement.type !== 'radio' || document.activeElement.checked"
        ):
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"ArrowDown never chose {value} in {selector}")


def saved(page) -> None:
    expect(page.locator("#save-status")).to_contain_text("Saved")


def log_in(browser, stack, username: str):
    page = browser.new_context().new_page()
    page.set_default_timeout(20_000)
    page.goto(stack.url + "/login/")
    type_into(page, "#id_username", username)
    page.keyboard.press("Tab")
    page.keyboard.type(username)  # the demo users' password is their name
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/imports/$"))
    return page


def test_the_whole_wizard_and_the_review_with_the_keyboard_alone(stack, browser, tmp_path):
    image = tmp_path / "kbd01.raw"
    image.write_bytes(raw_mbr(1024 * 1024))
    page = log_in(browser, stack, "demo")

    # The skip link comes first and takes focus to the content; Shift+Tab goes back to the menu.
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    tab_to(page, "nav a[href$='/imports/new/']", back=True)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/imports/new/$"))
    tab_to(page, "#start-wizard")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/edit/upload/$"))

    # 1. Upload: Tab to the widget's file input; the file goes to it as the dialog would give it.
    expect(page.locator("[data-upload-widget]")).to_have_attribute("data-ready", "true")
    tab_to(page, "[data-upload-widget] input[type=file]")
    page.locator(":focus").set_input_files(str(image))
    expect(page.locator("#container-list")).to_contain_text("kbd01.raw", timeout=60_000)
    expect(page.locator("#container-list .inspection")).to_contain_text("MBR", timeout=60_000)
    tab_to(page, "#next")
    page.keyboard.press("Enter")

    # 2. Disks: type, Tab away (the change autosaves).
    expect(page).to_have_url(re.compile(r"/edit/disks/$"))
    type_into(page, "#id_form-0-description", "boot disk")
    page.keyboard.press("Tab")
    saved(page)
    tab_to(page, "#next")
    page.keyboard.press("Enter")

    # 3. Encryption: Space ticks and unticks the box (saved each time).
    expect(page).to_have_url(re.compile(r"/edit/encryption/$"))
    tab_to(page, "#id_encrypted")
    page.keyboard.press("Space")
    expect(page.locator("#id_encrypted")).to_be_checked()
    saved(page)
    page.keyboard.press("Space")
    expect(page.locator("#id_encrypted")).not_to_be_checked()
    saved(page)
    tab_to(page, "#next")
    page.keyboard.press("Enter")

    # 4. Licence and boot: a radio group and three selects, by arrow keys.
    expect(page).to_have_url(re.compile(r"/edit/licence/$"))
    choose(page, "input[name=licensing]", "BYOL")
    choose(page, "#id_platform", "Linux")
    choose(page, "#id_architecture", "x86_64")
    choose(page, "#id_boot_mode", "legacy-bios")
    page.keyboard.press("Tab")
    saved(page)
    tab_to(page, "#next")
    page.keyboard.press("Enter")

    # 5. Details: text and a tag row; Enter on "Add a tag" adds a row.
    expect(page).to_have_url(re.compile(r"/edit/details/$"))
    type_into(page, "#id_description", "kbd01 with the keyboard")
    type_into(page, "input[name=tag_key]", "team")
    page.keyboard.press("Tab")
    page.keyboard.type("infra")
    page.keyboard.press("Tab")
    saved(page)
    tab_to(page, "#add-tag")
    page.keyboard.press("Enter")
    expect(page.locator("#tag-rows .tag-row")).to_have_count(2)
    tab_to(page, "#next")
    page.keyboard.press("Enter")

    # 6. Finishing the AMI: a name typed, then on.
    expect(page).to_have_url(re.compile(r"/edit/finish/$"))
    type_into(page, "#id_ami_name", "kbd01-ami")
    page.keyboard.press("Tab")
    saved(page)
    tab_to(page, "#next")
    page.keyboard.press("Enter")

    # 7. Review: the dry run and the submission, by Enter.
    expect(page).to_have_url(re.compile(r"/edit/review/$"))
    expect(page.locator("#review-findings")).to_have_text("Every rule passes.")
    tab_to(page, "#dry-run-button")
    page.keyboard.press("Enter")
    expect(page.locator("#dry-run-permitted")).to_be_visible()
    tab_to(page, "#submit-request")
    page.keyboard.press("Enter")
    expect(page.locator("#request-status")).to_have_text("Waiting for review")
    pk = re.search(r"/imports/(\d+)/$", page.url)[1]
    expect(page.locator("h1")).to_contain_text("kbd01 with the keyboard")
    expect(page.locator("#parameters")).to_contain_text("BYOL")

    # The reviewer approves with the keyboard too.
    reviewer = log_in(browser, stack, "reviewer")
    tab_to(reviewer, "nav a[href$='/review/']")
    reviewer.keyboard.press("Enter")
    expect(reviewer).to_have_url(re.compile(r"/review/$"))
    tab_to(reviewer, f"#review-queue a[href$='/review/{pk}/']")
    reviewer.keyboard.press("Enter")
    expect(reviewer).to_have_url(re.compile(rf"/review/{pk}/$"))
    tab_to(reviewer, "#approve")
    reviewer.keyboard.press("Enter")
    expect(reviewer.locator(".message")).to_contain_text(f"Approved #{pk}")

    # The requester's page reads out each new stage (the progress partial's live region) to the end.
    expect(page.locator("#progress-announcer")).to_contain_text("Importing", timeout=30_000)
    expect(page.locator("#progress-announcer")).to_have_text(f"Import #{pk}: Completed", timeout=60_000)
