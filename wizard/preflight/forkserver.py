"""A fork server for the inspection children: the interpreter and `wizard.inspect` loaded once.

Each inspection child used to be a new `python -m wizard.preflight.inspection`: ~0.1-0.15 s of
CPU to start an interpreter and import the inspector, more than inspecting a small image takes
(`bench/inspect --part child`: ~200 ms of CPU a fresh child, ~7 ms a forked one). The fork
server is that same program started once per process that inspects (a django-q2 worker, the
sandbox): it imports the inspector, then forks one child per job, which runs
`inspection.main()` exactly as the fresh interpreter did, with the limits it sets itself
(RLIMIT_AS, RLIMIT_CPU) after the fork.

What the children inherit is what a fresh interpreter had: the server is started with the
piped child's environment (`inspection.child_environment`: no AWS, database or queue
settings), in the project root, in a session of its own; it holds nothing else (it never reads
an image, a job or a credential), and each child closes every descriptor but its stdin, stdout
and stderr. Only piped jobs use it; a job that reads S3 itself needs the AWS chain in its
environment and still gets a fresh interpreter. (Forked children share the server's memory
layout, as multiprocessing's "forkserver" children do; the inspector is pure Python, and each
child is limited and killed as a fresh one was.)

The protocol (AF_UNIX SOCK_SEQPACKET, so each message keeps its bounds):
- the parent -> the server, on the control socket: b"fork" with four descriptors (SCM_RIGHTS):
  the child's stdin, stdout, stderr, and the job's own socket;
- the server -> the parent, on the job's socket: b"pid N", then, when the child has ended and
  been reaped, b"exit CODE" (Popen's returncode: negative for a signal);
- the parent -> the server, on the job's socket: b"kill" (SIGKILL; the server reaps its
  children itself, so the pid cannot have been reused). Closing the job's socket kills too.
The control socket closing (the parent ended) ends the server, and it kills what still runs.

If the server cannot be started or answer, `spawn` returns None and the caller starts a fresh
interpreter as before: the fork server saves time, it is never needed.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 10.0  # a server that does not answer a fork in this time is given up
MESSAGE = 64


class ForkedChild:
    """One child of the fork server, with the part of `subprocess.Popen`'s interface that
    `inspection.run` uses: stdin, stdout, poll(), wait(timeout), kill(), returncode."""

    def __init__(self, pid: int, job: socket.socket, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid, self.args = pid, ["wizard.preflight.forkserver", str(pid)]
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        self._job = job

    def poll(self) -> int | None:
        if self.returncode is None:
            self._receive(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self._receive(left)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(OSError):
                self._job.send(b"kill")

    def _receive(self, timeout: float | None) -> None:
        """Wait up to `timeout` for the server's word that the child ended."""
        if not select.select([self._job], [], [], timeout)[0]:
            return
        try:
            message = self._job.recv(MESSAGE)
        except OSError:
            message = b""
        if message.startswith(b"exit "):
            self.returncode = int(message[5:])
        elif not message:  # the server itself is gone: end the child, as a killed one (its only
            # case of a kill not through the server: the orphan may have been reaped already)
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            self.returncode = -signal.SIGKILL
        if self.returncode is not None:
            self._job.close()


class _Server:
    """The parent's handle on its fork server process."""

    def __init__(self, environment: dict[str, str]) -> None:
        self.owner = os.getpid()  # a forked copy of this process must start its own
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wizard.preflight.forkserver", str(theirs.fileno())],
                cwd=ROOT,
                env=environment,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a signal to the parent's process group does not reach it
            )
        finally:
            theirs.close()

    def usable(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def close(self) -> None:
        self.control.close()  # the server sees the end of its socket and exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=2)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def fork(self, stderr: int) -> ForkedChild:
        """Ask for a child; raises OSError if the server does not answer in START_SECONDS."""
        child_in, parent_in = os.pipe()
        parent_out, child_out = os.pipe()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            socket.send_fds(self.control, [b"fork"], [child_in, child_out, stderr, theirs.fileno()])
        except OSError:
            for fd in (parent_in, parent_out):
                os.close(fd)
            mine.close()
            raise
        finally:
            for fd in (child_in, child_out):
                os.close(fd)
            theirs.close()
        stdin, stdout = os.fdopen(parent_in, "wb"), os.fdopen(parent_out, "rb", buffering=0)
        ready = select.select([mine], [], [], START_SECONDS)[0]
        answer = mine.recv(MESSAGE) if ready else b""
        if not answer.startswith(b"pid "):
            for stream in (stdin, stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            mine.close()  # the server kills a child whose job socket closed
            raise OSError("the fork server did not answer")
        return ForkedChild(int(answer[4:]), mine, stdin, stdout)


_server: _Server | None = None
_lock = threading.Lock()


def available() -> bool:
    return hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


def spawn(environment: dict[str, str], stderr: int) -> ForkedChild | None:
    """A child from this process's fork server (started on first use with `environment`, the
    piped children's); None if there is none to be had: the caller starts a fresh interpreter."""
    global _server
    if not available():
        return None
    for _ in range(2):  # a server that died (killed, or out of memory) is started again once
        with _lock:
            if _server is not None and not _server.usable():
                if _server.owner == os.getpid():
                    _server.close()
                _server = None
            if _server is None:
                try:
                    _server = _Server(environment)
                except OSError:
                    return None
            server = _server
        try:
            return server.fork(stderr)
        except OSError:
            with _lock:
                if _server is server:
                    server.close()
                    _server = None
    return None


def stop() -> None:
    """End this process's fork server, if it has one (tests; the server also ends with us)."""
    global _server
    with _lock:
        if _server is not None and _server.owner == os.getpid():
            _server.close()
        _server = None


# --- the server -------------------------------------------------------------------------------


def serve(control: socket.socket) -> None:
    """Fork a child per request until the control socket closes; reap them; relay their ends."""
    from wizard.preflight import inspection  # loaded once, here: what each child would import

    inspection.preload()
    jobs: dict[int, tuple[socket.socket | None, int]] = {}  # pid -> (the job's socket, its pidfd)
    with selectors.DefaultSelector() as selector:
        selector.register(control, selectors.EVENT_READ, ("control", 0))
        while True:
            for key, _ in selector.select():
                what, pid = key.data
                if what != "control" and not _current(jobs, what, pid, key.fd):
                    continue  # handled earlier in this batch (and its descriptor's number maybe reused)
                if what == "control":
                    try:
                        message, fds, _, _ = socket.recv_fds(control, MESSAGE, 4)
                    except OSError:
                        message, fds = b"", []
                    if not message:  # the parent is gone
                        for other in jobs:
                            with contextlib.suppress(OSError):
                                os.kill(other, signal.SIGKILL)
                        return
                    if message != b"fork" or len(fds) != 4:
                        for fd in fds:
                            os.close(fd)
                        continue
                    pid = os.fork()
                    if pid == 0:
                        _child(*fds[:3])
                    for fd in fds[:3]:
                        os.close(fd)
                    new = socket.socket(fileno=fds[3])
                    pidfd = os.pidfd_open(pid)
                    jobs[pid] = (new, pidfd)
                    selector.register(pidfd, selectors.EVENT_READ, ("ended", pid))
                    selector.register(new, selectors.EVENT_READ, ("asked", pid))
                    with contextlib.suppress(OSError):
                        new.send(b"pid %d" % pid)
                elif what == "asked":
                    asking = jobs[pid][0]
                    assert asking is not None
                    try:
                        asked = asking.recv(MESSAGE)
                    except OSError:
                        asked = b""
                    if asked == b"kill" or not asked:
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGKILL)  # not reaped yet: still this child
                    if not asked:  # the parent let go of it: reap it, tell no one
                        selector.unregister(asking)
                        asking.close()
                        jobs[pid] = (None, jobs[pid][1])
                else:  # "ended"
                    told, pidfd = jobs.pop(pid)
                    _, status = os.waitpid(pid, 0)
                    selector.unregister(pidfd)
                    os.close(pidfd)
                    if told is not None:
                        selector.unregister(told)
                        with contextlib.suppress(OSError):
                            told.send(b"exit %d" % os.waitstatus_to_exitcode(status))
                        told.close()


def _current(jobs: dict[int, tuple[socket.socket | None, int]], what: str, pid: int, fd: int) -> bool:
    """Whether a ready descriptor of one select() is still the job's: an event earlier in the same
    batch may have reaped that child or let go of its socket, and a fork in between may have got
    the same descriptor number for a new job (whose own event comes with the next select)."""
    if pid not in jobs:
        return False
    asking, pidfd = jobs[pid]
    return (asking is not None and asking.fileno() == fd) if what == "asked" else pidfd == fd


def _child(stdin: int, stdout: int, stderr: int) -> None:
    """In the forked child: the three descriptors as 0, 1, 2, nothing else open, then the
    inspection child's own main(); never returns."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the server ignores it; a child need not
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - fd 0 is the job's pipe now
        from wizard.preflight import inspection

        code = inspection.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - as an interpreter would: the traceback on stderr, status 1
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends it by closing the socket
    serve(socket.socket(fileno=int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
