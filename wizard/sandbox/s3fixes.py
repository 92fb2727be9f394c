"""Where moto 5.2.5's S3 answers differently from S3, made to answer as S3 does.

- ListParts: moto's XML root is `ListPartsResponse`; S3's is `ListPartsResult`
  (in the namespace http://s3.amazonaws.com/doc/2006-03-01/). botocore reads
  either, but browser upload libraries look for `ListPartsResult` and, not
  finding it, see no uploaded parts and upload everything again.
- UploadPart / UploadPartCopy to a multipart upload that was completed or
  aborted (or never existed): moto fails with a KeyError, answered as an HTML
  500; S3 answers 404 `NoSuchUpload`.
- UploadPart sent with Content-Type application/x-www-form-urlencoded (what
  e.g. urllib and curl -d send by default): moto parses the body as a form,
  losing both the part's bytes and the query string (HTML 500); S3 ignores the
  Content-Type of a part. `fix_request` makes such a part's type
  application/octet-stream before moto sees it (moto checks no signatures).

`install` patches moto's S3 classes in place; call it before serving.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from moto.s3.exceptions import NoSuchUpload
from moto.s3.models import S3Backend
from moto.s3.responses import S3Response

WRONG_ROOT = "ListPartsResponse"
S3_ROOT = "ListPartsResult"

_installed = False


def _rename_root(body: Any) -> Any:
    """The ListParts XML with S3's root element name (body as str or bytes)."""
    if isinstance(body, bytes):
        return _rename_root(body.decode("utf-8")).encode("utf-8")
    if isinstance(body, str):
        body = body.replace(f"<{WRONG_ROOT}", f"<{S3_ROOT}", 1)
        head, found, tail = body.rpartition(f"</{WRONG_ROOT}>")
        if found:
            body = f"{head}</{S3_ROOT}>{tail}"
    return body


FORM = "application/x-www-form-urlencoded"


def fix_request(environ: dict[str, Any]) -> None:
    """Give a form-typed UploadPart request (PUT ?partNumber=&uploadId=) a binary type."""
    if environ.get("REQUEST_METHOD") != "PUT" or not environ.get("CONTENT_TYPE", "").startswith(FORM):
        return
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "uploadId" in query and "partNumber" in query:
        environ["CONTENT_TYPE"] = "application/octet-stream"


def install() -> None:
    """Patch moto's S3 (once) so the answers above are S3's."""
    global _installed
    if _installed:
        return
    _installed = True

    original_list_parts = S3Response.list_parts

    def list_parts(self: S3Response) -> Any:
        status, headers, body = original_list_parts(self)
        body = _rename_root(body)
        if isinstance(headers, dict):
            for name in list(headers):
                if name.lower() == "content-length":
                    headers[name] = str(len(body.encode() if isinstance(body, str) else body))
        return status, headers, body

    S3Response.list_parts = list_parts  # type: ignore[method-assign]

    original_upload_part = S3Backend.upload_part

    def upload_part(self: S3Backend, bucket_name: str, multipart_id: str, *args: Any, **kwargs: Any) -> Any:
        if multipart_id not in self.get_bucket(bucket_name).multiparts:
            raise NoSuchUpload(upload_id=multipart_id)
        return original_upload_part(self, bucket_name, multipart_id, *args, **kwargs)

    S3Backend.upload_part = upload_part  # type: ignore[method-assign]

    original_upload_part_copy = S3Backend.upload_part_copy

    def upload_part_copy(self: S3Backend, dest_bucket_name: str, multipart_id: str, *args: Any, **kwargs: Any) -> Any:
        if multipart_id not in self.get_bucket(dest_bucket_name).multiparts:
            raise NoSuchUpload(upload_id=multipart_id)
        return original_upload_part_copy(self, dest_bucket_name, multipart_id, *args, **kwargs)

    S3Backend.upload_part_copy = upload_part_copy  # type: ignore[method-assign]
