"""The web worker's warm-up (wizard.warmup): templates compiled and boto3 clients made before the
first request, with nothing asked of AWS, and never a worker kept from starting."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.template import engines

from tests.stack import free_port
from wizard import warmup
from wizard.aws import clients

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def _cached_loader():
    [loader] = engines["django"].engine.template_loaders  # the cached loader (DEBUG off)
    return loader


def test_every_project_template_is_compiled_and_kept() -> None:
    loader = _cached_loader()
    loader.reset()
    assert "wizard/upload.html" not in loader.get_template_cache
    names = warmup.templates()
    on_disk = sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.html"))
    assert set(on_disk) <= set(names) and "email/status.txt" in names
    for name in ("base.html", "wizard/upload.html", "imports/_progress.html", "review/detail.html"):
        assert name in loader.get_template_cache, name


def test_the_clients_are_made_without_asking_aws(settings) -> None:
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    clients.forget()
    try:
        warmup.clients()
        assert clients._made.cache_info().currsize == len(warmup.SERVICES)
        made = clients.client("s3")  # the one a view asks for: made already, not again
        assert clients._made.cache_info().hits >= 1 and made.meta.endpoint_url == settings.AWS_ENDPOINT_URL
    finally:
        clients.forget()


def test_a_failing_step_is_logged_and_the_rest_still_runs(monkeypatch, caplog) -> None:
    def broken() -> list[str]:
        raise OSError("templates unreadable")

    monkeypatch.setattr(warmup, "templates", broken)
    clients.forget()
    try:
        with caplog.at_level(logging.WARNING, logger="wizard.warmup"):
            warmup.warm()
        assert "warm-up step broken failed" in caplog.text
        assert clients._made.cache_info().currsize == len(warmup.SERVICES)
    finally:
        clients.forget()
