from __future__ import annotations

import json

from wizard import health


def test_it_names_what_is_down(client, db, settings):
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    response = client.get("/healthz")
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["status"] == "down"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["queue"].startswith("down: no django-q2 cluster is running")
    assert body["checks"]["aws"].startswith("down")


def test_it_answers_200_when_all_parts_are_up(client, db, sandbox, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "queue", lambda: "ok (1 cluster)")
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["checks"] == {"database": "ok", "queue": "ok (1 cluster)", "aws": "ok"}
