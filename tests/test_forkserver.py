"""The inspection children's fork server (wizard.preflight.forkserver), with real processes.

A forked child must be what a fresh `python -m wizard.preflight.inspection` was: only its three
pipes open, the piped environment (no credentials), a session of its own, the limits set; the
server started once per process and again if it died; nothing left running when the server,
the job or the parent goes away.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.images import raw_mbr
from wizard.preflight import forkserver, inspection

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not forkserver.available(), reason="no pidfd_open or send_fds here")


class Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


@pytest.fixture
def fresh_server():
    forkserver.stop()  # the next spawn starts a server with this test's environment
    yield
    forkserver.stop()


def gone(pid: int, within: float = 5.0) -> bool:
    """The process ended (reaped, or a zombie waiting for its reaper) within `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def started(memory_mb: int = 64) -> tuple[forkserver.ForkedChild, Any]:
    """A forked child that has read its job and waits for the first range it asked for."""
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - returned: the child's stderr for its life
    child = forkserver.spawn(inspection.child_environment({"source": "pipe"}), errors.fileno())
    assert child is not None and child.stdin is not None and child.stdout is not None
    job = {"source": "pipe", "size": 4096, "declared_format": "", "memory_mb": memory_mb, "cpu_seconds": 5}
    child.stdin.write(json.dumps(job).encode() + b"\n")
    child.stdin.flush()
    assert json.loads(child.stdout.readline())["read"][0] == 0  # inside main(), past the limits
    return child, errors


def test_a_forked_child_has_only_its_pipes_the_piped_environment_its_own_session_and_the_limits(
    fresh_server, monkeypatch
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-child")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/w")
    monkeypatch.setenv("WIZARD_INSPECT_SECONDS", "30")
    child, errors = started(memory_mb=64)
    try:
        environ = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
        assert b"WIZARD_INSPECT_SECONDS=30" in environ
        assert not [v for v in environ if v.startswith((b"AWS_", b"DATABASE_URL"))]
        # stdin; stdout and stderr both the errors file, as main() points stray prints there;
        # 3, main()'s protocol channel (its stdout pipe): nothing of the server's, no socket
        links = {int(fd): os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{child.pid}/fd")}
        assert sorted(links) == [0, 1, 2, 3] and links[1] == links[2] == os.readlink(f"/proc/self/fd/{errors.fileno()}")
        assert links[0].startswith("pipe:") and links[3].startswith("pipe:") and links[0] != links[3]
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
        limits = Path(f"/proc/{child.pid}/limits").read_text()
        assert f"Max address space         {64 * 1024 * 1024}" in limits
        assert "Max cpu time              5" in limits
    finally:
        child.kill()
    assert child.wait(timeout=5) == -signal.SIGKILL and gone(child.pid)


def test_one_server_serves_every_job_and_a_dead_one_is_started_again(fresh_server):
    first = inspection.inspect_reader(Bytes(raw_mbr(64 * 1024)), seconds=30, memory_mb=256)
    server = forkserver._server
    assert first["format"] == "RAW" and server is not None
    assert inspection.inspect_reader(Bytes(raw_mbr(64 * 1024)), seconds=30, memory_mb=256) == first
    assert forkserver._server is server  # the same process forked both
    server.process.kill()
    server.process.wait()
    assert inspection.inspect_reader(Bytes(raw_mbr(64 * 1024)), seconds=30, memory_mb=256) == first
    assert forkserver._server is not None and forkserver._server.process.pid != server.process.pid


def test_a_child_whose_server_dies_is_ended_and_reported_killed(fresh_server):
    child, errors = started()
    assert forkserver._server is not None
    forkserver._server.process.kill()
    assert child.wait(timeout=5) == -signal.SIGKILL and gone(child.pid)


def test_a_child_whose_parent_lets_go_of_it_is_killed(fresh_server):
    child, errors = started()
    child._job.close()  # neither "kill" nor waiting for its end: the server must not leave it
    assert gone(child.pid)
    assert inspection.inspect_reader(Bytes(raw_mbr(64 * 1024)), seconds=30, memory_mb=256)["format"] == "RAW"


def test_the_server_ends_with_the_process_that_started_it(tmp_path):
    code = (
        "import os, sys\n"
        "from tests.images import raw_mbr\n"
        "from wizard.preflight import forkserver, inspection\n"
        "class B:\n"
        "    data = raw_mbr(64 * 1024); size = len(data)\n"
        "    def read(self, o, n): return self.data[o:o + n]\n"
        "assert inspection.inspect_reader(B(), seconds=30, memory_mb=256)['format'] == 'RAW'\n"
        "print(forkserver._server.process.pid, flush=True)\n"
        "os._exit(0)  # no clean-up: as a worker that is killed\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert gone(int(done.stdout.split()[0]))


def test_without_an_answering_server_a_fresh_interpreter_inspects(fresh_server, monkeypatch):
    def no_answer(self, stderr):
        raise OSError("the fork server did not answer")

    monkeypatch.setattr(forkserver._Server, "fork", no_answer)
    assert forkserver.spawn(inspection.child_environment({"source": "pipe"}), 2) is None
    report = inspection.inspect_reader(Bytes(raw_mbr(64 * 1024)), seconds=30, memory_mb=256)
    assert report["format"] == "RAW" and report["ok"]


def test_a_child_that_ends_as_its_kill_is_asked_for_leaves_the_server_serving(fresh_server):
    """The child's end and the parent's "kill" (or its letting go) ready in one select(): the
    end handled first, the kill must find nothing left to do. It once raised KeyError there,
    the server died, and the next job's child was reported killed. The server is stopped
    while both happen, so that its next select() sees them together."""
    child, errors = started()
    server = forkserver._server
    assert server is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        os.kill(child.pid, signal.SIGKILL)  # ends by itself, as far as the server knows
        assert gone(child.pid)  # a zombie of the stopped server: its pidfd is ready first
        child.kill()  # then the parent's word on the job's socket
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert child.wait(timeout=5) == -signal.SIGKILL
    assert inspection.inspect_reader(Bytes(raw_mbr(64 * 1024)), seconds=30, memory_mb=256)["format"] == "RAW"
    assert forkserver._server is server and server.process.poll() is None
