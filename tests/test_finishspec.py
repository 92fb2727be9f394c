"""Finishing the AMI as data: one test per rule, the plan, then properties over any input.

Pure: no database, no Django; botocore only as the judge of what the API accepts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import botocore.session
import pytest
from botocore.validate import ParamValidator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wizard.requests import finishspec
from wizard.requests.finishspec import FinishSpec, RegionCopy, plan, validate
from wizard.requests.importspec import Tag

NOW = datetime(2026, 12, 2, tzinfo=UTC)
ORG = "arn:aws:organizations::123456789012:organization/o-abcdefghij"
OU = "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-cdefgh34"
EC2 = botocore.session.get_session().get_service_model("ec2")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def paths(spec: FinishSpec, **kwargs) -> list[str]:
    return [f.path for f in validate(spec, source_region="us-east-1", now=NOW, **kwargs)]


def test_nothing_chosen_is_nothing_to_do():
    assert validate(FinishSpec(), now=NOW) == []
    assert plan(FinishSpec(), has_uploads=True) == []


def test_everything_chosen_is_planned_in_order():
    spec = FinishSpec(
        name="web01",
        tags=[Tag("team", "web")],
        user_ids=["222233334444"],
        organization_arns=[ORG],
        region_copies=[RegionCopy("eu-west-1", "alias/west"), RegionCopy("eu-central-1")],
        imds_v2=True,
        deprecation_time=NOW + timedelta(days=30),
        delete_source=True,
    )
    assert validate(spec, source_region="us-east-1", now=NOW) == []
    assert [(s.action, s.region) for s in plan(spec, has_uploads=True)] == [
        ("CopyImage", ""),
        ("DeregisterImage", ""),
        ("CreateTags", ""),
        ("ImdsSupport", ""),
        ("LaunchPermission", ""),
        ("CreateVolumePermission", ""),
        ("EnableImageDeprecation", ""),
        ("CopyImageToRegion", "eu-west-1"),
        ("CopyImageToRegion", "eu-central-1"),
        ("DeleteObject", ""),
    ]
    assert plan(spec, has_uploads=False)[-1].action == "CopyImageToRegion"  # nothing uploaded here: nothing deleted


def test_without_a_name_the_import_is_not_copied_nor_deregistered():
    steps = plan(FinishSpec(tags=[Tag("a", "b")], deregister_import=True), has_uploads=False)
    assert [s.action for s in steps] == ["CreateTags"]


def test_org_shares_do_not_share_snapshots_with_accounts():
    assert [s.action for s in plan(FinishSpec(organizational_unit_arns=[OU]), has_uploads=False)] == [
        "LaunchPermission"
    ]
    no_volume = FinishSpec(user_ids=["222233334444"], share_snapshots=False)
    assert [s.action for s in plan(no_volume, has_uploads=False)] == ["LaunchPermission"]


@pytest.mark.parametrize(
    "name,ok",
    [
        ("web01", True),
        ("web-01 (2026) [prod] v1.2/a_b@c'd", True),
        ("ab", False),
        ("x" * 128, True),
        ("x" * 129, False),
        ("web#01", False),
        ("wéb01", False),
        ("web\n01", False),
    ],
)
def test_the_name(name, ok):
    assert (paths(FinishSpec(name=name)) == []) is ok


def test_a_description_needs_a_name_and_fits():
    assert paths(FinishSpec(description="x")) == ["Description"]
    assert paths(FinishSpec(name="web01", description="x" * 255)) == []
    assert paths(FinishSpec(name="web01", description="x" * 256)) == ["Description"]
    assert paths(FinishSpec(name="web01", description="a\x00b")) == ["Description"]


def test_tags():
    assert paths(FinishSpec(tags=[Tag("aws:x", "1")])) == ["Tags[0].Key"]
    assert paths(FinishSpec(tags=[Tag("a", "1"), Tag("a", "2")])) == ["Tags[1].Key"]
    assert paths(FinishSpec(tags=[Tag("", "1")])) == ["Tags[0].Key"]
    assert paths(FinishSpec(tags=[Tag("a", "v" * 256)])) == ["Tags[0].Value"]
    assert paths(FinishSpec(tags=[Tag(f"k{i}", "") for i in range(51)])) == ["Tags"]


def test_shares():
    assert paths(FinishSpec(user_ids=["12345"])) == ["LaunchPermission.UserIds[0]"]
    assert paths(FinishSpec(user_ids=["222233334444", "222233334444"])) == ["LaunchPermission.UserIds[1]"]
    assert paths(FinishSpec(user_ids=["111122223333"]), own_account="111122223333") == ["LaunchPermission.UserIds[0]"]
    assert paths(FinishSpec(organization_arns=[ORG], organizational_unit_arns=[OU])) == []
    assert paths(FinishSpec(organization_arns=[OU])) == ["LaunchPermission.OrganizationArns[0]"]
    assert paths(FinishSpec(organizational_unit_arns=[ORG])) == ["LaunchPermission.OrganizationalUnitArns[0]"]
    too_many = [f"{n:012d}" for n in range(101)]
    assert paths(FinishSpec(user_ids=too_many)) == ["LaunchPermission.UserIds"]


def test_region_copies():
    assert paths(FinishSpec(region_copies=[RegionCopy("us-east-1")])) == ["RegionCopies[0].Region"]
    assert paths(FinishSpec(region_copies=[RegionCopy("Europe")])) == ["RegionCopies[0].Region"]
    twice = [RegionCopy("eu-west-1"), RegionCopy("eu-west-1")]
    assert paths(FinishSpec(region_copies=twice)) == ["RegionCopies[1].Region"]
    key_elsewhere = RegionCopy("eu-west-1", "arn:aws:kms:us-east-1:123456789012:alias/images")
    (finding,) = validate(FinishSpec(region_copies=[key_elsewhere]), source_region="us-east-1", now=NOW)
    assert finding.path == "RegionCopies[0].KmsKeyId" and "a key of us-east-1" in finding.message
    key_there = RegionCopy("eu-west-1", "arn:aws:kms:eu-west-1:123456789012:key/mrk-" + "a" * 32)
    assert paths(FinishSpec(region_copies=[key_there])) == []
    assert paths(FinishSpec(region_copies=[RegionCopy("eu-west-1", "not a key")])) == ["RegionCopies[0].KmsKeyId"]


def test_deprecation_time():
    assert paths(FinishSpec(deprecation_time=NOW - timedelta(minutes=1))) == ["DeprecateAt"]
    assert paths(FinishSpec(deprecation_time=NOW + timedelta(days=3653))) == ["DeprecateAt"]
    assert paths(FinishSpec(deprecation_time=(NOW + timedelta(days=1)).replace(tzinfo=None))) == []


def test_copy_tokens_differ_per_step_and_fit():
    token = "f" * 40
    tokens = {finishspec.copy_token(token, "CopyImage")} | {
        finishspec.copy_token(token, "CopyImageToRegion", r) for r in ("eu-west-1", "ap-southeast-2")
    }
    assert len(tokens) == 3 and all(len(t) <= 64 and t.isascii() for t in tokens)


# --- properties ----------------------------------------------------------------------------------

TEXT = st.text(max_size=300)
SPECS = st.builds(
    FinishSpec,
    name=TEXT,
    description=TEXT,
    tags=st.lists(st.builds(Tag, key=TEXT, value=TEXT), max_size=55),
    user_ids=st.lists(st.one_of(st.from_regex(r"\d{12}", fullmatch=True), TEXT), max_size=5),
    organization_arns=st.lists(st.one_of(st.just(ORG), TEXT), max_size=3),
    organizational_unit_arns=st.lists(st.one_of(st.just(OU), TEXT), max_size=3),
    region_copies=st.lists(
        st.builds(RegionCopy, region=st.one_of(st.sampled_from(["eu-west-1", "us-east-1"]), TEXT), kms_key_id=TEXT),
        max_size=12,
    ),
    imds_v2=st.booleans(),
    deprecation_time=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
    delete_source=st.booleans(),
)


@given(SPECS)
@SETTINGS
def test_any_input_gets_findings_never_an_exception(spec):
    for finding in validate(spec, source_region="us-east-1", now=NOW):
        assert finding.path and finding.message
    assert len(plan(spec, has_uploads=True)) <= 9 + len(spec.region_copies)


@given(SPECS)
@SETTINGS
def test_what_passes_the_rules_is_accepted_by_the_api_model(spec):
    """No finding: every call of the plan validates against botocore's model of EC2."""
    if validate(spec, source_region="us-east-1", now=NOW):
        return
    validator = ParamValidator()
    calls = []
    if spec.name:
        params = {"SourceImageId": "ami-0123456789abcdef0", "SourceRegion": "us-east-1", "Name": spec.name}
        calls.append(("CopyImage", {**params, "Description": spec.description} if spec.description else params))
    if spec.tags:
        tags = [{"Key": t.key, "Value": t.value} for t in spec.tags]
        calls.append(("CreateTags", {"Resources": ["ami-0123456789abcdef0"], "Tags": tags}))
    for copy in spec.region_copies:
        params = {"SourceImageId": "ami-1", "SourceRegion": "us-east-1", "Name": spec.name or "import-ami-1"}
        calls.append(
            ("CopyImage", {**params, "Encrypted": True, "KmsKeyId": copy.kms_key_id} if copy.kms_key_id else params)
        )
    for operation, params in calls:
        report = validator.validate(params, EC2.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()
    # AWS's own limits, beyond the model's types.
    assert not spec.name or 3 <= len(spec.name) <= 128
    assert all(len(t.key) <= 128 and len(t.value) <= 256 for t in spec.tags)


@given(st.lists(st.from_regex(r"[A-Za-z0-9:/._-]{1,40}", fullmatch=True), max_size=20))
@SETTINGS
def test_lists_round_trip_through_their_text_box(values):
    assert finishspec.parse_list(finishspec.format_list(values)) == values


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "Region": st.from_regex(r"[a-z]{2}-[a-z]{4,9}-\d", fullmatch=True),
                "KmsKeyId": st.one_of(st.just(""), st.from_regex(r"alias/[A-Za-z0-9/_-]{1,30}", fullmatch=True)),
            }
        ),
        max_size=10,
    )
)
@SETTINGS
def test_region_copies_round_trip_through_their_text_box(copies):
    assert finishspec.parse_region_copies(finishspec.format_region_copies(copies)) == copies


@given(st.text(max_size=500))
@SETTINGS
def test_any_text_box_parses(text):
    for item in finishspec.parse_list(text):
        assert item and not any(c in item for c in " \n\t,")
    for copy in finishspec.parse_region_copies(text):
        assert copy["Region"] and not copy["Region"].isspace()
