"""The JSON API: tokens, the same rules and permissions as the pages, idempotency, CLI paths in errors."""

from __future__ import annotations

import itertools
import json
import re

import pytest
import requests
from django.test import Client, TestCase
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_user
from tests.flows import grant
from tests.images import raw_mbr
from wizard.api import tokens
from wizard.models import ApiToken, AuditEvent, Batch, IdempotencyKey, ImportRequest
from wizard.requests.cli_format import parse_cli_input
from wizard.uploads.uploads import crc32_b64

IMAGE = raw_mbr(64 * 1024)


class Api:
    """A Django test client that sends a token. What each call queues for after its commit (the
    worker's inspections) runs when the answer is back, as in a real deployment (django-q2 runs
    the tasks inline in tests)."""

    def __init__(self, token: str | None):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **kw):
        with TestCase.captureOnCommitCallbacks(execute=True):
            return self.client.get("/api/v1" + path, headers=self.headers, **kw)

    def post(self, path: str, body=None, *, raw: str | None = None, headers=None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        with TestCase.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                "/api/v1" + path,
                data=data,
                content_type="application/json",
                headers={**self.headers, **(headers or {})},
            )


@pytest.fixture
def alice(db, sandbox):
    user = make_user("alice", "requester")
    grant(user, s3_bucket=sandbox.bucket, s3_prefix="packer/")
    sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key="packer/web01.raw", Body=IMAGE)
    return user


def api_for(user) -> Api:
    return Api(tokens.create(user, "test")[1])


def document(sandbox, key: str = "packer/web01.raw", **extra) -> dict:
    return {
        "Description": "web01",
        "DiskContainers": [{"Format": "RAW", "UserBucket": {"S3Bucket": sandbox.bucket, "S3Key": key}}],
        **extra,
    }


def test_a_token_is_shown_once_kept_hashed_audited_and_revocable(alice):
    token, text = tokens.create(alice, "packer")
    # The secret is what follows the prefix (it may itself start with "_": base64url).
    assert text.startswith(f"iw_{token.prefix}_") and text.removeprefix(f"iw_{token.prefix}_") not in token.secret_hash
    assert tokens.authenticate(text) == alice
    assert Api(text).get("/me").json() == {"user": "alice", "permissions": ["wizard.add_importrequest"]}
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert Api(text[:-1] + ("A" if text[-1] != "A" else "B")).get("/me").status_code == 401
    tokens.revoke(token, alice)
    assert Api(text).get("/me").status_code == 401
    assert Api(None).get("/me").status_code == 401
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["api token created", "api token revoked"]
    assert text not in json.dumps(list(AuditEvent.objects.values("details")))


def test_the_tokens_page_makes_and_revokes_only_your_own(alice, client):
    client.force_login(alice)
    page = client.post("/account/tokens/", {"name": "ci"})
    assert re.search(rb'id="token-value"[^>]*>iw_[0-9a-f]{12}_', page.content) and page["Cache-Control"] == "no-store"
    other = ApiToken.objects.create(user=make_user("bob", "requester"), name="b", prefix="0" * 12, secret_hash="x")
    assert client.post(f"/account/tokens/{other.pk}/revoke/").status_code == 404
    mine = ApiToken.objects.get(user=alice)
    client.post(f"/account/tokens/{mine.pk}/revoke/")
    mine.refresh_from_db()
    assert mine.revoked_at is not None


def test_create_read_submit_and_review_with_the_pages_rules(
    alice, sandbox, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr("wizard.tasks.kick_poller", lambda: None)
    api = api_for(alice)
    made = api.post("/requests", document(sandbox, Platform="Linux"))
    assert made.status_code == 201, made.content
    body = made.json()
    # The worker inspects the image after the answer: first "still being inspected", then nothing.
    assert body["status"] == "draft" and ["still being inspected" in f["message"] for f in body["findings"]] == [True]
    assert body["document"]["DiskContainers"][0]["UserBucket"]["S3Key"] == "packer/web01.raw"
    pk = body["id"]
    assert api.get(f"/requests/{pk}").json()["findings"] == []
    assert api.post(f"/requests/{pk}/submit").json()["status"] == "submitted"

    assert api.post(f"/requests/{pk}/approve").status_code == 403  # not a reviewer
    rita = make_user("rita", "reviewer")
    alice_reviewer = make_user("al2", "reviewer")
    ImportRequest.objects.filter(pk=pk).update(owner=alice_reviewer)
    refused = api_for(alice_reviewer).post(f"/requests/{pk}/approve")
    assert refused.status_code == 409 and "own request" in refused.json()["message"]
    ImportRequest.objects.filter(pk=pk).update(owner=alice)
    with django_capture_on_commit_callbacks(execute=True):
        approved = api_for(rita).post(f"/requests/{pk}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    read = api.get(f"/requests/{pk}").json()  # dispatched once the approval committed
    assert read["status"] == "importing" and read["task"]["ImportTaskId"].startswith("import-ami-")

    bob = api_for(make_user("bob", "requester"))
    assert bob.get(f"/requests/{pk}").status_code == 404
    assert bob.get("/requests").json()["count"] == 0
    assert api.get("/requests?status=importing").json()["count"] == 1
    assert api_for(make_user("aud", "auditor")).post("/requests", document(sandbox)).status_code == 403


def test_errors_carry_the_cli_imports_paths_and_messages(alice, sandbox):
    api = api_for(alice)
    bad = {"DiskContainers": [{"Format": "RAW", "UserBucket": {"S3Bucket": sandbox.bucket}}], "Colour": "red"}
    answer = api.post("/requests", bad)
    assert answer.status_code == 422
    _, findings = parse_cli_input(json.dumps(bad), "json")
    assert answer.json()["errors"] == [{"path": f.path, "message": f.message} for f in findings]
    syntax = api.post("/requests", raw="{")
    assert syntax.status_code == 422 and "not valid JSON" in syntax.json()["errors"][0]["message"]
    theirs = api.post("/requests", document(sandbox, key="elsewhere/x.raw"))
    assert theirs.status_code == 422
    assert theirs.json()["errors"][0]["path"] == "DiskContainers[0].UserBucket"
    assert theirs.json()["errors"][0]["message"].startswith("You may not import from this location")
    assert not ImportRequest.objects.exists()


def test_an_idempotency_key_creates_nothing_twice(alice, sandbox):
    api = api_for(alice)
    key = {"Idempotency-Key": "build-42"}
    first = api.post("/requests", document(sandbox), headers=key)
    again = api.post("/requests", document(sandbox), headers=key)
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert ImportRequest.objects.count() == 1
    other = api.post("/requests", document(sandbox, Description="other"), headers=key)
    assert other.status_code == 422 and "another request" in other.json()["message"]
    # Keys are per user: another user's same key is theirs.
    bob = make_user("bob", "requester")
    grant(bob, s3_bucket=sandbox.bucket, s3_prefix="packer/")
    assert api_for(bob).post("/requests", document(sandbox), headers=key).status_code == 201
    assert IdempotencyKey.objects.count() == 2


def test_an_upload_through_the_api_becomes_an_inspected_disk(alice, sandbox):
    api = api_for(alice)
    draft = api.post("/requests", {"Description": "db01", "Platform": "Linux"})
    assert draft.status_code == 201 and draft.json()["document"].get("DiskContainers") is None
    pk = draft.json()["id"]
    assert api.post(f"/requests/{pk}/submit").status_code == 422  # no disk yet
    up = api.post(f"/requests/{pk}/uploads", {"file_name": "db01.raw", "size": len(IMAGE)})
    assert up.status_code == 201, up.content
    crc = crc32_b64(IMAGE)
    signed = api.post(f"/uploads/{up.json()['id']}/sign", {"parts": [{"PartNumber": 1, "ChecksumCRC32": crc}]}).json()
    put = requests.put(signed["urls"]["1"], data=IMAGE, headers=signed["headers"]["1"], timeout=30)
    assert put.status_code == 200
    parts = [{"PartNumber": 1, "ETag": put.headers["ETag"], "ChecksumCRC32": crc}]
    done = api.post(f"/uploads/{up.json()['id']}/complete", {"parts": parts})
    assert done.status_code == 200 and done.json()["container"]["format"] == "RAW"
    read = api.get(f"/requests/{pk}").json()
    assert read["document"]["DiskContainers"][0]["Format"] == "RAW" and read["findings"] == []
    assert api.post(f"/requests/{pk}/submit").json()["status"] == "submitted"
    assert (
        api_for(make_user("bob", "requester"))
        .post(f"/requests/{pk}/uploads", {"file_name": "x", "size": 1})
        .status_code
        == 404
    )


def test_a_batch_through_the_api(alice, sandbox, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("wizard.tasks.kick_poller", lambda: None)
    api = api_for(alice)
    for i in range(3):
        sandbox.client("s3").put_object(Bucket=sandbox.bucket, Key=f"packer/vm{i}.raw", Body=IMAGE)
    rows = "".join(f"{sandbox.bucket},packer/vm{i}.raw,RAW,vm{i}\n" for i in range(3))
    manifest = "S3Bucket,S3Key,Format,Description\n" + rows + f"{sandbox.bucket},,RAW,broken\n"
    body = {"name": "wave", "format": "csv", "manifest": manifest, "settings": {"Platform": "Linux"}, "submit": True}
    refused = api.post("/batches", body)
    assert refused.status_code == 422
    (error,) = refused.json()["errors"]
    assert (error["row"], error["path"], error["column"]) == (4, "DiskContainers[0].UserBucket.S3Key", "S3Key")
    assert not Batch.objects.exists()

    made = api.post("/batches", {**body, "import_valid": True}, headers={"Idempotency-Key": "wave"})
    assert made.status_code == 201, made.content
    batch = made.json()
    # Each request is submitted once the worker has inspected its image (after the answer).
    assert batch["totals"] == {"draft": 3} and [s["row"] for s in batch["skipped"]] == [4]
    assert api.get(f"/batches/{batch['id']}").json()["totals"] == {"submitted": 3}
    assert (
        api.post("/batches", {**body, "import_valid": True}, headers={"Idempotency-Key": "wave"}).json()["id"]
        == batch["id"]
    )
    assert api.post(f"/batches/{batch['id']}/approve").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        outcome = api_for(make_user("rita", "reviewer")).post(f"/batches/{batch['id']}/approve", {})
    assert len(outcome.json()["done"]) == 3
    read = api.get(f"/batches/{batch['id']}").json()
    assert read["totals"] == {"importing": 3} and {r["stage"] for r in read["requests"]} <= {"pending", "validating"}
    assert api_for(make_user("bob", "requester")).get(f"/batches/{batch['id']}").status_code == 404


def test_the_openapi_description_is_served_and_names_every_endpoint(db):
    schema = Client().get("/api/v1/openapi.json").json()
    assert schema["info"]["title"] == "Import Wizard API"
    for path in (
        "/api/v1/requests",
        "/api/v1/requests/{pk}/approve",
        "/api/v1/uploads/{upload_id}/sign",
        "/api/v1/batches",
    ):
        assert path in schema["paths"], path
    assert "bearer" in json.dumps(schema["components"]["securitySchemes"]).lower()


ENDPOINTS = [
    ("GET", "/requests/{pk}"),
    ("POST", "/requests/{pk}/submit"),
    ("POST", "/requests/{pk}/cancel"),
    ("POST", "/requests/{pk}/uploads"),
    ("GET", "/batches/{batch}"),
    ("POST", "/batches/{batch}/cancel"),
]


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_nobody_reaches_another_users_request_or_batch(alice, sandbox, method, path):
    pk = api_for(alice).post("/requests", document(sandbox)).json()["id"]
    batch = Batch.objects.create(owner=alice, name="a", source="api")
    url = path.format(pk=pk, batch=batch.pk)
    body = {"file_name": "x.raw", "size": 10} if "uploads" in path else {}
    anonymous = Api(None).get(url) if method == "GET" else Api(None).post(url, body)
    assert anonymous.status_code == 401
    bob = api_for(make_user("bob", "requester"))
    answer = bob.get(url) if method == "GET" else bob.post(url, body)
    assert answer.status_code == 404 and answer.json()["message"].startswith("Not found")
    assert ImportRequest.objects.get(pk=pk).status == "draft"


def test_a_body_of_the_wrong_shape_names_the_field(alice, sandbox):
    api = api_for(alice)
    pk = api.post("/requests", {"Description": "x"}).json()["id"]
    answer = api.post(f"/requests/{pk}/uploads", {"file_name": "x.raw", "size": "big"})
    assert answer.status_code == 422
    assert [e["path"] for e in answer.json()["errors"]] == ["size"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_any_bearer_text_is_refused_without_an_error(text):
    assert tokens.authenticate(text) is None


USERS = itertools.count()


@pytest.mark.django_db
@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_any_idempotency_key_gets_an_answer_never_a_500(key):
    user = make_user(f"u{next(USERS)}", "requester")
    api = api_for(user)
    try:
        answer = api.post("/requests", {"Description": "x"}, headers={"Idempotency-Key": key})
    except ValueError:  # the test client itself refuses header values with line breaks, as HTTP does
        return
    assert answer.status_code in (201, 422)
