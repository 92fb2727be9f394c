"""The README's run command: every part starts, does the whole job, and stops on Ctrl-C."""

from __future__ import annotations

import re
import time

import boto3
import pytest
import requests

from tests.images import raw_mbr
from tests.services import fresh_postgres_database, fresh_redis_db
from tests.stack import ROOT, Stack, csrf, login, pid_alive, port_open, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


def test_healthz_reports_every_part(stack):
    body = requests.get(stack.url + "/healthz", timeout=5).json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "queue", "aws"}
    assert body["checks"]["queue"].startswith("ok")


def test_an_image_goes_from_the_browser_form_to_an_ami(stack):
    import_to_ami(stack)


def test_the_scale_configuration_does_the_same_on_postgresql_and_redis(tmp_path):
    """DATABASE_URL and REDIS_URL set: PostgreSQL, django-q2's Redis broker and the Redis cache."""
    database_url, drop = fresh_postgres_database()
    try:
        with running(tmp_path / "scale", DATABASE_URL=database_url, REDIS_URL=fresh_redis_db()) as stack:
            import_to_ami(stack)
    finally:
        drop()


def import_to_ami(stack: Stack) -> None:
    """Requester uploads and submits, reviewer approves in the admin, the worker imports to an AMI."""
    demo = requests.Session()
    login(demo, stack.url, "demo", "demo")
    token = csrf(demo, stack.url, "/imports/new/")
    started = demo.post(
        stack.url + "/imports/start/",
        data={"csrfmiddlewaretoken": token},
        headers={"Referer": stack.url + "/imports/new/"},
    )
    pk = int(re.search(r"/imports/(\d+)/edit/upload/$", started.url)[1])
    upload_image(demo, stack, pk, token, raw_mbr(64 * 1024), referer=started.url)
    details = f"{stack.url}/imports/{pk}/edit/details/"
    version = re.search(r'name="version" id="version" value="(\d+)"', demo.get(details).text)[1]
    demo.post(
        details,
        data={"csrfmiddlewaretoken": token, "version": version, "description": "stack test", "nav": "next"},
        headers={"Referer": details},
    )
    review = f"{stack.url}/imports/{pk}/edit/review/"
    deadline = time.monotonic() + 60
    while "still being inspected" in demo.get(review).text and time.monotonic() < deadline:
        time.sleep(0.3)  # the worker inspects the image (in a child process with limits)
    response = demo.post(
        f"{stack.url}/imports/{pk}/submit/", data={"csrfmiddlewaretoken": token}, headers={"Referer": details}
    )
    assert "Waiting for a reviewer" in response.text, response.text[-2000:]
    assert "stack test" in demo.get(stack.url + "/imports/").text

    reviewer = requests.Session()
    login(reviewer, stack.url, "reviewer", "reviewer")
    changelist = "/admin/wizard/importrequest/"
    answer = reviewer.post(
        stack.url + changelist,
        data={
            "csrfmiddlewaretoken": csrf(reviewer, stack.url, changelist),
            "action": "approve_selected",
            "_selected_action": str(pk),
            "index": "0",
        },
        headers={"Referer": stack.url + changelist},
    )
    assert f"Approved #{pk}" in answer.text

    seen: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        partial = demo.get(f"{stack.url}/imports/{pk}/progress/").text
        found = re.search(r'id="task-status">([^<]*)<.*id="task-status-message">([^<]*)<', partial, re.S)
        stage = found and (found[2] or found[1])  # AWS drops StatusMessage once completed
        if stage and (not seen or seen[-1] != stage):
            seen.append(stage)
        if 'data-final="true"' in partial:
            break
        time.sleep(0.3)
    assert "hx-trigger" not in partial, "polling must stop at a final state"
    assert seen[-1] == "completed", (seen, stack.log()[-3000:])
    assert {"converting", "preparing ami"} <= set(seen)
    image_id = re.search(r'id="image-id">(ami-[0-9a-f]+)<', partial)[1]
    task_id = re.search(r'id="import-task-id">(import-ami-[0-9a-f]+)<', partial)[1]

    ec2 = boto3.client(
        "ec2", endpoint_url=stack.sandbox_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["ImageId"] == image_id
    task = ec2.describe_import_image_tasks(ImportTaskIds=[task_id])["ImportImageTasks"][0]
    assert (task["Status"], task["ImageId"]) == ("completed", image_id)


def upload_image(session: requests.Session, stack: Stack, pk: int, token: str, body: bytes, referer: str) -> None:
    """Upload an image as the browser's widget does (the user may import only their own
    uploads): start, PUT the one part to its presigned URL with its CRC32, complete."""
    from wizard.uploads.uploads import crc32_b64

    headers = {"X-CSRFToken": token, "Referer": referer}
    up = session.post(
        f"{stack.url}/imports/{pk}/uploads/", json={"file_name": "stack.raw", "size": len(body)}, headers=headers
    ).json()
    crc = crc32_b64(body)
    signed = session.post(
        stack.url + up["urls"]["sign"], json={"parts": [{"PartNumber": 1, "ChecksumCRC32": crc}]}, headers=headers
    ).json()
    put = requests.put(signed["urls"]["1"], data=body, headers=signed["headers"]["1"], timeout=30)
    assert put.status_code == 200, put.text
    parts = [{"PartNumber": 1, "ETag": put.headers["ETag"], "ChecksumCRC32": crc}]
    done = session.post(stack.url + up["urls"]["complete"], json={"parts": parts}, headers=headers)
    assert done.status_code == 200, done.text


def test_ctrl_c_stops_every_part_and_a_second_start_reuses_the_install(tmp_path):
    stack = Stack(tmp_path / "stack")
    stamp = ROOT / ".venv" / ".installed-requirements"
    try:
        stamp.unlink(missing_ok=True)  # the first start installs
        stack.start()
        assert "pip install" in stack.log()
        pids = stack.pids()
        assert set(pids) == {"sandbox", "worker", "web"}
        stack.interrupt()
        assert not [name for name, pid in pids.items() if pid_alive(pid)], stack.log()
        assert not port_open(stack.web_port) and not port_open(stack.sandbox_port)
        assert "[run] stopped" in stack.log()

        stack.start()  # again: nothing to install, the data is kept
        assert "pip install" not in stack.log().split("[run] stopped")[-1]
        assert stamp.exists()
        demo = requests.Session()
        login(demo, stack.url, "demo", "demo")
        stack.interrupt()
    finally:
        stack.kill()
