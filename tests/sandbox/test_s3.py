"""S3 multipart uploads as S3 answers them where moto 5.2.5 does not: ListParts, NoSuchUpload."""

from __future__ import annotations

import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tests.sandbox.helpers import error_of
from wizard.sandbox.testing import SandboxProcess

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
KEY = "uploads/big.vmdk"
PART = b"a" * (5 * 2**20)  # parts but the last are at least 5 MiB


@pytest.fixture
def upload_id(sb: SandboxProcess, s3: Any) -> str:
    """A multipart upload with parts 1 and 2 uploaded."""
    upload_id = s3.create_multipart_upload(Bucket=sb.bucket, Key=KEY)["UploadId"]
    s3.upload_part(Bucket=sb.bucket, Key=KEY, UploadId=upload_id, PartNumber=1, Body=PART)
    s3.upload_part(Bucket=sb.bucket, Key=KEY, UploadId=upload_id, PartNumber=2, Body=b"tail")
    return upload_id


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    """A raw request; with `data`, urllib sends Content-Type application/x-www-form-urlencoded."""
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_list_parts_has_s3s_root_element(sb: SandboxProcess, s3: Any, upload_id: str) -> None:
    """What a browser gets for GET ?uploadId= (presigned): ListPartsResult, parts listed."""
    url = s3.generate_presigned_url("list_parts", Params={"Bucket": sb.bucket, "Key": KEY, "UploadId": upload_id})
    status, body = http("GET", url)
    assert status == 200
    root = ET.fromstring(body)
    assert root.tag == f"{S3_NS}ListPartsResult"
    assert root.findtext(f"{S3_NS}UploadId") == upload_id
    parts = root.findall(f"{S3_NS}Part")
    assert [(p.findtext(f"{S3_NS}PartNumber"), p.findtext(f"{S3_NS}Size")) for p in parts] == [
        ("1", str(len(PART))),
        ("2", "4"),
    ]
    assert all(p.findtext(f"{S3_NS}ETag").startswith('"') for p in parts)


def test_boto3_list_parts_still_works(sb: SandboxProcess, s3: Any, upload_id: str) -> None:
    parts = s3.list_parts(Bucket=sb.bucket, Key=KEY, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(PART)), (2, 4)]
    page = s3.list_parts(Bucket=sb.bucket, Key=KEY, UploadId=upload_id, MaxParts=1)
    assert [p["PartNumber"] for p in page["Parts"]] == [1] and page["IsTruncated"] is True


@pytest.mark.parametrize("end", ["complete", "abort"])
def test_a_part_for_an_ended_upload_is_no_such_upload(sb: SandboxProcess, s3: Any, upload_id: str, end: str) -> None:
    if end == "complete":
        parts = s3.list_parts(Bucket=sb.bucket, Key=KEY, UploadId=upload_id)["Parts"]
        s3.complete_multipart_upload(
            Bucket=sb.bucket,
            Key=KEY,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]},
        )
    else:
        s3.abort_multipart_upload(Bucket=sb.bucket, Key=KEY, UploadId=upload_id)
    params = {"Bucket": sb.bucket, "Key": KEY, "UploadId": upload_id, "PartNumber": 3}
    status, body = http("PUT", s3.generate_presigned_url("upload_part", Params=params), b"more")
    assert status == 404
    assert ET.fromstring(body).findtext("Code") == "NoSuchUpload"
    assert error_of(s3.upload_part, 404, Body=b"more", **params)["Code"] == "NoSuchUpload"
    copy = {"Bucket": sb.bucket, "Key": "x", "UploadId": upload_id, "PartNumber": 1}
    s3.put_object(Bucket=sb.bucket, Key="src", Body=b"src")
    assert error_of(s3.upload_part_copy, 404, CopySource={"Bucket": sb.bucket, "Key": "src"}, **copy)["Code"] == (
        "NoSuchUpload"
    )


def test_a_presigned_part_upload_stores_the_bytes_whatever_its_content_type(
    sb: SandboxProcess, s3: Any, upload_id: str
) -> None:
    params = {"Bucket": sb.bucket, "Key": KEY, "UploadId": upload_id, "PartNumber": 3}
    status, _ = http("PUT", s3.generate_presigned_url("upload_part", Params=params), b"form-typed")
    assert status == 200
    parts = s3.list_parts(Bucket=sb.bucket, Key=KEY, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(PART)), (2, 4), (3, 10)]
