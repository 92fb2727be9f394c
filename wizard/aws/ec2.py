"""EC2 look-ups for the wizard: EBS snapshots of this account, by id or by tag."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wizard.aws import recent
from wizard.aws.clients import TargetLike, client

FILTER_VALUES = 200  # values per DescribeSnapshots filter


def own_snapshots(
    *,
    snapshot_ids: Iterable[str] = (),
    tags: Iterable[tuple[str, str]] = (),
    limit: int = 200,
    target: TargetLike | None = None,
    fresh: bool = True,
) -> list[dict[str, Any]]:
    """The completed snapshots of `target`'s account (None: the application's own) among
    `snapshot_ids` or carrying one of `tags` ((key, value) pairs), newest first:
    DescribeSnapshots with OwnerIds=self and a snapshot-id filter (unknown ids are skipped, not
    an error) or a tag:<key> filter.

    Nothing is asked when nothing is named: there is no listing of every snapshot of the
    account (wizard.uploads.sources decides which a user may see). EC2 reads `*` and `?` in filter
    values as wildcards, so callers check the tags of what comes back. The owner is checked
    again against the caller's account: the sandbox (moto) also answers with the snapshots
    of its built-in public AMIs.

    With `fresh=False` (the upload step's snapshot picker, which each render of the page shows)
    the answer is kept for settings.AWS_ANSWER_SECONDS (wizard.aws.recent): two AWS calls less
    for a person walking the wizard. What decides whether a snapshot may be imported asks afresh.
    """
    ids = sorted(set(snapshot_ids))
    pairs = sorted(set(tags))
    if fresh:
        return _own_snapshots(ids, pairs, limit, target)
    question = (recent.account_of(target), tuple(ids), tuple(pairs), limit)
    if (kept := recent.get("own-snapshots", question)) is not recent.MISSING:
        return list(kept)  # the cache's own copy (it pickles)
    found = _own_snapshots(ids, pairs, limit, target)
    recent.put("own-snapshots", question, found)
    return found


def _own_snapshots(
    ids: list[str], pairs: list[tuple[str, str]], limit: int, target: TargetLike | None
) -> list[dict[str, Any]]:
    batches = [ids[i : i + FILTER_VALUES] for i in range(0, len(ids), FILTER_VALUES)]
    queries = [[{"Name": "snapshot-id", "Values": batch}] for batch in batches]
    queries += [[{"Name": f"tag:{key}", "Values": [value]}] for key, value in pairs]
    if not queries:
        return []
    account = client("sts", target=target).get_caller_identity()["Account"]
    paginator = client("ec2", target=target).get_paginator("describe_snapshots")
    found: dict[str, dict[str, Any]] = {}
    for filters in queries:
        for page in paginator.paginate(OwnerIds=["self"], Filters=filters):
            for s in page.get("Snapshots", []):
                if s.get("State") == "completed" and s.get("OwnerId") == account:
                    found[s["SnapshotId"]] = s
    return sorted(found.values(), key=lambda s: s.get("StartTime") or 0, reverse=True)[:limit]
