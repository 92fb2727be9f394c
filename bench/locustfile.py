"""The users of bench/load (locust): requesters walking the wizard, reviewers approving.

Run by bench/load (headless, against a stack it started); not on its own. The accounts,
their grants and the image in the sandbox bucket are made by bench/load first; their
names come in the environment: LOAD_REQUESTERS (count), LOAD_BUCKET, LOAD_KEY.

Each requester, again and again: opens "new import", starts a draft, adds the granted S3
image as its disk, walks every step (an autosave of the step's fields as htmx sends it, then
"next"), submits, and polls its request's progress partial a few times as the page does. Each
reviewer: opens the review queue, opens the oldest request waiting and approves it. A third
kind of user fetches a static file: the anchor of every page's times.

Every sample is one HTTP request, named by page type ("step: disks", "autosave: disks",
"progress partial"). A form's POST answers 302 and is its own sample ("next: disks"); the
page it redirects to is fetched as the browser does, once, and counted as that page ("step:
encryption"), which is the page the user then reads and fills in. (Until 2026-12-07 requests
followed redirects inside the POST's sample, and each step's page was fetched again after
it: two samples in one, and a GET no browser makes.)

The users are locust's FastHttpUser (geventhttpclient): on the same 2 CPUs as the server, the
client's own CPU per request is the server's loss; HttpUser (python-requests) took about twice
as much (locust 1.8 s of CPU per 20 s of load instead of 3.4-4.9 s, bench/README.md).
"""

from __future__ import annotations

import html
import itertools
import json
import os
import random
import re
import time
from html.parser import HTMLParser
from http.cookiejar import Cookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from locust import FastHttpUser, between, task

REQUESTERS = int(os.environ.get("LOAD_REQUESTERS", "40"))
THINK = float(os.environ.get("LOAD_THINK", "1"))
# {user name: session id}, made by bench/load before the run (LOAD_SESSIONS); else each logs in.
SESSIONS: dict[str, str] = (
    json.loads(Path(os.environ["LOAD_SESSIONS"]).read_text()) if "LOAD_SESSIONS" in os.environ else {}
)
BUCKET = os.environ.get("LOAD_BUCKET", "import-wizard-uploads")
KEY = os.environ.get("LOAD_KEY", "load/disk.raw")
STEPS = ["upload", "disks", "encryption", "licence", "details", "finish", "review"]
numbers = itertools.count(1)


class FormFields(HTMLParser):
    """The fields of a page's step form (inputs, selects, textareas) with their current values."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, list[str]] = {}
        self.in_form = False
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and (a.get("id") == "step-form" or "step" in (a.get("class") or "") or a.get("hx-post")):
            self.in_form = True
        if not self.in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.setdefault(name, []).append(a.get("value") or ("on" if kind == "checkbox" else ""))
        elif tag == "select" and name:
            self.select = name
            self.fields.setdefault(name, [])
        elif tag == "option" and self.select and "selected" in a:
            self.fields[self.select].append(a.get("value") or "")
        elif tag == "textarea" and name:
            self.textarea = name
            self.fields[name] = [""]

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.fields[self.textarea][0] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "form":
            self.in_form = False


def fields_of(html: str) -> dict[str, list[str]]:
    parser = FormFields()
    parser.feed(html)
    return parser.fields


def token_of(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    return found[1] if found else ""


FORM = "application/x-www-form-urlencoded"


def cookie(name: str, value: str, host: str) -> Cookie:
    """A cookie for `host` as the server would have set it (the session made before the run)."""
    return Cookie(0, name, value, None, False, host, False, False, "/", True, False, None, False, None, None, {})


def page_type(path: str) -> str:
    """The sample name of a page a redirect leads to (as the walk names the pages it opens)."""
    if step := re.fullmatch(r"/imports/\d+/edit/(\w+)/", path):
        return f"step: {step[1]}"
    if re.fullmatch(r"/imports/\d+/", path):
        return "request page"
    if path == "/review/":
        return "review queue"
    if re.fullmatch(r"/review/\d+/", path):
        return "review detail"
    return f"other page ({path})"


def arrive() -> None:
    """Begin at a random moment of the second the user is spawned in: locust's dispatcher starts
    --spawn-rate users at the same instant once a second, and ten people whose first three pages
    land on the server within a few milliseconds are not how people arrive (each batch's first
    pages were the slowest of a run). Spawning still takes as long; only the lock-step goes."""
    time.sleep(random.uniform(0, 1))


class LoggedIn(FastHttpUser):
    abstract = True
    username = ""

    def on_start(self) -> None:
        arrive()
        session = SESSIONS.get(self.username)
        if session:  # logged in before the clock started (bench/load), as bench/progress's pollers are
            self.client.cookiejar.set_cookie(cookie("sessionid", session, urlsplit(str(self.host)).hostname or ""))
            return
        page = self.client.get("/login/", name="login page")
        fields = {
            "username": self.username,
            "password": self.username,
            "csrfmiddlewaretoken": token_of(page.text or ""),
        }
        self.client.post(
            "/login/",
            data=urlencode(fields),
            headers={"Referer": f"{self.host}/login/", "Content-Type": FORM},
            name="login",
        )

    def cookie(self, name: str) -> str:
        return next((c.value or "" for c in self.client.cookiejar if c.name == name), "")

    def think(self) -> None:
        """A person's pause between two actions of a walk: THINK seconds, 0.5x to 1.5x (0: none,
        every request right after the last answer, a closed loop that saturates any server)."""
        if THINK > 0:
            time.sleep(random.uniform(0.5, 1.5) * THINK)  # cooperative: locust patches time.sleep

    def post(self, path: str, data: dict, name: str, htmx: bool = False, **kw: Any) -> Any:
        token = self.cookie("csrftoken")  # set by the first page with a form
        headers = {"Referer": f"{self.host}{path}", "X-CSRFToken": token, "Content-Type": FORM}
        if htmx:
            headers["HX-Request"] = "true"
        body = urlencode({"csrfmiddlewaretoken": token, **data}, doseq=True)
        return self.client.post(path, data=body, headers=headers, name=name, allow_redirects=False, **kw)

    def moved(self, path: str, data: dict, name: str) -> Any:
        """A form's POST that must answer with a redirect (302), as the view does when the form is
        accepted; anything else (the form shown again with an error) is counted as a failure."""
        with self.post(path, data, name=name, catch_response=True) as answer:
            if answer.status_code != 302:
                answer.failure(f"no redirect ({answer.status_code})")
        return answer

    def follow(self, answer: Any) -> Any:
        """The page a form's 302 leads to, fetched as the browser does (one request, named by
        page type); None when the POST did not redirect."""
        location = answer.headers.get("Location", "") if answer.status_code in (301, 302, 303) else ""
        if not location:
            return None
        path = urlsplit(location).path
        return self.client.get(path, name=page_type(path), allow_redirects=False)


class Requester(LoggedIn):
    weight = 8
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.username = f"load-requester-{(next(numbers) - 1) % REQUESTERS + 1}"
        super().on_start()

    @task
    def one_import(self) -> None:
        self.client.get("/imports/new/", name="new import")
        with self.post("/imports/start/", {}, name="start draft", catch_response=True) as started:
            found = re.search(r"/imports/(\d+)/edit/", started.headers.get("Location", ""))
            if started.status_code != 302 or not found:
                started.failure(f"no draft ({started.status_code})")
                return
        pk = int(found[1])
        self.follow(started)  # the upload step
        self.think()
        source = {"kind": "s3", "s3_bucket": BUCKET, "s3_key": KEY}
        added_answer = self.moved(f"/imports/{pk}/sources/", source, name="add S3 source")
        added = time.monotonic()
        page = self.follow(added_answer)  # the upload step again, with the disk
        for name in STEPS:
            if page is None or page.status_code != 200 or name == "review":
                break
            self.think()  # reads the step, fills it in
            fields = fields_of(page.text)
            fields.pop("csrfmiddlewaretoken", None)
            if name == "details":
                fields["description"] = [f"load test {pk}"]
            fields["nav"] = [""]
            saved = self.post(f"/imports/{pk}/edit/{name}/", fields, name=f"autosave: {name}", htmx=True)
            version = re.search(r'name="version" id="version" value="(\d+)"', saved.text)
            if version:
                fields["version"] = [version[1]]
            fields["nav"] = ["next"]
            self.think()
            page = self.follow(self.moved(f"/imports/{pk}/edit/{name}/", fields, name=f"next: {name}"))
        if page is None or page.status_code != 200:
            return
        self.think()
        page = self.await_inspection(page, pk, added)
        # The review step lists the image's warnings under a box to tick: a person ticks it.
        warnings = re.search(r'name="warnings" value="([^"]*)"', page.text)
        ticked = {"acknowledge": "yes", "warnings": html.unescape(warnings[1])} if warnings else {}
        with self.post(f"/imports/{pk}/submit/", ticked, name="submit", catch_response=True) as answer:
            # Submitted: sent on to the request's page (a reviewer may have approved it in between).
            if not (answer.status_code == 302 and answer.headers.get("Location", "").endswith(f"/imports/{pk}/")):
                shown = self.follow(answer) if answer.status_code == 302 else answer
                text = shown.text if shown is not None else ""
                why = re.search(r'<p class="(?:message )?error[^"]*"[^>]*>([^<]*)', text)
                why = why or re.search(r"<title>([^<]*)", text)
                answer.failure(f"not submitted ({answer.status_code}): {why[1].strip() if why else 'no message'}")
                return
        self.follow(answer)  # the request's page
        for _ in range(3):
            self.wait()
            self.client.get(f"/imports/{pk}/progress/", headers={"HX-Request": "true"}, name="progress partial")

    def await_inspection(self, page: Any, pk: int, added: float) -> Any:
        """As the page does while the worker inspects the image: poll each disk's inspection
        partial every 2 s until it says done (HX-Trigger inspection-done), then show the review
        step again. How long it took from the disk's adding is reported as "inspection done
        (wait)"; a person cannot submit before."""
        pending = re.findall(r'hx-get="(/disks/\d+/inspection/[^"]*)"', page.text)
        if not pending:
            return page
        deadline = time.monotonic() + 60
        for url in pending:
            while time.monotonic() < deadline:
                answer = self.client.get(html.unescape(url), headers={"HX-Request": "true"}, name="inspection partial")
                trigger = answer.headers.get("HX-Trigger") if answer.headers else None
                if trigger == "inspection-done" or answer.status_code != 200:
                    break
                time.sleep(2)  # cooperative: locust patches time.sleep (gevent)
        self.environment.events.request.fire(
            request_type="WAIT",
            name="inspection done (wait)",
            response_time=(time.monotonic() - added) * 1000,
            response_length=0,
            exception=None if time.monotonic() < deadline else TimeoutError("still inspecting after 60 s"),
            context={},
        )
        return self.client.get(f"/imports/{pk}/edit/review/", name="step: review")


class Reviewer(LoggedIn):
    weight = 1
    wait_time = between(1, 2)

    def on_start(self) -> None:
        self.username = "load-reviewer"
        self.queue: Any = None  # the queue an approval sent the reviewer back to
        super().on_start()

    @task
    def approve_one(self) -> None:
        queue, self.queue = self.queue or self.client.get("/review/", name="review queue"), None
        waiting = re.findall(r'href="/review/(\d+)/"', queue.text or "")
        if not waiting:
            return
        pk = min(int(p) for p in waiting)
        self.client.get(f"/review/{pk}/", name="review detail")
        # Another reviewer may have decided it meanwhile: that is not an error.
        self.queue = self.follow(self.moved(f"/review/{pk}/decide/", {"decision": "approve"}, name="approve"))


class StaticFile(FastHttpUser):
    weight = 1
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        arrive()

    @task
    def css(self) -> None:
        self.client.get("/static/css/wizard.css", name="static file (anchor)")
