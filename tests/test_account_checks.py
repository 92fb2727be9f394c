"""The account pre-flight (wizard.aws.account) over HTTP against the sandbox's IAM, S3, KMS and EC2:
the service role, its trust and permissions, the bucket's region, the KMS key, snapshot sources."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.stack import free_port
from wizard.aws import account, policies
from wizard.aws.account import Source

OBJECT = "uploads/disk.vmdk"
VMIE = "vmie.amazonaws.com"


def s3_source(sandbox, key: str = OBJECT, index: int = 0) -> Source:
    return Source(index, bucket=sandbox.bucket, key=key)


def check(sandbox, role: str = "vmimport", sources: list[Source] | None = None, **kw: Any) -> list[account.Problem]:
    kw.setdefault("fresh", True)  # these tests change the account between checks
    return account.problems(role_name=role, region=sandbox.region, sources=sources or [s3_source(sandbox)], **kw)


def make_role(sandbox, name: str, trust: dict | None = None, policy: dict | None = None) -> None:
    iam = sandbox.client("iam")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust or policies.trust_policy()))
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))


def test_the_sandbox_role_as_the_guide_gives_it_has_everything(sandbox) -> None:
    assert check(sandbox) == []


def test_a_missing_role_says_how_to_create_it(sandbox) -> None:
    [p] = check(sandbox, role="no-such-role")
    assert (p.path, p.severity, p.missing_role) == ("RoleName", "error", True)
    assert "The service role no-such-role provided does not exist" in p.message
    assert "aws iam create-role --role-name no-such-role" in p.message and "vmie.amazonaws.com" in p.message
    assert f"arn:aws:s3:::{sandbox.bucket}/*" in p.message  # the permissions policy to put, for this bucket


def test_trust_policies(sandbox) -> None:
    other = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
             "Action": "sts:AssumeRole"}]}  # fmt: skip
    make_role(sandbox, "wrong-principal", other, policies.role_policy([sandbox.bucket]))
    [p] = check(sandbox, role="wrong-principal")
    assert p.severity == "error" and "does not let vmie.amazonaws.com assume it" in p.message
    assert "aws iam update-assume-role-policy --role-name wrong-principal" in p.message

    no_condition = policies.trust_policy()
    del no_condition["Statement"][0]["Condition"]
    make_role(sandbox, "no-condition", no_condition, policies.role_policy([sandbox.bucket]))
    [p] = check(sandbox, role="no-condition")
    assert p.severity == "warning" and "sts:Externalid" in p.message

    wrong_id = policies.trust_policy()
    wrong_id["Statement"][0]["Condition"] = {"StringEquals": {"sts:ExternalId": "someone-else"}}
    make_role(sandbox, "wrong-id", wrong_id, policies.role_policy([sandbox.bucket]))
    [p] = check(sandbox, role="wrong-id")
    assert p.severity == "error" and "someone-else" in p.message


def test_missing_s3_permissions_give_the_policy_to_put(sandbox) -> None:
    ec2_only = policies.role_policy([sandbox.bucket])
    ec2_only["Statement"] = ec2_only["Statement"][1:]
    make_role(sandbox, "ec2-only", policy=ec2_only)
    [p] = check(sandbox, role="ec2-only")
    assert p.severity == "error" and "does not have sufficient permissions" in p.message
    assert f"s3:GetObject on arn:aws:s3:::{sandbox.bucket}/{OBJECT}" in p.message
    assert f"s3:ListBucket on arn:aws:s3:::{sandbox.bucket}" in p.message
    assert "aws iam put-role-policy --role-name ec2-only --policy-name vmimport" in p.message


def test_attached_managed_policies_count_and_a_deny_wins(sandbox) -> None:
    iam = sandbox.client("iam")
    make_role(sandbox, "managed")
    arn = iam.create_policy(
        PolicyName="vmimport-managed", PolicyDocument=json.dumps(policies.role_policy([sandbox.bucket]))
    )
    iam.attach_role_policy(RoleName="managed", PolicyArn=arn["Policy"]["Arn"])
    assert check(sandbox, role="managed") == []
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{sandbox.bucket}/uploads/*"}]}  # fmt: skip
    iam.put_role_policy(RoleName="managed", PolicyName="deny", PolicyDocument=json.dumps(deny))
    [p] = check(sandbox, role="managed")
    assert p.severity == "error" and "s3:GetObject" in p.message


def test_bucket_in_another_region_or_missing(sandbox) -> None:
    west = sandbox.client("s3", region_name="us-west-2")
    west.create_bucket(Bucket="images-west", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    make_role(sandbox, "both", policy=policies.role_policy([sandbox.bucket, "images-west"]))
    [p] = check(sandbox, role="both", sources=[Source(1, bucket="images-west", key="a.vmdk")])
    assert (p.path, p.severity, p.disk) == ("DiskContainers[1]", "error", 1)
    assert "is in us-west-2, but the import runs in us-east-1" in p.message
    problems = check(sandbox, sources=[Source(0, bucket="no-such-bucket-here", key="a.vmdk")])
    assert any("does not exist" in p.message and p.path == "DiskContainers[0]" for p in problems)


def test_kms_key_permissions_of_the_role(sandbox) -> None:
    key = sandbox.client("kms").create_key()["KeyMetadata"]
    assert check(sandbox, kms_key_id=key["KeyId"], encrypted=True) == []  # the sandbox's role: the guide's
    make_role(sandbox, "no-kms", policy=policies.role_policy([sandbox.bucket]))
    [p] = check(sandbox, role="no-kms", kms_key_id=key["KeyId"], encrypted=True)
    assert (p.path, p.severity) == ("KmsKeyId", "warning")
    assert "kms:CreateGrant" in p.message and key["Arn"] in p.message
    make_role(sandbox, "with-kms", policy=policies.role_policy([sandbox.bucket], [key["Arn"]]))
    assert check(sandbox, role="with-kms", kms_key_id=key["KeyId"], encrypted=True) == []


def test_snapshot_sources(sandbox) -> None:
    ec2 = sandbox.client("ec2")
    volume = ec2.create_volume(Size=1, AvailabilityZone=f"{sandbox.region}a")
    snapshot = ec2.create_snapshot(VolumeId=volume["VolumeId"])["SnapshotId"]
    assert check(sandbox, sources=[Source(0, snapshot_id=snapshot)]) == []
    [p] = check(sandbox, sources=[Source(2, snapshot_id="snap-0123456789abcdef0")])
    assert (p.path, p.severity, p.disk) == ("DiskContainers[2]", "error", 2) and "does not exist" in p.message


# --- the policy rules on any document -----------------------------------------------------------

values = st.recursive(
    st.none() | st.booleans() | st.text(max_size=20) | st.sampled_from(["*", "s3:*", "Allow", "Deny", VMIE]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["Statement", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "Service", "Condition",
         "StringEquals", "sts:ExternalId"]), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip


@given(values)
def test_policy_rules_on_any_document(doc: Any) -> None:
    document = doc if isinstance(doc, dict) else {"Statement": doc}
    assert isinstance(policies.allows([document], "s3:GetObject", "arn:aws:s3:::b/k"), bool)
    error, warning = policies.trust_problems(document)
    assert isinstance(error, str) and isinstance(warning, str)


def test_policy_evaluation() -> None:
    doc = policies.role_policy(["b"])
    assert policies.allows([doc], "s3:GetObject", "arn:aws:s3:::b/k")
    assert policies.allows([doc], "ec2:DescribeImages", "*")
    assert not policies.allows([doc], "s3:GetObject", "arn:aws:s3:::other/k")
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}
    assert policies.allows([not_action], "s3:GetObject", "arn:aws:s3:::b/k")
    assert not policies.allows([not_action], "iam:PassRole", "*")
    assert account.region_of(None) == "us-east-1" and account.region_of("EU") == "eu-west-1"


# --- before submit and again before dispatch ----------------------------------------------------


def _request(requester, sandbox, **fields: Any):
    from tests.flows import grant
    from wizard.models import ImportRequest

    grant(requester, s3_bucket=sandbox.bucket)
    request = ImportRequest.objects.create(owner=requester, **fields)
    request.disk_containers.create(format="VMDK", s3_bucket=sandbox.bucket, s3_key=OBJECT)
    return request


def test_the_role_problems_are_placed_on_the_details_step(db, sandbox, requester) -> None:
    from wizard.preflight import preflight

    ec2_only = policies.role_policy([sandbox.bucket])
    ec2_only["Statement"] = ec2_only["Statement"][1:]
    make_role(sandbox, "ec2-only-2", policy=ec2_only)
    request = _request(requester, sandbox, role_name="ec2-only-2")
    [found] = [f for f in preflight.all_findings(request, check_aws=True) if f.path == "RoleName"]
    assert (found.step, found.field, found.severity) == ("details", "role_name", "error")
    assert "does not have sufficient permissions" in found.message
    assert not [f for f in preflight.all_findings(request) if f.path == "RoleName"]  # only with check_aws


def test_dispatch_checks_the_account_again_and_calls_nothing(db, sandbox, requester, settings) -> None:
    from wizard.aws import clients
    from wizard.imports import dispatch
    from wizard.models import AuditEvent, ImportRequest, ImportTask

    make_role(sandbox, "revoked", policy=policies.role_policy([sandbox.bucket]))
    request = _request(requester, sandbox, role_name="revoked", status="approved")
    sandbox.client("iam").delete_role_policy(RoleName="revoked", PolicyName="p")  # taken away after review
    sends: list[int] = []
    events = clients._session(settings.AWS_SANDBOX, settings.AWS_REGION).events
    events.register("before-send.ec2.ImportImage", lambda **_: sends.append(1), unique_id="account-sends")
    clients.forget()  # clients made from now on carry the handler
    try:
        assert dispatch.dispatch(request.pk) is None
    finally:
        events.unregister("before-send.ec2.ImportImage", unique_id="account-sends")
        clients.forget()
    request.refresh_from_db()
    assert request.status == ImportRequest.Status.FAILED and sends == [] and not ImportTask.objects.exists()
    assert "RoleName: The service role revoked provided does not exist" in request.failure_message
    assert "aws iam put-role-policy --role-name revoked" in request.failure_message
    assert AuditEvent.objects.filter(request=request, action="failed account check").exists()


# --- the answers kept for the pages (wizard.aws.recent) ---------------------------------------


@pytest.fixture
def sent(settings) -> Iterator[Counter[str]]:
    """Calls the application sends to AWS, by operation name."""
    from wizard.aws import clients

    seen: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    events = clients._session(settings.AWS_SANDBOX, settings.AWS_REGION).events
    events.register("before-call", count, unique_id="account-kept")
    clients.forget()  # clients made from now on carry the handler
    yield seen
    events.unregister("before-call", unique_id="account-kept")
    clients.forget()


def test_the_pages_ask_the_account_once_within_the_seconds_kept(db, sandbox, requester, sent, settings) -> None:
    from wizard.preflight import preflight

    settings.AWS_ANSWER_SECONDS = 30
    make_role(sandbox, "kept", policy=policies.role_policy([sandbox.bucket]))
    request = _request(requester, sandbox, role_name="kept")
    first = preflight.all_findings(request, check_aws=True)
    asked = sent["GetRole"]
    assert asked == 1 and sent["GetBucketLocation"] == 1
    assert preflight.all_findings(request, check_aws=True) == first  # the review step, the submit...
    assert sent["GetRole"] == asked and sent["GetBucketLocation"] == 1
    # Another role, another bucket's key, another answer: each is its own question.
    request.role_name = "not-kept"
    [missing] = [f for f in preflight.all_findings(request, check_aws=True) if f.path == "RoleName"]
    assert "there is no IAM role not-kept" in missing.message and sent["GetRole"] == asked + 1


def test_the_answer_expires_and_zero_seconds_keeps_none(db, sandbox, requester, sent, settings) -> None:
    from wizard.preflight import preflight

    settings.AWS_ANSWER_SECONDS = 0
    request = _request(requester, sandbox)
    for _ in range(3):
        preflight.all_findings(request, check_aws=True)
    assert sent["GetRole"] == 3
    settings.AWS_ANSWER_SECONDS = 0.5
    preflight.all_findings(request, check_aws=True)
    preflight.all_findings(request, check_aws=True)
    assert sent["GetRole"] == 4
    time.sleep(0.6)
    preflight.all_findings(request, check_aws=True)
    assert sent["GetRole"] == 5


def test_an_unreachable_account_is_not_kept(db, sandbox, requester, sent, settings) -> None:
    from wizard.preflight import preflight

    settings.AWS_ANSWER_SECONDS = 30
    request = _request(requester, sandbox, role_name="later")
    reachable = settings.AWS_ENDPOINT_URL
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert not [f for f in preflight.all_findings(request, check_aws=True) if f.path == "RoleName"]
    settings.AWS_ENDPOINT_URL = reachable
    [missing] = [f for f in preflight.all_findings(request, check_aws=True) if f.path == "RoleName"]
    assert "there is no IAM role later" in missing.message


def test_dispatch_asks_afresh_what_the_review_page_was_told(db, sandbox, requester, sent, settings) -> None:
    from wizard.imports import dispatch
    from wizard.models import ImportRequest, ImportTask
    from wizard.preflight import preflight

    settings.AWS_ANSWER_SECONDS = 30
    make_role(sandbox, "revoked-later", policy=policies.role_policy([sandbox.bucket]))
    request = _request(requester, sandbox, role_name="revoked-later", status="approved")
    assert not [f for f in preflight.all_findings(request, check_aws=True) if f.path == "RoleName"]  # kept: fine
    sandbox.client("iam").delete_role_policy(RoleName="revoked-later", PolicyName="p")
    assert not [f for f in preflight.all_findings(request, check_aws=True) if f.path == "RoleName"]  # still kept
    assert dispatch.dispatch(request.pk) is None
    request.refresh_from_db()
    assert request.status == ImportRequest.Status.FAILED and not ImportTask.objects.exists()
    assert "does not have sufficient permissions" in request.failure_message and sent["ImportImage"] == 0


def test_the_encryption_steps_key_list_is_kept_and_a_key_check_too(db, sandbox, sent, settings) -> None:
    from wizard.aws import kms

    settings.AWS_ANSWER_SECONDS = 30
    key = sandbox.client("kms").create_key(Description="kept")["KeyMetadata"]["KeyId"]
    assert key in [k.key_id for k in kms.list_keys()]
    assert kms.key_problem(key) == ""
    calls = sum(sent.values())
    assert key in [k.key_id for k in kms.list_keys()] and kms.key_problem(key) == ""
    assert sum(sent.values()) == calls
    assert "there is no KMS key" in kms.key_problem("0f0f0f0f-0000-4000-8000-000000000000")  # another key: asked
    assert sum(sent.values()) == calls + 1
