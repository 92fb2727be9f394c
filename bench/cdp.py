"""Headless Chromium driven over the DevTools protocol on a pipe, with nothing listening to the
network (for the benches).

Playwright always enables the DevTools Network domain, and Chromium then hands every request
body it holds in memory (an ArrayBuffer PUT, as the upload widget sends) to Playwright in
base64 — 8 MiB parts go from Chromium to Playwright's driver to Python: uploads run at a few
MiB/s. A person's browser does none of that, so the benches time uploads through this small
client instead: Target, Page, Runtime and DOM only; Network only when latency is emulated,
with no request bodies in its events (maxPostDataSize 0).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium; `page()` opens a tab."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="bench-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds() -> None:  # in the child: Chromium reads commands on fd 3, writes answers on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 5) for fd in (to_child_r, from_child_w)]  # out of the way
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *ARGS, f"--user-data-dir={self.profile}", "about:blank"],
            preexec_fn=fds,
            close_fds=False,  # fds 3 and 4 (every other fd of ours is close-on-exec)
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._lock = threading.Lock()
        self._answers: dict[int, dict] = {}
        self._events: list[dict] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_child, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(1 << 16)
                if not chunk:
                    break
                buffer += chunk
                while b"\0" in buffer:
                    raw, buffer = buffer.split(b"\0", 1)
                    message = json.loads(raw)
                    with self._cond:
                        if "id" in message:
                            self._answers[message["id"]] = message
                        else:
                            self._events.append(message)
                        self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 3600) -> Any:
        with self._lock:
            self._next += 1
            ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._answers:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise CdpError(f"{method}: no answer in {timeout} s")
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def wait_event(self, method: str, session: str | None = None, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, event in enumerate(self._events):
                    if event["method"] == method and (session is None or event.get("sessionId") == session):
                        return self._events.pop(i)
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise CdpError(f"no {method} in {timeout} s")

    def page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, session)

    def close(self) -> None:
        with contextlib.suppress(CdpError, OSError):
            self.send("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_child)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method: str, params: dict | None = None, timeout: float = 3600) -> Any:
        return self.browser.send(method, params, self.session, timeout)

    def goto(self, url: str, timeout: float = 60) -> None:
        self.send("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", self.session, timeout)

    def evaluate(self, expression: str, timeout: float = 3600) -> Any:
        """The value of a JavaScript expression (a promise's, once it settles)."""
        answer = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout,
        )
        if "exceptionDetails" in answer:
            raise CdpError(answer["exceptionDetails"].get("exception", {}).get("description") or str(answer))
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, every: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(every)
        raise CdpError(f"never true: {expression}")

    def set_input_files(self, selector: str, path: Path) -> None:
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(path)]})

    def emulate_latency(self, ms: float) -> None:
        """Chromium's own emulation: each request's answer waits `ms` more."""
        self.send("Network.enable", {"maxPostDataSize": 0})
        self.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": ms, "downloadThroughput": -1, "uploadThroughput": -1},
        )
