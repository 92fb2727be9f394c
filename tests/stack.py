"""Start the whole application the way the README says (`make run`), on free ports, for tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Stack:
    """`make run` in its own process group, with its state in `data_dir`."""

    def __init__(self, data_dir: Path, **env: str):
        self.data_dir = data_dir
        self.web_port = free_port()
        self.sandbox_port = free_port()
        self.env = {
            **os.environ,
            "WIZARD_DATA_DIR": str(data_dir),
            "WEB_PORT": str(self.web_port),
            "SANDBOX_PORT": str(self.sandbox_port),
            "SANDBOX_IMPORT_SECONDS": "8",
            "WIZARD_POLL_SECONDS": "0.5",
            "WEB_WORKERS": "1",
            "WIZARD_DEMO_DATA": "0",  # tests start from an empty application unless they ask for the demo data
            **env,
        }
        for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
            if name not in env:
                self.env.pop(name, None)
        self.log_path = data_dir / "run.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def start(self, timeout: float = 120) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"make run exited early:\n{self.log()}"
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the stack did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """The main pid of each part, as `scripts/run.py` reports them."""
        return {m[0]: int(m[1]) for m in re.findall(r"started (\w+) \(pid (\d+)\)", self.log())}

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C: SIGINT to the foreground process group, as a terminal sends it."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in self.pids().values():
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead, only not yet reaped.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def login(session: requests.Session, base: str, username: str, password: str) -> None:
    page = session.get(base + "/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    response = session.post(
        base + "/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": base + "/login/"},
    )
    assert response.url.endswith("/imports/"), f"login as {username} failed"


def csrf(session: requests.Session, base: str, path: str) -> str:
    page = session.get(base + path)
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]


@contextmanager
def running(data_dir: Path, **env: str) -> Iterator[Stack]:
    """A started stack, killed (with everything it started) when the block ends."""
    stack = Stack(data_dir, **env)
    try:
        stack.start()
        yield stack
    finally:
        stack.kill()
