"""Seed the sandbox with demo requests in every state, so a newcomer sees every page at once.

`make run` calls this in the background once the stack is up (sandbox only, WIZARD_DEMO_DATA).
Everything goes through the application's own services against the running sandbox, as a
user would: the demo user uploads each image through the multipart upload service (start,
a presigned part PUT to the sandbox's S3, complete), the worker inspects it, the demo user
submits, and the demo reviewer rejects or approves; the worker dispatches ImportImage and
follows the tasks. Two sandbox faults, each on one task, keep one import running (stalled at
"updating") and make another fail at "booting" as AWS fails an unbootable image.

Idempotent: a demo request is known by its owner and description, the demo batch by its name;
what already exists is left as it is, so a second run adds nothing.
"""

from __future__ import annotations

import json
import struct
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from wizard.batches import batches
from wizard.models import Batch, DiskContainer, ImportRequest, ImportTask, Upload
from wizard.requests import drafts, review, submission
from wizard.uploads import uploads

IMAGE_BYTES = 64 * 1024  # the sandbox inspects images from SANDBOX_INSPECT_MIN_BYTES (64 KiB) on
BATCH_NAME = "Demo: wave 1"
REJECTION = "Please tag it with the team that owns it (team=...) before it is imported."
FIELDS = {"platform": "Linux", "architecture": "x86_64", "license_type": "BYOL", "boot_mode": "legacy-bios"}


@dataclass(frozen=True)
class Demo:
    state: str  # draft, submitted, rejected, importing, completed, failed
    description: str
    file_name: str
    fields: dict[str, Any] = field(default_factory=dict)


DEMOS = (
    Demo("draft", "Demo: web01, a draft to finish", "demo-web01.raw", {"platform": "Linux"}),
    Demo("submitted", "Demo: app01, waiting for review", "demo-app01.raw", FIELDS),
    Demo("rejected", "Demo: db01, rejected (mend it and submit again)", "demo-db01.raw", FIELDS),
    Demo("importing", "Demo: web02, importing (held at updating by a sandbox fault)", "demo-web02.raw", FIELDS),
    Demo("completed", "Demo: web03, imported to an AMI", "demo-web03.raw", FIELDS),
    Demo("failed", "Demo: win01, failed at booting (a sandbox fault)", "demo-win01.raw", FIELDS),
)
FAULTS = {
    "importing": {"stall": {"stage": "updating"}},
    "failed": {"fail": {"stage": "booting", "message": "ClientError: Unknown OS / Missing OS files."}},
}


def disk_image(size: int = IMAGE_BYTES) -> bytes:
    """A RAW disk with an MBR and one bootable Linux partition: the inspection finds no problem."""
    entry = struct.pack("<B3sB3sII", 0x80, b"\x00\x02\x00", 0x83, b"\xfe\xff\xff", 1, size // 512 - 1)
    mbr = bytearray(512)
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr) + bytes(size - 512)


class Command(BaseCommand):
    help = "Seed the sandbox with demo import requests in every state (sandbox only; idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wait", type=float, default=120, help="seconds to wait for the worker at most")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.AWS_SANDBOX:
            raise CommandError("demo data exists only in the sandbox (WIZARD_SANDBOX=1)")
        if not settings.DEMO_DATA:
            self.stdout.write("demo data is off (WIZARD_DEMO_DATA=0)")
            return
        self.wait = options["wait"]
        User = get_user_model()
        try:
            self.demo, self.reviewer = User.objects.get(username="demo"), User.objects.get(username="reviewer")
        except User.DoesNotExist as exc:
            raise CommandError("run `manage.py demo_users` first") from exc
        started = time.monotonic()
        existing = set(
            ImportRequest.objects.filter(owner=self.demo, description__in=[d.description for d in DEMOS]).values_list(
                "description", flat=True
            )
        )
        todo = [d for d in DEMOS if d.description not in existing]
        made = {d.state: self.draft_with_image(d) for d in todo}
        self.until_inspected(list(made.values()))
        for demo in todo:
            self.advance(demo, made[demo.state])
        batch = self.batch()
        added = len(todo) + (1 if batch else 0)
        self.stdout.write(
            f"demo data: {added} added in {time.monotonic() - started:.1f} s"
            if added
            else "demo data: already there, nothing added"
        )

    # --- the steps, each through the application's services -----------------------------------

    def draft_with_image(self, demo: Demo) -> ImportRequest:
        request = drafts.create_draft(self.demo, description=demo.description, **demo.fields)
        body = disk_image()
        crc = uploads.crc32_b64(body)
        upload = uploads.start(self.demo, request, file_name=demo.file_name, size=len(body), content_type="")
        ((url, headers),) = uploads.sign_parts(upload, [{"PartNumber": 1, "ChecksumCRC32": crc}]).values()
        put = urllib.request.Request(url, data=body, method="PUT", headers=headers)
        with urllib.request.urlopen(put, timeout=30) as answer:  # the browser's part PUT, to the sandbox's S3
            etag = answer.headers["ETag"]
        uploads.complete(upload, self.demo, [{"PartNumber": 1, "ETag": etag, "ChecksumCRC32": crc}])
        return request

    def until_inspected(self, requests: list[ImportRequest]) -> None:
        """The worker inspects each image (queued when its upload completed)."""
        pending = DiskContainer.objects.filter(request__in=requests, inspection_status="pending")
        deadline = time.monotonic() + self.wait
        while pending.exists():
            if time.monotonic() > deadline:
                raise CommandError(f"the worker did not inspect the demo images within {self.wait:.0f} s")
            time.sleep(0.2)

    def advance(self, demo: Demo, request: ImportRequest) -> None:
        if demo.state == "draft":
            drafts.reach_step(request, 3)  # got as far as the licence step
            return
        try:
            submission.submit(request, self.demo)
        except submission.SubmitRefused as exc:
            self.stderr.write(f"{demo.description}: not submitted: {exc.findings}")
            return
        if demo.state == "rejected":
            review.reject(request, self.reviewer, REJECTION)
        elif demo.state in ("importing", "completed", "failed"):
            review.approve(request, self.reviewer)  # the worker dispatches it (ImportImage)
            if demo.state in FAULTS:
                self.fault(demo.state, self.task_of(request))

    def task_of(self, request: ImportRequest) -> str:
        deadline = time.monotonic() + self.wait
        while not (task_id := ImportTask.objects.filter(request=request).values_list("import_task_id", flat=True)):
            if time.monotonic() > deadline:
                raise CommandError(f"the worker did not dispatch #{request.pk} within {self.wait:.0f} s")
            time.sleep(0.2)
        return task_id[0]

    def fault(self, state: str, task_id: str) -> None:
        """The sandbox's fault for this one task (wizard/sandbox/faults.py)."""
        ((kind, spec),) = FAULTS[state].items()
        body = json.dumps({kind: {**spec, "task_id": task_id}}).encode()
        call = urllib.request.Request(
            settings.AWS_ENDPOINT_URL.rstrip("/") + "/_sandbox/faults",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(call, timeout=30):
                pass
        except urllib.error.HTTPError as exc:
            raise CommandError(f"the sandbox refused the {kind} fault for {task_id}: {exc.read()[:300]!r}") from exc

    def batch(self) -> Batch | None:
        """Two VMs from the demo user's uploads, submitted: a batch waiting for review."""
        if Batch.objects.filter(owner=self.demo, name=BATCH_NAME).exists():
            return None
        names = [d.file_name for d in DEMOS[:2]]
        ids = list(
            Upload.objects.filter(owner=self.demo, status=Upload.Status.COMPLETED, file_name__in=names)
            .order_by("pk")
            .values_list("pk", flat=True)[:2]
        )
        if len(ids) < 2:
            return None
        batch = batches.create_from_uploads(
            self.demo, name=BATCH_NAME, upload_ids=ids, defaults={"Platform": "Linux"}, submit=True
        )
        self.until_inspected([item.request for item in batch.items.select_related("request")])
        return batch
