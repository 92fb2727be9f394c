"""The sandbox AWS server: moto's server plus VM Import and a few control endpoints.

`serve` installs the VM Import actions (see `wizard.sandbox.actions`),
creates the upload bucket and the `vmimport` service role (`bootstrap`), and
serves moto on host:port until SIGTERM or SIGINT, then returns.

`SandboxApp` sits in front of moto's WSGI app:

- `GET /_sandbox/clock` answers `{"now": <epoch seconds>, "speed": <x>}`;
  `POST /_sandbox/clock` with JSON `{"advance": <seconds>}` and/or
  `{"speed": <x>}` moves the sandbox clock, then answers the same.
- `GET /_sandbox/faults` answers the faults in force: each kind as set (call
  faults with counters "matched" and "injected", new-task faults with
  "applied"), and under "tasks" the stalls and failures pinned to running
  tasks by id. `POST /_sandbox/faults` with a JSON object of kind: spec (null
  removes a kind) merges it in and answers the same; `DELETE` clears them all
  and lets stalled tasks go on. The shapes are in `wizard.sandbox.faults`.
  A bad document is a 400 {"error": ...} and changes nothing.
- `POST /moto-api/reset` (moto's own reset) also forgets the import tasks,
  puts the clock back to its configured speed, the faults back to the
  configured ones (SANDBOX_FAULTS; none by default) and runs `bootstrap` again.
- Before every other request the import tasks are brought up to date with the
  clock, so e.g. DescribeImages sees an import's AMI once it is due. An EC2
  call's parameters are then read (query string and form body) and checked as
  EC2 checks them: a value with a character XML 1.0 cannot carry (NUL, most C0
  controls, U+FFFE, U+FFFF) is refused with HTTP 400 InvalidParameterValue
  "Value (...) for parameter X is invalid. Invalid or illegal XML character
  specified" (EC2's own answer, as quoted in aws/aws-cli#53), so nothing
  unparsable is ever stored and echoed back by moto. Then the call faults are
  applied (by action, and by the task ids the call names).

`serve` also installs `wizard.sandbox.s3fixes` (S3 answers moto gets wrong),
whose `fix_request` the middleware applies to every request, and
`wizard.sandbox.s3join` (CompleteMultipartUpload joined on disk, part by part).
"""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any
from urllib.parse import parse_qs

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

from wizard import logs
from wizard.aws import policies
from wizard.sandbox import actions, imagecheck, s3fixes, s3join, taskstore
from wizard.sandbox import faults as faults_module
from wizard.sandbox import images as image_calls
from wizard.sandbox.clock import SandboxClock
from wizard.sandbox.faults import CallError, Faults, FaultSpecError

log = logging.getLogger("wizard.sandbox")

ROLE_NAME = actions.DEFAULT_ROLE
CLOCK_PATH = "/_sandbox/clock"
FAULTS_PATH = "/_sandbox/faults"
RESET_PATH = "/moto-api/reset"
COPY_SHARE = 0.05

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
    faults: str = ""  # JSON: the faults in force at start and after reset
    inspect_min_bytes: int = imagecheck.DEFAULT_MIN_BYTES  # smaller objects are not inspected


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
        assume_role_policy_document=json.dumps(policies.trust_policy()),
        path="/",
        permissions_boundary=None,
        description="VM Import service role",
        tags=[],
        max_session_duration=None,
    )
    # The guide's policies (wizard.aws.policies), with its KMS statement for any key of the account:
    # a well set-up account, where encrypting with a key passes the account check.
    iam.put_role_policy(ROLE_NAME, ROLE_NAME, json.dumps(policies.role_policy([config.bucket], ["*"])))


class SandboxApp:
    """WSGI middleware: the `/_sandbox/` control endpoints and reset hook, then moto."""

    def __init__(
        self,
        moto_app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
        config: SandboxConfig,
        clock: SandboxClock,
        tasks: taskstore.ImportTasks,
        faults: Faults | None = None,
    ) -> None:
        self.moto_app = moto_app
        self.config = config
        self.clock = clock
        self.tasks = tasks
        self.faults = faults or tasks.faults

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == CLOCK_PATH:
            return self._clock(environ, method, start_response)
        if path == FAULTS_PATH:
            return self._faults(environ, method, start_response)
        if path == RESET_PATH and method == "POST":
            return self._reset(environ, start_response)
        self.tasks.tick()
        params = _ec2_params(environ)
        if params is not None:
            refused = illegal_parameter(params)
            if refused is not None:
                return _ec2_error(start_response, refused)
            action = (params.get("Action") or [""])[0]
            if self.faults.active and action:
                delay, error = self.faults.for_call(action, _task_ids(params))
                if delay:
                    time.sleep(delay)
                if error is not None:
                    return _ec2_error(start_response, error)
        s3fixes.fix_request(environ)
        return self.moto_app(environ, start_response)

    def _faults(self, environ: dict[str, Any], method: str, start_response: StartResponse) -> Iterable[bytes]:
        if method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                document = faults_module.parse(environ["wsgi.input"].read(length))
                pinned = faults_module.pinned(document)
                self.tasks.pin(pinned, check_only=True)
            except FaultSpecError as error:
                return _json(start_response, "400 Bad Request", {"error": str(error)})
            self.faults.update(document)
            self.tasks.pin(pinned)
        elif method == "DELETE":
            self.faults.clear()
            self.tasks.release()
        elif method != "GET":
            return _json(start_response, "405 Method Not Allowed", {"error": "GET, POST or DELETE"})
        return _json(start_response, "200 OK", self.fault_status())

    def fault_status(self) -> dict[str, Any]:
        """What GET /_sandbox/faults answers."""
        return {**self.faults.status(), "tasks": self.tasks.pinned()}

    def _clock(self, environ: dict[str, Any], method: str, start_response: StartResponse) -> Iterable[bytes]:
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
            image_calls.clear()
            self.clock.set_speed(self.config.clock_speed)
            self.faults.clear()
            self.faults.update(faults_module.parse(self.config.faults))
            bootstrap(self.config)
        start_response(status, headers)
        return [body]


# The service in a SigV4 credential scope: Credential=AKID/DATE/REGION/SERVICE/aws4_request.
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/\s,]+/\d{8}/[^/\s,]+/([^/\s,]+)/aws4_request")
FORM = "application/x-www-form-urlencoded"


def _ec2_params(environ: dict[str, Any]) -> dict[str, list[str]] | None:
    """The query parameters of an EC2 call (query string and form body), or None if it is not one.

    The body (form-encoded for EC2's query protocol) is read and put back for moto.
    """
    scope = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if scope is None or scope.group(1) != "ec2":
        return None
    params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if environ.get("CONTENT_TYPE", "").startswith(FORM):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        for name, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
            params.setdefault(name, []).extend(values)
    return params


# Outside XML 1.0's Char production (#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]).
NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def illegal_parameter(params: dict[str, list[str]]) -> CallError | None:
    """EC2's answer to a parameter value XML cannot carry, or None if every value is fine."""
    for name, values in params.items():
        for value in values:
            if NOT_XML_CHAR.search(name) or NOT_XML_CHAR.search(value):
                shown = NOT_XML_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
                return CallError(
                    400,
                    "InvalidParameterValue",
                    f"Value ({shown}) for parameter {NOT_XML_CHAR.sub('?', name)} is invalid. "
                    "Invalid or illegal XML character specified",
                )
    return None


# ImportTaskId (CancelImportTask) and ImportTaskId.N (DescribeImportImageTasks's ImportTaskIds).
TASK_ID_PARAM = re.compile(r"ImportTaskId(?:\.\d+)?")


def _task_ids(params: dict[str, list[str]]) -> list[str]:
    return [value for name, values in params.items() if TASK_ID_PARAM.fullmatch(name) for value in values]


def _ec2_error(start_response: StartResponse, error: CallError) -> list[bytes]:
    """An error answer as EC2 sends it (query protocol XML)."""
    body = error.body(str(uuid.uuid4()))
    reasons = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}
    start_response(
        f"{error.status} {reasons.get(error.status, 'Error')}",
        [("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _json(start_response: StartResponse, status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class LoggedRequestHandler(MotoRequestHandler):
    """moto's request handler, logging one JSON line per request (wizard.logs): the path with
    its query's secrets masked (a presigned URL's signature and credential), never werkzeug's
    raw request line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = getattr(code, "value", code)
        log.info(
            "request",
            extra={
                "method": getattr(self, "command", ""),
                "path": getattr(self, "path", ""),  # masked by the formatter, as every field
                "status": int(status) if str(status).isdigit() else status,
                "bytes": int(size) if str(size).isdigit() else None,
                "remote": self.client_address[0] if self.client_address else "",
            },
        )

    def log(self, type: str, message: str, *args: Any) -> None:
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(type, logging.INFO)
        log.log(level, message.rstrip(), *args)


def serve(config: SandboxConfig) -> None:
    """Run the sandbox until SIGTERM or SIGINT; then return (no traceback)."""
    # Real S3 answers CORS only as the bucket's configuration says; moto's
    # server would add "Access-Control-Allow-Origin: *" to every answer.
    werkzeug_app.DISABLE_GLOBAL_CORS = True
    logs.configure()
    clock = SandboxClock(config.clock_speed)
    faults = Faults()
    faults.update(faults_module.parse(config.faults))
    tasks = taskstore.ImportTasks(
        clock,
        config.import_seconds,
        faults=faults,
        validator=imagecheck.ImageChecks(min_bytes=config.inspect_min_bytes),
    )
    actions.install(tasks)
    # CopyImage's copies take a twentieth of an import to become available.
    image_calls.install(image_calls.ImageCopies(clock, config.import_seconds * COPY_SHARE))
    s3fixes.install()
    s3join.install()
    bootstrap(config)
    app = SandboxApp(DomainDispatcherApplication(create_backend_app), config, clock, tasks, faults)
    server = make_server(config.host, config.port, app, threaded=True, request_handler=LoggedRequestHandler)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever(), which this (main) thread runs.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"Sandbox AWS listening on http://{host}:{port}", flush=True)  # type: ignore[str-bytes-safe]  # str on AF_INET
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
