"""The upload widget in a real browser: an image to S3 in parts, and a resume after a reload.

The whole application runs (`make run`, the `stack` fixture); parts go from Chromium to the
sandbox's S3 as they would to AWS.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
import zlib

import boto3
import pytest
from playwright.sync_api import expect

from tests.browser.pages import log_in
from tests.stack import ROOT, Stack

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MIB = 1024**2
SIZE = 40 * MIB  # five parts of 8 MiB
PART_PUT = re.compile(r"[?&]partNumber=(\d+)")


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "web01.raw"
    path.write_bytes(os.urandom(SIZE))
    return path


def make_draft(stack: Stack, username: str = "demo") -> int:
    """A draft of `username`, made in the stack's own database."""
    code = (
        "from django.contrib.auth import get_user_model; from wizard.models import ImportRequest; "
        f"print(ImportRequest.objects.create(owner=get_user_model().objects.get(username={username!r})).pk)"
    )
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=stack.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.split()[-1])


def s3(stack: Stack):
    return boto3.client(
        "s3",
        endpoint_url=stack.sandbox_url,
        region_name="us-east-1",
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )


def open_upload_page(browser, stack: Stack, pk: int, init_script: str = ""):
    page = log_in(browser, stack, "demo")
    if init_script:
        page.add_init_script(init_script)
    page.set_default_timeout(20_000)
    page.on("dialog", lambda dialog: dialog.accept())  # "leave the page?" while uploading
    page.goto(f"{stack.url}/imports/{pk}/edit/upload/")
    expect(page.locator("[data-upload-widget]")).to_have_attribute("data-ready", "true")
    return page


def part_puts(page) -> list[int]:
    """Part numbers of the part PUTs the page sends (to S3, not to the web app)."""
    numbers: list[int] = []

    def seen(request):
        found = PART_PUT.search(request.url)
        if request.method == "PUT" and found:
            numbers.append(int(found[1]))

    page.on("request", seen)
    return numbers


RECORD_PROGRESS = """() => {
  window.progressSeen = [];
  new MutationObserver(() => {
    const row = document.querySelector('.upload-file');
    if (!row) return;
    window.progressSeen.push({
      value: row.querySelector('progress').value,
      bytes: row.querySelector('.upload-bytes').textContent,
      speed: row.querySelector('.upload-speed').textContent,
      eta: row.querySelector('.upload-eta').textContent,
    });
  }).observe(document.querySelector('[data-upload-widget]'),
             {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def throttle_uploads(page, bytes_per_second: int) -> None:
    """Chromium's own network emulation: uploads (to S3 too) go at most this fast."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second},
    )


def test_an_image_goes_to_s3_in_parts_and_becomes_a_disk(stack, browser, image):
    pk = make_draft(stack)
    page = open_upload_page(browser, stack, pk)
    puts = part_puts(page)
    # ~8 s: speed and time left show after 1 s of samples, and a loaded machine bunches progress events.
    throttle_uploads(page, 5 * MIB)
    page.evaluate(RECORD_PROGRESS)
    page.evaluate("document.body.addEventListener('upload-completed', (e) => { window.completedDetail = e.detail; })")

    page.locator("[data-upload-widget] input[type=file]").set_input_files(str(image))

    row = page.locator(".upload-file")
    expect(row).to_have_class(re.compile(r"\bis-complete\b"), timeout=60_000)
    expect(row.locator(".upload-state")).to_have_text("Uploaded: disk 1 (RAW)")
    expect(row.locator(".upload-bytes")).to_have_text("40.0 MiB of 40.0 MiB")
    assert sorted(puts) == [1, 2, 3, 4, 5]
    # The bar moved through values between empty and full, with speed and time left shown.
    seen = page.evaluate("window.progressSeen")
    values = sorted({s["value"] for s in seen})
    assert len([v for v in values if 0 < v < SIZE]) >= 2, values
    assert any(s["speed"].endswith("/s") and s["eta"].endswith("left") for s in seen), seen
    # The event other parts of the page listen to, and the disks list it refreshed.
    detail = page.evaluate("window.completedDetail")
    assert detail["container"]["file_name"] == "web01.raw" and detail["container"]["size_bytes"] == SIZE
    expect(page.locator("#sources")).to_contain_text("web01.raw")
    expect(page.locator("#sources")).to_contain_text(detail["key"])
    head = s3(stack).head_object(Bucket="import-wizard-uploads", Key=detail["key"])
    assert head["ContentLength"] == SIZE


def test_after_a_reload_the_same_file_sends_only_its_missing_parts(stack, browser, image):
    pk = make_draft(stack)
    page = open_upload_page(browser, stack, pk)
    # Parts 1 and 2 reach S3; parts 3 to 5 are held on their way, until the reload drops them.
    held = []
    page.route(re.compile(r"[?&]partNumber=[345](&|$)"), lambda route: held.append(route))
    before = upload_ids(stack)
    page.locator("[data-upload-widget] input[type=file]").set_input_files(str(image))
    expect(page.locator(".upload-file .upload-state")).to_have_text("Uploading", timeout=30_000)
    upload = wait_for_parts(stack, count=2, besides=before)
    wait_for_held(page, held, 3)

    page.reload()
    page.unroute_all(behavior="ignoreErrors")
    expect(page.locator("[data-upload-widget]")).to_have_attribute("data-ready", "true")
    hint = page.locator("[data-hints]")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("web01.raw")
    # The widget wrote down the upload and its parts' CRC32s. Forget those of parts 1 and 2:
    # the widget then reads them again from the file to complete.
    saved = page.evaluate(FORGET_CHECKSUMS)
    assert saved["upload_id"] == upload["UploadId"] and {"1", "2"} <= set(saved["crcs"])
    puts = part_puts(page)
    page.locator("[data-upload-widget] input[type=file]").set_input_files(str(image))

    row = page.locator(".upload-file")
    expect(row).to_have_class(re.compile(r"\bis-complete\b"), timeout=60_000)
    assert sorted(puts) == [3, 4, 5]
    expect(hint).to_be_hidden()
    expect(page.locator("#sources")).to_contain_text(upload["Key"])
    head = s3(stack).head_object(Bucket="import-wizard-uploads", Key=upload["Key"])
    assert head["ContentLength"] == SIZE
    # The object is the file: the parts sent before the reload are in their places.
    body = s3(stack).get_object(Bucket="import-wizard-uploads", Key=upload["Key"])["Body"].read()
    assert body == image.read_bytes()


FORGET_CHECKSUMS = """() => {
  const key = Object.keys(localStorage).find((k) => k.startsWith('import-wizard:upload:'));
  const saved = JSON.parse(localStorage.getItem(key));
  localStorage.setItem(key, JSON.stringify({...saved, crcs: {}}));
  return saved;
}"""


def wait_for_held(page, held: list, count: int, timeout: float = 60) -> None:
    """Until `count` part PUTs are held by the page's route."""
    deadline = time.monotonic() + timeout
    while len(held) < count and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(held) == count


def upload_ids(stack: Stack) -> set[str]:
    """The multipart uploads S3 holds now (those of earlier tests on the same stack)."""
    uploads = s3(stack).list_multipart_uploads(Bucket="import-wizard-uploads").get("Uploads", [])
    return {u["UploadId"] for u in uploads}


def wait_for_parts(stack: Stack, count: int, besides: set[str], timeout: float = 60) -> dict:
    """The one multipart upload in progress (not one of `besides`), once S3 holds `count` of its parts."""
    client = s3(stack)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for upload in client.list_multipart_uploads(Bucket="import-wizard-uploads").get("Uploads", []):
            if upload["UploadId"] in besides:
                continue
            parts = client.list_parts(Bucket="import-wizard-uploads", Key=upload["Key"], UploadId=upload["UploadId"])
            if len(parts.get("Parts", [])) >= count:
                return upload
        time.sleep(0.2)
    raise AssertionError(f"S3 never held {count} parts")


def test_cancel_aborts_the_upload_in_s3(stack, browser, image):
    pk = make_draft(stack)
    page = open_upload_page(browser, stack, pk)
    page.route(re.compile(r"[?&]partNumber=[345](&|$)"), lambda route: None)  # held: never sent
    before = upload_ids(stack)
    page.locator("[data-upload-widget] input[type=file]").set_input_files(str(image))
    upload = wait_for_parts(stack, count=2, besides=before)

    page.locator(".upload-file .upload-cancel").click()

    row = page.locator(".upload-file")
    expect(row).to_have_class(re.compile(r"\bis-cancelled\b"))
    expect(row.locator(".upload-state")).to_have_text("Cancelled")
    expect(row.locator(".upload-message")).to_contain_text("aborted")
    uploads = s3(stack).list_multipart_uploads(Bucket="import-wizard-uploads").get("Uploads", [])
    assert upload["UploadId"] not in [u["UploadId"] for u in uploads]
    page.reload()
    expect(page.locator("[data-upload-widget]")).to_have_attribute("data-ready", "true")
    expect(page.locator("[data-hints]")).to_be_hidden()  # nothing left to resume
    expect(page.locator("#sources")).to_contain_text("No disk yet")


def test_dropped_connections_are_sent_again(stack, browser, image):
    pk = make_draft(stack)
    page = open_upload_page(browser, stack, pk)
    puts = part_puts(page)
    held: list = []
    holding = [True]
    page.route(
        re.compile(r"[?&]partNumber=[345](&|$)"), lambda route: held.append(route) if holding[0] else route.continue_()
    )
    before = upload_ids(stack)
    page.locator("[data-upload-widget] input[type=file]").set_input_files(str(image))
    wait_for_parts(stack, count=2, besides=before)
    wait_for_held(page, held, 3)

    holding[0] = False
    for route in held:  # the connections of parts 3 to 5 drop
        route.abort("connectionreset")

    row = page.locator(".upload-file")
    expect(row).to_have_class(re.compile(r"\bis-complete\b"), timeout=60_000)
    assert sorted(puts) == [1, 2, 3, 3, 4, 4, 5, 5]  # each dropped part sent again, the others once
    expect(page.locator("#sources")).to_contain_text("web01.raw")


COUNT_READS = """
// Which parts the page asks its workers to read, and the part PUTs the page itself sends.
window.partReads = [];
window.pagePuts = 0;
const postMessage = Worker.prototype.postMessage;
Worker.prototype.postMessage = function (message, ...rest) {
  if (message && message.op === 'read') window.partReads.push({size: message.blob.size, keep: message.keep});
  return postMessage.call(this, message, ...rest);
};
const open = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function (method, url, ...rest) {
  if (method === 'PUT' && /[?&]partNumber=/.test(url)) window.pagePuts++;
  return open.call(this, method, url, ...rest);
};
"""


def test_each_part_is_read_from_the_file_once_and_sent_as_read(stack, browser, tmp_path):
    size = 17 * MIB  # parts of 8, 8 and 1 MiB
    image = tmp_path / "small.raw"
    image.write_bytes(os.urandom(size))
    pk = make_draft(stack)
    page = open_upload_page(browser, stack, pk, init_script=COUNT_READS)
    puts = part_puts(page)
    page.locator("[data-upload-widget] input[type=file]").set_input_files(str(image))

    row = page.locator(".upload-file")
    expect(row).to_have_class(re.compile(r"\bis-complete\b"), timeout=60_000)
    # One read per part, each handed back to be sent (none read again for its checksum)...
    reads = page.evaluate("window.partReads")
    assert sorted(r["size"] for r in reads) == [1 * MIB, 8 * MIB, 8 * MIB]
    assert all(r["keep"] for r in reads)
    # ... and sent by the worker that read it (none from the page's main thread), once each.
    assert page.evaluate("window.pagePuts") == 0
    assert sorted(puts) == [1, 2, 3]
    expect(page.locator("[data-upload-widget]")).to_have_attribute("data-crc-engine", "wasm")


def test_parts_are_read_into_reused_buffers_and_s3_holds_the_files_bytes(stack, browser, tmp_path):
    size = 20 * 8 * MIB + 12345  # 21 parts, the last a few KiB
    image = tmp_path / "many.raw"
    image.write_bytes(os.urandom(size))
    pk = make_draft(stack)
    page = open_upload_page(browser, stack, pk)
    page.evaluate("document.body.addEventListener('upload-completed', (e) => { window.completedDetail = e.detail; })")
    page.locator("[data-upload-widget] input[type=file]").set_input_files(str(image))

    row = page.locator(".upload-file")
    expect(row).to_have_class(re.compile(r"\bis-complete\b"), timeout=90_000)
    # At most the parts in flight and read ahead (6 + 6) had a buffer of their own; the
    # others were read into a buffer a part before them had left as its PUT started.
    counts = [w.evaluate("self.partBuffers") for w in page.workers if "crc32-worker" in w.url]
    assert counts, [w.url for w in page.workers]
    made, reused = sum(c["made"] for c in counts), sum(c["reused"] for c in counts)
    assert made + reused == 21, counts
    assert made <= 12 + len(counts) and reused >= 21 - 12 - len(counts), counts
    # ... and S3 holds the file's own bytes: no buffer handed on before its bytes were sent.
    key = page.evaluate("window.completedDetail.key")
    body = s3(stack).get_object(Bucket="import-wizard-uploads", Key=key)["Body"].read()
    assert len(body) == size and body == image.read_bytes()


def test_where_webassembly_may_not_run_the_checksums_are_computed_in_javascript(stack, browser, tmp_path):
    size = 9 * MIB
    image = tmp_path / "small.raw"
    image.write_bytes(os.urandom(size))
    pk = make_draft(stack)
    page = open_upload_page(browser, stack, pk)
    # The worker's script under a policy without 'wasm-unsafe-eval': WebAssembly cannot compile.
    page.route(
        re.compile(r"/static/js/crc32-worker\.js"),
        lambda route: route.fulfill(
            response=route.fetch(),
            headers={"Content-Type": "text/javascript", "Content-Security-Policy": "script-src 'self'"},
        ),
    )
    page.evaluate("document.body.addEventListener('upload-completed', (e) => { window.completedDetail = e.detail; })")
    page.locator("[data-upload-widget] input[type=file]").set_input_files(str(image))

    row = page.locator(".upload-file")
    expect(row).to_have_class(re.compile(r"\bis-complete\b"), timeout=60_000)
    expect(page.locator("[data-upload-widget]")).to_have_attribute("data-crc-engine", "js")
    # S3 took the parts with the checksums computed in JavaScript, and the object's is theirs.
    key = page.evaluate("window.completedDetail.key")
    head = s3(stack).head_object(Bucket="import-wizard-uploads", Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == size
    data = image.read_bytes()
    parts = [zlib.crc32(data[: 8 * MIB]), zlib.crc32(data[8 * MIB :])]
    composite = zlib.crc32(b"".join(c.to_bytes(4, "big") for c in parts))
    assert head["ChecksumCRC32"].split("-")[0] == base64.b64encode(composite.to_bytes(4, "big")).decode()
