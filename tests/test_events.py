"""wizard.audit.events: every recorded action as a sentence, changes spelled out, ids as Refs; any JSON
given to it gives a sentence (never an exception), and its HTML is escaped."""

from __future__ import annotations

import html
import json
import re
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wizard.audit import events
from wizard.audit.events import Ref, as_html, as_text, describe

TASK = "import-ami-0123456789abcdef0"
AMI = "ami-0123456789abcdef0"


def text(action, **kw):
    return as_text(describe(action, **kw))


@pytest.mark.parametrize(
    "action, kw, expected",
    [
        (
            "submitted",
            dict(actor="demo", request=12, before={"status": "draft"}, after={"status": "submitted"}),
            "demo submitted #12 for review. Status: Draft → Waiting for review.",
        ),
        (
            "warnings acknowledged",
            dict(
                actor="demo",
                request=12,
                details={
                    "codes": ["account-rolename-0a1b2c3d", "static-network"],
                    "warnings": [
                        {"disk": None, "code": "account-rolename-0a1b2c3d"},
                        {"disk": 9, "code": "static-network", "position": 1},
                    ],
                },
            ),
            "demo acknowledged the warnings of #12, to import it anyway: account-rolename-0a1b2c3d, "
            "static-network on disk 2.",
        ),
        (
            "approved",
            dict(actor="rita", request=12, before={"status": "submitted"}, after={"status": "approved"}),
            "rita approved #12. Status: Waiting for review → Approved, dispatching.",
        ),
        (
            "approved",
            dict(
                actor="system",
                request=3,
                before={"status": "submitted"},
                after={"status": "approved"},
                details={"reason": "approval not required (WIZARD_APPROVAL_REQUIRED=0)"},
            ),
            "The system approved #3: approval not required (WIZARD_APPROVAL_REQUIRED=0). "
            "Status: Waiting for review → Approved, dispatching.",
        ),
        (
            "rejected",
            dict(actor="rita", request=4, details={"reason": "wrong role"}, before={"status": "submitted"}),
            "rita rejected #4: wrong role. Status: Waiting for review → none.",
        ),
        (
            "aws status changed",
            dict(
                request=12,
                before={"Status": "active", "StatusMessage": "converting", "Progress": 28},
                after={"Status": "active", "StatusMessage": "updating", "Progress": 39},
                details={"import_task_id": TASK},
            ),
            f"Import task {TASK} of #12: StatusMessage converting → updating, Progress 28% → 39%.",
        ),
        (
            "dispatched",
            dict(
                request=5,
                before={"status": "approved"},
                after={"status": "importing"},
                details={"import_task_id": TASK},
            ),
            f"#5 was dispatched to AWS (ImportImage) as import task {TASK}. Status: Approved, dispatching → Importing.",
        ),
        (
            "completed",
            dict(request=5, details={"image_id": AMI, "import_task_id": TASK}),
            f"The import of #5 completed: AMI {AMI} (import task {TASK}).",
        ),
        (
            "failed",
            dict(
                request=5,
                before={"status": "importing"},
                after={"status": "failed"},
                details={"message": "ClientError: Unknown OS / Missing OS files.", "import_task_id": TASK},
            ),
            f"#5 failed (import task {TASK}): ClientError: Unknown OS / Missing OS files. Status: Importing → Failed.",
        ),
        (
            "draft created",
            dict(actor="demo", request=7, details={"from": "copy of #2", "not_copied": ["s3://b/k"]}),
            "demo created draft #7 as a copy of #2; not copied (not permitted for demo): s3://b/k.",
        ),
        ("draft created", dict(actor="demo", request=7, details={"from": "cli-input-json"}), None),
        (
            "draft saved",
            dict(actor="demo", request=7, details={"fields": ["description", "kms_key_id"]}),
            "demo saved #7: Description, KmsKeyId.",
        ),
        (
            "draft saved",
            dict(
                actor="demo",
                request=7,
                details={
                    "fields": ["target"],
                    "target": {"from": "default (us-east-1)", "to": "team-a (1, eu-west-1)"},
                },
            ),
            "demo saved #7: Target; target default (us-east-1) → team-a (1, eu-west-1).",
        ),
        (
            "submitted",
            dict(actor="demo", request=12, details={"target": "team-a (1, eu-west-1)"}),
            "demo submitted #12 in team-a (1, eu-west-1) for review.",
        ),
        (
            "dispatched",
            dict(request=5, details={"import_task_id": TASK, "target": "team-a (1, eu-west-1)"}),
            f"#5 was dispatched to AWS (ImportImage) as import task {TASK} in team-a (1, eu-west-1).",
        ),
        (
            "upload completed",
            dict(
                actor="demo",
                request=7,
                details={"file_name": "web01.raw", "size_bytes": 20 << 20, "position": 0, "format": "RAW"},
            ),
            "demo uploaded web01.raw (20.0 MiB) to #7 as disk 1 (RAW).",
        ),
        (
            "finishing",
            dict(request=7, details={"image_id": "ami-0123456789abcdef0", "steps": ["Tag the AMI", "Share"]}),
            "AWS imported #7 as AMI ami-0123456789abcdef0; 2 finishing steps follow: Tag the AMI, Share.",
        ),
        (
            "finishing step done",
            dict(request=7, details={"step": "copy", "title": "Copy to eu-west-1", "region": "eu-west-1"}),
            "Finishing step “Copy to eu-west-1” (in eu-west-1) of #7: done.",
        ),
        (
            "finishing step failed",
            dict(request=7, details={"step": "tags", "title": "Tag the AMI", "error": "AccessDenied: no"}),
            "Finishing step “Tag the AMI” of #7 failed: AccessDenied: no.",
        ),
        (
            "finishing step retried",
            dict(actor="demo", request=7, details={"step": "tags", "title": "Tag the AMI"}),
            "demo retried finishing step “Tag the AMI” of #7.",
        ),
        (
            "upload completed",
            dict(actor="demo", request=None, details={"file_name": "vm1.raw", "size_bytes": 1 << 20}),
            "demo uploaded vm1.raw (1.0 MiB), to choose for a batch.",
        ),
        (
            "image inspected",
            dict(
                request=7,
                details={"position": 1, "source": "s3://b/d.vmdk", "format": "VMDK", "ok": False, "errors": ["x"]},
            ),
            "The image of disk 2 of #7 (s3://b/d.vmdk) was inspected: VMDK, errors: x.",
        ),
        (
            "reconciled",
            dict(
                request=8,
                before={"status": "importing", "task": {"Status": "active"}},
                after={"status": "failed", "task": {"Status": "deleted"}},
                details={"repair": "AWS no longer knows the task: lost"},
            ),
            "Reconciled #8: AWS no longer knows the task: lost. "
            "Status: Importing → Failed, task.Status: active → deleted.",
        ),
        (
            "batch approved",
            dict(actor="rita", details={"batch": 3, "done": [1, 2], "refused": {"4": "you created it"}}),
            "rita approved batch #3: #1, #2; refused: #4 (you created it).",
        ),
        (
            "user changed",
            dict(
                actor="admin",
                before={"is_staff": False},
                after={"is_staff": True, "password": "password changed"},
                details={"object": "auth.user #3", "name": "alice", "via": "admin"},
            ),
            "admin changed user “alice” in the admin: is_staff: no → yes; password changed.",
        ),
        (
            "login locked out",
            dict(details={"username": "demo", "address": "127.0.0.1", "failures": 5, "minutes": 15}),
            "Logging in as “demo” or from 127.0.0.1 is refused for 15 minutes after 5 failures.",
        ),
        (
            "api token revoked",
            dict(actor="demo", details={"token": 1, "name": "packer", "prefix": "abc123"}),
            "demo revoked the API token “packer” (iw_abc123_…).",
        ),
        (
            "something new",
            dict(actor="x", request=5, before={"a": 1}, after={"a": 2}, details={"k": "v"}),
            "x — something new on #5: a: 1 → 2 (k v).",
        ),
    ],
)
def test_each_action_reads_as_a_sentence(action, kw, expected):
    sentence = text(action, **kw)
    if expected is None:
        assert sentence.startswith("demo created draft #7 from a --cli-input-json document")
    else:
        assert sentence == expected


# Every action the code records (grep audit.record / change_status), with a typical event.
RECORDED = {
    "draft created": {"after": {"status": "draft"}},
    "draft saved": {"details": {"fields": ["description"]}},
    "draft deleted": {"before": {"status": "draft"}, "after": {"status": "deleted"}},
    "disk added": {"details": {"position": 0, "source": "s3://b/k"}},
    "disk removed": {"details": {"source": "s3://b/k"}},
    "upload completed": {"details": {"file_name": "a.raw", "size_bytes": 1}},
    "upload cancelled": {"details": {"file_name": "a.raw"}},
    "upload failed": {"details": {"file_name": "a.raw", "message": "too big"}},
    "image inspected": {"details": {"position": 0, "ok": True}},
    "submitted": {},
    "warnings acknowledged": {
        "details": {"codes": ["static-network"], "warnings": [{"disk": 4, "code": "static-network", "position": 0}]}
    },
    "approved": {},
    "rejected": {"details": {"reason": "no"}},
    "dispatched": {"details": {"import_task_id": TASK}},
    "aws status changed": {"before": {"Progress": 1}, "after": {"Progress": 2}, "details": {"import_task_id": TASK}},
    "needs attention": {"details": {"import_task_id": TASK, "error": "unreadable XML"}},
    "attention cleared": {"details": {"import_task_id": TASK}},
    "reconciled": {"details": {"repair": "x"}},
    "cancel requested": {"details": {"import_task_id": TASK, "reason": "r", "PreviousState": "active", "State": "x"}},
    "cancelled": {"details": {"import_task_id": TASK, "reason": "r"}},
    "withdrawn": {"details": {"reason": "r", "was": "approved"}},
    "failed": {"details": {"message": "m"}},
    "failed validation": {"details": {"message": "m"}},
    "failed source check": {"details": {"message": "m"}},
    "failed account check": {"details": {"message": "m"}},
    "failed target check": {"details": {"message": "m", "target": "team-a (111122223333, eu-west-1)"}},
    "task lost": {"details": {"message": "m"}},
    "completed": {"details": {"image_id": AMI, "import_task_id": TASK}},
    "batch created": {"details": {"batch": 1, "name": "wave", "requests": 2}},
    "batch submitted": {"details": {"batch": 1, "done": [1]}},
    "batch approved": {"details": {"batch": 1, "done": [1]}},
    "batch rejected": {"details": {"batch": 1, "done": [1], "reason": "r"}},
    "batch retried": {"details": {"batch": 1, "done": [1]}},
    "batch cancelled": {"details": {"batch": 1, "done": [1], "reason": "r"}},
    "batch item not submitted": {"details": {"batch": 1, "findings": ["x: y"]}},
    "api token created": {"details": {"name": "n", "prefix": "p"}},
    "api token revoked": {"details": {"name": "n", "prefix": "p"}},
    "login failed": {"details": {"username": "u", "address": "1.2.3.4", "failures": 1}},
    "login locked out": {"details": {"username": "u", "minutes": 15}},
    "finishing": {"details": {"image_id": AMI, "import_task_id": TASK, "steps": ["Tag the AMI"]}},
    "finishing step done": {"details": {"step": "tags", "title": "Tag the AMI"}},
    "finishing step failed": {"details": {"step": "tags", "title": "Tag the AMI", "error": "e"}},
    "finishing step retried": {"details": {"step": "tags", "title": "Tag the AMI"}},
}


def test_every_recorded_action_has_a_sentence_of_its_own():
    recorded = _recorded_actions()
    assert {"submitted", "aws status changed", "batch approved", "reconciled", "login locked out"} <= recorded
    assert recorded - set(events.SENTENCES) == set()
    assert set(RECORDED) == set(events.SENTENCES)
    for action, kw in RECORDED.items():
        sentence = text(action, actor="demo", request=3, **kw)
        assert " — " not in sentence, (action, sentence)  # not the generic fallback
    for model in ("user", "group", "source grant"):
        for verb in ("added", "changed", "deleted"):
            sentence = text(f"{model} {verb}", actor="admin", details={"name": "x", "via": "admin"})
            assert sentence.startswith(f"admin {verb} {model} “x” in the admin"), sentence


def _recorded_actions() -> set[str]:
    """The action names the code passes to audit.record, audit.Entry and change_status(action=...) (the
    admin's "<model> added/changed/deleted" are built from the model's name: tested above)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "wizard"
    found: set[str] = set()
    for path in root.rglob("*.py"):
        if {"sandbox", "management"} & set(path.parts) or path.name == "events.py":
            continue
        source = path.read_text()
        found |= set(re.findall(r'audit\.(?:record|Entry)\(\s*"([^"]+)"', source))
        found |= set(re.findall(r'\baction="([^"]+)"', source))
        found |= set(re.findall(r'^ACTION = "([^"]+)"', source, re.M))
        found |= set(re.findall(r'"(batch [a-z ]+)"', source)) if path.name == "batches.py" else set()
    return found


def test_ids_link_only_where_the_caller_says():
    parts = describe(
        "batch approved", actor="rita", request=None, details={"batch": 3, "done": [1, 2], "refused": {"9": "x"}}
    )
    assert [r for r in events.refs(parts)] == [
        Ref("batch", "3"),
        Ref("request", "1"),
        Ref("request", "2"),
        Ref("request", "9"),
    ]
    page = as_html(parts, lambda r: f"/imports/{r.value}/" if r.kind == "request" and r.value != "2" else None)
    assert '<a href="/imports/1/">#1</a>' in page and '<span class="id">#2</span>' in page
    assert '<span class="id">batch #3</span>' in page


def test_a_task_ref_knows_its_request_and_amis_are_refs():
    parts = describe("completed", request=5, details={"image_id": AMI, "import_task_id": TASK})
    assert Ref("task", TASK, 5) in parts and Ref("image", AMI) in parts
    link = events.console_links("eu-west-1")
    assert link(Ref("image", AMI)) == (
        f"https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#ImageDetails:imageId={AMI}"
    )
    assert link(Ref("request", "5")) is None
    # Something that is not an id stays text.
    assert events.refs(describe("completed", request=5, details={"image_id": "ami-<b>", "import_task_id": 7})) == [
        Ref("request", "5")
    ]


def test_the_raw_event_is_pretty_json():
    event = SimpleNamespace(
        pk=4,
        at=None,
        actor_name="demo",
        action="x",
        request_id=None,
        before={"a": "é"},
        after=None,
        details={"lone": "\ud800"},
        prev_hash="0" * 64,
        hash="1" * 64,
    )
    raw = events.raw(event)
    assert json.loads(raw)["before"] == {"a": "é"} and '\n  "action": "x"' in raw
    raw.encode()  # a lone surrogate is escaped, so UTF-8 carries it
    assert json.loads(raw)["details"] == {"lone": "\ud800"}


# --- properties ------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
jsonish = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
known_keys = st.sampled_from(
    [
        "status",
        "Status",
        "StatusMessage",
        "Progress",
        "ImageId",
        "import_task_id",
        "image_id",
        "reason",
        "message",
        "batch",
        "done",
        "refused",
        "fields",
        "from",
        "position",
        "file_name",
        "size_bytes",
        "format",
        "errors",
        "warnings",
        "format_changed",
        "findings",
        "username",
        "address",
        "failures",
        "minutes",
        "name",
        "prefix",
        "via",
        "repair",
        "State",
        "PreviousState",
        "not_copied",
        "skipped_rows",
        "requests",
        "source",
        "task",
    ]
)
fields = st.dictionaries(known_keys | st.text(max_size=8), jsonish, max_size=8) | jsonish
actions = st.sampled_from([*events.SENTENCES, "user changed", "source grant added", "group deleted"]) | st.text(
    max_size=70
)
ANCHOR = re.compile(r'<a href="[^"<>]*">|</a>|<span class="id">|</span>')


@settings(max_examples=400, deadline=None)
@given(
    action=actions,
    actor=st.text(max_size=20) | st.none() | st.integers(),
    request=st.none() | st.integers() | st.text(max_size=5),
    before=fields,
    after=fields,
    details=fields,
)
def test_any_event_gives_one_escaped_line(action, actor, request, before, after, details):
    e = events._event(action, actor, request, before, after, details)
    parts = events.sentence_of(e)  # the handler itself, without describe's safety net
    assert all(isinstance(p, str | Ref) for p in parts)
    parts = describe(action, actor=actor, request=request, before=before, after=after, details=details)
    line = as_text(parts)
    assert line and "\n" not in line and "\r" not in line
    assert not re.search(r"[\ud800-\udfff]", line)
    line.encode()
    page = as_html(parts, lambda r: "/x/" + r.value.replace('"', ""))
    markup = ANCHOR.sub("", page)
    assert "<" not in markup and ">" not in markup
    assert html.unescape(markup) == line


@given(st.text(max_size=200))
def test_hostile_text_in_any_field_is_escaped(payload):
    for action in ("rejected", "upload failed", "draft created", "nonsense"):
        parts = describe(
            action,
            actor=payload,
            request=1,
            details={"reason": payload, "message": payload, "file_name": payload, "from": payload},
        )
        markup = ANCHOR.sub("", as_html(parts, lambda r: "/r/"))
        assert "<" not in markup and ">" not in markup
