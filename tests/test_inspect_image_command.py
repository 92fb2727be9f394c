"""`manage.py inspect_image PATH|s3://bucket/key [--json]`: the whole report, from a file or S3
(the sandbox's, over HTTP), inspected in the limited child as the worker does."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest
from django.core.management import CommandError, call_command

from tests.inspect import guests
from tests.inspect.conftest import require_tools


@pytest.fixture(scope="module")
def bls_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    root, boot = guests.linux("centos", "8", "4.18.0-193.el8.x86_64", boot="bls")
    return guests.build_disk(tmp_path_factory.mktemp("cmd") / "bls.raw", root, boot, size_mib=40)


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("inspect_image", *args, stdout=out)
    except SystemExit as e:
        return int(e.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_text_report_of_a_local_file(bls_disk: Path) -> None:
    status, text = run(str(bls_disk))
    assert status == 1
    assert "guest: centos 8 (linux, x86_64)" in text
    assert "ERROR   bls-no-default" in text and "BLSC-style GRUB found" in text
    assert "suggested: Platform=Linux" in text
    assert text.rstrip().endswith("NOT OK: VM Import would fail")


def test_json_report_from_s3(bls_disk: Path, sandbox) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=sandbox.endpoint,
        region_name=sandbox.region,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    s3.put_object(Bucket=sandbox.bucket, Key="uploads/bls.raw", Body=bls_disk.read_bytes())
    status, text = run(f"s3://{sandbox.bucket}/uploads/bls.raw", "--json")
    report = json.loads(text)
    assert status == 1 and report["guest"]["boot_loader"] == "grub-bls"
    assert "bls-no-default" in {f["code"] for f in report["findings"]}


def test_bad_arguments() -> None:
    with pytest.raises(CommandError, match="s3://bucket/key"):
        run("s3://only-a-bucket")
    with pytest.raises(CommandError, match="No such file"):
        run("/nonexistent/disk.vmdk")
