"""The sandbox AWS server: moto's server plus VM Import and a few control endpoints.

`serve` installs the VM Import actions (see `wizard.sandbox.vmimport`),
creates the upload bucket and the `vmimport` service role (`bootstrap`), and
serves moto on host:port until SIGTERM or SIGINT, then returns.

`SandboxApp` sits in front of moto's WSGI app:

- `GET /_sandbox/clock` answers `{"now": <epoch seconds>, "speed": <x>}`;
  `POST /_sandbox/clock` with JSON `{"advance": <seconds>}` and/or
  `{"speed": <x>}` moves the sandbox clock, then answers the same.
- `POST /moto-api/reset` (moto's own reset) also forgets the import tasks,
  puts the clock back to its configured speed and runs `bootstrap` again.
- Before every other request the import tasks are brought up to date with the
  clock, so e.g. DescribeImages sees an import's AMI once it is due.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.models import iam_backends
from moto.moto_server import werkzeug_app
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition
from werkzeug.serving import make_server

from wizard.sandbox import vmimport
from wizard.sandbox.clock import SandboxClock

ROLE_NAME = vmimport.DEFAULT_ROLE
CLOCK_PATH = "/_sandbox/clock"
RESET_PATH = "/moto-api/reset"

StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the sandbox can be told at start (see `wizard.sandbox.__main__`)."""

    host: str = "127.0.0.1"
    port: int = 5000  # 0: any free port (the one taken is printed)
    region: str = "us-east-1"
    bucket: str = "import-wizard-uploads"
    cors_origins: tuple[str, ...] = ("http://127.0.0.1:8000", "http://localhost:8000")
    import_seconds: float = 60.0  # sandbox seconds from pending to completed
    clock_speed: float = 1.0  # sandbox seconds per real second


def trust_policy() -> dict[str, Any]:
    """The trust policy VM Import's guide gives the `vmimport` role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": vmimport.VMIE_PRINCIPAL},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:Externalid": "vmimport"}},
            }
        ],
    }


def role_policy(bucket: str) -> dict[str, Any]:
    """The permissions VM Import's guide gives the `vmimport` role, for imports from `bucket`."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            },
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:ModifySnapshotAttribute",
                    "ec2:CopySnapshot",
                    "ec2:RegisterImage",
                    "ec2:Describe*",
                ],
                "Resource": "*",
            },
        ],
    }


def bootstrap(config: SandboxConfig) -> None:
    """Create the upload bucket (with CORS for the browser) and the `vmimport` role.

    They are made in moto's default account, the one any access key that IAM
    does not know maps to.
    """
    partition = get_partition(config.region)
    s3 = s3_backends[DEFAULT_ACCOUNT_ID][partition]
    s3.create_bucket(config.bucket, config.region)
    s3.put_bucket_cors(
        config.bucket,
        [
            {
                "AllowedOrigin": list(config.cors_origins),
                "AllowedMethod": ["GET", "PUT", "POST", "HEAD"],
                "AllowedHeader": ["*"],
                "ExposeHeader": ["ETag"],
            }
        ],
    )
    iam = iam_backends[DEFAULT_ACCOUNT_ID][partition]
    iam.create_role(
        role_name=ROLE_NAME,
        assume_role_policy_document=json.dumps(trust_policy()),
        path="/",
        permissions_boundary=None,
        description="VM Import service role",
        tags=[],
        max_session_duration=None,
    )
    iam.put_role_policy(ROLE_NAME, ROLE_NAME, json.dumps(role_policy(config.bucket)))


class SandboxApp:
    """WSGI middleware: the `/_sandbox/` control endpoints and reset hook, then moto."""

    def __init__(
        self,
        moto_app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
        config: SandboxConfig,
        clock: SandboxClock,
        tasks: vmimport.ImportTasks,
    ) -> None:
        self.moto_app = moto_app
        self.config = config
        self.clock = clock
        self.tasks = tasks

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == CLOCK_PATH:
            return self._clock(environ, method, start_response)
        if path == RESET_PATH and method == "POST":
            return self._reset(environ, start_response)
        self.tasks.tick()
        return self.moto_app(environ, start_response)

    def _clock(
        self, environ: dict[str, Any], method: str, start_response: StartResponse
    ) -> Iterable[bytes]:
        if method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
                if "speed" in body:
                    self.clock.set_speed(float(body["speed"]))
                if "advance" in body:
                    self.clock.advance(float(body["advance"]))
            except (ValueError, TypeError, AttributeError) as error:
                return _json(start_response, "400 Bad Request", {"error": str(error)})
            self.tasks.tick()
        elif method != "GET":
            return _json(start_response, "405 Method Not Allowed", {"error": "GET or POST"})
        return _json(start_response, "200 OK", {"now": self.clock.now(), "speed": self.clock.speed})

    def _reset(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> None:
            captured[:] = [status, headers]

        chunks = self.moto_app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        status, headers = captured
        if status.startswith("200"):
            self.tasks.clear()
            self.clock.set_speed(self.config.clock_speed)
            bootstrap(self.config)
        start_response(status, headers)
        return [body]


def _json(start_response: StartResponse, status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def serve(config: SandboxConfig) -> None:
    """Run the sandbox until SIGTERM or SIGINT; then return (no traceback)."""
    # Real S3 answers CORS only as the bucket's configuration says; moto's
    # server would add "Access-Control-Allow-Origin: *" to every answer.
    werkzeug_app.DISABLE_GLOBAL_CORS = True
    clock = SandboxClock(config.clock_speed)
    tasks = vmimport.ImportTasks(clock, config.import_seconds)
    vmimport.install(tasks)
    bootstrap(config)
    app = SandboxApp(DomainDispatcherApplication(create_backend_app), config, clock, tasks)
    server = make_server(
        config.host, config.port, app, threaded=True, request_handler=MotoRequestHandler
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever(), which this (main) thread runs.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"Sandbox AWS listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
