"""The progress partial's polls in a real browser: an unchanged one is revalidated (If-None-Match,
answered 304) and nothing is swapped; a change is swapped in.

The polled element names its own ETag in hx-headers, so htmx asks If-None-Match from the first
poll on; a request the page makes conditional itself bypasses Chromium's HTTP cache, so htmx
gets the 304 as it is, and a 304 swaps nothing (base.html's htmx-config). The element carries a
mark set from the test: it stays until the request changes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect

from tests.stack import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SUBMITTED = """
from django.contrib.auth import get_user_model
from wizard.models import ImportRequest
demo = get_user_model().objects.get(username="demo")
print(ImportRequest.objects.create(owner=demo, status="submitted", description="poll test").pk)
"""


def _shell(stack, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=ROOT,
        env={**stack.env, "WIZARD_LOG_LEVEL": "ERROR"},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_an_unchanged_poll_is_a_304_and_swaps_nothing(stack, page):
    pk = int(_shell(stack, SUBMITTED))
    answers: list[tuple[int, str]] = []

    def seen(response) -> None:
        if response.url.endswith(f"/imports/{pk}/progress/"):
            # all_headers: what went on the wire, the browser cache's If-None-Match included
            answers.append((response.status, response.request.all_headers().get("if-none-match", "")))

    page.on("response", seen)
    page.goto(stack.url + "/login/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("button[type=submit], input[type=submit]")
    expect(page).to_have_url(re.compile(r"/imports/$"))

    page.goto(f"{stack.url}/imports/{pk}/")
    expect(page.locator("#progress")).to_contain_text("Waiting for a reviewer")
    page.evaluate("document.getElementById('progress').dataset.mark = 'kept'")
    deadline = time.monotonic() + 30
    while len(answers) < 3 and time.monotonic() < deadline:  # htmx polls every 2 s
        page.wait_for_timeout(500)
    assert len(answers) >= 3, answers
    etag = json.loads(page.get_attribute("#progress", "hx-headers") or "{}").get("If-None-Match")
    # Every poll asks with the ETag of what the page shows (hx-headers), the first one too: the
    # page itself carried the partial, so its first poll is a 304 as well, not a second render.
    assert etag and all(sent == etag for _, sent in answers), (etag, answers)
    assert all(status == 304 for status, _ in answers), answers
    assert page.evaluate("document.getElementById('progress').dataset.mark") == "kept"  # nothing swapped
    expect(page.locator("#request-status")).to_have_text("Waiting for review")

    _shell(
        stack,
        f"from wizard.models import ImportRequest; ImportRequest.objects.filter(pk={pk}).update(status='rejected')",
    )
    expect(page.locator("#request-status")).to_have_text("Rejected", timeout=15_000)  # a change is swapped in
    assert page.evaluate("document.getElementById('progress').dataset.mark") is None
    assert page.locator("#progress[hx-trigger]").count() == 0  # and the polling ends


ELAPSED = [0, 1, 59, 60, 61, 599, 630, 3599, 3600, 3660, 7199, 7260, 2 * 86400 + 61]
TIME_LEFT = [(630, 25), (30, 50), (100, 3), (7200, 97), (40, 60), (3600, 99), (59, 50)]


def test_the_elapsed_time_and_time_left_move_on_as_the_server_writes_them(stack, page):
    """wizard.js's words for [data-elapsed] (and [data-progress]) are the server's: the same
    function of the seconds, in the browser; and they move on while the page stays."""
    from datetime import timedelta

    from wizard.imports import progress
    from wizard.views.imports import _about

    page.goto(stack.url + "/login/")  # base.html: wizard.js on every page
    shown = page.evaluate(
        """([elapsed, left]) => {
            const made = [];
            for (const s of elapsed) {
                const e = document.createElement('span'); e.dataset.elapsed = s; made.push(e);
            }
            for (const [s, p] of left) {
                const e = document.createElement('span'); e.dataset.elapsed = s; e.dataset.progress = p; made.push(e);
            }
            made.forEach((e) => document.body.append(e));
            document.dispatchEvent(new Event('htmx:afterSettle'));  // as after a swap
            return made.map((e) => e.textContent);
        }""",
        [ELAPSED, TIME_LEFT],
    )
    expected = [progress.rough_duration(timedelta(seconds=s)) for s in ELAPSED]
    expected += [_about(progress.time_left(timedelta(seconds=s), p)) for s, p in TIME_LEFT]
    assert shown == expected

    # 10 min 55 s as swapped in: by the first tick (every 10 s) after 5 s it says 11 min, with no new answer.
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', '<dd id=moving data-elapsed=655>10 min</dd>');"
        "document.dispatchEvent(new Event('htmx:afterSettle'))"
    )
    expect(page.locator("#moving")).to_have_text("10 min")
    expect(page.locator("#moving")).to_have_text("11 min", timeout=20_000)
