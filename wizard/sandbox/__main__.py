"""Run the sandbox AWS: `python -m wizard.sandbox`.

It is configured by environment variables only:

- SANDBOX_HOST: address to listen on (default 127.0.0.1).
- SANDBOX_PORT: port to listen on (default 5000; 0 takes any free port; the
  address taken is printed as "Sandbox AWS listening on http://HOST:PORT").
- SANDBOX_REGION: region of the upload bucket (default us-east-1).
- SANDBOX_BUCKET: name of the upload bucket (default import-wizard-uploads).
- SANDBOX_CORS_ORIGINS: comma-separated origins the browser may upload from
  (default "http://127.0.0.1:8000,http://localhost:8000").
- SANDBOX_IMPORT_SECONDS: sandbox-clock seconds an import takes from pending
  to completed (default 60).
- SANDBOX_CLOCK_SPEED: sandbox-clock seconds per real second (default 1.0;
  0 stops the clock, so only POST /_sandbox/clock {"advance": s} moves it).
- SANDBOX_FAULTS: faults in force from the start (and again after
  /moto-api/reset), as the JSON POST /_sandbox/faults takes, e.g.
  '{"throttle": {"rate": 0.3, "actions": ["DescribeImportImageTasks"]}}'
  (default: none; see `wizard.sandbox.faults`).
- SANDBOX_INSPECT_MIN_BYTES: S3 objects smaller than this are not inspected
  at validation (default 65536; see `wizard.sandbox.imagecheck`).

A bad value stops the start with a message naming the variable (exit code 2).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from wizard.sandbox import faults
from wizard.sandbox.server import SandboxConfig, serve


def config_from_env(env: Mapping[str, str]) -> SandboxConfig:
    """The sandbox configuration the SANDBOX_* variables of `env` describe."""
    defaults = SandboxConfig()
    origins = env.get("SANDBOX_CORS_ORIGINS")
    return SandboxConfig(
        host=env.get("SANDBOX_HOST", defaults.host),
        port=int(env.get("SANDBOX_PORT", defaults.port)),
        region=env.get("SANDBOX_REGION", defaults.region),
        bucket=env.get("SANDBOX_BUCKET", defaults.bucket),
        cors_origins=(
            tuple(o.strip() for o in origins.split(",") if o.strip()) if origins is not None else defaults.cors_origins
        ),
        import_seconds=float(env.get("SANDBOX_IMPORT_SECONDS", defaults.import_seconds)),
        clock_speed=float(env.get("SANDBOX_CLOCK_SPEED", defaults.clock_speed)),
        faults=_faults(env.get("SANDBOX_FAULTS", defaults.faults)),
        inspect_min_bytes=int(env.get("SANDBOX_INSPECT_MIN_BYTES", defaults.inspect_min_bytes)),
    )


def _faults(text: str) -> str:
    try:
        faults.parse(text)
    except faults.FaultSpecError as error:
        raise ValueError(f"SANDBOX_FAULTS: {error}") from None
    return text


if __name__ == "__main__":
    try:
        config = config_from_env(os.environ)
    except ValueError as error:
        print(f"sandbox: bad configuration: {error}", file=sys.stderr)
        sys.exit(2)
    serve(config)
