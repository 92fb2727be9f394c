"""One image inspection in a child process, with a wall-clock and a memory limit.

Image bytes are hostile input: a crafted image may make the inspector (`wizard.inspect`) run
long or allocate much. So it never runs in a web request, nor in the worker's own process:
`inspect_s3()` and `inspect_reader()` start `python -m wizard.preflight.inspection`, which first limits
its own address space (RLIMIT_AS, hard limit too, so it cannot raise it again) and CPU time
(RLIMIT_CPU, in case its parent dies), then inspects and sends the report back; the parent
kills it at the wall-clock limit. Whatever happens (a limit, a crash, an S3 error, garbage on
the pipe) the caller gets a report dict in `ImageReport.to_dict()`'s shape, never an exception.

Why a `python -m` subprocess and not multiprocessing: django-q2's workers are daemonic
processes, which multiprocessing does not let have children; "fork" would also copy the
worker's open database connections (and, in the sandbox, a multi-threaded server's held
locks and all its in-memory objects, which RLIMIT_AS would count). A fresh interpreter
inherits only the environment (so the standard AWS credential chain works as in the app)
and the job we send it; it needs neither Django's database nor its apps. Piped jobs (the
worker's) are forked from a fork server instead (`wizard.preflight.forkserver`): that same
program, started once per process with the piped environment and the inspector imported,
forks a child per job, which runs `main()` as the fresh interpreter would, limits included —
the interpreter's start and the imports cost more CPU than inspecting a small image.

The image is read either from S3 (the child builds its own `wizard.aws.s3.S3RangeReader` from
(bucket, key) and the app's AWS settings, passed in the job: endpoint, region, sandbox or not;
never credentials) or through the pipe: the child asks for byte ranges and the parent serves
them, capped, from a reader it holds (the worker's S3RangeReader, the sandbox's in-memory S3
object). The worker always uses the pipe: the child then gets no AWS, database or queue
settings in its environment (`child_environment`), only the bytes it asks for; the S3 mode is
for `manage.py inspect_image`.

The protocol, on the child's stdin and stdout (stray prints in the child go to stderr):
parent -> child: the job as one JSON line; then, for each read asked, 4 bytes of big-endian
length and the bytes. Child -> parent: one JSON object per line, `{"read": [offset, length]}`
or, last, `{"report": {...}, "usage": {...}}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

from wizard.preflight import forkserver
from wizard.text import shown

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]  # the project root: where the child runs
DEFAULT_SECONDS = 30.0
DEFAULT_MEMORY_MB = 256
LIMITS_CODE = "inspection-limits"
FAILED_CODE = "inspection-failed"
EXIT_MEMORY = 3  # the child ran out of its address space
MAX_READ = 16 * 1024 * 1024  # the most the parent serves for one read asked through the pipe
MAX_MESSAGE = 4 * 1024 * 1024  # a longer line from the child is garbage
ENDING_SECONDS = 1.0  # how long a child whose pipe broke is given to end by itself before it is killed
MAX_JOB = 64 * 1024

Report = dict[str, Any]
Child = subprocess.Popen[bytes] | forkserver.ForkedChild
# Piped jobs run in a child of this process's fork server (`forkserver`: the inspector loaded
# once), else in a fresh interpreter; False: always a fresh interpreter.
USE_FORKSERVER = True


# --- the reports the parent makes itself ------------------------------------------------------


def limits_report(seconds: float, memory_mb: int, exceeded: str) -> Report:
    """The finding for an image whose inspection ran out of time ("time") or memory ("memory")."""
    why = "it needed more time" if exceeded == "time" else "it needed more memory"
    return _error_report(
        LIMITS_CODE,
        f"This image could not be inspected within {seconds:g} s / {memory_mb} MiB: it may be corrupt, "
        f"or made to exhaust the inspector ({why}). VM Import would most likely fail on it too. Check the "
        "file with `python -m wizard.inspect FILE`, then upload it again or choose another image.",
        exceeded=exceeded,
    )


def failed_report(detail: str) -> Report:
    """The finding for an inspection that stopped without a report (a crash of the child)."""
    return _error_report(
        FAILED_CODE,
        f"The inspection of this image stopped without a result ({detail}): the image may be corrupt. "
        "Check the file with `python -m wizard.inspect FILE`, then upload it again or choose another image.",
    )


def unreadable_report(bucket: str, key: str, error: Exception) -> Report:
    return _error_report(
        "unreadable",
        f"The image s3://{bucket}/{key} cannot be read ({error}). VM Import would fail with "
        '"Disk validation failed [We do not have access to the given resource. Reason 403 Forbidden]". '
        "Check the bucket, the key and the permissions.",
    )


def _error_report(code: str, message: str, **extra: Any) -> Report:
    return {
        "format": "UNKNOWN",
        "ok": False,
        "findings": [{"severity": "error", "code": code, "message": message, **extra}],
    }


# --- the parent -------------------------------------------------------------------------------


def inspect_s3(
    bucket: str, key: str, *, aws: dict[str, Any], seconds: float, memory_mb: int, declared_format: str = ""
) -> Report:
    """Inspect s3://bucket/key in a limited child; `aws` is {"sandbox", "region", "endpoint_url"}."""
    job = {"source": "s3", "bucket": bucket, "key": key, "aws": aws, "declared_format": declared_format}
    return run(job, seconds=seconds, memory_mb=memory_mb)[0]


def inspect_reader(reader: Any, *, seconds: float, memory_mb: int, declared_format: str = "") -> Report:
    """Inspect what `reader` (`.size`, `.read(offset, length)`) holds, in a limited child that asks
    this process for each byte range."""
    job = {"source": "pipe", "size": int(reader.size), "declared_format": declared_format or ""}
    return run(job, seconds=seconds, memory_mb=memory_mb, reader=reader)[0]


SECRET_NAMES = ("AWS_", "DATABASE_URL", "REDIS_URL")
SECRET_PARTS = ("SECRET", "PASSWORD", "TOKEN", "CREDENTIAL")


def child_environment(job: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the worker's, without what could reach AWS, the database or the
    queue when the child reads through the pipe (it parses hostile bytes and needs none of it).
    A job reading S3 itself (`inspect_s3`, manage.py inspect_image) keeps the AWS chain."""
    environ = dict(os.environ if environ is None else environ)
    if job.get("source") != "pipe":
        return environ
    return {
        name: value
        for name, value in environ.items()
        if not name.upper().startswith(SECRET_NAMES) and not any(part in name.upper() for part in SECRET_PARTS)
    }


def run(job: dict[str, Any], *, seconds: float, memory_mb: int, reader: Any = None) -> tuple[Report, dict[str, int]]:
    """Run one job in a child with the limits: the report (or the finding of what went wrong), and
    what the child used (VmPeak and VmHWM in KiB, when it answered)."""
    job = {**job, "memory_mb": int(memory_mb), "cpu_seconds": max(1, math.ceil(seconds)) + 1}
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryFile() as errors:
        child: Child | None = None
        if job.get("source") == "pipe" and USE_FORKSERVER:
            child = forkserver.spawn(child_environment(job), errors.fileno())
        try:
            child = child or subprocess.Popen(
                [sys.executable, "-m", "wizard.preflight.inspection"],
                cwd=ROOT,
                env=child_environment(job),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=True,  # a signal to the worker's process group does not reach it
            )
        except OSError as exc:
            log.error("could not start the inspection child: %s", exc)
            return failed_report(f"the inspector could not be started: {exc.__class__.__name__}"), {}
        outcome: tuple[Any, ...] = ("failed", "the inspector's answer was broken")
        try:
            outcome = _talk(child, job, deadline, reader)
        except ReadFailed as exc:
            log.warning("inspection: a read for the child failed: %s", exc)
            outcome = ("failed", f"the image could not be read ({shown(str(exc), 300)})")
        except Exception as exc:  # noqa: BLE001 - whatever the child did, the caller gets a finding
            log.warning("inspection child: %r", exc)
            outcome = ("failed", f"the inspector's answer was broken: {exc.__class__.__name__}")
        finally:
            if outcome[0] != "timeout" and child.poll() is None:
                # A child that broke the pipe is most often ending (a MemoryError, say): its own
                # exit status says why, where a kill now would only say "killed".
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=min(ENDING_SECONDS, max(0.0, deadline - time.monotonic())))
            if child.poll() is None:
                child.kill()
            child.wait()
            for stream in (child.stdin, child.stdout):
                with contextlib.suppress(OSError):
                    stream.close()  # type: ignore[union-attr]
        errors.seek(0)
        stderr_tail = errors.read()[-4000:].decode("utf-8", "replace")
    usage = outcome[2] if len(outcome) > 2 else {}
    return _result(outcome[:2], child.returncode, stderr_tail, seconds, memory_mb), usage


def _result(
    outcome: tuple[str, Any], returncode: int | None, stderr_tail: str, seconds: float, memory_mb: int
) -> Report:
    kind, value = outcome
    if kind == "report" and isinstance(value, dict):
        return value
    if kind == "timeout" or returncode == -signal.SIGXCPU:
        return limits_report(seconds, memory_mb, "time")
    if returncode == EXIT_MEMORY or "MemoryError" in stderr_tail or "Cannot allocate memory" in stderr_tail:
        return limits_report(seconds, memory_mb, "memory")
    log.warning("inspection child ended with %s without a report: %s", returncode, stderr_tail[-1000:])
    if kind == "failed":
        return failed_report(value)
    if returncode is not None and returncode < 0:
        return failed_report(f"the inspector was ended by signal {-returncode}")
    return failed_report(f"the inspector exited with status {returncode}")


def _talk(child: Child, job: dict[str, Any], deadline: float, reader: Any) -> tuple[Any, ...]:
    """Send the job, serve the reads asked for, until the report comes, the child ends or time is up."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(job).encode() + b"\n")
    child.stdin.flush()
    out = child.stdout.fileno()
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(out, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", None
            if not selector.select(left):
                continue
            chunk = os.read(out, 65536)
            if not chunk:
                break  # the child closed its end: it is exiting
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if "read" in message:
                    _serve(child.stdin, reader, message["read"])
                elif "report" in message:
                    usage = message.get("usage") or {}
                    log.info("image inspected: %s", ", ".join(f"{k} {v} KiB" for k, v in usage.items()))
                    _wait(child, deadline)
                    return "report", message["report"], usage
            if len(buffer) > MAX_MESSAGE:
                return "failed", "the inspector's answer was too long"
    _wait(child, deadline)
    return "ended", None


def _wait(child: Child, deadline: float) -> None:
    try:
        child.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        child.kill()


class ReadFailed(Exception):
    """This process could not read the byte range the child asked for."""


def _serve(pipe: IO[bytes], reader: Any, asked: Any) -> None:
    offset, length = (int(n) for n in asked)
    data = b""
    if reader is not None and offset >= 0 and length > 0:
        try:
            data = bytes(reader.read(offset, min(length, MAX_READ)))[:MAX_READ]
        except Exception as exc:  # noqa: BLE001 - S3 or the reader, not the child: say so
            raise ReadFailed(f"{type(exc).__name__}: {exc}") from exc
    pipe.write(struct.pack(">I", len(data)) + data)
    pipe.flush()


# --- the child --------------------------------------------------------------------------------


class PipeReader:
    """A `wizard.inspect.Reader` whose bytes come from the parent, one asked range at a time."""

    def __init__(self, size: int, send: Callable[[dict[str, Any]], None], stdin: BinaryIO) -> None:
        self.size = size
        self._send = send
        self._stdin = stdin

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset < 0 or offset >= self.size:
            return b""
        self._send({"read": [offset, min(length, MAX_READ)]})
        (n,) = struct.unpack(">I", _read_exactly(self._stdin, 4))
        return _read_exactly(self._stdin, n)


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise EOFError("the parent closed the pipe")
        data += chunk
    return data


def limit(memory_mb: int, cpu_seconds: int) -> None:
    """Cap this process: address space (soft and hard: it cannot be raised again) and CPU time."""
    size = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size, size))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


# A child that fails with its peak address space at this share of the limit ran out of memory.
NEAR_LIMIT = 0.75


def usage() -> dict[str, int]:
    """What this process used, for the log: peak address space and peak resident set, KiB."""
    figures = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmPeak", "VmHWM"):
                    figures[name] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return figures


def preload() -> None:
    """What a piped job imports, loaded ahead in the fork server (its children share it)."""
    import wizard.inspect  # noqa: F401


def _inspect(job: dict[str, Any], stdin: BinaryIO, send: Callable[[dict[str, Any]], None]) -> Report:
    declared = job.get("declared_format") or ""
    if job["source"] == "pipe":
        from wizard.inspect import inspect_image

        return inspect_image(PipeReader(int(job["size"]), send, stdin), declared).to_dict()
    # From S3, with the app's own client factory; Django is configured with the AWS settings only.
    from django.conf import settings

    aws = job["aws"]
    settings.configure(
        AWS_SANDBOX=bool(aws["sandbox"]), AWS_REGION=aws["region"], AWS_ENDPOINT_URL=aws.get("endpoint_url") or ""
    )
    from botocore.exceptions import BotoCoreError, ClientError

    from wizard.aws.s3 import S3RangeReader
    from wizard.inspect import inspect_image

    try:
        return inspect_image(S3RangeReader(job["bucket"], job["key"]), declared).to_dict()
    except (ClientError, BotoCoreError) as exc:
        return unreadable_report(job["bucket"], job["key"], exc)


def main() -> int:
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # whatever else prints goes to stderr, not into the protocol
    stdin = sys.stdin.buffer

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message).encode() + b"\n")

    job = json.loads(stdin.readline(MAX_JOB))
    limit(int(job["memory_mb"]), int(job["cpu_seconds"]))
    try:
        report = _inspect(job, stdin, send)
        send({"report": report, "usage": usage()})
    except MemoryError:
        os._exit(EXIT_MEMORY)
    except BaseException:
        # Out of address space, the interpreter or a C library may fail in other ways (a
        # SystemError while importing, a thread that cannot start): near the limit, it was memory.
        if usage().get("VmPeak", 0) >= NEAR_LIMIT * int(job["memory_mb"]) * 1024:
            os._exit(EXIT_MEMORY)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
