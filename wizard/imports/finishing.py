"""Finishing the AMI once the import completed: each step of wizard.requests.finishspec's plan, in order,
as a django-q2 task of its own.

The poller calls `start` when a request's task completed: if the requester chose anything
(a name, tags, shares, copies, IMDSv2, a deprecation time, deleting the upload), the request
goes to "finishing", its steps are stored (FinishingStep, one row each, state per row) and the
first task is queued. `run` applies the first step not yet done, then queues the next; after
the last one the request is "completed". So a worker that dies resumes with the step it was
on, and a step already done is never applied again; the step itself is safe to repeat
(CopyImage by its ClientToken, the rest check first or change nothing the second time:
wizard.aws.images).

Throttling left after botocore's retries, or AWS out of reach, puts the step back to wait and
tries again later (at most MAX_ATTEMPTS times). Any other refusal fails the step with AWS's
words: the request stays "finishing" with the AMI usable as it is, and the step's page row says
what failed and offers to retry it (`retry`, for the requester or a reviewer). Every change is
audited.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from wizard import targets
from wizard.audit import audit
from wizard.aws import images
from wizard.aws.errors import AwsError
from wizard.models import FinishingStep, ImportRequest, ImportTask
from wizard.requests import finishspec
from wizard.requests.statemachine import TransitionError, change_status

log = logging.getLogger(__name__)
State = FinishingStep.State
MAX_ATTEMPTS = 10  # throttled or unreachable this often in a row: the step fails (it can be retried)
MAX_WAITS = 1000  # runs of a copy still pending (FINISH_WAIT_SECONDS each)
WAIT_POLL_SECONDS = 1.0
BACKOFF_SECONDS = 5.0
BAD_COPY_STATES = ("failed", "invalid", "error", "deregistered")


class StepFailed(Exception):
    """The step cannot be applied as asked: its message says why."""


class StepRetryable(Exception):
    """AWS asked to slow down or could not be reached: try the step again later."""


# --- starting and running ---------------------------------------------------------------------


def planned(request: ImportRequest) -> list[finishspec.PlannedStep]:
    spec = request.to_finish_spec(settings.DELETE_SOURCE_DEFAULT)
    return finishspec.plan(spec, has_uploads=request.disk_containers.filter(upload__isnull=False).exists())


def start(request: ImportRequest, task: ImportTask) -> bool:
    """The import of `request` completed with `task`: move it to "finishing" with its steps and
    queue the first one. False (nothing done) when nothing is to be finished."""
    steps = planned(request)
    if not steps:
        return False
    change_status(
        request,
        "finish",
        action="finishing",
        details={
            "image_id": task.image_id,
            "import_task_id": task.import_task_id,
            "target": targets.label(request.target),
            "steps": [s.title for s in steps],
        },
    )
    for position, s in enumerate(steps):
        FinishingStep.objects.get_or_create(
            request=request,
            position=position,
            defaults={"action": s.action, "region": s.region, "kms_key_id": s.kms_key_id},
        )
    transaction.on_commit(lambda: enqueue(request.pk))
    return True


def enqueue(request_id: int) -> None:
    async_task("wizard.imports.finishing.run", request_id, task_name=f"finish-{request_id}")


def run(request_id: int) -> str:
    """Apply the first step of the request not done yet; queue what comes next. Returns what
    happened: "done", "waiting", "retry later", "failed", "completed" or "nothing"."""
    request = ImportRequest.objects.select_related("import_task", "target").get(pk=request_id)
    if request.status != ImportRequest.Status.FINISHING:
        return "nothing"
    step = request.finishing_steps.exclude(state=State.DONE).first()
    if step is None:
        complete(request)
        return "completed"
    if step.state == State.FAILED:
        return "failed"  # waits for a retry
    outcome = run_step(request, step)
    if outcome in ("done", "waiting"):  # "done" only by the run that marked it done: one chain goes on
        enqueue(request_id)
    elif outcome == "retry later":
        time.sleep(BACKOFF_SECONDS)
        enqueue(request_id)
    return outcome


def run_step(request: ImportRequest, step: FinishingStep) -> str:
    now = timezone.now()
    FinishingStep.objects.filter(pk=step.pk).exclude(state=State.DONE).update(
        state=State.RUNNING, attempts=step.attempts + 1, started_at=step.started_at or now, touched_at=now
    )
    step.attempts += 1
    try:
        done = APPLY[step.action](request, step)
    except StepFailed as exc:
        fail_step(request, step, str(exc))
        return "failed"
    except AwsError as exc:
        if exc.throttled:
            return _later(request, step, f"{exc.code}: {exc.message}")
        fail_step(request, step, f"AWS answered {exc.code}: {exc.message}")
        return "failed"
    except BotoCoreError as exc:  # no connection, a read timeout, an unreadable answer
        return _later(request, step, f"{type(exc).__name__}: {exc}")
    if not done:
        if step.attempts >= MAX_WAITS:
            fail_step(request, step, f"the copy {step.image_id} was not available after {step.attempts} checks")
            return "failed"
        return "waiting"
    return "done" if step_done(request, step) else "nothing"


def _later(request: ImportRequest, step: FinishingStep, why: str) -> str:
    log.warning("finishing #%s %s: %s; trying again later", request.pk, step.action, why)
    if step.attempts >= MAX_ATTEMPTS:
        fail_step(request, step, f"AWS kept refusing ({why}) after {step.attempts} attempts")
        return "failed"
    return "retry later"


def step_done(request: ImportRequest, step: FinishingStep) -> bool:
    """Mark the step done and audit it; False if another run of it already had."""
    with transaction.atomic():
        changed = (
            FinishingStep.objects.filter(pk=step.pk)
            .exclude(state=State.DONE)
            .update(state=State.DONE, image_id=step.image_id, error="", done_at=timezone.now())
        )
        if changed:
            audit.record(
                "finishing step done",
                request,
                after={"state": State.DONE},
                details=_step_details(step),
            )
    return bool(changed)


def fail_step(request: ImportRequest, step: FinishingStep, message: str) -> None:
    message = message if len(message) <= 2000 else message[:1999] + "…"
    with transaction.atomic():
        FinishingStep.objects.filter(pk=step.pk).update(state=State.FAILED, error=message)
        audit.record(
            "finishing step failed",
            request,
            after={"state": State.FAILED},
            details={**_step_details(step), "error": message},
        )


def complete(request: ImportRequest) -> None:
    with contextlib.suppress(TransitionError):  # another run of the last step completed it meanwhile
        details = {"image_id": current_image(request), "import_task_id": request.import_task.import_task_id}
        change_status(request, "complete", action="completed", details=details)


def stale_after() -> timedelta:
    """A step untouched this long has no task any more (django-q2 redelivers a task whose worker
    died after Q_RETRY, and gives up after max_attempts)."""
    return timedelta(seconds=2 * max(settings.Q_RETRY, settings.Q_TIMEOUT) + settings.FINISH_WAIT_SECONDS)


def resume() -> int:
    """The schedule's entry (every minute, wizard.setup): queue again the finishing of requests
    whose current step nobody ran for `stale_after` (its task was dropped). Returns how many."""
    cutoff = timezone.now() - stale_after()
    queued = 0
    for request in ImportRequest.objects.filter(status=ImportRequest.Status.FINISHING):
        step = request.finishing_steps.exclude(state=State.DONE).first()
        if step is None or (step.state != State.FAILED and (step.touched_at or step.request.updated_at) < cutoff):
            if step is not None:
                FinishingStep.objects.filter(pk=step.pk).update(touched_at=timezone.now())
            enqueue(request.pk)
            queued += 1
    return queued


class RetryRefused(Exception):
    pass


def retry(request: ImportRequest, step: FinishingStep, actor: Any) -> None:
    """Try a failed step again (the requester or a reviewer: checked by the view)."""
    with transaction.atomic():
        changed = FinishingStep.objects.filter(
            pk=step.pk, request=request, state=State.FAILED, request__status=ImportRequest.Status.FINISHING
        ).update(state=State.PENDING, error="", attempts=0, touched_at=timezone.now())
        if not changed:
            raise RetryRefused("only a failed step of an AMI being finished can be retried")
        audit.record(
            "finishing step retried",
            request,
            actor=actor,
            before={"state": State.FAILED, "error": step.error},
            after={"state": State.PENDING},
            details=_step_details(step),
        )
        transaction.on_commit(lambda: enqueue(request.pk))


def _step_details(step: FinishingStep) -> dict[str, Any]:
    details: dict[str, Any] = {"step": step.action, "title": step.title}
    if step.region:
        details["region"] = step.region
    if step.image_id:
        details["image_id"] = step.image_id
    return details


# --- the steps ----------------------------------------------------------------------------------


def current_image(request: ImportRequest) -> str:
    """The AMI being finished: the copy under its name once made, else the import's."""
    copy = request.finishing_steps.filter(action=finishspec.COPY).exclude(image_id="").first()
    return copy.image_id if copy else request.import_task.image_id


def _image(request: ImportRequest, image_id: str, region: str | None = None) -> dict[str, Any]:
    found = images.describe_image(image_id, region, target=request.target)
    if found is None:
        raise StepFailed(f"the AMI {image_id} is not there any more (was it deregistered?)")
    return found


def _copy(request: ImportRequest, step: FinishingStep, *, region: str | None, source: str, name: str) -> bool:
    if not step.image_id:
        step.image_id = images.copy_image(
            source_image_id=source,
            source_region=targets.region_of(request.target),
            name=name,
            description=request.ami_description,
            client_token=finishspec.copy_token(request.client_token, step.action, step.region),
            region=region,
            kms_key_id=step.kms_key_id,
            target=request.target,
        )
        FinishingStep.objects.filter(pk=step.pk).update(image_id=step.image_id)
    return _wait_available(request, step.image_id, region)


def _wait_available(request: ImportRequest, image_id: str, region: str | None) -> bool:
    """True once the AMI is available; False when it is still pending after FINISH_WAIT_SECONDS."""
    deadline = time.monotonic() + settings.FINISH_WAIT_SECONDS
    while True:
        image = images.describe_image(image_id, region, target=request.target)  # None right after CopyImage, at times
        state = image.get("State", "") if image else ""
        if state == "available":
            return True
        if state in BAD_COPY_STATES:
            reason = (image or {}).get("StateReason", {}).get("Message", "")
            raise StepFailed(f"the copy {image_id} is {state}" + (f": {reason}" if reason else ""))
        if time.monotonic() >= deadline:
            return False
        time.sleep(WAIT_POLL_SECONDS)


def _apply_copy(request: ImportRequest, step: FinishingStep) -> bool:
    return _copy(request, step, region=None, source=request.import_task.image_id, name=request.ami_name)


def _apply_deregister(request: ImportRequest, step: FinishingStep) -> bool:
    task = request.import_task
    if current_image(request) == task.image_id:
        raise StepFailed("the copy under its name is not there: the import's AMI is kept")
    snapshots = [d["SnapshotId"] for d in task.snapshot_details if d.get("SnapshotId")]
    images.deregister_with_snapshots(task.image_id, snapshots, target=request.target)
    step.image_id = task.image_id
    return True


def _apply_tags(request: ImportRequest, step: FinishingStep) -> bool:
    image_id = current_image(request)
    image = _image(request, image_id)
    images.create_tags([image_id, *images.snapshot_ids(image)], request.ami_tags, target=request.target)
    step.image_id = image_id
    return True


def _apply_imds(request: ImportRequest, step: FinishingStep) -> bool:
    step.image_id = current_image(request)
    images.require_imdsv2(step.image_id, target=request.target)
    return True


def _apply_launch(request: ImportRequest, step: FinishingStep) -> bool:
    step.image_id = current_image(request)
    images.add_launch_permission(
        step.image_id,
        user_ids=request.launch_user_ids,
        organization_arns=request.launch_organization_arns,
        organizational_unit_arns=request.launch_organizational_unit_arns,
        target=request.target,
    )
    return True


def _apply_volume(request: ImportRequest, step: FinishingStep) -> bool:
    step.image_id = current_image(request)
    for snapshot_id in images.snapshot_ids(_image(request, step.image_id)):
        images.add_create_volume_permission(snapshot_id, request.launch_user_ids, target=request.target)
    return True


def _apply_deprecation(request: ImportRequest, step: FinishingStep) -> bool:
    if request.deprecation_time is None:
        raise StepFailed("no deprecation time is set any more")
    step.image_id = current_image(request)
    images.enable_deprecation(step.image_id, request.deprecation_time, target=request.target)
    return True


def _apply_region_copy(request: ImportRequest, step: FinishingStep) -> bool:
    source = current_image(request)
    name = request.ami_name or _image(request, source).get("Name") or request.import_task.import_task_id
    if not _copy(request, step, region=step.region, source=source, name=name):
        return False
    # CopyImage copies no tags, launch permissions, ImdsSupport or deprecation: the copy gets
    # what the request asks of its AMI, in its own region (each call safe to repeat).
    region, target = step.region, request.target
    snapshots = images.snapshot_ids(_image(request, step.image_id, region))
    if request.ami_tags:
        images.create_tags([step.image_id, *snapshots], request.ami_tags, region=region, target=target)
    if request.imds_v2:
        images.require_imdsv2(step.image_id, region=region, target=target)
    if request.launch_user_ids or request.launch_organization_arns or request.launch_organizational_unit_arns:
        images.add_launch_permission(
            step.image_id,
            user_ids=request.launch_user_ids,
            organization_arns=request.launch_organization_arns,
            organizational_unit_arns=request.launch_organizational_unit_arns,
            region=region,
            target=target,
        )
    if request.launch_user_ids and request.share_snapshots:
        for snapshot_id in snapshots:
            images.add_create_volume_permission(snapshot_id, request.launch_user_ids, region=region, target=target)
    if request.deprecation_time is not None:
        images.enable_deprecation(step.image_id, request.deprecation_time, region=region, target=target)
    return True


def _apply_delete_object(request: ImportRequest, step: FinishingStep) -> bool:
    # Only images uploaded here, under the owner's prefix: never an object of a granted bucket.
    for container in request.disk_containers.filter(upload__isnull=False).select_related("upload"):
        upload = container.upload
        if upload is not None and upload.owner_id == request.owner_id:
            images.delete_object(upload.bucket, upload.key, target=request.target)
    return True


APPLY = {
    finishspec.COPY: _apply_copy,
    finishspec.DEREGISTER: _apply_deregister,
    finishspec.TAGS: _apply_tags,
    finishspec.IMDS: _apply_imds,
    finishspec.LAUNCH: _apply_launch,
    finishspec.VOLUME: _apply_volume,
    finishspec.DEPRECATE: _apply_deprecation,
    finishspec.REGION_COPY: _apply_region_copy,
    finishspec.DELETE_OBJECT: _apply_delete_object,
}
