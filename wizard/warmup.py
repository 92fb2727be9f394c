"""What a web worker loads once, when it starts, instead of in its first requests.

Each gunicorn worker compiles a template the first time a page uses it (Django's cached loader
then keeps it) and makes a boto3 client the first time a view calls AWS: the client's service
model is read and parsed then (S3's and EC2's take 60 ms each on the 2-CPU machine), under
wizard.aws.clients' lock and with the GIL held, so every request of that worker waits. At a
start under load (bench/load: 50 people arriving within 5 s) those first requests were the
slowest of the run. `warm()` does that work before the worker serves anyone; config.wsgi
calls it before freezing what is loaded (gc.freeze).

Nothing here calls an AWS API or the database: making a client reads its model from disk and,
outside the sandbox, resolves the standard credential chain (botocore does that when the client
is made: on EC2, the instance metadata), which the worker's first AWS call would do anyway.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.template import engines

log = logging.getLogger(__name__)

# The services the pages and their endpoints call (wizard.aws).
SERVICES = ("s3", "ec2", "sts", "kms", "iam")


def templates() -> list[str]:
    """Compile every template of the project's own template directories; their names."""
    names = []
    for engine in engines.all():
        for root in getattr(engine, "engine", engine).dirs:
            for path in sorted(Path(root).rglob("*")):
                if path.is_file() and path.suffix in (".html", ".txt"):
                    name = path.relative_to(root).as_posix()
                    engine.get_template(name)
                    names.append(name)
    return names


def clients() -> None:
    """Make the application's own boto3 clients (wizard.aws.clients keeps them)."""
    from wizard.aws import clients as aws_clients

    for service in SERVICES:
        aws_clients.client(service)


def warm() -> None:
    """Both; a failure is logged, never stops the worker (the first request does it then)."""
    for step in (templates, clients):
        try:
            step()
        except Exception:  # noqa: BLE001 - a warm-up must not keep the site down
            log.warning("warm-up step %s failed; the first request that needs it does it", step.__name__, exc_info=True)
