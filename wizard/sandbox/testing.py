"""Run a real sandbox server in a subprocess, for tests of any package.

    with SandboxProcess(import_seconds=10, clock_speed=0) as sb:
        ec2 = sb.client("ec2")
        task = ec2.import_image(DiskContainers=[...])
        sb.advance(10)  # the task is completed now
        sb.faults(throttle={"every": 2, "actions": ["DescribeImportImageTasks"]})
        sb.clear_faults()
        sb.reset()      # back to an empty sandbox with the bucket and role

The server runs `python -m wizard.sandbox` on a free port of 127.0.0.1 and
talks to the test over HTTP only, as AWS would. Its output goes to a log file
(`log_path`), shown when it fails to start or stop, removed after a clean stop.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"Sandbox AWS listening on (http://\S+)")
DUMMY_KEY = "testing"


class SandboxProcess:
    """A sandbox server subprocess: start, clock control, reset, boto3 clients, stop."""

    def __init__(
        self,
        *,
        import_seconds: float | None = None,
        clock_speed: float | None = None,
        region: str = "us-east-1",
        bucket: str = "import-wizard-uploads",
        cors_origins: Sequence[str] | None = None,
        faults: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.region = region
        self.bucket = bucket
        self.endpoint = ""
        self.startup_timeout = startup_timeout
        self._env = {
            **os.environ,
            "SANDBOX_HOST": "127.0.0.1",
            "SANDBOX_PORT": "0",
            "SANDBOX_REGION": region,
            "SANDBOX_BUCKET": bucket,
            **({"SANDBOX_IMPORT_SECONDS": str(import_seconds)} if import_seconds is not None else {}),
            **({"SANDBOX_CLOCK_SPEED": str(clock_speed)} if clock_speed is not None else {}),
            **({"SANDBOX_CORS_ORIGINS": ",".join(cors_origins)} if cors_origins is not None else {}),
            # Faults only when asked for, whatever the caller's environment says.
            "SANDBOX_FAULTS": json.dumps(dict(faults or {})),
            **(env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file = tempfile.NamedTemporaryFile(prefix="sandbox-", suffix=".log", delete=False)  # noqa: SIM115 - closed in stop()
        self.log_path = Path(self._log_file.name)

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.running:
            self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the server and wait until it answers."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "wizard.sandbox"],
            cwd=PROJECT_ROOT,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the sandbox exited at start:\n{self.log()}")
            found = LISTENING.search(self.log())
            if found:
                self.endpoint = found.group(1)
                self.clock()
                return
            time.sleep(0.05)
        self._process.kill()
        self._process.wait()
        raise RuntimeError(f"the sandbox did not start in {self.startup_timeout} s:\n{self.log()}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> str:
        """Signal the server (SIGTERM); it must exit with code 0 within `timeout` seconds.

        Returns everything it printed; the log file is removed after a clean exit.
        """
        assert self._process is not None, "start() first"
        self._process.send_signal(signum)
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise AssertionError(f"the sandbox ignored signal {signum}:\n{self.log()}") from None
        finally:
            self._log_file.close()
        output = self.log()
        if code != 0:
            raise AssertionError(f"the sandbox exited with {code}:\n{output}")
        self.log_path.unlink()
        return output

    def log(self) -> str:
        """Everything the server has printed so far."""
        return self.log_path.read_text(errors="replace")

    def clock(self, **changes: float) -> dict[str, float]:
        """GET the sandbox clock, or POST changes to it (`advance=`, `speed=`)."""
        data = json.dumps(changes).encode() if changes else None
        return self._call("/_sandbox/clock", data)

    def advance(self, seconds: float) -> float:
        """Move the sandbox clock forward; returns its new time."""
        return self.clock(advance=seconds)["now"]

    def faults(self, **spec: Any) -> dict[str, Any]:
        """Set faults (kind=spec, None removes a kind; see `wizard.sandbox.faults`).

        Returns what GET /_sandbox/faults answers afterwards.
        """
        return self._call("/_sandbox/faults", json.dumps(spec).encode())

    def fault_status(self) -> dict[str, Any]:
        """The faults in force, with their counters (GET /_sandbox/faults)."""
        return self._call("/_sandbox/faults", None)

    def clear_faults(self) -> dict[str, Any]:
        """Remove every fault; stalled tasks go on."""
        return self._call("/_sandbox/faults", None, method="DELETE")

    def reset(self) -> None:
        """Empty the sandbox (moto's reset and the import tasks); bucket and role come back."""
        self._call("/moto-api/reset", b"")

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client of `service` with dummy credentials, pointed at the sandbox.

        `kwargs` go to boto3.client (e.g. config=, or region_name= for another region).
        """
        import boto3

        return boto3.client(  # type: ignore[call-overload]  # any service: boto3-stubs types literal names only
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=DUMMY_KEY,
            aws_secret_access_key=DUMMY_KEY,
            **{"region_name": self.region, **kwargs},
        )

    def _call(self, path: str, data: bytes | None, method: str | None = None) -> Any:
        request = urllib.request.Request(self.endpoint + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
