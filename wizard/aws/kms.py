"""KMS look-ups for the encryption step: the account's keys with their aliases and state."""

from __future__ import annotations

from dataclasses import dataclass, field

from wizard.aws.clients import client


@dataclass
class KeyChoice:
    key_id: str
    arn: str
    state: str
    description: str = ""
    aliases: list[str] = field(default_factory=list)
    usable: bool = True  # enabled, symmetric, for encryption


def list_keys() -> list[KeyChoice]:
    """ListKeys + ListAliases + DescribeKey: every key the import could use, with why not where it cannot."""
    kms = client("kms")
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
