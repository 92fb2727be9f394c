"""The JSON API's bodies, as pydantic schemas: they validate what comes in and describe every
answer in the OpenAPI document (django-ninja builds it from these type hints)."""

from __future__ import annotations

from typing import Any, Literal

from ninja import Field, Schema


class Problem(Schema):
    """One problem, at the path the CLI import uses (``DiskContainers[1].UserBucket.S3Key``)."""

    path: str
    message: str
    row: int | None = Field(None, description="a manifest's row (batches); 0 for the whole manifest")
    column: str | None = Field(None, description="the CSV column the path comes from")
    request: int | None = Field(None, description="the request a batch action refused")
    code: str | None = Field(None, description="a warning's code (submit refused until it is acknowledged)")


class Error(Schema):
    message: str
    errors: list[Problem] = []
    warnings_to_acknowledge: list[str] | None = Field(
        None, description="submit refused for warnings: their codes, to send back as acknowledge_warnings"
    )


class Finding(Schema):
    path: str
    message: str
    severity: Literal["error", "warning"]
    code: str = Field("", description="the finding's code; a warning's is acknowledged by it (acknowledge_warnings)")


class Submit(Schema):
    acknowledge_warnings: list[str] | None = Field(
        None,
        max_length=500,
        description="the codes of every warning of the request: I have read them and want to import anyway",
    )


class Task(Schema):
    ImportTaskId: str
    Status: str
    StatusMessage: str
    Progress: int | None
    ImageId: str
    stage: str
    time_left_seconds: int | None
    disks: list[dict[str, Any]]


class Failure(Schema):
    message: str
    meaning: str = ""
    action: str = ""


class ImportRequestOut(Schema):
    id: int
    status: str
    status_display: str
    owner: str
    batch: int | None
    description: str
    created_at: str
    submitted_at: str | None
    reviewed_at: str | None
    review_reason: str
    queued_ahead: int | None = Field(None, description='approved and waiting for its place: "queued, N ahead"')
    document: dict[str, Any] = Field(description="the request as an aws ec2 import-image --cli-input-json document")
    findings: list[Finding] | None = Field(None, description="pre-flight findings (on reads of one request)")
    inspecting: bool | None = Field(
        None, description="an image is still being inspected by the worker: its findings are not in yet (reads of one)"
    )
    task: Task | None
    failure: Failure | None
    url: str


class RequestList(Schema):
    count: int
    results: list[ImportRequestOut]


class UploadStart(Schema):
    file_name: str = Field(max_length=1024)
    size: int = Field(gt=0)
    content_type: str = ""


class PartChecksum(Schema):
    PartNumber: int
    ChecksumCRC32: str


class PartsToSign(Schema):
    parts: list[PartChecksum] = Field(max_length=100)


class CompletedPart(Schema):
    PartNumber: int
    ETag: str
    ChecksumCRC32: str | None = None


class PartsDone(Schema):
    parts: list[CompletedPart] = Field(max_length=10_000)


class UploadOut(Schema):
    id: int
    request: int | None
    status: str
    file_name: str
    size: int
    bucket: str
    key: str
    part_size: int
    part_count: int
    container: dict[str, Any] | None = None


class SignedParts(Schema):
    urls: dict[str, str]
    headers: dict[str, dict[str, str]]
    expires_in: int


class Reason(Schema):
    reason: str = ""


class Decision(Schema):
    requests: list[int] | None = Field(None, description="only these requests of the batch (default: every one)")
    reason: str = ""


class BatchCreate(Schema):
    name: str = ""
    format: Literal["csv", "yaml", "json"]
    manifest: str = Field(description="the manifest's text (CSV, or a YAML/JSON list of CLI documents)")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="ImportImage parameters every VM gets unless its row sets them "
        "(Platform, RoleName, LicenseType, BootMode, Architecture, Encrypted, KmsKeyId, TagSpecifications, ...)",
    )
    import_valid: bool = Field(False, description="with errors in some rows: import the valid ones and report the rest")
    submit: bool = Field(False, description="submit every request for review once made")


class Line(Schema):
    request: int
    row: int | None
    retry_of: int | None
    description: str
    status: str
    stage: str
    progress: int | None
    queued_ahead: int | None
    failure: Failure | None


class BatchOut(Schema):
    id: int
    name: str
    owner: str
    source: str
    settings: dict[str, Any]
    created_at: str
    totals: dict[str, int]
    time_left_seconds: int | None
    final: bool
    requests: list[Line]
    skipped: list[Problem] = Field(default_factory=list, description="rows not imported (import_valid)")
    url: str


class BatchSummary(Schema):
    id: int
    name: str
    owner: str
    created_at: str
    url: str


class BatchList(Schema):
    count: int
    results: list[BatchSummary]


class Outcome(Schema):
    done: list[int]
    refused: dict[str, str]


class TokenCheck(Schema):
    user: str
    permissions: list[str]
