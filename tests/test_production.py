"""Production mode: Django's deploy checks with the README's settings, https only there and plain
http in the sandbox, the Content-Security-Policy's upload origins, login lockouts and their audit
events, logs without secrets, and the IAM policy the application needs (docs/iam-policy.json)
enforced by the sandbox."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import secrets
import shlex
import string
import subprocess
import sys
import zlib
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from config.settings import upload_origins
from tests.conftest import make_user
from tests.images import raw_mbr
from wizard import logs
from wizard.aws import clients, ec2, kms, multipart, vmimport
from wizard.aws.errors import AwsError
from wizard.aws.s3 import S3RangeReader
from wizard.models import AuditEvent

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse 7731 battery"


# --- the README's production settings ------------------------------------------------------


def readme_production_env() -> dict[str, str]:
    """NAME=value of every `export` line of the README's production-environment block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- production-environment -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no production-environment block"
    env: dict[str, str] = {}
    for line in block[1].splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            env.update(word.split("=", 1) for word in words[1:])
    return env


def production_env(tmp_path: Path, **changes: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WIZARD_", "DATABASE_", "REDIS_"))}
    env = {**base, **readme_production_env(), "WIZARD_DATA_DIR": str(tmp_path)}
    assert env["DJANGO_SECRET_KEY"] == "...", "the README shows a placeholder, never a key"
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    return {**env, **changes}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_reports_nothing_with_the_readmes_production_settings(tmp_path):
    done = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_without_the_readmes_settings_check_deploy_names_what_is_missing(tmp_path):
    env = production_env(tmp_path, WIZARD_HTTPS="0")
    done = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr


PROBE = """
import json
from django.test import Client
host = "imports.example.com"
plain = Client().get("/login/", HTTP_HOST=host)
https = Client().get("/login/", HTTP_HOST=host, HTTP_X_FORWARDED_PROTO="https")
health = Client().get("/healthz", HTTP_HOST=host)
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "https": [https.status_code, https.get("Strict-Transport-Security"), https.get("Content-Security-Policy")],
    "csrf_cookie_secure": bool(https.cookies["csrftoken"]["secure"]),
    "health_redirected": health.status_code in (301, 302),
}))
"""


def test_in_production_http_is_redirected_and_https_has_hsts_csp_and_secure_cookies(tmp_path):
    env = production_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env.pop("REDIS_URL")
    done = manage(env, "shell", "-c", PROBE)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["plain"] == [301, "https://imports.example.com/login/"]
    status, hsts, csp = seen["https"]
    assert status == 200
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["style-src"] == "'self'"
    # Scripts from here only; WebAssembly may be compiled (the upload's CRC32), no script eval.
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    # The bucket of the README's block, in its region: where the browser PUTs the parts.
    assert "https://example-import-uploads.s3.eu-west-1.amazonaws.com" in directives["connect-src"].split()
    assert seen["csrf_cookie_secure"] is True
    assert seen["health_redirected"] is False


def test_the_sandbox_defaults_serve_plain_http(client, db, settings):
    assert not settings.SECURE_SSL_REDIRECT and not settings.SESSION_COOKIE_SECURE and not settings.CSRF_COOKIE_SECURE
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert "Strict-Transport-Security" not in page
    assert not page.cookies["csrftoken"]["secure"]
    user = make_user("dora", "requester")
    user.set_password(PASSWORD)
    user.save()
    answer = client.post(reverse("login"), {"username": "dora", "password": PASSWORD})
    assert answer.status_code == 302 and answer["Location"] == reverse("my-imports")
    assert not answer.cookies["sessionid"]["secure"]
    csp = page["Content-Security-Policy"]
    assert f"connect-src 'self' {settings.AWS_ENDPOINT_URL}" in csp


@pytest.mark.parametrize(
    ("endpoint", "bucket", "region"),
    [
        ("", "import-wizard-uploads", "us-east-1"),
        ("", "example-import-uploads", "eu-west-1"),
        ("", "dotted.bucket.name", "eu-central-1"),
        ("https://s3.example.internal:9000", "import-wizard-uploads", "us-east-1"),
    ],
)
def test_presigned_part_urls_go_to_an_origin_the_policy_allows(settings, monkeypatch, endpoint, bucket, region):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    settings.AWS_SANDBOX, settings.AWS_ENDPOINT_URL, settings.AWS_REGION = False, endpoint, region
    clients._session.cache_clear()
    try:
        urls = multipart.presign_parts(bucket, "uploads/1/x.raw", "upload-1", {1: "AAAAAA=="})
    finally:
        clients._session.cache_clear()
    parts = urlsplit(urls[1][0])
    assert f"{parts.scheme}://{parts.netloc}" in upload_origins(endpoint, bucket, region)


def test_no_template_has_inline_script_style_or_handler():
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=|\shx-on", re.I)
    found = [
        f"{path.relative_to(ROOT)}: {match[0]}"
        for path in (ROOT / "templates").rglob("*.html")
        for match in inline.finditer(path.read_text())
    ]
    assert found == []


# --- login attempts --------------------------------------------------------------------------


@pytest.fixture
def dora(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; the lockout is what counts
    user = make_user("dora", "requester")
    user.set_password(PASSWORD)
    user.save()
    return user


def log_in(client, username: str, password: str, **extra: str):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def test_a_user_name_is_locked_after_five_failures_and_the_login_page_says_so(client, dora):
    for n in range(5):
        answer = log_in(client, "dora", f"wrong-{n}", REMOTE_ADDR=f"10.0.0.{n}")
        assert answer.status_code in (200, 429) and "_auth_user_id" not in client.session
    refused = log_in(client, "dora", PASSWORD, REMOTE_ADDR="10.0.1.1")
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session
    assert "Too many failed logins" in refused.content.decode()
    assert 'id="id_username"' in refused.content.decode()  # the login page itself
    call_command("axes_reset_username", "dora")
    assert log_in(client, "dora", PASSWORD).status_code == 302


def test_one_address_is_locked_whatever_the_user_names(client, dora):
    for n in range(5):
        log_in(client, f"nobody-{n}", "guess", REMOTE_ADDR="192.0.2.7")
    assert log_in(client, "dora", PASSWORD, REMOTE_ADDR="192.0.2.7").status_code == 429
    assert log_in(client, "dora", PASSWORD, REMOTE_ADDR="192.0.2.8").status_code == 302


def test_failures_and_the_lockout_are_audited_once_without_the_password(client, dora):
    for _ in range(9):
        log_in(client, "dora", PASSWORD + "x")
    events = list(AuditEvent.objects.order_by("pk").values_list("action", "details"))
    assert [a for a, _ in events] == ["login failed"] * 5 + ["login locked out"]
    assert events[-1][1] == {"username": "dora", "address": "127.0.0.1", "failures": 5, "minutes": 15}
    assert PASSWORD not in json.dumps(events)


def test_behind_the_proxy_the_address_is_the_one_the_proxy_appended(client, dora, settings):
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    log_in(client, "dora", "wrong", HTTP_X_FORWARDED_FOR="203.0.113.99, 198.51.100.4", REMOTE_ADDR="10.0.0.1")
    assert AuditEvent.objects.get(action="login failed").details["address"] == "198.51.100.4"


def test_without_a_proxy_a_forwarded_for_header_is_ignored(client, dora):
    log_in(client, "dora", "wrong", HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert AuditEvent.objects.get(action="login failed").details["address"] == "127.0.0.1"


def test_force_login_and_the_demo_users_are_not_locked_by_successes(client, dora):
    for _ in range(8):
        assert log_in(client, "dora", PASSWORD).status_code == 302
        client.logout()
    client.force_login(dora)
    assert client.get(reverse("my-imports")).status_code == 200


# --- logs ------------------------------------------------------------------------------------


SECRET_VALUE = st.text(alphabet=string.ascii_letters + string.digits + "%/+-_.~", min_size=6, max_size=80)
PLAIN_PARAMS = ["uploadId", "partNumber", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Algorithm", "X-Amz-SignedHeaders"]


@given(
    secret=st.sampled_from(logs.SECRET_NAMES).flatmap(
        lambda name: st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
            lambda upper: "".join(c.upper() if u else c for c, u in zip(name, upper, strict=True))
        )
    ),
    value=SECRET_VALUE,
    plain=st.lists(st.tuples(st.sampled_from(PLAIN_PARAMS), st.text(alphabet="abc123", min_size=1)), max_size=4),
    position=st.integers(min_value=0, max_value=4),
)
def test_redact_masks_the_value_of_every_secret_and_keeps_the_rest(secret, value, plain, position):
    params = [f"{k}={v}" for k, v in plain]
    params.insert(min(position, len(params)), f"{secret}={value}")
    masked = logs.redact("PUT /bucket/uploads/1/x.raw?" + "&".join(params) + " HTTP/1.1")
    assert f"{secret}={value}" not in masked and f"{secret}={logs.MASK}" in masked
    for param in params:
        if not param.startswith(secret + "="):
            assert param in masked


@given(message=st.text(), field=st.one_of(st.text(), st.integers(), st.none()))
def test_a_record_is_one_json_line_whatever_its_text(message, field):
    record = logging.LogRecord("wizard.test", logging.INFO, __file__, 1, message, (), None)
    record.detail = field
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == logs.redact(message) and parsed["logger"] == "wizard.test"
    assert parsed["detail"] == (logs.redact(field) if isinstance(field, str) else field)


def test_a_presigned_upload_leaves_no_signature_or_credential_in_the_sandbox_log(sandbox):
    key = f"uploads/1/{secrets.token_hex(4)}.raw"
    upload_id = multipart.create(sandbox.bucket, key, file_name="x.raw")
    body = b"\0" * 1024
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    url, headers = multipart.presign_parts(sandbox.bucket, key, upload_id, {1: crc})[1]
    assert requests.put(url, data=body, headers=headers, timeout=30).status_code == 200
    query = parse_qs(urlsplit(url).query)
    signature, credential = query["X-Amz-Signature"][0], query["X-Amz-Credential"][0]
    log = sandbox.log()
    assert "X-Amz-Signature=***" in log and "X-Amz-Credential=***" in log  # the PUT was logged, masked
    assert signature not in log and credential not in log
    assert credential.replace("/", "%2F") not in log


@pytest.fixture
def app_log():
    """Everything logged while the test runs, as the application's JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def test_the_apps_log_has_no_password_or_session_id(client, dora, app_log):
    log_in(client, "dora", PASSWORD + "-typo")
    assert log_in(client, "dora", PASSWORD).status_code == 302
    session_id = client.cookies["sessionid"].value
    client.get(reverse("my-imports") + f"?sessionid={session_id}&password={PASSWORD}")
    text = app_log.getvalue()
    assert "login failure" in text  # django-axes' warning: the failure was logged
    assert PASSWORD not in text and session_id not in text


def test_gunicorns_request_lines_are_json_with_the_query_masked(capsys):
    from gunicorn.config import Config

    config = Config()
    config.set("accesslog", "-")
    logger = logs.GunicornLogger(config)
    response = type("Response", (), {"status": "200 OK", "sent": 12, "headers": []})()
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/imports/",
        "QUERY_STRING": "X-Amz-Signature=abcdef0123&next=/x",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_COOKIE": "sessionid=s3cr3t",
    }
    logger.access(response, None, environ, timedelta(milliseconds=5))
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["message"] == "request" and line["status"] == 200 and line["method"] == "GET"
    assert line["path"] == "/imports/?X-Amz-Signature=***&next=/x"
    assert "s3cr3t" not in json.dumps(line)


# --- the IAM policy ------------------------------------------------------------------------


POLICY = ROOT / "docs" / "iam-policy.json"
# The calls made in the sandbox below before it starts to enforce IAM: make the user.
SETUP_CALLS = 5


@pytest.fixture
def enforcing_sandbox():
    from wizard.sandbox.testing import SandboxProcess

    with SandboxProcess(env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS)}) as sb:
        yield sb


@pytest.fixture
def as_policy_user(enforcing_sandbox, settings, monkeypatch):
    """The application in production mode (standard credential chain) against a sandbox that
    enforces IAM, with the keys of a user whose only policy is docs/iam-policy.json."""
    sb = enforcing_sandbox
    sb.reset()  # counts the calls without IAM from zero
    iam = sb.client("iam")
    iam.create_user(UserName="import-wizard")
    arn = iam.create_policy(PolicyName="import-wizard", PolicyDocument=POLICY.read_text())["Policy"]["Arn"]
    iam.attach_user_policy(UserName="import-wizard", PolicyArn=arn)
    key = iam.create_access_key(UserName="import-wizard")["AccessKey"]
    key_id = sb.client("kms").create_key(Description="imports")["KeyMetadata"]["KeyId"]  # the 5th call
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    settings.AWS_SANDBOX, settings.AWS_ENDPOINT_URL = False, sb.endpoint
    settings.AWS_REGION, settings.IMPORT_BUCKET = sb.region, sb.bucket
    clients._session.cache_clear()
    yield sb, key_id
    clients._session.cache_clear()


def test_the_iam_policy_allows_the_apps_calls_and_nothing_else(as_policy_user):
    from botocore.exceptions import ClientError

    sb, key_id = as_policy_user
    bucket, key = sb.bucket, "uploads/7/web01.raw"
    # Refused first: proves the sandbox enforces IAM for these keys.
    with pytest.raises(ClientError, match="AccessDenied|not authorized"):
        clients.client("ec2").describe_instances()

    # The upload: create, a part (the browser's presigned PUT acts with the same s3:PutObject;
    # moto checks only header-signed calls, so the part goes header-signed), list, complete.
    upload_id = multipart.create(bucket, key, file_name="web01.raw")
    body = raw_mbr(1024 * 1024)
    multipart._s3().upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=body)
    parts = multipart.list_parts(bucket, key, upload_id)
    assert [p.number for p in parts] == [1]
    multipart.complete(bucket, key, upload_id, parts)
    # Inspection reads: HEAD and ranged GETs.
    assert multipart.head(bucket, key).size == len(body)
    assert S3RangeReader(bucket, key).read(510, 2) == b"\x55\xaa"
    # An upload given up.
    other = multipart.create(bucket, "uploads/7/other.raw", file_name="other.raw")
    multipart.abort(bucket, "uploads/7/other.raw", other)
    # The encryption step's key list and check, the snapshot sources.
    assert key_id in [k.key_id for k in kms.list_keys()]
    assert kms.key_problem(key_id) == ""
    ec2.own_snapshots()
    # Dispatch (its dry run, then for real), poll to the AMI, cancel another.
    disk = {"Format": "RAW", "UserBucket": {"S3Bucket": bucket, "S3Key": key}}
    assert vmimport.dry_run({"DiskContainers": [disk]})[0] is True
    task_id = vmimport.import_image({"DiskContainers": [disk], "ClientToken": "policy-test-1"})["ImportTaskId"]
    sb.advance(3600)
    (task,) = vmimport.describe_import_image_tasks([task_id])
    assert task["Status"] == "completed", task
    assert [i["ImageId"] for i in vmimport.describe_images([task["ImageId"]])] == [task["ImageId"]]
    snapshot_id = task["SnapshotDetails"][0]["SnapshotId"]
    assert [s["SnapshotId"] for s in ec2.own_snapshots(snapshot_ids=[snapshot_id])] == [snapshot_id]
    cancelled = vmimport.import_image({"DiskContainers": [disk], "ClientToken": "policy-test-2"})["ImportTaskId"]
    vmimport.cancel_import_task(cancelled, "policy test")
    # A disk discarded after its upload.
    multipart.delete(bucket, key)

    # Outside the policy: another prefix of the bucket, another action.
    with pytest.raises(AwsError, match="AccessDenied"):
        multipart.create(bucket, "elsewhere/web01.raw", file_name="web01.raw")
    with pytest.raises(ClientError, match="AccessDenied|not authorized"):
        clients.client("kms").create_key()


def test_the_iam_policy_grants_what_moto_cannot_check():
    """HeadBucket (moto asks for a made-up s3:HeadBucket; AWS for s3:ListBucket), PassRole and
    CreateTags-on-create (moto never asks): evaluated with moto's own policy evaluation."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    bucket = "import-wizard-uploads"
    policy = IAMPolicy(POLICY.read_text())
    allowed = {
        ("s3:ListBucket", f"arn:aws:s3:::{bucket}"),
        ("s3:PutObject", f"arn:aws:s3:::{bucket}/uploads/7/web01.raw"),
        ("s3:PutObject", f"arn:aws:s3:::{bucket}/audit/head.json"),
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/manifests/7/batch-1-0123456789ab.csv"),
        ("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}"),
        ("ec2:CopyImage", "*"),
        ("ec2:ModifyImageAttribute", "*"),
        ("ec2:EnableImageDeprecation", "*"),
        ("ec2:CreateTags", "arn:aws:ec2:eu-central-1::image/ami-0123456789abcdef0"),
        ("iam:GetRole", "arn:aws:iam::123456789012:role/vmimport"),
        ("iam:SimulatePrincipalPolicy", "arn:aws:iam::123456789012:role/vmimport"),
        ("sts:AssumeRole", "arn:aws:iam::210987654321:role/import-wizard-target-prod"),
    }
    for action, resource in allowed:
        assert policy.is_action_permitted(action, resource) == PermissionResult.PERMITTED, action
    refused = {
        ("s3:ListBucket", "arn:aws:s3:::another-bucket"),
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/elsewhere/x.raw"),
        ("iam:PassRole", "arn:aws:iam::123456789012:role/admin"),
        ("s3:PutObject", f"arn:aws:s3:::{bucket}/elsewhere/x.raw"),
        ("iam:GetRole", "arn:aws:iam::123456789012:role/admin"),
        ("sts:AssumeRole", "arn:aws:iam::210987654321:role/admin"),
    }  # (CreateTags elsewhere is refused by TagsOnTheImportTask's condition, which moto does not evaluate)
    for action, resource in refused:
        assert policy.is_action_permitted(action, resource) != PermissionResult.PERMITTED, action
    statements = {s["Sid"]: s for s in json.loads(POLICY.read_text())["Statement"]}
    assert statements["PassTheServiceRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "vmie.amazonaws.com"}
    }
    assert statements["TagsOnTheImportTask"]["Condition"] == {"StringEquals": {"ec2:CreateAction": "ImportImage"}}
