"""Browser-to-S3 multipart uploads: the widget's endpoints against a real sandbox over HTTP."""

from __future__ import annotations

import io
import json
import re
import zlib
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import requests
from django.test import Client, RequestFactory
from django.urls import reverse

from tests.conftest import make_user
from wizard.models import AuditEvent, DiskContainer, ImportRequest, Upload
from wizard.requests import drafts
from wizard.uploads import uploads
from wizard.views import uploads as views

MIB = 1024**2
GIB_4 = 4 * 1024**3


@pytest.fixture
def draft(requester):
    return ImportRequest.objects.create(owner=requester, description="two disks")


@pytest.fixture
def client_of(requester):
    client = Client()
    client.force_login(requester)
    return client


@pytest.fixture
def other(db):
    client = Client()
    client.force_login(make_user("bob", "requester"))
    return client


def post(client: Client, url: str, data: dict | None = None, **extra):
    return client.post(url, data=json.dumps(data or {}), content_type="application/json", **extra)


def start(client: Client, draft: ImportRequest, name: str = "web01.vmdk", size: int = 10 * MIB) -> dict:
    response = post(client, reverse("upload-create", args=[draft.pk]), {"file_name": name, "size": size})
    assert response.status_code == 201, response.content
    return response.json()


def sign(client: Client, up: dict, bodies: dict[int, bytes]) -> dict[int, tuple[str, dict[str, str]]]:
    """Presigned URLs (and headers) for these parts, whose bytes are `bodies`."""
    asked = [{"PartNumber": n, "ChecksumCRC32": uploads.crc32_b64(body)} for n, body in bodies.items()]
    response = post(client, up["urls"]["sign"], {"parts": asked})
    assert response.status_code == 200, response.content
    answer = response.json()
    return {int(n): (url, answer["headers"][n]) for n, url in answer["urls"].items()}


def put(url_and_headers: tuple[str, dict[str, str]], body: bytes) -> requests.Response:
    url, headers = url_and_headers
    answer = requests.put(url, data=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer


def put_parts(client: Client, up: dict, sizes: list[int]) -> list[dict]:
    """PUT parts of these sizes to their presigned URLs, as the browser does; returns what
    the browser sends to complete."""
    bodies = {n: bytes([n]) * size for n, size in enumerate(sizes, start=1)}
    signed = sign(client, up, bodies)
    return [
        {"PartNumber": n, "ETag": put(signed[n], body).headers["ETag"], "ChecksumCRC32": uploads.crc32_b64(body)}
        for n, body in bodies.items()
    ]


def multipart_uploads(sandbox) -> list[tuple[str, str]]:
    answer = sandbox.client("s3").list_multipart_uploads(Bucket=sandbox.bucket)
    return [(u["Key"], u["UploadId"]) for u in answer.get("Uploads", [])]


# --- pure ---------------------------------------------------------------------------------------


def test_part_size_lets_10000_parts_cover_5_tib():
    for size in (1, 10 * MIB, 80 * 1024 * MIB, 5 * 1024**4):
        part = uploads.part_size_for(size)
        assert part >= 8 * MIB and part % MIB == 0
        assert part * 10_000 >= size
        assert uploads.part_count(size) <= 10_000
    assert uploads.part_size_for(5 * 1024**4) == 525 * MIB  # ceil(5 TiB / 10,000) in whole MiB


def test_the_format_comes_from_the_extension():
    assert drafts.guess_format("Web01.VMDK") == "VMDK"
    assert drafts.guess_format("disk.img") == "RAW"
    assert drafts.guess_format("disk.qcow2") == ""


# --- create ----------------------------------------------------------------------------------------


def test_create_puts_the_key_under_the_users_prefix(sandbox, client_of, draft, requester):
    up = start(client_of, draft, name="web01.vmdk")

    assert re.fullmatch(rf"uploads/{requester.pk}/[0-9a-f]{{32}}\.vmdk", up["key"])
    upload = Upload.objects.get(pk=up["id"])
    assert upload.upload_id == up["upload_id"] != ""
    assert (upload.owner, upload.request, upload.status) == (requester, draft, Upload.Status.UPLOADING)
    assert (upload.file_name, upload.size, upload.bucket) == ("web01.vmdk", 10 * MIB, sandbox.bucket)
    assert up["part_size"] == 8 * MIB and up["part_count"] == 2
    assert (up["key"], up["upload_id"]) in multipart_uploads(sandbox)


def test_the_file_name_is_metadata_never_a_path(sandbox, client_of, draft, requester):
    up = start(client_of, draft, name="../../other/..\\evil name.vhd")

    assert re.fullmatch(rf"uploads/{requester.pk}/[0-9a-f]{{32}}\.vhd", up["key"])
    assert Upload.objects.get(pk=up["id"]).file_name == "evil name.vhd"


def test_create_refuses_what_it_cannot_upload(sandbox, client_of, draft):
    url = reverse("upload-create", args=[draft.pk])
    assert post(client_of, url, {"file_name": "a.raw", "size": 0}).json()["error"] == "a.raw is empty."
    too_big = post(client_of, url, {"file_name": "a.raw", "size": 5 * 1024**4 + 1})
    assert too_big.status_code == 400 and "5 TiB" in too_big.json()["error"]
    assert post(client_of, url, {"size": 10}).status_code == 400
    assert post(client_of, url, {"file_name": "a.raw", "size": "10"}).status_code == 400
    assert not Upload.objects.exists()


def test_create_needs_the_users_own_draft(sandbox, client_of, other, draft):
    assert post(other, reverse("upload-create", args=[draft.pk]), {"file_name": "a.raw", "size": 10}).status_code == 404

    draft.status = ImportRequest.Status.SUBMITTED
    draft.save()
    refused = post(client_of, reverse("upload-create", args=[draft.pk]), {"file_name": "a.raw", "size": 10})
    assert refused.status_code == 409 and "no longer a draft" in refused.json()["error"]


# --- sign ------------------------------------------------------------------------------------------------


def test_sign_gives_a_short_lived_url_for_exactly_that_part(sandbox, client_of, draft):
    up = start(client_of, draft)
    body = b"x" * 1000

    url, headers = sign(client_of, up, {2: body})[2]

    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert f"{parsed.scheme}://{parsed.netloc}" == sandbox.endpoint  # the endpoint the browser reaches
    assert unquote(parsed.path) == f"/{sandbox.bucket}/{up['key']}"
    assert query["uploadId"] == [up["upload_id"]] and query["partNumber"] == ["2"]
    assert 0 < int(query["X-Amz-Expires"][0]) <= 15 * 60
    # The part's CRC32 is signed: S3 takes only these bytes for this part.
    assert query["X-Amz-SignedHeaders"] == ["host;x-amz-checksum-crc32"]
    assert headers == {"x-amz-checksum-crc32": uploads.crc32_b64(body)}

    answer = put((url, headers), body)
    assert answer.headers["ETag"]
    parts = sandbox.client("s3").list_parts(Bucket=sandbox.bucket, Key=up["key"], UploadId=up["upload_id"])["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(2, 1000)]


def test_sign_refuses_parts_the_file_does_not_have(sandbox, client_of, draft):
    up = start(client_of, draft, size=10 * MIB)  # two parts of 8 MiB
    crc = uploads.crc32_b64(b"")

    for parts in (
        [0],
        [1],
        [{"PartNumber": 3, "ChecksumCRC32": crc}],
        [{"PartNumber": "1", "ChecksumCRC32": crc}],
        [],
        [{"PartNumber": 1, "ChecksumCRC32": crc}] * 101,
    ):
        assert post(client_of, up["urls"]["sign"], {"parts": parts}).status_code == 400, parts


def test_sign_needs_each_parts_crc32(sandbox, client_of, draft):
    up = start(client_of, draft)

    for crc in (None, "", "not base64!", "AAAAAAAA"):
        refused = post(client_of, up["urls"]["sign"], {"parts": [{"PartNumber": 1, "ChecksumCRC32": crc}]})
        assert refused.status_code == 400 and "CRC32" in refused.json()["error"], crc


def test_composite_crc32_is_s3s():
    a, b = b"a" * 100, b"b" * 7
    raw = zlib.crc32(a).to_bytes(4, "big") + zlib.crc32(b).to_bytes(4, "big")
    assert uploads.composite_crc32([uploads.crc32_b64(a), uploads.crc32_b64(b)]) == uploads.crc32_b64(raw) + "-2"


# --- someone else's upload ----------------------------------------------------------------------------------


def test_another_user_gets_404_on_every_call(sandbox, client_of, other, draft):
    up = start(client_of, draft)
    urls = up["urls"]

    assert post(other, urls["sign"], {"parts": [1]}).status_code == 404
    assert other.get(urls["parts"]).status_code == 404
    assert other.get(urls["self"]).status_code == 404
    assert post(other, urls["complete"], {"parts": [{"PartNumber": 1, "ETag": '"x"'}]}).status_code == 404
    assert post(other, urls["abort"]).status_code == 404
    assert other.get(reverse("wizard-step", args=[draft.pk, "upload"])).status_code == 404
    assert Upload.objects.get(pk=up["id"]).status == Upload.Status.UPLOADING
    assert (up["key"], up["upload_id"]) in multipart_uploads(sandbox)


def test_without_a_session_the_calls_answer_401(sandbox, client_of, draft):
    up = start(client_of, draft)
    anonymous = Client()

    assert post(anonymous, up["urls"]["sign"], {"parts": [1]}).status_code == 401
    assert anonymous.get(up["urls"]["parts"]).status_code == 401
    assert anonymous.get(reverse("wizard-step", args=[draft.pk, "upload"])).status_code == 302


def test_posts_need_the_csrf_token(sandbox, requester, draft):
    client = Client(enforce_csrf_checks=True)
    client.force_login(requester)
    url = reverse("upload-create", args=[draft.pk])
    body = {"file_name": "a.raw", "size": 10}

    assert post(client, url, body).status_code == 403

    page = client.get(reverse("wizard-step", args=[draft.pk, "upload"]))
    token = re.search(r'data-csrf="([^"]+)"', page.content.decode())[1]
    assert post(client, url, body, HTTP_X_CSRFTOKEN=token).status_code == 201


# --- list -----------------------------------------------------------------------------------------------


def test_list_returns_the_parts_s3_holds(sandbox, client_of, draft):
    up = start(client_of, draft, size=20 * MIB)  # three parts
    assert client_of.get(up["urls"]["parts"]).json() == {"parts": []}

    bodies = {1: b"p" * 8 * MIB, 3: b"q" * 4 * MIB}
    signed = sign(client_of, up, bodies)
    etags = {n: put(signed[n], body).headers["ETag"] for n, body in bodies.items()}

    listed = client_of.get(up["urls"]["parts"]).json()["parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [(1, etags[1], 8 * MIB), (3, etags[3], 4 * MIB)]


# --- complete ----------------------------------------------------------------------------------------------


def test_complete_makes_the_object_and_adds_a_container(
    sandbox, client_of, draft, requester, django_capture_on_commit_callbacks
):
    first = Upload.objects.create(owner=requester, request=draft, bucket="b", key="k", file_name="a.vhd", size=GIB_4)
    DiskContainer.objects.create(request=draft, position=0, format="VHD", s3_bucket="b", s3_key="k", upload=first)
    up = start(client_of, draft, name="data.vmdk", size=10 * MIB)
    parts = put_parts(client_of, up, [8 * MIB, 2 * MIB])

    with django_capture_on_commit_callbacks(execute=True):  # the inspection is queued after the commit
        response = post(client_of, up["urls"]["complete"], {"parts": parts})

    assert response.status_code == 200, response.content
    head = sandbox.client("s3").head_object(Bucket=sandbox.bucket, Key=up["key"])
    assert head["ContentLength"] == 10 * MIB
    assert head["Metadata"] == {"file-name": "data.vmdk"}
    container = DiskContainer.objects.get(upload_id=up["id"])
    assert response.json()["container"]["id"] == container.pk
    # Named .vmdk, but random bytes: the pre-flight inspection takes the format from the bytes.
    assert (container.request, container.position, container.format) == (draft, 1, "RAW")
    assert container.inspection["format"] == "RAW" and container.inspection_status == "done"
    assert (container.s3_bucket, container.s3_key) == (sandbox.bucket, up["key"])
    assert (container.file_name, container.size_bytes) == ("data.vmdk", 10 * MIB)
    upload = Upload.objects.get(pk=up["id"])
    assert upload.status == Upload.Status.COMPLETED and upload.completed_at and upload.etag
    draft.refresh_from_db()
    assert draft.upload_start == upload.created_at and draft.upload_end == upload.completed_at
    assert draft.upload_size == round((GIB_4 + 10 * MIB) / 1024**3, 6)
    event = AuditEvent.objects.get(action="upload completed")
    assert (event.request, event.actor) == (draft, requester)
    assert event.details["key"] == up["key"] and event.details["size_bytes"] == 10 * MIB
    assert event.details["container"] == container.pk
    assert event.details["checksum_crc32"] == uploads.composite_crc32([p["ChecksumCRC32"] for p in parts])
    assert not multipart_uploads(sandbox)


def test_complete_twice_answers_the_same_container(sandbox, client_of, draft):
    up = start(client_of, draft, size=3 * MIB)
    parts = put_parts(client_of, up, [3 * MIB])

    first = post(client_of, up["urls"]["complete"], {"parts": parts}).json()
    again = post(client_of, up["urls"]["complete"], {"parts": parts})

    assert again.status_code == 200 and again.json()["container"] == first["container"]
    assert DiskContainer.objects.filter(request=draft).count() == 1
    assert AuditEvent.objects.filter(action="upload completed").count() == 1


def test_complete_checks_the_objects_crc32_against_the_parts(sandbox, client_of, draft):
    """The browser read other bytes than S3 holds (here: it says so for part 2): refused."""
    up = start(client_of, draft, name="web01.raw", size=10 * MIB)
    parts = put_parts(client_of, up, [8 * MIB, 2 * MIB])
    parts[1]["ChecksumCRC32"] = uploads.crc32_b64(b"other bytes")

    response = post(client_of, up["urls"]["complete"], {"parts": parts})

    assert response.status_code in (400, 422)
    assert not DiskContainer.objects.exists()
    if response.status_code == 422:  # the sandbox checks at the end, S3 when it joins the parts
        assert "CRC32" in response.json()["error"] and "refused" in response.json()["error"]
        assert Upload.objects.get(pk=up["id"]).status == Upload.Status.ABORTED
        assert AuditEvent.objects.get(action="upload failed").details["expected_crc32"].endswith("-2")


def test_complete_needs_the_parts(sandbox, client_of, draft):
    up = start(client_of, draft, size=3 * MIB)
    put_parts(client_of, up, [3 * MIB])

    assert post(client_of, up["urls"]["complete"], {}).status_code == 400
    assert post(client_of, up["urls"]["complete"], {"parts": []}).status_code == 400


def test_complete_without_a_parts_crc32_is_refused_when_s3_does_not_know_it(sandbox, client_of, draft):
    """After a reload the widget may have lost a part's CRC32: S3's ListParts gives it (the
    sandbox's does not, so there the upload cannot be completed and must be sent again)."""
    up = start(client_of, draft, size=3 * MIB)
    parts = put_parts(client_of, up, [3 * MIB])
    del parts[0]["ChecksumCRC32"]

    response = post(client_of, up["urls"]["complete"], {"parts": parts})

    assert response.status_code == 400 and "CRC32 checksum of part 1 is unknown" in response.json()["error"]
    assert Upload.objects.get(pk=up["id"]).status == Upload.Status.UPLOADING


def test_complete_with_a_part_missing_keeps_the_upload_to_resume(sandbox, client_of, draft):
    up = start(client_of, draft, size=10 * MIB)
    parts = put_parts(client_of, up, [8 * MIB])
    parts.append({"PartNumber": 2, "ETag": '"00000000000000000000000000000000"', "ChecksumCRC32": "AAAAAA=="})

    response = post(client_of, up["urls"]["complete"], {"parts": parts})

    assert response.status_code == 400 and "resume" in response.json()["error"]
    assert Upload.objects.get(pk=up["id"]).status == Upload.Status.UPLOADING
    assert not DiskContainer.objects.exists()


def test_a_size_mismatch_is_refused_and_makes_no_container(sandbox, client_of, draft, requester):
    up = start(client_of, draft, name="web01.raw", size=10 * MIB)
    parts = put_parts(client_of, up, [8 * MIB, 1 * MIB])  # 1 MiB short of what was declared

    response = post(client_of, up["urls"]["complete"], {"parts": parts})

    assert response.status_code == 422
    assert response.json()["error"] == (
        "The object S3 holds for web01.raw is 9,437,184 bytes, but the file is 10,485,760 bytes: "
        "the upload was refused. Upload the file again."
    )
    assert not DiskContainer.objects.exists()
    assert Upload.objects.get(pk=up["id"]).status == Upload.Status.ABORTED
    listed = sandbox.client("s3").list_objects_v2(Bucket=sandbox.bucket).get("Contents", [])
    assert up["key"] not in [o["Key"] for o in listed]
    event = AuditEvent.objects.get(action="upload failed")
    assert event.request == draft and event.details["object_size"] == 9 * MIB
    assert "refused" in event.details["message"]
    draft.refresh_from_db()
    assert draft.upload_size is None
    # The widget may ask again: the answer stays no.
    assert post(client_of, up["urls"]["complete"], {"parts": parts}).status_code == 409


def test_complete_refuses_a_request_no_longer_a_draft(sandbox, client_of, draft):
    up = start(client_of, draft, size=3 * MIB)
    parts = put_parts(client_of, up, [3 * MIB])
    ImportRequest.objects.filter(pk=draft.pk).update(status=ImportRequest.Status.SUBMITTED)

    response = post(client_of, up["urls"]["complete"], {"parts": parts})

    assert response.status_code == 409 and "no longer a draft" in response.json()["error"]
    assert not DiskContainer.objects.exists()


# --- abort ------------------------------------------------------------------------------------------------------


def test_abort_aborts_in_s3_and_records_it(sandbox, client_of, draft, requester):
    up = start(client_of, draft)
    put_parts(client_of, up, [8 * MIB])

    response = post(client_of, up["urls"]["abort"])

    assert response.status_code == 200 and response.json()["status"] == "aborted"
    assert (up["key"], up["upload_id"]) not in multipart_uploads(sandbox)
    assert Upload.objects.get(pk=up["id"]).status == Upload.Status.ABORTED
    event = AuditEvent.objects.get(action="upload cancelled")
    assert (event.request, event.actor, event.details["key"]) == (draft, requester, up["key"])
    assert post(client_of, up["urls"]["sign"], {"parts": [1]}).status_code == 409
    assert post(client_of, up["urls"]["abort"]).status_code == 200  # twice is fine
    assert AuditEvent.objects.filter(action="upload cancelled").count() == 1


# --- bodies -----------------------------------------------------------------------------------------------------


class Unreadable(io.RawIOBase):
    def read(self, *args):
        raise AssertionError("the view read the body")

    readinto = readline = read


@pytest.mark.parametrize(
    "name, limit",
    [("sign", views.MAX_BODY), ("abort", views.MAX_BODY), ("complete", views.MAX_COMPLETE_BODY)],
)
def test_bodies_over_the_limit_are_refused_unread(sandbox, client_of, draft, requester, name, limit):
    up = start(client_of, draft)
    request = RequestFactory().post(up["urls"][name], data=b"", content_type="application/json")
    request.META["CONTENT_LENGTH"] = str(limit + 1)
    request._stream = Unreadable()
    request.user = requester
    request._dont_enforce_csrf_checks = True

    response = getattr(views, name)(request, up["id"])

    assert response.status_code == 413
    assert views.MAX_COMPLETE_BODY <= 1024 * 1024


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"]
)
def test_a_big_body_is_refused_before_anything_reads_it(sandbox, requester, draft, monkeypatch, content_type):
    """Not even the CSRF check (which reads form bodies) runs before the size check."""
    from django.core.handlers.wsgi import WSGIRequest

    def refuse(self):
        raise AssertionError("the body was read")

    monkeypatch.setattr(WSGIRequest, "_load_post_and_files", refuse)
    monkeypatch.setattr(WSGIRequest, "body", property(refuse))
    client = Client(enforce_csrf_checks=True)
    client.force_login(requester)

    response = client.post(reverse("upload-create", args=[draft.pk]), data=b"x" * (2 * MIB), content_type=content_type)

    assert response.status_code == 413


# --- the page ------------------------------------------------------------------------------------------------


def test_the_page_shows_the_widget_and_the_disks(sandbox, client_of, draft):
    DiskContainer.objects.create(request=draft, format="VHD", s3_bucket="b", s3_key="uploads/1/x.vhd")
    unfinished = start(client_of, draft, name="half.vmdk")

    page = client_of.get(reverse("wizard-step", args=[draft.pk, "upload"])).content.decode()

    assert "data-upload-widget" in page and f'data-create-url="{reverse("upload-create", args=[draft.pk])}"' in page
    assert "vendor/uppy/uppy.min.js" in page and "js/upload.js" in page
    assert 'hx-trigger="upload-completed from:body' in page  # the disks are shown again after each upload
    assert "s3://b/uploads/1/x.vhd" in page
    assert f'data-unfinished="{unfinished["id"]}"' in page


def test_the_page_of_a_submitted_request_has_no_widget(sandbox, client_of, draft):
    draft.status = ImportRequest.Status.SUBMITTED
    draft.save()
    page = client_of.get(reverse("wizard-step", args=[draft.pk, "upload"]), follow=True).content.decode()
    assert "data-upload-widget" not in page


# --- hostile bodies and fields ------------------------------------------------------------------


def raw_post(client: Client, url: str, body: bytes):
    return client.post(url, data=body, content_type="application/json")


def test_the_key_keeps_only_an_ascii_extension():
    assert re.fullmatch(r"uploads/7/[0-9a-f]{32}", uploads.upload_key(7, "evil.\uff56\uff4d\uff44\uff4b"))
    assert re.fullmatch(r"uploads/7/[0-9a-f]{32}", uploads.upload_key(7, "disk.r\u0430w"))  # Cyrillic a
    assert re.fullmatch(r"uploads/7/[0-9a-f]{32}", uploads.upload_key(7, "disk.\u0663"))  # Arabic-Indic three
    assert re.fullmatch(r"uploads/7/[0-9a-f]{32}\.vmdk", uploads.upload_key(7, "Web01.VMDK"))


@pytest.mark.parametrize(
    "body, says",
    [
        (b'{"parts": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b'{"parts": ' + b'{"a":' * 2500 + b"1" + b"}" * 2500 + b"}", "nested too deeply"),
        (b'{"file_name": "a.raw", "size": ' + b"9" * 5000 + b"}", "5,000 digits"),
        (b'{"file_name": "a.raw", "size": 1.' + b"0" * 5000 + b"}", "digits"),
        (b'{"file_name": "a.raw", "size": NaN}', "NaN"),
        (b'{"file_name": "a.raw", "size": -Infinity}', "Infinity"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[1, 2]", "JSON object"),
    ],
)
def test_a_hostile_body_is_a_400_with_a_message(sandbox, client_of, draft, body, says):
    up = start(client_of, draft)
    for url in (reverse("upload-create", args=[draft.pk]), up["urls"]["sign"], up["urls"]["complete"]):
        refused = raw_post(client_of, url, body)
        assert refused.status_code == 400 and says in refused.json()["error"], url


@pytest.mark.parametrize("content_type", ["a\x00b", "\ud800", "x" * 256, ["text/plain"], 7])
def test_create_refuses_a_content_type_that_is_not_short_ascii(sandbox, client_of, draft, content_type):
    body = json.dumps({"file_name": "a.raw", "size": 10, "content_type": content_type}).encode()
    refused = raw_post(client_of, reverse("upload-create", args=[draft.pk]), body)
    assert refused.status_code == 400 and "content type" in refused.json()["error"]
    assert not Upload.objects.exists()


def test_a_file_name_with_a_lone_surrogate_keeps_only_its_text(sandbox, client_of, draft):
    body = json.dumps({"file_name": "we\ud800b01.vmdk", "size": 10}).encode()
    created = raw_post(client_of, reverse("upload-create", args=[draft.pk]), body)
    assert created.status_code == 201 and created.json()["file_name"] == "web01.vmdk"


def test_sign_refuses_once_the_request_left_draft(sandbox, client_of, draft):
    up = start(client_of, draft)
    ImportRequest.objects.filter(pk=draft.pk).update(status=ImportRequest.Status.SUBMITTED)
    crc = uploads.crc32_b64(b"x")
    refused = post(client_of, up["urls"]["sign"], {"parts": [{"PartNumber": 1, "ChecksumCRC32": crc}]})
    assert refused.status_code == 409 and "no longer a draft" in refused.json()["error"]


@pytest.mark.parametrize("etag", ['"caf\u00e9"', '"a\ud800"', '"a\x00"', "x" * 129, ""])
def test_complete_refuses_an_etag_that_is_not_s3s(sandbox, client_of, draft, etag):
    up = start(client_of, draft, size=1000)
    body = json.dumps({"parts": [{"PartNumber": 1, "ETag": etag, "ChecksumCRC32": "AAAAAA=="}]}).encode()
    refused = raw_post(client_of, up["urls"]["complete"], body)
    assert refused.status_code == 400 and "ETag" in refused.json()["error"]
    assert Upload.objects.get(pk=up["id"]).status == Upload.Status.UPLOADING


# --- loose uploads: images for a batch ------------------------------------------------------------


def start_loose(client: Client, name: str = "vm.raw", size: int = 3 * MIB):
    return post(client, reverse("upload-create-loose"), {"file_name": name, "size": size})


def test_a_loose_upload_becomes_one_vm_of_a_batch(
    sandbox, client_of, requester, other, django_capture_on_commit_callbacks
):
    answers = []
    for name in ("web01.raw", "db01.raw"):
        started = start_loose(client_of, name)
        assert started.status_code == 201, started.content
        up = started.json()
        assert up["request"] is None and up["key"].startswith(f"uploads/{requester.pk}/")
        parts = put_parts(client_of, up, [3 * MIB])
        done = post(client_of, up["urls"]["complete"], {"parts": parts})
        assert done.status_code == 200, done.content
        assert done.json()["container"] is None
        answers.append(up)
    # Nobody else may touch them, and completing again changes nothing.
    assert (
        post(other, answers[0]["urls"]["sign"], {"parts": [{"PartNumber": 1, "ChecksumCRC32": "AAAAAA=="}]}).status_code
        == 404
    )
    assert post(client_of, answers[0]["urls"]["complete"], {"parts": []}).json()["container"] is None
    events = AuditEvent.objects.filter(action="upload completed")
    assert events.count() == 2 and {e.request for e in events} == {None}
    assert {e.details["file_name"] for e in events} == {"web01.raw", "db01.raw"}

    page = client_of.get(reverse("batch-new"))
    assert b'data-create-url="/uploads/"' in page.content and b"web01.raw" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        made = client_of.post(
            reverse("batch-new"), {"name": "wave 1", "format": "csv", "uploads": [a["id"] for a in answers]}
        )
    assert made.status_code == 302, made.content.decode()[-2000:]
    requests_made = ImportRequest.objects.filter(owner=requester).order_by("pk")
    assert [r.description for r in requests_made] == ["web01.raw", "db01.raw"]
    assert [r.disk_containers.get().s3_key for r in requests_made] == [a["key"] for a in answers]


def test_a_loose_upload_needs_a_requester(sandbox, db):
    auditor = Client()
    auditor.force_login(make_user("carol", "auditor"))
    assert start_loose(auditor).status_code == 403
    assert start_loose(Client()).status_code == 401
    assert not Upload.objects.exists()


@pytest.mark.parametrize("body, says", [({"size": 5}, "file"), ({"file_name": "x.raw", "size": 0}, "empty")])
def test_a_loose_upload_refuses_what_it_cannot_upload(sandbox, client_of, body, says):
    answer = post(client_of, reverse("upload-create-loose"), body)
    assert answer.status_code == 400 and says in answer.json()["error"]
