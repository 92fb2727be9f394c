"""The README's JSON API examples, run as written with curl and jq against `make run`.

The section "The JSON API" is read from README.md: each ```sh block is run in order in one
bash (set -euo pipefail), each ```json/```csv block with a file name is written to that file
first. Tokens are made on the API tokens page, as a person would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import boto3
import pytest
import requests

from tests.images import raw_mbr
from tests.stack import ROOT, csrf, login, running

pytestmark = pytest.mark.slow

GRANT = """
from django.contrib.auth.models import Group, User
from wizard.models import SourceGrant
group, _ = Group.objects.get_or_create(name="packer-images")
User.objects.get(username="demo").groups.add(group)
grant, _ = SourceGrant.objects.get_or_create(kind="s3", s3_bucket="import-wizard-uploads", s3_prefix="packer/")
grant.groups.add(group)
"""


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, file name or "", body) of each fenced block, in order."""
    return [(m[1], m[2].strip(), m[3]) for m in re.finditer(r"```(\w+)([^\n]*)\n(.*?)```", text, re.S)]


def token(stack, username: str) -> str:
    session = requests.Session()
    login(session, stack.url, username, username)
    page = session.post(
        stack.url + "/account/tokens/",
        data={"csrfmiddlewaretoken": csrf(session, stack.url, "/account/tokens/"), "name": "readme test"},
        headers={"Referer": stack.url + "/account/tokens/"},
    )
    return re.search(r'id="token-value"[^>]*>(iw_[^<]+)<', page.text)[1]


def test_the_readmes_curl_examples_work(tmp_path):
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.fail("the README's examples need curl and jq (scripts/system-packages.sh installs them)")
    api = section((ROOT / "README.md").read_text(), "The JSON API")
    found = blocks(api)
    assert sum(1 for lang, _, _ in found if lang == "sh") >= 5
    with running(tmp_path / "stack") as stack:
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", GRANT], cwd=ROOT, env=stack.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        s3 = boto3.client(
            "s3",
            endpoint_url=stack.sandbox_url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        for name in ("web01", "web02"):
            s3.put_object(Bucket="import-wizard-uploads", Key=f"packer/{name}.raw", Body=raw_mbr(64 * 1024))
        work = tmp_path / "work"
        work.mkdir()
        (work / "db01.raw").write_bytes(raw_mbr(64 * 1024))
        script = ["set -euo pipefail"]
        for lang, name, body in found:
            if name:
                (work / name).write_text(body)
            elif lang == "sh":
                script.append(body)
        env = {"PATH": "/usr/bin:/bin", "WIZARD": stack.url, "TOKEN": token(stack, "demo")}
        env["REVIEWER_TOKEN"] = token(stack, "reviewer")
        run = subprocess.run(
            ["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True, timeout=240
        )
        output = run.stdout
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{stack.log()[-3000:]}"
    lines = output.splitlines()
    assert '"user": "demo"' in lines[0] or '"user":"demo"' in lines[0]
    assert "submitted" in lines and "approved" in lines
    assert any(re.fullmatch(r"ami-[0-9a-f]+", line) for line in lines), output
    assert any(line.startswith("DiskContainers[0].UserBucket.S3Key: ") for line in lines), output
    assert "RAW" in lines
    assert any(re.fullmatch(r"\[\d+,\d+\]", line) for line in lines), output  # the batch's two approved
