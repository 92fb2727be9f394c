"""Who may import what: the one rule every path asks before a source is used.

A user may import

* the images they uploaded through this application themselves: a completed `Upload` they
  own, matched by its exact bucket and key (as a UserBucket, or as an ``s3://bucket/key`` Url);
* objects under an S3 location (bucket and key prefix) an administrator granted to one of their
  groups (`SourceGrant` of kind "s3"; an empty prefix is the whole bucket);
* ``https://`` Urls of a host an administrator granted the same way (kind "url"); a presigned
  URL of any bucket, this application's own included, needs such a grant too;
* EBS snapshots made by the imports of their own requests, or carrying a tag an administrator
  granted to one of their groups (kind "snapshot-tag").

A request with a target (wizard.targets: another account and region) takes its S3 sources only from
that target's bucket, whose account's vmimport role reads them: the same rule, and the bucket
must be the target's (an image uploaded here lies in the application's own bucket, which the
target's role does not read). Its snapshots are looked up in the target's account.

Nothing else. The application's own AWS credentials are no way round the rule, and superusers
get no bypass: an administrator grants a location to a group of theirs like to anyone's.

The answer never depends on whether an object exists or what it holds: nothing is read from
S3 to give it, and the refusal is the same message for an object that is there and one that is
not. Keys are compared literally (S3 does not resolve paths), and a key that some client or
service could resolve to another key (``..`` segments, ``%``-escapes, backslashes, ``//``,
control characters) is refused, so no spelling of a key escapes the prefix a grant covers.

Callers: the wizard's source forms and `wizard.requests.drafts` (the acting user), the pre-flight and
the submission (`wizard.preflight.preflight`, the request's owner), the dispatcher (the owner, again,
right before ImportImage), and the review page (`provenance`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib.auth.models import User

from wizard.models import DiskContainer, ImportRequest, ImportTask, SourceGrant, Upload
from wizard.requests import importspec

REFUSED = "You may not import from this location: "
HOW = {
    "s3": (
        "You may import the images you uploaded here yourself, and objects under an S3 location (bucket and "
        "key prefix) an administrator granted to one of your groups: upload the image here, or ask an "
        "administrator to grant this location to a group of yours (Source grants, in the admin)."
    ),
    "url": (
        "An https:// Url may name only a host an administrator granted to one of your groups: upload the image "
        "here, or ask an administrator to grant this host to a group of yours (Source grants, in the admin)."
    ),
    "snapshot": (
        "You may import the snapshots made by the imports of your own requests, and snapshots carrying a tag an "
        "administrator granted to one of your groups (Source grants, in the admin)."
    ),
}
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Verdict:
    """Where one source comes from, as the rule sees it: an upload of the user's own, a
    grant, an import of theirs (a snapshot it made), or nothing (`refusal` says why)."""

    label: str
    refusal: str = ""
    upload: Upload | None = None
    grant: SourceGrant | None = None
    task: ImportTask | None = None

    @property
    def permitted(self) -> bool:
        return not self.refusal


def _refused(kind: str, label: str, why: str = "") -> Verdict:
    return Verdict(label, refusal=f"{REFUSED}{label}{f' ({why})' if why else ''}. {HOW[kind]}")


def target_bucket_problem(target: Any, bucket: str) -> str:
    """Why a request with `target` may not take an S3 source from `bucket` ("" when it may): the
    target's account imports from its own bucket only."""
    if target is None or bucket == target.bucket:
        return ""
    return (
        f"{REFUSED}s3://{bucket}/... for the target {target}: an import in that account reads images only from "
        f"its bucket {target.bucket} (its vmimport role reads that one; images uploaded here lie in this "
        f"application's own bucket). Put the image in s3://{target.bucket}/ under a location granted to one of "
        "your groups, or choose the default target."
    )


# --- pure parts: keys, s3:// Urls, https:// hosts, grants ------------------------------------


def key_problem(key: str) -> str:
    """Why `key` is not a plain S3 key ("" when it is): one that some client, proxy or
    service could resolve to another key, so that it would escape a granted prefix."""
    if CONTROL.search(key):
        return "S3Key has control characters"
    if "\\" in key:
        return "S3Key has a backslash"
    if unquote(key) != key:
        return "S3Key has %-escapes"
    segments = key.split("/")
    if any(s in (".", "..") for s in segments):
        return "S3Key has a '.' or '..' segment"
    if "" in segments[:-1]:
        return "S3Key has an empty segment ('//' or a leading '/')"
    return ""


def s3_url_location(url: str) -> tuple[str, str] | None:
    """(bucket, key) of an ``s3://bucket/key`` Url, read as importspec reads it; None otherwise."""
    if not url.startswith("s3://"):
        return None
    bucket, _, key = url[len("s3://") :].partition("/")
    return bucket, key


def https_host(url: str) -> str:
    """The host of a plain ``https://host[:443]/...`` Url, lower case; "" for anything else
    (another scheme, user info, another port, spaces, backslashes, control characters)."""
    if not url.startswith("https://") or CONTROL.search(url) or "\\" in url or any(c.isspace() for c in url):
        return ""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return ""
    if "@" in parts.netloc or port not in (None, 443) or not parts.hostname:
        return ""
    return parts.hostname.lower()


def covering_grant(grants: Iterable[Any], bucket: str, key: str) -> Any | None:
    """The first S3 grant whose bucket is `bucket` and whose prefix the literal `key` starts
    with; None if none covers it, or if the key is not plain (`key_problem`)."""
    if not bucket or not key or key_problem(key):
        return None
    return next(
        (
            g
            for g in grants
            if g.kind == SourceGrant.Kind.S3 and g.s3_bucket and g.s3_bucket == bucket and key.startswith(g.s3_prefix)
        ),
        None,
    )


def host_grant(grants: Iterable[Any], url: str) -> Any | None:
    host = https_host(url)
    if not host:
        return None
    return next(
        (g for g in grants if g.kind == SourceGrant.Kind.URL and g.host and g.host.strip().lower() == host), None
    )


def tag_grant(grants: Iterable[Any], tags: Iterable[dict[str, str]]) -> Any | None:
    """The first snapshot-tag grant one of `tags` ([{"Key", "Value"}], as EC2 answers) matches exactly."""
    have = {(t.get("Key", ""), t.get("Value", "")) for t in tags}
    return next(
        (
            g
            for g in grants
            if g.kind == SourceGrant.Kind.SNAPSHOT_TAG and g.tag_key and (g.tag_key, g.tag_value) in have
        ),
        None,
    )


# --- the rule, over the database (and EC2 for snapshot tags) ---------------------------------


def grants_of(user: User) -> list[SourceGrant]:
    """The grants made to one of the user's groups (one query; a page that names each grant's
    groups, the reviewer's, prefetches them itself: every step of the wizard reads the grants)."""
    if user is None or not getattr(user, "pk", None):
        return []
    return list(SourceGrant.objects.filter(groups__user=user).distinct())


def _own_upload(user: User, bucket: str, key: str) -> Upload | None:
    if user is None or not getattr(user, "pk", None) or not bucket or not key:
        return None
    if "\x00" in bucket or "\x00" in key:
        return None  # no upload is named so (and PostgreSQL refuses NUL in a query's text)
    return Upload.objects.filter(owner=user, status=Upload.Status.COMPLETED, bucket=bucket, key=key).first()


def own_snapshot_tasks(user: User) -> dict[str, ImportTask]:
    """SnapshotId -> the import task of one of the user's own requests that made it."""
    if user is None or not getattr(user, "pk", None):
        return {}
    made: dict[str, ImportTask] = {}
    for task in ImportTask.objects.filter(request__owner=user).select_related("request"):
        for detail in task.snapshot_details or []:
            snapshot_id = detail.get("SnapshotId") if isinstance(detail, dict) else None
            if isinstance(snapshot_id, str) and snapshot_id:
                made.setdefault(snapshot_id, task)
    return made


def _s3_verdict(
    user: User, bucket: str, key: str, label: str, grants: list[SourceGrant], target: Any = None
) -> Verdict:
    if elsewhere := target_bucket_problem(target, bucket):
        return Verdict(label, refusal=elsewhere)
    upload = _own_upload(user, bucket, key)
    if upload is not None:
        return Verdict(label, upload=upload)
    grant = covering_grant(grants, bucket, key)
    if grant is not None:
        return Verdict(label, grant=grant)
    return _refused("s3", label, key_problem(key) if key else "")


def _snapshot_verdict(
    user: User, snapshot_id: str, grants: list[SourceGrant], ask_aws: bool, target: Any = None
) -> Verdict:
    from wizard.aws import ec2

    label = f"snapshot {snapshot_id}"
    task = own_snapshot_tasks(user).get(snapshot_id)
    if task is not None:
        return Verdict(label, task=task)
    tagged = [g for g in grants if g.kind == SourceGrant.Kind.SNAPSHOT_TAG and g.tag_key]
    if not tagged or not importspec.SNAPSHOT_ID.fullmatch(snapshot_id):
        return _refused("snapshot", label)
    if not ask_aws:
        return Verdict(label)  # only a look-up in EC2 can tell; the callers that decide ask it
    try:
        found = ec2.own_snapshots(snapshot_ids=[snapshot_id], target=target)
    except ClientError:
        found = []
    except BotoCoreError as exc:
        return _refused("snapshot", label, f"its tags could not be read from AWS now ({type(exc).__name__}): try again")
    grant = next((g for s in found if (g := tag_grant(tagged, s.get("Tags", []))) is not None), None)
    return Verdict(label, grant=grant) if grant is not None else _refused("snapshot", label)


def judge(
    user: User,
    *,
    s3_bucket: str = "",
    s3_key: str = "",
    url: str = "",
    snapshot_id: str = "",
    ask_aws: bool = True,
    grants: list[SourceGrant] | None = None,
    target: Any = None,
) -> Verdict:
    """Whether `user` may import this source, and where it comes from, for a request in `target`
    (wizard.models.Target; None: the default target).

    Every source given is judged (a container must name exactly one, but a refusal of any
    one refuses it). With `ask_aws` False, a snapshot only EC2's tags could permit is
    passed unchecked (for pages that show drafts; submission, review and dispatch ask).
    """
    grants = grants_of(user) if grants is None else grants
    verdicts: list[Verdict] = []
    if s3_bucket or s3_key:
        verdicts.append(_s3_verdict(user, s3_bucket, s3_key, f"s3://{s3_bucket}/{s3_key}", grants, target))
    if url:
        location = s3_url_location(url)
        if location is not None:
            verdicts.append(_s3_verdict(user, *location, url, grants, target))
        elif (grant := host_grant(grants, url)) is not None:
            verdicts.append(Verdict(url, grant=grant))
        else:
            verdicts.append(_refused("url", url))
    if snapshot_id:
        verdicts.append(_snapshot_verdict(user, snapshot_id, grants, ask_aws, target))
    if not verdicts:
        return Verdict("")  # no source at all: importspec says so
    return next((v for v in verdicts if not v.permitted), verdicts[0])


def refusal(
    user: User,
    *,
    s3_bucket: str = "",
    s3_key: str = "",
    url: str = "",
    snapshot_id: str = "",
    target: Any = None,
) -> str:
    """ "" when `user` may import this source (in a request of `target`); otherwise the one message
    that says so and how to get access (the same whether or not the object exists)."""
    return judge(user, s3_bucket=s3_bucket, s3_key=s3_key, url=url, snapshot_id=snapshot_id, target=target).refusal


def source_of(container: DiskContainer | importspec.DiskContainer) -> dict[str, str]:
    """The source fields of a DiskContainer row or an importspec.DiskContainer."""
    if isinstance(container, importspec.DiskContainer):
        bucket = container.user_bucket
        return {
            "s3_bucket": bucket.s3_bucket if bucket else "",
            "s3_key": bucket.s3_key if bucket else "",
            "url": container.url,
            "snapshot_id": container.snapshot_id,
        }
    return {
        "s3_bucket": container.s3_bucket,
        "s3_key": container.s3_key,
        "url": container.url,
        "snapshot_id": container.snapshot_id,
    }


def source_path(container: DiskContainer | importspec.DiskContainer, index: int) -> str:
    """The API path of the container's source: DiskContainers[i].UserBucket / .Url / .SnapshotId."""
    fields = source_of(container)
    member = "UserBucket" if fields["s3_bucket"] or fields["s3_key"] else "Url" if fields["url"] else "SnapshotId"
    return f"DiskContainers[{index}].{member}"


def container_verdict(
    user: User,
    container: DiskContainer | importspec.DiskContainer,
    *,
    ask_aws: bool = True,
    grants: list[SourceGrant] | None = None,
    target: Any = None,
) -> Verdict:
    return judge(user, **source_of(container), ask_aws=ask_aws, grants=grants, target=target)


def container_refusal(
    user: User, container: DiskContainer | importspec.DiskContainer, *, ask_aws: bool = True, target: Any = None
) -> str:
    return container_verdict(user, container, ask_aws=ask_aws, target=target).refusal


def spec_refusals(
    user: User, spec: importspec.ImportSpec, *, ask_aws: bool = True, target: Any = None
) -> list[importspec.Finding]:
    """A finding per disk container of `spec` that `user` may not import (in a request of
    `target`), placed on its source."""
    grants = grants_of(user)
    found = []
    for i, disk in enumerate(spec.disk_containers):
        why = container_verdict(user, disk, ask_aws=ask_aws, grants=grants, target=target).refusal
        if why:
            found.append(importspec.Finding(source_path(disk, i), why))
    return found


def provenance(container: DiskContainer, *, grants: list[SourceGrant] | None = None) -> Verdict:
    """Where a request's disk comes from, judged for the request's owner (the review page)."""
    request = container.request
    return container_verdict(request.owner, container, grants=grants, target=request.target)


def provenances(request: ImportRequest, grants: list[SourceGrant] | None = None) -> list[tuple[DiskContainer, Verdict]]:
    """Each disk of an import request with where it comes from, for its owner. The disks are
    the request's own (prefetched by the page, if it did; each knows `request` without a query);
    `grants`: the owner's, when already read."""
    grants = grants_of(request.owner) if grants is None else grants
    return [(c, provenance(c, grants=grants)) for c in request.disk_containers.all()]


def permitted_snapshots(
    user: User, limit: int = 200, target: Any = None, grants: list[SourceGrant] | None = None
) -> list[dict[str, Any]]:
    """The snapshots `user` may import (the snapshot picker): those the imports of their own
    requests made, and those carrying a tag granted to one of their groups; of `target`'s
    account (None: the application's own). `grants`: the user's, when already read."""
    from wizard.aws import ec2

    made = own_snapshot_tasks(user)
    grants = grants_of(user) if grants is None else grants
    tagged = [g for g in grants if g.kind == SourceGrant.Kind.SNAPSHOT_TAG and g.tag_key]
    if not made and not tagged:
        return []
    tags = [(g.tag_key, g.tag_value) for g in tagged]
    # Shown, not acted on: kept a few seconds (adding one asks EC2 afresh, _snapshot_verdict).
    found = ec2.own_snapshots(snapshot_ids=list(made), tags=tags, limit=limit, target=target, fresh=False)
    # EC2's filters take wildcards: keep exactly what the rule permits.
    return [s for s in found if s.get("SnapshotId") in made or tag_grant(tagged, s.get("Tags", [])) is not None]
