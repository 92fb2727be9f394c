"""Logs: one JSON object per line, with every secret masked.

Each record becomes one line `{"time": ..., "level": ..., "logger": ..., "message": ..., ...}`:
the fields given with `extra=` follow, then `exception` (the traceback, newlines escaped), so a
log shipper reads each event whole. Django's LOGGING (config.settings), gunicorn (through
`GunicornLogger`, scripts/run.py) and the sandbox (wizard.sandbox.server) all write this way.

Nothing secret reaches a line: `redact` masks the values of presigned URLs' signatures,
credentials and security tokens, SigV4 Authorization headers, session and CSRF cookies and
password fields wherever they appear in a message, a field or a traceback. Request lines keep
their path and the names of their query parameters (uploadId and partNumber stay readable).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger

MASK = "***"
# Names whose values are secrets, as `name=value` (query strings, cookies, form bodies,
# SigV4's `Credential=..., Signature=...`) or `'name': 'value'` (a headers dict printed).
SECRET_NAMES = (
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
    "credential",
    "awsaccesskeyid",
    "sessionid",
    "csrftoken",
    "csrfmiddlewaretoken",
    "password",
)
_NAMES = "|".join(re.escape(name) for name in SECRET_NAMES)
# `=` may come percent-encoded, as in a URL carried inside another URL's query.
_ASSIGNED = re.compile(rf"(?i)\b({_NAMES})(=|%3D)[^&\s,;\"'<>]+")
_QUOTED = re.compile(rf"(?i)([\"']?(?:{_NAMES}|authorization|cookie)[\"']?\s*:\s*[\"'])[^\"']*")

# The attributes every LogRecord has; anything else on a record came through `extra=`.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """`text` with the value of every secret (see SECRET_NAMES) replaced by ***."""
    return _QUOTED.sub(rf"\1{MASK}", _ASSIGNED.sub(rf"\1\2{MASK}", text))


def _field(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(value if isinstance(value, str) else str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, the extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in line:
                line[key] = _field(value)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr for a process without Django's LOGGING (the sandbox)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class GunicornLogger(Logger):
    """gunicorn's logger writing JSON lines: its own messages, and one `request` line per request
    (method, path with masked query, status, bytes, duration_ms, remote) instead of the
    Apache-style access line. `--logger-class wizard.logs.GunicornLogger`."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: MutableMapping[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        query = environ.get("QUERY_STRING", "")
        self.access_log.info(
            "request",
            extra={
                "method": environ.get("REQUEST_METHOD", ""),
                "path": environ.get("PATH_INFO", "") + (f"?{query}" if query else ""),
                "status": int(status) if str(status).isdigit() else status,
                "bytes": getattr(resp, "sent", None),
                "duration_ms": round(request_time.total_seconds() * 1000, 1),
                "remote": environ.get("REMOTE_ADDR", ""),
            },
        )
