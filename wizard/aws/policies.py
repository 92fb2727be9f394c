"""IAM policy documents for VM Import's service role: what it needs, and whether documents allow it.

Pure (no boto3): `wizard.aws.account` reads the role's documents from IAM and asks these. The
evaluation is IAM's for the statements VM Import roles have in practice: Allow and Deny,
Action/NotAction and Resource/NotResource with `*` and `?` wildcards (an explicit Deny wins);
Conditions are not evaluated (a conditional Allow counts as allowing, a conditional Deny as not
denying), so where IAM's own SimulatePrincipalPolicy answers, its answer is used instead.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

VMIE = "vmie.amazonaws.com"
EXTERNAL_ID = "vmimport"
EC2_ACTIONS = ("ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:DescribeImages")
KMS_ACTIONS = (
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:ReEncryptFrom",
)


def trust_policy() -> dict[str, Any]:
    """The trust policy the VM Import guide gives the service role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": VMIE},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:Externalid": EXTERNAL_ID}},
            }
        ],
    }


def role_policy(buckets: list[str], kms_key_arns: list[str] | None = None) -> dict[str, Any]:
    """The permissions policy the VM Import guide gives the service role, for these buckets (and keys)."""
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"],
            "Resource": [r for b in sorted(set(buckets)) for r in (f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*")],
        },
        {
            "Effect": "Allow",
            "Action": ["ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:Describe*"],
            "Resource": "*",
        },
    ]
    if kms_key_arns:
        statements.append(
            {
                "Effect": "Allow",
                "Action": [
                    "kms:CreateGrant",
                    "kms:Decrypt",
                    "kms:DescribeKey",
                    "kms:Encrypt",
                    "kms:GenerateDataKey*",
                    "kms:ReEncrypt*",
                ],
                "Resource": sorted(set(kms_key_arns)),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def document(value: Any) -> dict[str, Any] | None:
    """A policy document from what IAM answers (a dict, or JSON text, URL-decoded by boto3)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str, case: bool) -> bool:
    if case:
        return any(fnmatch.fnmatchcase(value, str(p)) for p in _list(patterns))
    return any(fnmatch.fnmatchcase(value.lower(), str(p).lower()) for p in _list(patterns))


def _covers(statement: dict[str, Any], action: str, resource: str) -> bool:
    if "Action" in statement and not _matches(statement["Action"], action, case=False):
        return False
    if "NotAction" in statement and _matches(statement["NotAction"], action, case=False):
        return False
    if "Resource" in statement and not _matches(statement["Resource"], resource, case=True):
        return False
    return not ("NotResource" in statement and _matches(statement["NotResource"], resource, case=True))


def allows(documents: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether the documents allow `action` on `resource` (an explicit Deny wins)."""
    allowed = False
    for doc in documents:
        for statement in _list(doc.get("Statement", [])):
            if not isinstance(statement, dict) or not _covers(statement, action, resource):
                continue
            if statement.get("Effect") == "Deny" and "Condition" not in statement:
                return False
            if statement.get("Effect") == "Allow":
                allowed = True
    return allowed


def trust_problems(trust: dict[str, Any] | None) -> tuple[str, str]:
    """(error, warning) about a role's trust policy: VM Import (vmie.amazonaws.com) must be allowed
    sts:AssumeRole, with the external id `vmimport` if a condition names one."""
    for statement in _list((trust or {}).get("Statement", [])):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        services = _list(principal.get("Service", [])) if isinstance(principal, dict) else []
        if VMIE not in services or not _matches(statement.get("Action", []), "sts:AssumeRole", case=False):
            continue
        condition = statement.get("Condition", {})
        ids = [
            v
            for op, values in (condition.items() if isinstance(condition, dict) else [])
            if isinstance(values, dict) and op.lower().startswith("string")
            for k, vs in values.items()
            if k.lower() == "sts:externalid"
            for v in _list(vs)
        ]
        if ids and EXTERNAL_ID not in ids:
            return (
                f"its trust policy lets {VMIE} assume it only with the external id {', '.join(map(str, ids))}, "
                f"but VM Import passes {EXTERNAL_ID}",
                "",
            )
        if not ids:
            return "", f'its trust policy has no condition on sts:Externalid = "{EXTERNAL_ID}" (the guide asks for one)'
        return "", ""
    return f"its trust policy does not let {VMIE} assume it (sts:AssumeRole)", ""
