"""KMS look-ups for the encryption step: the account's keys with their aliases and state."""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from wizard.aws import recent
from wizard.aws.clients import TargetLike, client


@dataclass
class KeyChoice:
    key_id: str
    arn: str
    state: str
    description: str = ""
    aliases: list[str] = field(default_factory=list)
    usable: bool = True  # enabled, symmetric, for encryption


def list_keys(target: TargetLike | None = None) -> list[KeyChoice]:
    """ListKeys + ListAliases + DescribeKey in `target`: every key the import could use, with why
    not where it cannot. Kept for settings.AWS_ANSWER_SECONDS (wizard.aws.recent)."""
    question = (recent.account_of(target),)
    if (kept := recent.get("kms-keys", question)) is not recent.MISSING:
        return list(kept)
    keys = _list_keys(target)
    recent.put("kms-keys", question, keys)
    return keys


def _list_keys(target: TargetLike | None) -> list[KeyChoice]:
    kms = client("kms", target=target)
    aliases: dict[str, list[str]] = {}
    for page in kms.get_paginator("list_aliases").paginate():
        for alias in page.get("Aliases", []):
            if alias.get("TargetKeyId"):
                aliases.setdefault(alias["TargetKeyId"], []).append(alias["AliasName"])
    keys = []
    for page in kms.get_paginator("list_keys").paginate():
        for key in page.get("Keys", []):
            meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
            keys.append(
                KeyChoice(
                    key_id=meta["KeyId"],
                    arn=meta["Arn"],
                    state=meta.get("KeyState", ""),
                    description=meta.get("Description", ""),
                    aliases=sorted(aliases.get(meta["KeyId"], [])),
                    usable=meta.get("KeyState") == "Enabled"
                    and meta.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
                    and meta.get("KeyUsage", "ENCRYPT_DECRYPT") == "ENCRYPT_DECRYPT",
                )
            )
    return keys


def key_problem(key_id: str, target: TargetLike | None = None) -> str:
    """Why VM Import could not encrypt with `key_id` (DescribeKey in `target`), or "" when it can.
    Kept for settings.AWS_ANSWER_SECONDS (wizard.aws.recent)."""
    question = (recent.account_of(target), key_id)
    if (kept := recent.get("kms-key", question)) is not recent.MISSING:
        return str(kept)
    problem = _key_problem(key_id, target)
    recent.put("kms-key", question, problem)
    return problem


def _key_problem(key_id: str, target: TargetLike | None) -> str:
    try:
        meta = client("kms", target=target).describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NotFoundException":
            return f"there is no KMS key {key_id} in this region"
        return f"the key could not be looked up ({code})"
    if meta.get("KeyState") != "Enabled":
        return f"the KMS key is {meta.get('KeyState', 'not enabled').lower()}, not enabled"
    if meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
        return f"the KMS key is {meta.get('KeySpec')}; VM Import needs a symmetric key"
    return ""
