"""Every page passes axe-core with no serious or critical violation, in a real browser.

The whole application runs (`make run`) with its demo data (WIZARD_DEMO_DATA=1: requests in
every state, a batch waiting for review), so each page is checked with real content: the
wizard's steps on the demo draft, a request page importing, completed, failed and rejected
(with the progress partial polled by htmx), the history and the audit log, the review queue
and a review page, the batch pages, the API tokens and the admin index.

axe-core (tests/browser/vendor/axe.min.js, MPL-2.0, never served) is put into each page with
`page.evaluate` of the file's text: Playwright evaluates through the DevTools protocol, which
the page's Content-Security-Policy (script-src 'self') does not govern, so the pages are
checked exactly as served, policy in force (`add_script_tag` would add an inline <script>,
which the policy rightly blocks; tests/browser/test_csp.py proves the policy itself).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.stack import running

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
# A11Y_IMPACTS=minor,moderate,serious,critical lists the lesser findings too (to work on them).
SERIOUS = tuple(os.environ.get("A11Y_IMPACTS", "serious,critical").split(","))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`make run` with the demo data, once it is seeded."""
    with running(tmp_path_factory.mktemp("stack"), WIZARD_DEMO_DATA="1") as stack:
        wait_for_demo_data(stack)
        yield stack


def wait_for_demo_data(stack, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while "[run] demo data done" not in stack.log():
        assert "demo data failed" not in stack.log(), stack.log()[-4000:]
        assert time.monotonic() < deadline, f"no demo data after {seconds} s:\n{stack.log()[-4000:]}"
        time.sleep(0.5)


def log_in(browser, stack, username: str):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(stack.url + "/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", username)
    page.press("#id_password", "Enter")
    expect(page).to_have_url(re.compile(r"/imports/$"))
    return page


def axe(page) -> list[dict]:
    """The serious and critical violations axe-core finds in the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    result = page.evaluate(
        """async () => {
          const r = await axe.run(document);
          return {passes: r.passes.length, violations: r.violations.map(v => ({id: v.id, impact: v.impact,
            help: v.help, nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html.slice(0, 200)}))}))};
        }"""
    )
    assert result["passes"] > 10, result  # axe ran its rules on this page
    return [v for v in result["violations"] if v["impact"] in SERIOUS]


class Checked:
    """Visits pages and keeps each one's violations, to report them all at once."""

    def __init__(self, stack):
        self.stack = stack
        self.found: dict[str, list[dict]] = {}

    def check(self, page, name: str, path: str | None = None) -> None:
        if path is not None:
            page.goto(self.stack.url + path)
        page.wait_for_load_state("networkidle")
        self.found[name] = axe(page)

    def report(self) -> str:
        lines = []
        for name, violations in self.found.items():
            for v in violations:
                lines.append(f"{name}: {v['id']} ({v['impact']}): {v['help']}")
                lines += [f"    {n['target']}: {n['html']}" for n in v["nodes"][:5]]
        return "\n".join(lines)


def demo_request(page, stack, prefix: str) -> int:
    """The pk of the demo request whose description starts with `prefix` (from My imports)."""
    page.goto(stack.url + "/imports/")
    href = page.locator(f"a:has-text('{prefix}')").first.get_attribute("href")
    return int(re.search(r"/imports/(\d+)/", href)[1])


def test_every_page_has_no_serious_or_critical_violation(stack, browser):
    checked = Checked(stack)
    anonymous = browser.new_context().new_page()
    checked.check(anonymous, "login", "/login/")
    anonymous.fill("#id_username", "demo")
    anonymous.fill("#id_password", "not the password")
    anonymous.press("#id_password", "Enter")
    expect(anonymous.locator("form .error")).to_be_visible()
    checked.check(anonymous, "login (refused)")

    demo = log_in(browser, stack, "demo")
    checked.check(demo, "my imports")
    checked.check(demo, "new import", "/imports/new/")
    draft = demo_request(demo, stack, "Demo: web01")
    for step in ("upload", "disks", "encryption", "licence", "details", "finish", "review"):
        checked.check(demo, f"wizard step {step}", f"/imports/{draft}/edit/{step}/")
    checked.check(demo, "drafts", "/drafts/")
    checked.check(demo, "CLI import", "/imports/cli/")
    demo.fill("#id_document", '{"DiskContainers": [{"Format": "RAW", "UserBucket": {"S3Bucket": "b"}}]}')
    demo.locator("main button[type=submit]").click()
    expect(demo.locator("#cli-errors")).to_be_visible()
    checked.check(demo, "CLI import (errors)")
    for prefix, state in (
        ("Demo: web02", "importing"),
        ("Demo: web03", "completed"),
        ("Demo: win01", "failed"),
        ("Demo: db01", "rejected"),
    ):
        pk = demo_request(demo, stack, prefix)
        checked.check(demo, f"request page ({state})", f"/imports/{pk}/")
    importing = demo_request(demo, stack, "Demo: web02")
    demo.goto(f"{stack.url}/imports/{importing}/")
    with demo.expect_response(re.compile(r"/progress/$")):  # htmx polls the progress partial
        pass
    checked.check(demo, "progress (after an htmx swap)")
    checked.check(demo, "history", f"/imports/{importing}/history/")
    demo.goto(f"{stack.url}/imports/{importing}/history/")
    demo.locator("details.raw-event summary").first.click()
    checked.check(demo, "history (a raw event open)")
    checked.check(demo, "audit log", "/audit/")
    checked.check(demo, "new batch", "/batches/new/")
    checked.check(demo, "batches", "/batches/")
    batch = demo.locator("#batches a").first.get_attribute("href")
    checked.check(demo, "batch dashboard", batch)
    checked.check(demo, "API tokens", "/account/tokens/")

    reviewer = log_in(browser, stack, "reviewer")
    checked.check(reviewer, "review queue", "/review/")
    reviewer.locator("#review-queue a").first.click()
    checked.check(reviewer, "review page")
    checked.check(reviewer, "batches waiting for review", "/review/batches/")
    reviewer.goto(stack.url + "/review/batches/")
    reviewer.locator("main a[href*='/review/batches/']").first.click()
    checked.check(reviewer, "batch review")
    checked.check(reviewer, "audit log (reviewer)", "/audit/")
    checked.check(reviewer, "admin index", "/admin/")

    assert len(checked.found) == 32  # the wizard gained the step "Finishing the AMI"
    report = checked.report()
    assert report == "", "\n" + report
