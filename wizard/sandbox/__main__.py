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
"""

from __future__ import annotations

import os
from collections.abc import Mapping

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
            tuple(o.strip() for o in origins.split(",") if o.strip())
            if origins is not None
            else defaults.cors_origins
        ),
        import_seconds=float(env.get("SANDBOX_IMPORT_SECONDS", defaults.import_seconds)),
        clock_speed=float(env.get("SANDBOX_CLOCK_SPEED", defaults.clock_speed)),
    )


if __name__ == "__main__":
    serve(config_from_env(os.environ))
