"""The account pre-flight: what VM Import needs of the AWS account, checked before the hour-long run.

VM Import accepts an ImportImage call and only later fails the task when the service role, the
bucket, the KMS key or a snapshot is not right ("The service role vmimport provided does not
exist or does not have sufficient permissions", "We do not have access to the given resource.
Reason 403 Forbidden", ...). `problems()` asks IAM, S3, KMS and EC2 (through `clients.client`):

- the service role (RoleName, default vmimport) exists and trusts vmie.amazonaws.com with the
  external id `vmimport`;
- its policies allow s3:GetBucketLocation and s3:ListBucket on each bucket, s3:GetObject on
  each object, the EC2 actions VM Import uses, and (when the AMI is encrypted with a key) the
  KMS actions on that key: IAM's SimulatePrincipalPolicy decides where it answers; else the
  role's inline and attached policy documents are evaluated (`wizard.aws.policies`);
- each bucket is in the import region;
- each snapshot source exists, is completed, and is this account's (or shared with it).

Each problem names the API field it concerns and the change to make (the policy document, the
command). What the wizard's own credentials may not read is a warning that says so, never a
blocking error: the import may still work. When AWS does not answer at all (no endpoint, no
credentials) nothing is said of the account (logged): it is checked again before dispatch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from django.conf import settings

from wizard.aws import policies, recent
from wizard.aws.clients import TargetLike, client

log = logging.getLogger(__name__)
ERROR, WARNING = "error", "warning"
ROLE_MISSING = "The service role {} provided does not exist or does not have sufficient permissions"
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}


@dataclass(frozen=True)
class Source:
    """One disk container's source: an S3 object or a snapshot."""

    index: int
    bucket: str = ""
    key: str = ""
    snapshot_id: str = ""


@dataclass(frozen=True)
class Problem:
    path: str  # the API member it concerns: "RoleName", "DiskContainers[0]", "KmsKeyId"
    severity: str  # error | warning
    message: str
    disk: int | None = None  # the disk container's index, for disk problems
    missing_role: bool = False  # the role itself does not exist (ImportImage refuses that at once)


class _Unreachable(Exception):
    """AWS did not answer at all (no endpoint, no credentials): the account cannot be judged now."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unchecked(path: str, what: str, exc: Exception, disk: int | None = None) -> Problem:
    why = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return Problem(
        path,
        WARNING,
        f"{what} could not be checked ({why}): the wizard's own AWS credentials may not read it. The import may "
        "still work; if it fails, check this first.",
        disk,
    )


def region_of(location: str | None) -> str:
    """GetBucketLocation's LocationConstraint as a region name."""
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location or "us-east-1")


def problems(
    *,
    role_name: str,
    region: str,
    sources: list[Source],
    kms_key_id: str = "",
    encrypted: bool = False,
    target: TargetLike | None = None,
    fresh: bool = False,
) -> list[Problem]:
    """Everything the account lacks for this import; [] when it has it all. Asked in `target`'s
    account (through its role; None: the application's own account). The answer is kept for
    settings.AWS_ANSWER_SECONDS (wizard.aws.recent) unless `fresh` (dispatch) asks AWS again."""
    role_name = role_name or "vmimport"
    question = (recent.account_of(target), role_name, region, tuple(sources), kms_key_id, encrypted)
    if not fresh and (kept := recent.get("account", question)) is not recent.MISSING:
        return list(kept)
    found: list[Problem] = []
    try:
        _check(found, role_name, region, sources, kms_key_id, encrypted, target)
    except _Unreachable as exc:
        # Nothing to say of the account now; dispatch checks it again right before ImportImage.
        log.warning("the account pre-flight could not reach AWS: %r", exc.__cause__)
        return found
    recent.put("account", question, found)
    return found


def _check(
    found: list[Problem],
    role_name: str,
    region: str,
    sources: list[Source],
    kms_key_id: str,
    encrypted: bool,
    target: TargetLike | None,
) -> None:
    if target is not None and (problem := _assumed(target)):
        found.append(problem)
        return  # nothing else can be asked in that account
    buckets = sorted({s.bucket for s in sources if s.bucket})
    key_arn = _key_arn(kms_key_id, target) if encrypted and kms_key_id else ""
    found += _role(role_name, sources, buckets, key_arn, target)
    for bucket in buckets:
        found += _bucket_region(bucket, region, [s.index for s in sources if s.bucket == bucket], target)
    account = ""
    for s in sources:
        if s.snapshot_id:
            if not account:
                try:
                    account = client("sts", target=target).get_caller_identity()["Account"]
                except ClientError as exc:
                    found.append(_unchecked(f"DiskContainers[{s.index}]", f"Snapshot {s.snapshot_id}", exc, s.index))
                    continue
                except BotoCoreError as exc:
                    raise _Unreachable() from exc
            found += _snapshot(s, account, target)


def _assumed(target: TargetLike) -> Problem | None:
    """Whether the application can act in the target's account: sts:AssumeRole of its role (with
    its ExternalId), answered by that account."""
    try:
        identity = client("sts", target=target).get_caller_identity()
    except ClientError as exc:
        return Problem(
            "Target",
            ERROR,
            f"The application could not assume the target's role {target.role_arn} ({_code(exc)}: "
            f"{exc.response.get('Error', {}).get('Message', '')}): nothing can be imported there. An administrator "
            "must let this application's principal call sts:AssumeRole on it, with the ExternalId the target "
            "names, in the role's trust policy.",
        )
    except BotoCoreError as exc:
        raise _Unreachable() from exc
    expected = getattr(target, "account_id", "")
    if expected and identity.get("Account") != expected:
        return Problem(
            "Target",
            ERROR,
            f"The target's role {target.role_arn} is in account {identity.get('Account')}, not in the target's "
            f"account {expected}: an administrator must correct the target (Targets, in the admin).",
        )
    return None


def _key_arn(kms_key_id: str, target: TargetLike | None) -> str:
    """The key's ARN if the key itself is usable (else preflight's key check says what is wrong
    with it, and the role's permissions on it do not matter yet)."""
    try:
        meta = client("kms", target=target).describe_key(KeyId=kms_key_id)["KeyMetadata"]
    except ClientError:
        return ""
    except BotoCoreError as exc:
        raise _Unreachable() from exc
    return str(meta["Arn"]) if meta.get("KeyState") == "Enabled" else ""


# --- the service role -------------------------------------------------------------------------


def _role(
    role_name: str, sources: list[Source], buckets: list[str], key_arn: str, target: TargetLike | None
) -> list[Problem]:
    iam = client("iam", target=target)
    fix_trust = (
        f"Create it with the trust policy the VM Import guide gives: aws iam create-role --role-name {role_name} "
        f"--assume-role-policy-document '{json.dumps(policies.trust_policy())}'"
    )
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return [
                Problem(
                    "RoleName",
                    ERROR,
                    f"{ROLE_MISSING.format(role_name)}: there is no IAM role {role_name} in this account. {fix_trust}, "
                    "then give it the permissions: " + _put_policy(role_name, buckets, key_arn),
                    missing_role=True,
                )
            ]
        return [_unchecked("RoleName", f"The service role {role_name}", exc)]
    except BotoCoreError as exc:
        raise _Unreachable() from exc
    found: list[Problem] = []
    error, warning = policies.trust_problems(policies.document(role.get("AssumeRolePolicyDocument")))
    if error:
        found.append(
            Problem(
                "RoleName",
                ERROR,
                f"{ROLE_MISSING.format(role_name)}: {error}. Set its trust policy: aws iam update-assume-role-policy "
                f"--role-name {role_name} --policy-document '{json.dumps(policies.trust_policy())}'",
            )
        )
    elif warning:
        found.append(
            Problem(
                "RoleName",
                WARNING,
                f"The service role {role_name}: {warning}; without it any service using vmie.amazonaws.com could "
                f"act as this role. Set it: aws iam update-assume-role-policy --role-name {role_name} "
                f"--policy-document '{json.dumps(policies.trust_policy())}'",
            )
        )
    needed = _needed(sources, key_arn)
    try:
        denied = _denied(role, needed, target)
    except ClientError as exc:
        return [*found, _unchecked("RoleName", f"The permissions of the service role {role_name}", exc)]
    except BotoCoreError as exc:
        raise _Unreachable() from exc
    required = [(a, r) for a, r in denied if not a.startswith("kms:")]
    kms = [(a, r) for a, r in denied if a.startswith("kms:")]
    if required:
        found.append(
            Problem(
                "RoleName",
                ERROR,
                f"{ROLE_MISSING.format(role_name)}: its policies do not allow "
                + "; ".join(f"{a} on {r}" for a, r in required[:8])
                + ("; ..." if len(required) > 8 else "")
                + ". Give it the permissions the VM Import guide lists: "
                + _put_policy(role_name, buckets, key_arn),
            )
        )
    if kms:
        found.append(
            Problem(
                "KmsKeyId",
                WARNING,
                f"The service role {role_name} may not use the KMS key ({', '.join(a for a, _ in kms)} are not "
                f"allowed on {key_arn}): VM Import needs them to encrypt the AMI's snapshots with it, and fails the "
                "task late without them. Add them: " + _put_policy(role_name, buckets, key_arn),
            )
        )
    return found


def _put_policy(role_name: str, buckets: list[str], key_arn: str) -> str:
    doc = policies.role_policy(buckets or ["YOUR-BUCKET"], [key_arn] if key_arn else None)
    return (
        f"aws iam put-role-policy --role-name {role_name} --policy-name vmimport --policy-document '{json.dumps(doc)}'"
    )


def _needed(sources: list[Source], key_arn: str) -> list[tuple[str, str]]:
    needed: list[tuple[str, str]] = []
    for bucket in sorted({s.bucket for s in sources if s.bucket}):
        needed += [("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}"), ("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
    needed += [("s3:GetObject", f"arn:aws:s3:::{s.bucket}/{s.key}") for s in sources if s.bucket and s.key]
    needed += [(action, "*") for action in policies.EC2_ACTIONS]
    if key_arn:
        needed += [(action, key_arn) for action in policies.KMS_ACTIONS]
    return needed


def _denied(role: dict[str, Any], needed: list[tuple[str, str]], target: TargetLike | None) -> list[tuple[str, str]]:
    """The (action, resource) pairs the role may not do: IAM's simulation, else its documents."""
    if settings.AWS_SANDBOX:  # moto does not offer SimulatePrincipalPolicy (it answers 500)
        return _evaluate(role["RoleName"], needed, target)
    iam = client("iam", target=target, retries={"max_attempts": 1})  # no retries of an API the endpoint may not offer
    by_resource: dict[str, list[str]] = {}
    for action, resource in needed:
        by_resource.setdefault(resource, []).append(action)
    try:
        denied = []
        for resource, actions in by_resource.items():
            answer = iam.simulate_principal_policy(
                PolicySourceArn=role["Arn"], ActionNames=actions, ResourceArns=[resource]
            )
            for result in answer.get("EvaluationResults", []):
                if result.get("EvalDecision") != "allowed":
                    denied.append((str(result.get("EvalActionName", "")), resource))
        return denied
    except (ClientError, BotoCoreError, ResponseParserError) as exc:  # not offered (the sandbox), or not ours
        log.info("SimulatePrincipalPolicy unavailable (%r): evaluating the role's documents", exc)
    return _evaluate(role["RoleName"], needed, target)


def _evaluate(role_name: str, needed: list[tuple[str, str]], target: TargetLike | None) -> list[tuple[str, str]]:
    documents = _documents(role_name, target)
    return [(a, r) for a, r in needed if not policies.allows(documents, a, r)]


def _documents(role_name: str, target: TargetLike | None) -> list[dict[str, Any]]:
    """The role's inline policies and the default versions of its attached managed policies."""
    iam = client("iam", target=target)
    docs: list[dict[str, Any] | None] = []
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
        for name in page.get("PolicyNames", []):
            docs.append(policies.document(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]))
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
        for attached in page.get("AttachedPolicies", []):
            policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
            version = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"])
            docs.append(policies.document(version["PolicyVersion"]["Document"]))
    return [d for d in docs if d is not None]


# --- buckets and snapshots --------------------------------------------------------------------


def _bucket_region(bucket: str, region: str, disks: list[int], target: TargetLike | None) -> list[Problem]:
    where = f"DiskContainers[{disks[0]}]"
    try:
        location = region_of(client("s3", target=target).get_bucket_location(Bucket=bucket).get("LocationConstraint"))
    except ClientError as exc:
        if _code(exc) == "NoSuchBucket":
            return [
                Problem(
                    where,
                    ERROR,
                    f'The bucket {bucket} does not exist: VM Import would fail with "Disk validation failed [We do '
                    'not have access to the given resource. Reason 403 Forbidden]". Upload the image to a bucket of '
                    "this account in the import region.",
                    disks[0],
                )
            ]
        return [_unchecked(where, f"The region of the bucket {bucket}", exc, disks[0])]
    except BotoCoreError as exc:
        raise _Unreachable() from exc
    if location != region:
        return [
            Problem(
                where,
                ERROR,
                f"The bucket {bucket} is in {location}, but the import runs in {region}: VM Import reads images only "
                f"from buckets in the import's region and fails the task. Copy the image to a bucket in {region} "
                f"(aws s3 cp s3://{bucket}/... s3://BUCKET-IN-{region}/...), or import in {location}.",
                disks[0],
            )
        ]
    return []


def _snapshot(source: Source, account: str, target: TargetLike | None) -> list[Problem]:
    where, sid = f"DiskContainers[{source.index}]", source.snapshot_id
    try:
        snapshots = client("ec2", target=target).describe_snapshots(SnapshotIds=[sid]).get("Snapshots", [])
    except ClientError as exc:
        if _code(exc) in ("InvalidSnapshot.NotFound", "InvalidSnapshotID.Malformed", "InvalidParameterValue"):
            snapshots = []
        else:
            return [_unchecked(where, f"Snapshot {sid}", exc, source.index)]
    except BotoCoreError as exc:
        raise _Unreachable() from exc
    if not snapshots:
        return [
            Problem(
                where,
                ERROR,
                f"Snapshot {sid} does not exist in this region, or is not shared with this account: VM Import fails "
                "the task. Check the id and the region, or share the snapshot with this account (its "
                "createVolumePermission).",
                source.index,
            )
        ]
    snap = snapshots[0]
    state = snap.get("State", "")
    if state != "completed":
        return [
            Problem(
                where,
                ERROR,
                f"Snapshot {sid} is {state or 'not completed'}, not completed: VM Import can only use a completed "
                "snapshot. Wait until it completes (aws ec2 wait snapshot-completed"
                f" --snapshot-ids {sid}), or choose another.",
                source.index,
            )
        ]
    if snap.get("OwnerId") != account and snap.get("Encrypted"):
        return [
            Problem(
                where,
                WARNING,
                f"Snapshot {sid} belongs to account {snap.get('OwnerId')} and is encrypted: VM Import can use it only "
                "if its KMS key is shared with this account too (a key policy grant for this account).",
                source.index,
            )
        ]
    return []
