"""EC2 look-ups for the wizard: the account's own EBS snapshots."""

from __future__ import annotations

from typing import Any

from wizard.aws.clients import client


def own_snapshots(limit: int = 200) -> list[dict[str, Any]]:
    """The account's completed snapshots, newest first (DescribeSnapshots, OwnerIds=self).

    The owner is checked again against the caller's account: the sandbox (moto) also
    answers with the snapshots of its built-in public AMIs.
    """
    account = client("sts").get_caller_identity()["Account"]
    paginator = client("ec2").get_paginator("describe_snapshots")
    snapshots: list[dict[str, Any]] = []
    for page in paginator.paginate(OwnerIds=["self"]):
        snapshots.extend(
            s for s in page.get("Snapshots", []) if s.get("State") == "completed" and s.get("OwnerId") == account
        )
        if len(snapshots) >= limit:
            break
    return sorted(snapshots, key=lambda s: s.get("StartTime") or 0, reverse=True)[:limit]
