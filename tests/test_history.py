from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from wizard.audit import audit
from wizard.audit.timeline import progress_svg, stage_durations
from wizard.models import ImportRequest, ImportTask, TaskStatusChange

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


# --- each event a sentence, ids linked where the viewer may follow them, the raw event on demand ----


def test_the_timeline_tells_each_event_as_a_sentence_with_the_raw_event(client, requester):
    from tests.conftest import make_user

    other = ImportRequest.objects.create(owner=make_user("bob", "requester"))
    req = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.IMPORTING)
    audit.record(
        "draft created", req, actor=requester, after={"status": "draft"}, details={"from": f"copy of #{other.pk}"}
    )
    audit.record("submitted", req, actor=requester, before={"status": "draft"}, after={"status": "submitted"})
    audit.record(
        "aws status changed",
        req,
        before={"Status": "active", "StatusMessage": "converting", "Progress": 28},
        after={"Status": "active", "StatusMessage": "updating", "Progress": 39},
        details={"import_task_id": "import-ami-0123456789abcdef0", "note": "<b>not markup</b>"},
    )
    client.force_login(requester)
    page = client.get(reverse("request-history", args=[req.pk])).content.decode()
    assert "Status: Draft → Waiting for review." in page
    assert "StatusMessage converting → updating, Progress 28% → 39%" in page
    # Its own request links to its page; somebody else's request is only named.
    assert f'<a href="/imports/{req.pk}/">#{req.pk}</a>' in page
    assert f'<span class="id">#{other.pk}</span>' in page and f'href="/imports/{other.pk}/"' not in page
    assert f'<a href="/imports/{req.pk}/#import-task-id">import-ami-0123456789abcdef0</a>' in page
    # The raw event: pretty JSON in a <details>, escaped; no Python repr anywhere.
    assert '<details class="raw-event">' in page and "&quot;StatusMessage&quot;: &quot;updating&quot;" in page
    assert "&lt;b&gt;not markup&lt;/b&gt;" in page and "<b>not markup" not in page
    assert "{&#x27;" not in page and "{'" not in page


def test_the_audit_log_links_batches_and_requests_only_for_those_who_may_see_them(client, requester, reviewer):
    from wizard.models import Batch

    req = ImportRequest.objects.create(owner=requester)
    batch = Batch.objects.create(owner=reviewer, name="b", source="api")
    audit.record("batch approved", req, actor=reviewer, details={"batch": batch.pk, "done": [req.pk, 999999]})
    audit.record("batch approved", req, actor=reviewer, details={"batch": 10**30, "done": [2**63, -1]})  # no such ids
    client.force_login(reviewer)
    page = client.get(reverse("audit-log")).content.decode()
    assert f'<a href="/batches/{batch.pk}/">batch #{batch.pk}</a>' in page
    assert f'<a href="/imports/{req.pk}/">#{req.pk}</a>' in page and '<span class="id">#999999</span>' in page
    client.force_login(requester)  # sees the event (of their request), not the reviewer's batch
    page = client.get(reverse("audit-log")).content.decode()
    assert f'<span class="id">batch #{batch.pk}</span>' in page and f'<a href="/imports/{req.pk}/">' in page


def test_the_csv_keeps_the_raw_fields_as_json_and_adds_the_sentence(client, reviewer, requester):
    import json

    req = ImportRequest.objects.create(owner=requester)
    audit.record("submitted", req, actor=requester, before={"status": "draft"}, after={"status": "submitted"})
    audit.record("rejected", req, actor=reviewer, details={"reason": "=HYPERLINK(1)"})
    audit.record("=cmd|' /C calc'!A0", req)  # an action no code records, starting like a formula
    from tests.conftest import make_user

    audit.record("withdrawn", req, actor=make_user("@sum", "requester"))  # a user name a spreadsheet would run
    client.force_login(reviewer)
    rows = list(csv.reader(io.StringIO(client.get(reverse("audit-log"), {"format": "csv"}).content.decode())))
    assert rows[0] == ["id", "at", "actor", "action", "request", "before", "after", "details", "hash", "sentence"]
    by_action = {r[3]: r for r in rows[1:]}
    submitted = by_action["submitted"]
    assert json.loads(submitted[5]) == {"status": "draft"} and json.loads(submitted[6]) == {"status": "submitted"}
    assert submitted[9] == f"alice submitted #{req.pk} for review. Status: Draft → Waiting for review."
    assert by_action["rejected"][9].startswith(f"rita rejected #{req.pk}: =HYPERLINK(1).")
    assert by_action["=cmd|' /C calc'!A0"][9].startswith("The system — =cmd")
    assert by_action["withdrawn"][9].startswith(f"'@sum withdrew #{req.pk}")


def test_amis_link_to_the_ec2_console_on_real_aws_and_stay_plain_in_the_sandbox(client, requester, settings):
    req = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.COMPLETED)
    audit.record(
        "completed",
        req,
        before={"status": "importing"},
        after={"status": "completed"},
        details={"image_id": "ami-0123456789abcdef0", "import_task_id": "import-ami-0123456789abcdef0"},
    )
    client.force_login(requester)
    page = client.get(reverse("request-history", args=[req.pk])).content.decode()
    assert '<span class="id">ami-0123456789abcdef0</span>' in page and "console.aws.amazon.com" not in page
    settings.AWS_SANDBOX, settings.AWS_REGION = False, "eu-west-1"
    page = client.get(reverse("request-history", args=[req.pk])).content.decode()
    console = "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#ImageDetails:imageId="
    assert f'<a href="{console}ami-0123456789abcdef0">ami-0123456789abcdef0</a>' in page
