"""The data: an import request, its disk containers, the AWS task that runs it, the audit log.

Field names follow the ImportImage API (snake_case of its member names), so that the
request maps one to one onto `wizard.requests.importspec.ImportSpec`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse

from wizard.requests import importspec as spec
from wizard.requests.finishspec import FinishSpec, PlannedStep, RegionCopy
from wizard.requests.importspec import new_client_token


class ImportRequest(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Waiting for review"
        REJECTED = "rejected", "Rejected"
        APPROVED = "approved", "Approved, dispatching"
        IMPORTING = "importing", "Importing"
        FINISHING = "finishing", "Finishing the AMI"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        DELETED = "deleted", "Deleted draft"

    FINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="import_requests")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    # Who handed it to review: nobody approves a request they submitted (wizard.requests.review).
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_reason = models.TextField(blank=True)
    failure_message = models.TextField(blank=True)
    cancel_reason = models.TextField(blank=True, help_text="set when the requester cancels the import")
    # Drafts: `version` grows with every save, so a save from a stale tab is detected;
    # `wizard_step` is where the user was, `furthest_step` how far they got.
    version = models.PositiveIntegerField(default=1)
    wizard_step = models.CharField(max_length=16, default="upload")
    furthest_step = models.PositiveSmallIntegerField(default=0)

    # ImportImage parameters (API names in snake_case; "" / None = unset).
    client_token = models.CharField(max_length=64, unique=True, default=new_client_token, editable=False)
    description = models.CharField(max_length=255, blank=True)
    architecture = models.CharField(max_length=16, blank=True)
    platform = models.CharField(max_length=16, blank=True)
    boot_mode = models.CharField(max_length=16, blank=True)
    license_type = models.CharField(max_length=8, blank=True)
    usage_operation = models.CharField(max_length=64, blank=True)
    hypervisor = models.CharField(max_length=8, blank=True)
    encrypted = models.BooleanField(null=True, blank=True)
    kms_key_id = models.CharField(max_length=2048, blank=True)
    role_name = models.CharField(max_length=64, blank=True)
    license_configuration_arns = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=list, blank=True, help_text='[{"Key": ..., "Value": ...}]')
    # ClientData
    comment = models.CharField(max_length=255, blank=True)
    upload_start = models.DateTimeField(null=True, blank=True)
    upload_end = models.DateTimeField(null=True, blank=True)
    upload_size = models.FloatField(null=True, blank=True, help_text="GiB")

    # Finishing the AMI once imported (wizard.requests.finishspec, applied by wizard.imports.finishing).
    ami_name = models.CharField(max_length=128, blank=True, help_text="CopyImage Name")
    ami_description = models.CharField(max_length=255, blank=True, help_text="CopyImage Description")
    ami_tags = models.JSONField(default=list, blank=True, help_text="on the AMI and its snapshots")
    launch_user_ids = models.JSONField(default=list, blank=True)
    launch_organization_arns = models.JSONField(default=list, blank=True)
    launch_organizational_unit_arns = models.JSONField(default=list, blank=True)
    share_snapshots = models.BooleanField(default=True, help_text="createVolumePermission for the accounts")
    region_copies = models.JSONField(default=list, blank=True, help_text='[{"Region": ..., "KmsKeyId": ...}]')
    imds_v2 = models.BooleanField(default=False, help_text="ImdsSupport v2.0")
    deprecation_time = models.DateTimeField(null=True, blank=True)
    deregister_import = models.BooleanField(default=True, help_text="after the named copy")
    delete_source = models.BooleanField(null=True, blank=True, help_text="None: WIZARD_DELETE_SOURCE decides")
    # Where the AMI is made (wizard.targets): None is the application's own account and region.
    target = models.ForeignKey("Target", null=True, blank=True, on_delete=models.PROTECT, related_name="requests")

    class Meta:
        ordering = ["-created_at"]
        permissions = [("review_importrequest", "Can approve or reject import requests")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.description or 'import'} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("request-detail", args=[self.pk])

    @property
    def target_label(self) -> str:
        """The account and region the request's AMI is made in (wizard.targets.label)."""
        from wizard import targets

        return targets.label(self.target)

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    def to_api_params(self) -> dict[str, Any]:
        """The keyword arguments of `ec2.import_image` for this request."""
        return spec.to_api_params(self.to_spec())

    def to_spec(self) -> spec.ImportSpec:
        client_data = None
        if self.comment or self.upload_start or self.upload_end or self.upload_size is not None:
            client_data = spec.ClientData(
                comment=self.comment,
                upload_start=self.upload_start,
                upload_end=self.upload_end,
                upload_size=self.upload_size,
            )
        return spec.ImportSpec(
            disk_containers=[c.to_spec() for c in self.disk_containers.all()],
            architecture=self.architecture,
            boot_mode=self.boot_mode,
            client_data=client_data,
            client_token=self.client_token,
            description=self.description,
            encrypted=self.encrypted,
            hypervisor=self.hypervisor,
            kms_key_id=self.kms_key_id,
            license_type=self.license_type,
            platform=self.platform,
            role_name=self.role_name,
            license_configuration_arns=list(self.license_configuration_arns),
            tags=[spec.Tag(key=t["Key"], value=t.get("Value", "")) for t in self.tags],
            usage_operation=self.usage_operation,
        )

    def to_finish_spec(self, delete_source_default: bool = False) -> FinishSpec:
        return FinishSpec(
            name=self.ami_name,
            description=self.ami_description,
            tags=[spec.Tag(key=t["Key"], value=t.get("Value", "")) for t in self.ami_tags],
            user_ids=list(self.launch_user_ids),
            organization_arns=list(self.launch_organization_arns),
            organizational_unit_arns=list(self.launch_organizational_unit_arns),
            share_snapshots=self.share_snapshots,
            region_copies=[RegionCopy(c["Region"], c.get("KmsKeyId", "")) for c in self.region_copies],
            imds_v2=self.imds_v2,
            deprecation_time=self.deprecation_time,
            deregister_import=self.deregister_import,
            delete_source=delete_source_default if self.delete_source is None else self.delete_source,
        )


class Target(models.Model):
    """An account and region imports may go to, through a role assumed with STS (wizard.targets).

    Requests without a target use the application's own credentials and region (the default
    target): a single-account installation needs none. Members of `groups` may choose it."""

    name = models.CharField(max_length=64, unique=True)
    account_id = models.CharField(max_length=12, help_text="the 12-digit AWS account")
    region = models.CharField(max_length=32, help_text="e.g. eu-west-1")
    bucket = models.CharField(max_length=63, help_text="the S3 bucket of that account that holds the images")
    role_arn = models.CharField(
        max_length=2048, help_text="arn:aws:iam::<account>:role/<name>, assumed with sts:AssumeRole"
    )
    external_id = models.CharField(max_length=1224, blank=True, help_text="the ExternalId the role's trust asks for")
    groups = models.ManyToManyField("auth.Group", related_name="targets", blank=True)
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.account_id}, {self.region})"


class FinishingStep(models.Model):
    """One step of finishing a request's AMI (wizard.imports.finishing), applied once by the worker.

    `state` is kept per step, so a worker that dies resumes where it was; `image_id` is the AMI the
    step made (the copies) or worked on."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    request = models.ForeignKey(ImportRequest, on_delete=models.CASCADE, related_name="finishing_steps")
    position = models.PositiveSmallIntegerField()
    action = models.CharField(max_length=32, help_text="wizard.requests.finishspec.ACTIONS")
    region = models.CharField(max_length=32, blank=True)
    kms_key_id = models.CharField(max_length=2048, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    image_id = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    touched_at = models.DateTimeField(null=True, blank=True, help_text="a worker last ran it (or it was queued)")
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["position", "pk"]
        constraints = [models.UniqueConstraint(fields=["request", "position"], name="finishing_step_position")]

    def __str__(self) -> str:
        return f"#{self.request_id} {self.title}: {self.state}"

    @property
    def title(self) -> str:
        return PlannedStep(self.action, self.region).title


class Upload(models.Model):
    """A browser-to-S3 multipart upload of one disk image, under the owner's prefix."""

    class Status(models.TextChoices):
        UPLOADING = "uploading", "Uploading"
        COMPLETED = "completed", "Completed"
        ABORTED = "aborted", "Aborted"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="uploads")
    request = models.ForeignKey(
        "ImportRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADING)
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024, unique=True, help_text="chosen by the server, never by the user")
    upload_id = models.CharField(max_length=1024, blank=True, help_text="S3's UploadId of the multipart upload")
    file_name = models.CharField(max_length=255, help_text="the user's file name: metadata only")
    size = models.BigIntegerField(help_text="bytes, as the browser declared them")
    content_type = models.CharField(max_length=255, blank=True)
    checksum_sha256 = models.CharField(max_length=64, blank=True, help_text="hex, when the browser computed it")
    checksum_crc32 = models.CharField(
        max_length=32, blank=True, help_text="S3's composite CRC32 of the object (base64-<parts>), checked on complete"
    )
    etag = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.file_name} -> s3://{self.bucket}/{self.key} ({self.status})"


class DiskContainer(models.Model):
    """One disk of the import, in order (position 0 is the boot disk)."""

    class Format(models.TextChoices):
        OVA = "OVA"
        VMDK = "VMDK"
        VHD = "VHD"
        VHDX = "VHDX"
        RAW = "RAW"

    request = models.ForeignKey(ImportRequest, on_delete=models.CASCADE, related_name="disk_containers")
    position = models.PositiveSmallIntegerField(default=0)
    format = models.CharField(max_length=8, choices=Format.choices, blank=True)
    description = models.CharField(max_length=255, blank=True)
    device_name = models.CharField(max_length=64, blank=True)
    url = models.CharField(max_length=2048, blank=True)
    snapshot_id = models.CharField(max_length=32, blank=True)
    s3_bucket = models.CharField(max_length=63, blank=True)
    s3_key = models.CharField(max_length=1024, blank=True)
    # What we know of an image uploaded here (the user's file name is metadata only).
    upload = models.ForeignKey(Upload, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The pre-flight inspection of the image (wizard.inspect's report), when it could be read.
    inspection = models.JSONField(null=True, blank=True)
    inspected_at = models.DateTimeField(null=True, blank=True)
    # "" (nothing to inspect, e.g. a snapshot), "pending" (queued for the worker), "done".
    inspection_status = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"{self.format} {self.source_label}"

    # An image uploaded here: its Upload holds the file's name and size (not copied here).
    @property
    def file_name(self) -> str:
        return self.upload.file_name if self.upload_id and self.upload else ""

    @property
    def size_bytes(self) -> int | None:
        return self.upload.size if self.upload_id and self.upload else None

    @property
    def source_label(self) -> str:
        if self.s3_key:
            return f"s3://{self.s3_bucket}/{self.s3_key}"
        return self.url or self.snapshot_id

    def to_spec(self) -> spec.DiskContainer:
        return spec.DiskContainer(
            format=self.format,
            description=self.description,
            device_name=self.device_name,
            url=self.url,
            snapshot_id=self.snapshot_id,
            user_bucket=spec.UserBucket(s3_bucket=self.s3_bucket, s3_key=self.s3_key) if self.s3_key else None,
        )


class WarningAcknowledgement(models.Model):
    """The requester's "I have read these warnings and want to import anyway": exactly which
    warnings, by whom, when (wizard.preflight.acknowledgements; the latest one of a request counts)."""

    request = models.ForeignKey(ImportRequest, on_delete=models.CASCADE, related_name="warning_acknowledgements")
    warnings = models.JSONField(help_text='[{"disk": DiskContainer pk or null, "code": ...}]: what was acknowledged')
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.by} acknowledged {len(self.warnings or [])} warning(s) of #{self.request_id} at {self.at}"


class ImportTask(models.Model):
    """The EC2 import task that runs a request, as last seen by the poller."""

    FINAL_STATES = ("completed", "deleted")

    request = models.OneToOneField(ImportRequest, on_delete=models.CASCADE, related_name="import_task")
    import_task_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=32, default="active", db_index=True)
    status_message = models.TextField(blank=True)
    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    image_id = models.CharField(max_length=32, blank=True)
    snapshot_details = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(auto_now_add=True)
    polled_at = models.DateTimeField(null=True, blank=True)
    # Set when this task alone could not be followed (its answer failed to parse, AWS does not
    # know it, ...): what went wrong, shown on the request's page; "" when all is well.
    attention = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.import_task_id

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATES


class TaskStatusChange(models.Model):
    """Every change of an import task seen by the poller, so stage timings can be shown."""

    task = models.ForeignKey(ImportTask, on_delete=models.CASCADE, related_name="changes")
    at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=32)
    status_message = models.TextField(blank=True)
    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    snapshot_details = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status} {self.status_message} {self.progress}"


class SourceGrant(models.Model):
    """An administrator's grant: members of `groups` may import from this location.

    Without a grant, a user may import only the images they uploaded here themselves
    (wizard.uploads.sources). None exists by default.
    """

    class Kind(models.TextChoices):
        S3 = "s3", "S3 location (bucket and key prefix)"
        URL = "url", "https:// host (Url sources)"
        SNAPSHOT_TAG = "snapshot-tag", "EBS snapshots carrying a tag"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.S3)
    groups = models.ManyToManyField("auth.Group", related_name="source_grants")
    s3_bucket = models.CharField(max_length=63, blank=True, verbose_name="S3Bucket")
    s3_prefix = models.CharField(
        max_length=1024,
        blank=True,
        verbose_name="S3Key prefix",
        help_text='e.g. "images/team-a/"; empty: the whole bucket',
    )
    host = models.CharField(max_length=253, blank=True, help_text="the host name of https:// Url sources")
    tag_key = models.CharField(max_length=128, blank=True)
    tag_value = models.CharField(max_length=256, blank=True)
    note = models.CharField(max_length=255, blank=True, help_text="why this grant exists")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "s3_bucket", "s3_prefix", "host", "tag_key", "pk"]

    def __str__(self) -> str:
        if self.kind == self.Kind.S3:
            return f"s3://{self.s3_bucket}/{self.s3_prefix}"
        if self.kind == self.Kind.URL:
            return f"https://{self.host}/"
        return f"snapshots tagged {self.tag_key}={self.tag_value}"


class AuditEventQuerySet(models.QuerySet):
    """Append-only: bulk updates and deletes are refused."""

    def update(self, **kwargs: Any) -> int:
        raise PermissionError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are append-only")


class AuditEvent(models.Model):
    """One entry of the hash-chained audit log (written only by wizard.audit.audit.record)."""

    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    actor_name = models.CharField(max_length=150, help_text="user name, or 'system'")
    action = models.CharField(max_length=64, db_index=True)
    request = models.ForeignKey(
        ImportRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are append-only")


class WorkerLease(models.Model):
    """A named lease, so that only one worker at a time runs a singleton loop (the poller)."""

    name = models.CharField(max_length=32, primary_key=True)
    holder = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'} until {self.expires_at:%H:%M:%S}"


# --- batches, the JSON API and the dispatch queue (wizard.batches, wizard.api, wizard.imports.dispatch_queue) ---


class Batch(models.Model):
    """Many import requests made at once (a manifest, many images), reviewed and followed together.

    `settings` holds what the batch chose once for every VM (API names: Platform, RoleName, Tags...);
    each request keeps its own overrides."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="batches")
    name = models.CharField(max_length=255)
    source = models.CharField(max_length=32, help_text="manifest-csv, manifest-yaml, manifest-json, uploads, api")
    settings = models.JSONField(default=dict, blank=True)
    # The manifest exactly as it was sent: its name in STORAGES["manifests"] (django-storages; looked
    # up when used, so tests and settings can point it elsewhere) and its SHA-256, which the
    # "batch created" audit event carries too.
    manifest = models.CharField(max_length=255, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"batch #{self.pk} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("batch-detail", args=[self.pk])


class BatchItem(models.Model):
    """One VM of a batch: its request, and where it came from (the manifest's row)."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    request = models.OneToOneField(ImportRequest, on_delete=models.CASCADE, related_name="batch_item")
    position = models.PositiveIntegerField()
    row = models.PositiveIntegerField(null=True, blank=True, help_text="the manifest's row (1 = first data row)")
    # "Retry the failed ones": the item this one retries.
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The owner asked to submit the batch when it was made: each request is submitted as soon as
    # the worker has inspected its images (wizard.batches.batches.inspected).
    submit_when_inspected = models.BooleanField(default=False)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"{self.batch} item {self.position}: #{self.request_id}"


class DispatchSlot(models.Model):
    """An approved request the dispatch queue let through (wizard.imports.dispatch_queue): it counts
    against WIZARD_MAX_ACTIVE_IMPORTS until its request is final."""

    request = models.OneToOneField(ImportRequest, on_delete=models.CASCADE, related_name="dispatch_slot")
    admitted_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"#{self.request_id} admitted {self.admitted_at:%H:%M:%S}"


class ApiToken(models.Model):
    """A user's token for the JSON API. The secret is shown once; only its SHA-256 is kept,
    found by its `prefix` (the token's first part, not secret)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} (iw_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyKey(models.Model):
    """A POST's Idempotency-Key, per user: the body's fingerprint and the answer given, so a
    retried POST gets the same answer and creates nothing twice."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    endpoint = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_per_user")]

    def __str__(self) -> str:
        return f"{self.key} {self.endpoint} -> {self.status_code}"
