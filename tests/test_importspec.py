"""The ImportImage request as data: one test per rule, then properties over valid requests.

Pure: no database, no Django; botocore only as the judge of what the API accepts.
"""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wizard.requests.importspec import (
    KMS_KEY_ID_FORMS,
    ClientData,
    DiskContainer,
    Finding,
    ImportSpec,
    Tag,
    UserBucket,
    bucket_name_problem,
    cancel_reason_problem,
    from_api_params,
    new_client_token,
    text_problem,
    to_api_params,
    validate,
)

INPUT_SHAPE = botocore.session.get_session().get_service_model("ec2").operation_model("ImportImage").input_shape
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Text AWS can carry: no control characters, lone surrogates or U+FFFE/U+FFFF (the text rule).
TEXT_CHARS = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\ufffe\uffff")

UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"
LICENSE_ARN = (
    "arn:aws:license-manager:us-east-1:123456789012:license-configuration:lic-0123456789abcdef0123456789abcdef"
)


def s3_disk(bucket: str = "my-images", key: str = "vms/web.vmdk", fmt: str = "VMDK") -> DiskContainer:
    return DiskContainer(format=fmt, user_bucket=UserBucket(bucket, key))


def spec(**changes: Any) -> ImportSpec:
    """A small valid request, changed as a test needs."""
    return replace(ImportSpec(disk_containers=[s3_disk()]), **changes)


def messages_at(request: ImportSpec, path: str) -> list[str]:
    return [f.message for f in validate(request) if f.path == path]


def only_finding(request: ImportSpec) -> Finding:
    findings = validate(request)
    assert len(findings) == 1, findings
    return findings[0]


def botocore_errors(params: dict[str, Any]) -> str:
    report = ParamValidator().validate(params, INPUT_SHAPE)
    return report.generate_report() if report.has_errors() else ""


def test_a_small_request_is_valid() -> None:
    assert validate(spec()) == []


# --- enumerations -------------------------------------------------------------------------


def test_it_rejects_arm64() -> None:
    finding = only_finding(spec(architecture="arm64"))
    assert finding.path == "Architecture"
    assert "i386 or x86_64" in finding.message and "ARM64" in finding.message


def test_it_rejects_an_unknown_architecture() -> None:
    finding = only_finding(spec(architecture="X86_64"))
    assert finding.path == "Architecture"
    assert "i386 or x86_64" in finding.message and "'X86_64'" in finding.message


def test_it_rejects_uefi_preferred_boot_mode() -> None:
    finding = only_finding(spec(boot_mode="uefi-preferred"))
    assert finding.path == "BootMode"
    assert "legacy-bios or uefi" in finding.message and "uefi-preferred is not supported" in finding.message


@pytest.mark.parametrize("boot_mode", ["legacy-bios", "uefi"])
def test_it_accepts_both_boot_modes(boot_mode: str) -> None:
    assert validate(spec(boot_mode=boot_mode)) == []


@pytest.mark.parametrize("fmt", ["OVA", "VHD", "VHDX", "VMDK", "RAW", "vmdk", "Vhdx", "raw"])
def test_it_accepts_each_format_in_any_case(fmt: str) -> None:
    assert validate(spec(disk_containers=[s3_disk(fmt=fmt)])) == []


def test_format_is_stored_and_sent_upper_case() -> None:
    params = to_api_params(spec(disk_containers=[s3_disk(fmt="vhdx")]))
    assert params["DiskContainers"][0]["Format"] == "VHDX"
    assert from_api_params({"DiskContainers": [{"Format": "vmdk"}]}).disk_containers[0].format == "VMDK"


def test_it_rejects_qcow2_and_says_what_to_do() -> None:
    finding = only_finding(spec(disk_containers=[s3_disk(fmt="qcow2")]))
    assert finding.path == "DiskContainers[0].Format"
    assert "OVA, VHD, VHDX, VMDK or RAW" in finding.message and "qemu-img" in finding.message


def test_hypervisor_may_only_be_xen() -> None:
    assert validate(spec(hypervisor="xen")) == []
    finding = only_finding(spec(hypervisor="kvm"))
    assert finding.path == "Hypervisor" and "must be xen" in finding.message


def test_license_type_is_aws_or_byol() -> None:
    finding = only_finding(spec(license_type="byol"))
    assert finding.path == "LicenseType" and "AWS or BYOL" in finding.message


def test_platform_is_windows_or_linux() -> None:
    finding = only_finding(spec(platform="linux"))
    assert finding.path == "Platform" and "Windows or Linux" in finding.message


# --- disk containers ----------------------------------------------------------------------


def test_it_needs_a_disk_container() -> None:
    finding = only_finding(spec(disk_containers=[]))
    assert finding.path == "DiskContainers" and "at least one" in finding.message


def test_a_container_needs_a_source() -> None:
    finding = only_finding(spec(disk_containers=[DiskContainer(format="VMDK")]))
    assert finding.path == "DiskContainers[0]"
    assert "exactly one source: UserBucket, Url or SnapshotId" in finding.message


def test_a_container_takes_only_one_source() -> None:
    disk = replace(s3_disk(), url="s3://other-bucket/disk.vmdk")
    finding = only_finding(spec(disk_containers=[s3_disk(), disk]))
    assert finding.path == "DiskContainers[1]"
    assert "exactly one source" in finding.message and "UserBucket and Url" in finding.message


def test_it_allows_at_most_21_containers() -> None:
    assert validate(spec(disk_containers=[s3_disk()] * 21)) == []
    finding = only_finding(spec(disk_containers=[s3_disk()] * 22))
    assert finding.path == "DiskContainers" and "at most 21" in finding.message


def test_ova_must_be_the_only_container() -> None:
    assert validate(spec(disk_containers=[s3_disk(fmt="OVA")])) == []
    finding = only_finding(spec(disk_containers=[s3_disk(), s3_disk(key="vm.ova", fmt="ova")]))
    assert finding.path == "DiskContainers[1].Format" and "only disk container" in finding.message


@pytest.mark.parametrize(
    "name",
    ["abc", "a" * 63, "my.bucket-01", "1bucket2", "images.example.com", "xn-single-hyphen"],
)
def test_it_accepts_good_bucket_names(name: str) -> None:
    assert validate(spec(disk_containers=[s3_disk(bucket=name)])) == []


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("ab", "3 to 63"),
        ("a" * 64, "3 to 63"),
        ("My-Bucket", "lowercase letters, digits, dots and hyphens"),
        ("my_bucket", "lowercase letters, digits, dots and hyphens"),
        ("-bucket", "start and end with a letter or digit"),
        ("bucket.", "start and end with a letter or digit"),
        ("my..bucket", "two dots"),
        ("192.168.5.4", "IP address"),
        ("xn--bucket", "xn--"),
        ("sthree-bucket", "sthree-"),
        ("amzn-s3-demo-bucket", "amzn-s3-demo-"),
        ("bucket-s3alias", "-s3alias"),
        ("bucket--ol-s3", "--ol-s3"),
        ("bucket.mrap", ".mrap"),
        ("bucket--x-s3", "--x-s3"),
        ("bucket--table-s3", "--table-s3"),
    ],
)
def test_it_rejects_bad_bucket_names(name: str, says: str) -> None:
    finding = only_finding(spec(disk_containers=[s3_disk(), s3_disk(bucket=name)]))
    assert finding.path == "DiskContainers[1].UserBucket.S3Bucket"
    assert finding.message.startswith("S3Bucket ") and says in finding.message


def test_the_bucket_is_required() -> None:
    finding = only_finding(spec(disk_containers=[s3_disk(bucket="")]))
    assert finding.path == "DiskContainers[0].UserBucket.S3Bucket" and "required" in finding.message


def test_an_s3_key_is_1_to_1024_utf8_bytes() -> None:
    assert validate(spec(disk_containers=[s3_disk(key="é" * 512)])) == []  # 1024 bytes
    finding = only_finding(spec(disk_containers=[s3_disk(), s3_disk(key="é" * 512 + "x")]))
    assert finding.path == "DiskContainers[1].UserBucket.S3Key"
    assert "1 to 1024 bytes" in finding.message and "1025" in finding.message
    finding = only_finding(spec(disk_containers=[s3_disk(key="")]))
    assert finding.path == "DiskContainers[0].UserBucket.S3Key" and "required" in finding.message


@pytest.mark.parametrize(
    "url",
    [
        "s3://my-images/vms/web.vmdk",
        "https://my-images.s3.eu-west-1.amazonaws.com/web.vmdk?X-Amz-Signature=abc",
        "https://example.com/disk.raw",
    ],
)
def test_it_accepts_https_and_s3_urls(url: str) -> None:
    assert validate(spec(disk_containers=[DiskContainer(format="RAW", url=url)])) == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://example.com/disk.raw", "https:// "),
        ("ftp://example.com/disk.raw", "https:// "),
        ("my-images/web.vmdk", "https:// "),
        ("s3://My_Bucket/web.vmdk", "bucket"),
        ("s3://my-images", "key"),
        ("s3://my-images/", "key"),
        ("https:///disk.raw", "host name"),
        ("https://example.com/my disk.raw", "no spaces"),
    ],
)
def test_url_must_be_https_or_s3_bucket_and_key(url: str, says: str) -> None:
    finding = only_finding(spec(disk_containers=[DiskContainer(format="RAW", url=url)]))
    assert finding.path == "DiskContainers[0].Url"
    assert finding.message.startswith("Url must") and says in finding.message


@pytest.mark.parametrize("snapshot", ["snap-0123abcd", "snap-0123456789abcdef0"])
def test_it_accepts_snapshot_ids(snapshot: str) -> None:
    assert validate(spec(disk_containers=[DiskContainer(snapshot_id=snapshot)])) == []


@pytest.mark.parametrize("snapshot", ["snap-0123abc", "snap-0123456789", "snap-0123ABCD", "vol-0123abcd", "0123abcd"])
def test_it_rejects_malformed_snapshot_ids(snapshot: str) -> None:
    finding = only_finding(spec(disk_containers=[DiskContainer(snapshot_id=snapshot)]))
    assert finding.path == "DiskContainers[0].SnapshotId" and "snap- followed by 8 or 17" in finding.message


def test_uefi_from_a_snapshot_needs_platform() -> None:
    snapshot = [DiskContainer(snapshot_id="snap-0123abcd")]
    finding = only_finding(spec(disk_containers=snapshot, boot_mode="uefi"))
    assert finding.path == "Platform" and "Windows or Linux" in finding.message and "SnapshotId" in finding.message
    assert validate(spec(disk_containers=snapshot, boot_mode="uefi", platform="Windows")) == []
    assert validate(spec(boot_mode="uefi")) == []  # from S3, VM Import finds the OS itself


def test_container_description_is_at_most_255_characters() -> None:
    assert validate(spec(disk_containers=[replace(s3_disk(), description="d" * 255)])) == []
    finding = only_finding(spec(disk_containers=[replace(s3_disk(), description="d" * 256)]))
    assert finding.path == "DiskContainers[0].Description" and "at most 255" in finding.message


# --- encryption ---------------------------------------------------------------------------

KMS_KEYS = [
    UUID,
    "mrk-1234abcd12ab34cd56ef1234567890ab",
    f"arn:aws:kms:us-east-1:123456789012:key/{UUID}",
    f"arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/{UUID}",
    "arn:aws-cn:kms:cn-north-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
    "alias/vm-imports",
    "alias/aws/ebs",
    "arn:aws:kms:eu-central-1:123456789012:alias/vm-imports",
]


@pytest.mark.parametrize("key", KMS_KEYS)
def test_kms_key_accepts_its_four_forms(key: str) -> None:
    assert validate(spec(encrypted=True, kms_key_id=key)) == []


def test_every_kms_key_form_is_tested() -> None:
    forms = {name for key in KMS_KEYS for name, pattern in KMS_KEY_ID_FORMS.items() if pattern.fullmatch(key)}
    assert forms == set(KMS_KEY_ID_FORMS)


@pytest.mark.parametrize(
    "key",
    [
        "1234abcd-12ab-34cd-56ef",
        "mrk-1234",
        "arn:aws:kms:us-east-1:123456789012:key/not-a-key",
        "arn:aws:kms:us-east-1:1234:key/" + UUID,
        "arn:aws:s3:us-east-1:123456789012:key/" + UUID,
        "alias/",
        "alias/has space",
        "vm-imports",
    ],
)
def test_it_rejects_malformed_kms_keys(key: str) -> None:
    finding = only_finding(spec(encrypted=True, kms_key_id=key))
    assert finding.path == "KmsKeyId"
    assert all(form in finding.message for form in ("key id", "key ARN", "alias name", "alias ARN"))


@pytest.mark.parametrize("encrypted", [None, False])
def test_kms_key_needs_encrypted(encrypted: bool | None) -> None:
    finding = only_finding(spec(encrypted=encrypted, kms_key_id="alias/vm-imports"))
    assert finding.path == "KmsKeyId" and "Encrypted set to true" in finding.message


def test_encrypted_alone_uses_the_default_key() -> None:
    assert validate(spec(encrypted=True)) == []


# --- licensing and platform ---------------------------------------------------------------


def test_license_type_and_usage_operation_exclude_each_other() -> None:
    finding = only_finding(spec(license_type="AWS", usage_operation="RunInstances:0002"))
    assert finding.path == "UsageOperation" and "LicenseType and UsageOperation" in finding.message


@pytest.mark.parametrize("operation", ["RunInstances", "RunInstances:0002", "RunInstances:0800"])
def test_it_accepts_usage_operations(operation: str) -> None:
    assert validate(spec(usage_operation=operation)) == []


@pytest.mark.parametrize("operation", ["RunInstances:2", "runinstances:0002", "RunInstances:00020", "0002"])
def test_it_rejects_malformed_usage_operations(operation: str) -> None:
    finding = only_finding(spec(usage_operation=operation))
    assert finding.path == "UsageOperation" and "RunInstances or RunInstances:NNNN" in finding.message


def test_linux_supports_byol_only() -> None:
    assert validate(spec(platform="Linux", license_type="BYOL")) == []
    assert validate(spec(platform="Linux")) == []
    assert validate(spec(platform="Windows", license_type="AWS")) == []
    finding = only_finding(spec(platform="Linux", license_type="AWS"))
    assert finding.path == "LicenseType" and "BYOL (or unset)" in finding.message


def test_it_rejects_32_bit_linux() -> None:
    assert validate(spec(platform="Windows", architecture="i386")) == []
    finding = only_finding(spec(platform="Linux", architecture="i386"))
    assert finding.path == "Architecture" and "x86_64" in finding.message and "32-bit" in finding.message


def test_license_configuration_arns_have_their_form() -> None:
    assert validate(spec(license_configuration_arns=[LICENSE_ARN])) == []
    bad = "arn:aws:license-manager:us-east-1:123456789012:license-configuration:0123"
    finding = only_finding(spec(license_configuration_arns=[LICENSE_ARN, bad]))
    assert finding.path == "LicenseSpecifications[1].LicenseConfigurationArn"
    assert "license-configuration:lic-" in finding.message


# --- tags -----------------------------------------------------------------------------------


def test_it_allows_at_most_50_tags() -> None:
    tags = [Tag(f"k{i}", "v") for i in range(51)]
    assert validate(spec(tags=tags[:50])) == []
    finding = only_finding(spec(tags=tags))
    assert finding.path == "TagSpecifications[0].Tags" and "at most 50" in finding.message


@pytest.mark.parametrize("key", ["", "k" * 128])
def test_a_tag_key_is_1_to_127_characters(key: str) -> None:
    assert validate(spec(tags=[Tag("k" * 127)])) == []
    finding = only_finding(spec(tags=[Tag("ok", "v"), Tag(key, "v")]))
    assert finding.path == "TagSpecifications[0].Tags[1].Key" and "1 to 127" in finding.message


@pytest.mark.parametrize("key", ["aws:cloudformation:stack", "AWS:Owner"])
def test_a_tag_key_must_not_start_with_aws(key: str) -> None:
    finding = only_finding(spec(tags=[Tag(key, "v")]))
    assert finding.path == "TagSpecifications[0].Tags[0].Key" and "aws:" in finding.message


def test_a_tag_value_is_at_most_255_characters() -> None:
    assert validate(spec(tags=[Tag("k", "v" * 255), Tag("empty")])) == []
    finding = only_finding(spec(tags=[Tag("k", "v" * 256)]))
    assert finding.path == "TagSpecifications[0].Tags[0].Value" and "at most 255" in finding.message


def test_tag_keys_are_unique() -> None:
    finding = only_finding(spec(tags=[Tag("Name", "a"), Tag("Env"), Tag("Name", "b")]))
    assert finding.path == "TagSpecifications[0].Tags[2].Key" and "unique" in finding.message


# --- scalars ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["vmimport", "a", "r" * 64, "Import+Role=1,2.x@y_z-w"])
def test_it_accepts_iam_role_names(role: str) -> None:
    assert validate(spec(role_name=role)) == []


@pytest.mark.parametrize("role", ["r" * 65, "my role", "path/role", "rôle", "arn:aws:iam::123456789012:role/vmimport"])
def test_it_rejects_bad_role_names(role: str) -> None:
    finding = only_finding(spec(role_name=role))
    assert finding.path == "RoleName" and "1 to 64 letters, digits or + = , . @ _ -" in finding.message


def test_client_token_is_at_most_64_ascii_characters() -> None:
    assert validate(spec(client_token="t" * 64)) == []
    for token in ("t" * 65, "tökén"):
        finding = only_finding(spec(client_token=token))
        assert finding.path == "ClientToken" and "at most 64 ASCII" in finding.message


def test_new_client_tokens_are_valid_and_unique() -> None:
    tokens = {new_client_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert token.isascii() and 0 < len(token) <= 64 and not token.startswith("-")
        assert validate(spec(client_token=token)) == []


def test_description_is_at_most_255_characters() -> None:
    assert validate(spec(description="d" * 255)) == []
    finding = only_finding(spec(description="d" * 256))
    assert finding.path == "Description" and "at most 255" in finding.message


# --- client data --------------------------------------------------------------------------

NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_upload_size_is_not_negative() -> None:
    assert validate(spec(client_data=ClientData(upload_size=0.0))) == []
    for size in (-1.0, float("nan"), float("inf")):
        finding = only_finding(spec(client_data=ClientData(upload_size=size)))
        assert finding.path == "ClientData.UploadSize" and "0 or more" in finding.message


def test_upload_start_is_not_after_upload_end() -> None:
    assert validate(spec(client_data=ClientData(upload_start=NOON, upload_end=NOON))) == []
    finding = only_finding(spec(client_data=ClientData(upload_start=NOON, upload_end=NOON - timedelta(seconds=1))))
    assert finding.path == "ClientData.UploadEnd" and "at or after UploadStart" in finding.message


def test_naive_upload_times_count_as_utc() -> None:
    naive_end = datetime(2024, 5, 1, 11, 0)  # before NOON in UTC
    finding = only_finding(spec(client_data=ClientData(upload_start=NOON, upload_end=naive_end)))
    assert finding.path == "ClientData.UploadEnd"


def test_comment_is_at_most_255_characters() -> None:
    finding = only_finding(spec(client_data=ClientData(comment="c" * 256)))
    assert finding.path == "ClientData.Comment" and "at most 255" in finding.message


# --- free text ----------------------------------------------------------------------------

# Every free text of the request, as (API path, a spec holding `text` there).
TEXT_PLACES = {
    "Description": lambda text: spec(description=text),
    "DiskContainers[0].Description": lambda text: spec(disk_containers=[replace(s3_disk(), description=text)]),
    "DiskContainers[0].DeviceName": lambda text: spec(disk_containers=[replace(s3_disk(), device_name=text)]),
    "DiskContainers[0].UserBucket.S3Key": lambda text: spec(disk_containers=[s3_disk(key=f"vms/{text}.vmdk")]),
    "ClientData.Comment": lambda text: spec(client_data=ClientData(comment=text)),
    "TagSpecifications[0].Tags[0].Key": lambda text: spec(tags=[Tag(f"k{text}", "v")]),
    "TagSpecifications[0].Tags[0].Value": lambda text: spec(tags=[Tag("k", text)]),
    "ClientToken": lambda text: spec(client_token=f"t{text}"),
}


@pytest.mark.parametrize("path", TEXT_PLACES)
def test_a_nul_in_any_free_text_is_refused_where_it_is(path: str) -> None:
    finding = only_finding(TEXT_PLACES[path]("web\x00 01"))
    assert finding.path == path
    assert "must not contain control characters such as NUL (U+0000" in finding.message


@pytest.mark.parametrize(
    "text, said",
    [
        ("a\x07b", "control characters such as U+0007 (character 2)"),
        ("line\nbreak", "such as a line break (U+000A"),
        ("tab\there", "such as a tab (U+0009"),
        ("del\x7f", "such as DEL (U+007F"),
        ("c1\x85", "such as U+0085"),
        ("half \ud800 pair", "lone surrogate (U+D800, character 6)"),
        ("not\uffff", "noncharacter U+FFFF"),
        ("not\ufffe", "noncharacter U+FFFE"),
    ],
)
def test_text_the_xml_of_aws_answers_cannot_carry_is_refused(text: str, said: str) -> None:
    assert said in text_problem(text)
    assert said in only_finding(spec(description=text)).message


def test_any_script_and_emoji_are_fine() -> None:
    text = "Überprüfung 検証 проверка \U0001f680 <&> \" ' \u00a0\u2028"
    assert text_problem(text) == ""
    assert validate(spec(description=text, tags=[Tag("Name", text)], client_data=ClientData(comment=text))) == []


def test_a_cancel_reason_is_checked_like_any_free_text() -> None:
    assert cancel_reason_problem("wrong image, sorry") == ""
    assert cancel_reason_problem("r" * 255) == ""
    assert cancel_reason_problem("r" * 256) == "CancelReason must be at most 255 characters (it has 256)"
    assert cancel_reason_problem("oops\x00").startswith("CancelReason must not contain control characters such as NUL")


@SETTINGS
@given(st.text())
def test_text_the_rule_accepts_travels_through_xml_intact(text: str) -> None:
    """What passes is UTF-8 and XML 1.0 text: serialised in an answer and read back, it is the same."""
    import xml.etree.ElementTree as ET
    from xml.sax.saxutils import escape

    if text_problem(text):
        return
    body = f'<?xml version="1.0" encoding="UTF-8"?><a>{escape(text)}</a>'.encode()
    assert (ET.fromstring(body).text or "") == text


@SETTINGS
@given(st.text(TEXT_CHARS), st.sampled_from("\x00\x01\x08\x0b\x0c\x1f\ud800\udfff\ufffe\uffff"), st.text(TEXT_CHARS))
def test_a_character_outside_xml_1_0_is_always_refused(before: str, bad: str, after: str) -> None:
    problem = text_problem(before + bad + after)
    assert problem and f"character {len(before) + 1})" in problem


# --- to_api_params ------------------------------------------------------------------------


def test_unset_members_are_left_out() -> None:
    assert to_api_params(spec()) == {
        "DiskContainers": [{"Format": "VMDK", "UserBucket": {"S3Bucket": "my-images", "S3Key": "vms/web.vmdk"}}]
    }


def test_dry_run_is_sent_only_when_true() -> None:
    assert "DryRun" not in to_api_params(spec(dry_run=False))
    assert to_api_params(spec(dry_run=True))["DryRun"] is True


def test_encrypted_false_is_sent() -> None:
    assert "Encrypted" not in to_api_params(spec())
    assert to_api_params(spec(encrypted=False))["Encrypted"] is False


def test_client_data_is_sent_only_with_something_set() -> None:
    assert "ClientData" not in to_api_params(spec(client_data=ClientData()))
    assert to_api_params(spec(client_data=ClientData(comment="from the wizard")))["ClientData"] == {
        "Comment": "from the wizard"
    }


def test_tags_go_to_the_import_task() -> None:
    params = to_api_params(spec(tags=[Tag("Name", "web"), Tag("Empty")]))
    assert params["TagSpecifications"] == [
        {"ResourceType": "import-image-task", "Tags": [{"Key": "Name", "Value": "web"}, {"Key": "Empty"}]}
    ]


def full_spec() -> ImportSpec:
    return ImportSpec(
        disk_containers=[
            replace(s3_disk(), description="boot", device_name="/dev/sda1"),
            DiskContainer(format="RAW", url="s3://my-images/data.raw"),
            DiskContainer(snapshot_id="snap-0123456789abcdef0"),
        ],
        architecture="x86_64",
        boot_mode="uefi",
        client_data=ClientData("uploaded by the wizard", NOON, NOON + timedelta(hours=1), 12.5),
        client_token=new_client_token(),
        description="web server",
        dry_run=True,
        encrypted=True,
        hypervisor="xen",
        kms_key_id=KMS_KEYS[2],
        license_type="BYOL",
        platform="Linux",
        role_name="vmimport",
        license_configuration_arns=[LICENSE_ARN],
        tags=[Tag("Name", "web"), Tag("Team", "")],
    )


def test_a_full_request_is_valid_for_us_and_botocore() -> None:
    request = full_spec()
    assert validate(request) == []
    assert botocore_errors(to_api_params(request)) == ""


def test_keys_follow_the_api_order() -> None:
    params = to_api_params(replace(full_spec(), usage_operation="RunInstances:0000"))  # every member set
    assert list(params) == list(INPUT_SHAPE.members)


# --- properties -----------------------------------------------------------------------------

HEX = "0123456789abcdef"
REGIONS = st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2", "us-gov-west-1", "cn-north-1"])
PARTITIONS = st.sampled_from(["aws", "aws-cn", "aws-us-gov"])
ACCOUNTS = st.text(string.digits, min_size=12, max_size=12)


def hex_text(size: int) -> st.SearchStrategy[str]:
    return st.text(HEX, min_size=size, max_size=size)


key_ids = st.one_of(st.uuids().map(str), hex_text(32).map("mrk-{}".format))
alias_names = st.from_regex(r"alias/[A-Za-z0-9/_-]{1,40}", fullmatch=True)
kms_keys = st.one_of(
    key_ids,
    st.builds("arn:{}:kms:{}:{}:key/{}".format, PARTITIONS, REGIONS, ACCOUNTS, key_ids),
    alias_names,
    st.builds("arn:{}:kms:{}:{}:{}".format, PARTITIONS, REGIONS, ACCOUNTS, alias_names),
)
license_arns = st.builds(
    "arn:{}:license-manager:{}:{}:license-configuration:lic-{}".format, PARTITIONS, REGIONS, ACCOUNTS, hex_text(32)
)
bucket_names = (
    st.lists(st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3)
    .map(".".join)
    .filter(lambda name: not bucket_name_problem(name))
)
s3_keys = st.text(TEXT_CHARS, min_size=1, max_size=200)
snapshot_ids = st.one_of(hex_text(8), hex_text(17)).map("snap-{}".format)
urls = st.one_of(
    st.builds("s3://{}/{}".format, bucket_names, s3_keys),
    st.builds(
        "https://{}.s3.amazonaws.com/{}?X-Amz-Signature={}".format,
        bucket_names,
        st.from_regex(r"[A-Za-z0-9/._-]{1,60}", fullmatch=True),
        hex_text(64),
    ),
)
texts = st.text(TEXT_CHARS, max_size=255)
upload_times = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))


@st.composite
def disk_containers(draw: st.DrawFn, formats: list[str]) -> DiskContainer:
    source = draw(st.sampled_from(["bucket", "url", "snapshot"]))
    disk = DiskContainer(
        format=draw(st.sampled_from(formats)) if source != "snapshot" else draw(st.sampled_from(["", "VMDK", "RAW"])),
        description=draw(texts),
        device_name=draw(st.sampled_from(["", "/dev/sda1", "/dev/xvdb", "xvdc"])),
    )
    if source == "bucket":
        return replace(disk, user_bucket=UserBucket(draw(bucket_names), draw(s3_keys)))
    if source == "url":
        return replace(disk, url=draw(urls))
    return replace(disk, snapshot_id=draw(snapshot_ids))


@st.composite
def client_data(draw: st.DrawFn) -> ClientData:
    times = sorted(draw(st.lists(upload_times, min_size=2, max_size=2)))
    data = ClientData(
        comment=draw(texts),
        upload_start=draw(st.sampled_from([None, times[0]])),
        upload_end=draw(st.sampled_from([None, times[1]])),
        upload_size=draw(st.none() | st.floats(min_value=0, max_value=2**40, exclude_min=True)),
    )
    return data if data != ClientData() else replace(data, comment="set")


@st.composite
def valid_specs(draw: st.DrawFn) -> ImportSpec:
    """Requests that satisfy every rule, with every parameter in play."""
    if draw(st.booleans()):
        disks = [draw(disk_containers(["OVA", "VHD", "VHDX", "VMDK", "RAW"]))]
    else:
        disks = draw(st.lists(disk_containers(["VHD", "VHDX", "VMDK", "RAW"]), min_size=1, max_size=5))
    platform = draw(st.sampled_from(["", "Windows", "Linux"]))
    boot_mode = draw(st.sampled_from(["", "legacy-bios", "uefi"]))
    if boot_mode == "uefi" and any(d.snapshot_id for d in disks) and not platform:
        platform = "Windows"
    architecture = draw(st.sampled_from(["", "x86_64"] if platform == "Linux" else ["", "i386", "x86_64"]))
    licensing = draw(st.sampled_from(["none", "type", "operation"]))
    license_type = (
        draw(st.sampled_from(["BYOL"] if platform == "Linux" else ["AWS", "BYOL"])) if licensing == "type" else ""
    )
    usage_operation = draw(st.from_regex(r"RunInstances(:\d{4})?", fullmatch=True)) if licensing == "operation" else ""
    encrypted = draw(st.sampled_from([None, False, True]))
    tag_keys = st.text(TEXT_CHARS, min_size=1, max_size=127).filter(lambda k: not k.lower().startswith("aws:"))
    tags = draw(st.lists(st.builds(Tag, tag_keys, texts), max_size=50, unique_by=lambda t: t.key))
    return ImportSpec(
        disk_containers=disks,
        architecture=architecture,
        boot_mode=boot_mode,
        client_data=draw(st.none() | client_data()),
        client_token=draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=64)),
        description=draw(texts),
        dry_run=draw(st.booleans()),
        encrypted=encrypted,
        hypervisor=draw(st.sampled_from(["", "xen"])),
        kms_key_id=draw(st.just("") | kms_keys) if encrypted else "",
        license_type=license_type,
        platform=platform,
        role_name=draw(st.just("") | st.from_regex(r"[A-Za-z0-9_+=,.@-]{1,64}", fullmatch=True)),
        license_configuration_arns=draw(st.lists(license_arns, max_size=3)),
        tags=tags,
        usage_operation=usage_operation,
    )


@SETTINGS
@given(valid_specs())
def test_valid_specs_pass_validate_and_botocore(request: ImportSpec) -> None:
    assert validate(request) == []
    assert botocore_errors(to_api_params(request)) == ""


@SETTINGS
@given(valid_specs())
def test_from_api_params_inverts_to_api_params(request: ImportSpec) -> None:
    assert from_api_params(to_api_params(request)) == request


any_specs = st.builds(
    ImportSpec,
    disk_containers=st.lists(
        st.builds(
            DiskContainer,
            st.text(),
            st.text(),
            st.text(),
            st.text(),
            st.text(),
            st.none() | st.builds(UserBucket, st.text(), st.text()),
        )
    ),
    client_data=st.none()
    | st.builds(ClientData, st.text(), st.none() | st.datetimes(), st.none() | st.datetimes(), st.none() | st.floats()),
    tags=st.lists(st.builds(Tag, st.text(), st.text())),
)


@SETTINGS
@given(any_specs)
def test_any_spec_is_judged_without_crashing_and_sent_in_the_right_shape(request: ImportSpec) -> None:
    findings = validate(request)
    assert all(isinstance(f, Finding) and f.path and f.message for f in findings)
    assert botocore_errors(to_api_params(request)) == ""


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text() | st.datetimes(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(list(INPUT_SHAPE.members) + ["Tags", "Key", "S3Key", "x"]), inner, max_size=4)
    ),
    max_leaves=20,
)


@SETTINGS
@given(st.dictionaries(st.sampled_from(list(INPUT_SHAPE.members) + ["Unknown"]), json_values))
def test_from_api_params_never_raises(params: dict[str, Any]) -> None:
    assert isinstance(from_api_params(params), ImportSpec)


def test_the_request_modules_stay_pure() -> None:
    """Forms, the CLI import and tests use them without Django settings or AWS libraries."""
    import subprocess
    import sys

    code = (
        "import sys, wizard.requests.importspec, wizard.requests.cli_format; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'boto3', 'botocore')))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[]"
