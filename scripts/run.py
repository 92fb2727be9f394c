"""Start the whole application: sandbox AWS, django-q2 cluster and web server, together.

`make run` calls this after installing requirements. It migrates, creates the demo
users (sandbox only), then starts each part in its own session so that Ctrl-C reaches
only this supervisor, which signals each part's main pid (SIGTERM), waits, and kills
what is left. If any part dies, the others are stopped too. Once every part is up, it seeds
the demo requests in the background (sandbox only, WIZARD_DEMO_DATA; `manage.py demo_data`).

Environment (see README): WEB_HOST, WEB_PORT, WIZARD_SANDBOX, SANDBOX_HOST,
SANDBOX_PORT, SANDBOX_IMPORT_SECONDS, WEB_WORKERS, WEB_THREADS, plus everything config.settings reads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STOP_GRACE_SECONDS = 20


def log(message: str) -> None:
    print(f"[run] {message}", flush=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "")
    return default if value == "" else value.strip().lower() in {"1", "true", "yes", "on"}


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True)


def wait_for_port(host: str, port: int, what: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"[run] {what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"[run] {what} did not answer on {host}:{port} within {seconds:.0f} s")


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class Supervisor:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.jobs: list[tuple[str, subprocess.Popen]] = []  # one-off commands beside the parts
        self.stopping = False

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
        self.procs.append((name, proc))
        log(f"started {name} (pid {proc.pid})")
        return proc

    def start_job(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        """A command that runs once while the parts serve (the demo data): its end, even a failed
        one, stops nothing; Ctrl-C stops it with the parts."""
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
        self.jobs.append((name, proc))
        log(f"started {name} in the background (pid {proc.pid})")

    def _reap_jobs(self) -> None:
        for name, proc in list(self.jobs):
            if proc.poll() is not None:
                self.jobs.remove((name, proc))
                log(f"{name} done" if proc.returncode == 0 else f"{name} failed (exit {proc.returncode}): see above")

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for name, proc in self.jobs:
            if proc.poll() is None:
                log(f"stopping {name} (pid {proc.pid})")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # In reverse order of start, one after the other: the worker finishes its
        # current AWS call before the sandbox it talks to goes away.
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                log(f"stopping {name} (pid {proc.pid})")
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in {STOP_GRACE_SECONDS} s: killing it")
            # Anything the part left in its session (e.g. worker children) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log("stopped")

    def wait(self) -> int:
        """Block until a part exits or we are told to stop; returns the exit code."""
        while not self.stopping:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    log(f"{name} exited with code {proc.returncode}; stopping the others")
                    self.stop()
                    return 1
            self._reap_jobs()
            time.sleep(0.5)
        return 0


def main() -> int:
    web_host = os.environ.get("WEB_HOST", "127.0.0.1")
    web_port = int(os.environ.get("WEB_PORT", "8000"))
    sandbox = env_bool("WIZARD_SANDBOX", True)
    sandbox_host = os.environ.get("SANDBOX_HOST", "127.0.0.1")
    sandbox_port = int(os.environ.get("SANDBOX_PORT", "5000"))

    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if sandbox:
        origins = f"http://{web_host}:{web_port},http://localhost:{web_port},http://127.0.0.1:{web_port}"
        env.setdefault("SANDBOX_CORS_ORIGINS", origins)
        env.setdefault("SANDBOX_BUCKET", env.get("WIZARD_BUCKET", "import-wizard-uploads"))
        env.setdefault("SANDBOX_REGION", env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1")))

    busy = [
        p
        for h, p in [(web_host, web_port)] + ([(sandbox_host, sandbox_port)] if sandbox else [])
        if not port_free(h, p)
    ]
    if busy:
        log(f"port(s) {', '.join(map(str, busy))} already in use: stop what runs there or set WEB_PORT / SANDBOX_PORT")
        return 2

    manage("migrate", "--noinput", "-v", "0")
    manage("createcachetable")
    if sandbox:
        manage("demo_users")

    sup = Supervisor()

    def on_signal(signum: int, frame: object) -> None:
        log(f"got {signal.Signals(signum).name}")
        sup.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        if sandbox:
            proc = sup.start("sandbox", [PYTHON, "-m", "wizard.sandbox"], env)
            wait_for_port(sandbox_host, sandbox_port, "sandbox", proc)
        sup.start("worker", [PYTHON, "manage.py", "qcluster"], env)
        web = sup.start(
            "web",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"{web_host}:{web_port}",
                "--workers",
                env.get("WEB_WORKERS", "2"),
                "--threads",
                env.get("WEB_THREADS", "4"),
                # One JSON line per request, its query's secrets masked (wizard.logs).
                "--access-logfile",
                "-",
                "--logger-class",
                "wizard.logs.GunicornLogger",
                "--graceful-timeout",
                "10",
                # Longer than gunicorn's 2 s: clients that reuse a connection (pollers, load) do not
                # race its closing (bench/load saw those resets).
                "--keep-alive",
                "5",
                "--no-control-socket",
            ],
            env,
        )
        wait_for_port(web_host, web_port, "web", web)
    except BaseException:
        sup.stop()
        raise
    log(f"Import Wizard is up: http://{web_host}:{web_port}/  (Ctrl-C stops everything)")
    if sandbox:
        log(f"sandbox AWS: http://{sandbox_host}:{sandbox_port}  (log in as demo/demo or reviewer/reviewer)")
        if env_bool("WIZARD_DEMO_DATA", True):
            # Demo requests in every state, through the running stack (its worker inspects and
            # dispatches them): in the background, so the start does not wait for it.
            sup.start_job("demo data", [PYTHON, "manage.py", "demo_data"], env)
    return sup.wait()


if __name__ == "__main__":
    sys.exit(main())
