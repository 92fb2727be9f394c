from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from wizard import audit
from wizard.models import ImportRequest, ImportTask, TaskStatusChange
from wizard.timeline import progress_svg, stage_durations

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_stage_durations_run_until_the_next_change():
    changes = [(T0, "pending"), (T0 + timedelta(seconds=10), "converting"), (T0 + timedelta(seconds=70), "completed")]
    stages = stage_durations(changes, T0 + timedelta(seconds=999), final=True)
    assert [(s.name, s.seconds, s.current) for s in stages] == [
        ("pending", 10, False),
        ("converting", 60, False),
        ("completed", 0, False),
    ]
    running = stage_durations(changes[:2], T0 + timedelta(seconds=25), final=False)
    assert (running[-1].seconds, running[-1].current) == (15, True)


def test_the_chart_is_an_svg_path_through_every_point():
    svg = progress_svg([(T0, 2), (T0 + timedelta(seconds=30), 28), (T0 + timedelta(seconds=60), 100)])
    assert svg.startswith("<svg") and svg.count("<circle") == 3
    assert "from 2% to 100% over 60 s" in svg
    assert progress_svg([]) == ""


def test_a_requests_timeline_shows_events_stages_and_chart(client, requester):
    req = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.IMPORTING)
    audit.record("submitted", req, actor=requester)
    task = ImportTask.objects.create(request=req, import_task_id="import-ami-0123456789abcdef0")
    for i, (msg, p) in enumerate([("pending", 2), ("converting", 28)]):
        TaskStatusChange.objects.create(
            task=task, at=T0 + timedelta(seconds=30 * i), status="active", status_message=msg, progress=p
        )
    client.force_login(requester)
    page = client.get(reverse("request-history", args=[req.pk])).content.decode()
    assert "<svg" in page and "converting" in page and "30 s" in page and "submitted" in page


def test_the_audit_log_filters_and_exports_csv(client, reviewer, requester):
    a = ImportRequest.objects.create(owner=requester)
    b = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.COMPLETED)
    audit.record("submitted", a, actor=requester)
    audit.record("approved", a, actor=reviewer)
    audit.record("completed", b)
    client.force_login(reviewer)
    page = client.get(reverse("audit-log"), {"user": "rita"}).content.decode()
    assert "approved" in page and ">submitted<" not in page
    rows = list(
        csv.reader(
            io.StringIO(client.get(reverse("audit-log"), {"status": "completed", "format": "csv"}).content.decode())
        )
    )
    assert [r[3] for r in rows[1:]] == ["completed"] and rows[1][2] == "system"
    rows = list(
        csv.reader(io.StringIO(client.get(reverse("audit-log"), {"request": a.pk, "format": "csv"}).content.decode()))
    )
    assert [r[3] for r in rows[1:]] == ["approved", "submitted"]


def test_the_audit_log_pages(client, reviewer):
    for i in range(60):
        audit.record(f"event {i}")
    client.force_login(reviewer)
    first = client.get(reverse("audit-log")).content.decode()
    assert "event 59" in first and "event 5<" not in first and "Page 1 of 2" in first
    assert "event 5<" in client.get(reverse("audit-log"), {"page": 2}).content.decode()


def test_verify_audit_reports_the_first_broken_event(db, capsys):
    events = [audit.record(f"e{i}") for i in range(3)]
    call_command("verify_audit")
    assert "audit chain intact: 3 events" in capsys.readouterr().out
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wizard_auditevent SET details = %s WHERE id = %s", ['{"x": 1}', events[1].pk])
    import pytest
    from django.core.management import CommandError

    with pytest.raises(CommandError, match=f"broken at event {events[1].pk}"):
        call_command("verify_audit")
