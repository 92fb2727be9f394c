"""The AWS CLI's formats, both ways: documents in, JSON and command lines out.

Pure: no database, no Django. awscli runs in-process as the judge of the command lines; a
botocore `before-call` handler answers instead of AWS, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_importspec import SETTINGS, full_spec, spec, valid_specs
from wizard.requests.cli_format import (
    IMPORT_IMAGE,
    ListOf,
    Struct,
    cli_option,
    parse_cli_input,
    to_cli_command,
    to_cli_json,
)
from wizard.requests.importspec import (
    ClientData,
    DiskContainer,
    ImportSpec,
    Tag,
    UserBucket,
    from_api_params,
    to_api_params,
)
from wizard.text import not_text

INPUT_SHAPE = botocore.session.get_session().get_service_model("ec2").operation_model("ImportImage").input_shape
AWS = Path(sys.executable).with_name("aws")

S3_DISK = {"Format": "VMDK", "UserBucket": {"S3Bucket": "my-images", "S3Key": "vms/web.vmdk"}}


def paths(findings: list[Any]) -> list[str]:
    return [f.path for f in findings]


def parse_json(document: Any) -> tuple[ImportSpec | None, list[Any]]:
    return parse_cli_input(json.dumps(document), "json")


# --- the shape table ----------------------------------------------------------------------


def as_table(shape: Any) -> Any:
    """botocore's shape in the form of `cli_format.IMPORT_IMAGE`."""
    if shape.type_name == "structure":
        return Struct({name: as_table(member) for name, member in shape.members.items()})
    if shape.type_name == "list":
        return ListOf(as_table(shape.member))
    return shape.type_name


def test_the_shape_table_matches_botocore() -> None:
    assert as_table(INPUT_SHAPE) == IMPORT_IMAGE
    assert list(IMPORT_IMAGE.members) == list(INPUT_SHAPE.members)


# --- reading documents --------------------------------------------------------------------


def test_it_reads_a_json_document() -> None:
    document = {
        "Architecture": "x86_64",
        "DiskContainers": [S3_DISK],
        "TagSpecifications": [{"ResourceType": "import-image-task", "Tags": [{"Key": "a", "Value": "b"}]}],
        "ClientData": {"UploadStart": "2024-01-01T00:00:00Z", "UploadSize": 8},
    }
    request, findings = parse_json(document)
    assert findings == []
    assert request is not None
    assert request.architecture == "x86_64"
    assert request.disk_containers == [
        DiskContainer(format="VMDK", user_bucket=UserBucket("my-images", "vms/web.vmdk"))
    ]
    assert request.tags == [Tag("a", "b")]
    assert request.client_data is not None and request.client_data.upload_size == 8.0
    assert (
        request.client_data.upload_start is not None
        and request.client_data.upload_start.isoformat() == "2024-01-01T00:00:00+00:00"
    )


def test_it_reads_a_yaml_document() -> None:
    document = """\
# aws ec2 import-image --cli-input-yaml file://import.yaml
Architecture: x86_64
BootMode: uefi
Platform: Windows
DiskContainers:
  - Format: vhdx
    Url: s3://my-images/win.vhdx
Encrypted: true
KmsKeyId: alias/vm-imports
ClientData:
  UploadStart: 2024-01-01 10:00:00
  UploadEnd: 2024-01-01T11:00:00+01:00
"""
    request, findings = parse_cli_input(document, "yaml")
    assert findings == []
    assert request is not None
    assert request.disk_containers == [DiskContainer(format="VHDX", url="s3://my-images/win.vhdx")]
    assert (request.encrypted, request.kms_key_id, request.boot_mode) == (True, "alias/vm-imports", "uefi")
    assert request.client_data is not None
    assert request.client_data.upload_start == request.client_data.upload_end  # 10:00 UTC both


def test_it_reads_format_in_any_case() -> None:
    request, _ = parse_json({"DiskContainers": [{**S3_DISK, "Format": "vmdk"}]})
    assert request is not None and request.disk_containers[0].format == "VMDK"


def skeleton() -> dict[str, Any]:
    """What `aws ec2 import-image --generate-cli-skeleton` prints with the installed awscli."""
    env = {**os.environ, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    output = subprocess.run(
        [AWS, "ec2", "import-image", "--generate-cli-skeleton"], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(output.stdout)


def test_the_untouched_skeleton_only_lacks_a_disk() -> None:
    document = skeleton()
    document["BootMode"] = "legacy-bios"  # awscli prints any one of the enum's values here
    request, findings = parse_json(document)
    assert request is None
    assert [(f.path, f.message) for f in findings] == [
        ("DiskContainers", "DiskContainers must hold at least one disk to import")
    ]


def test_a_filled_in_skeleton_keeps_only_what_was_filled_in() -> None:
    document = skeleton()
    document["DiskContainers"][0]["UserBucket"] = {"S3Bucket": "my-images", "S3Key": "vms/web.vmdk"}
    document["DiskContainers"][0]["Format"] = "VMDK"
    document.update(BootMode="uefi", Encrypted=False, DryRun=False)
    request, findings = parse_json(document)
    assert findings == []
    assert request == ImportSpec(
        disk_containers=[DiskContainer(format="VMDK", user_bucket=UserBucket("my-images", "vms/web.vmdk"))],
        boot_mode="uefi",
        encrypted=False,
    )


def test_placeholders_mean_unset() -> None:
    """awscli v2's skeleton writes false, 0 and empty strings; YAML templates write nulls."""
    document = {
        "Architecture": "",
        "ClientData": {"Comment": "", "UploadEnd": "1970-01-01T00:00:00", "UploadSize": 0, "UploadStart": None},
        "DiskContainers": [S3_DISK],
        "DryRun": False,
        "LicenseSpecifications": [{"LicenseConfigurationArn": ""}],
        "TagSpecifications": [{"ResourceType": "capacity-reservation", "Tags": [{"Key": "", "Value": ""}]}],
        "UsageOperation": None,
    }
    request, findings = parse_json(document)
    assert findings == []
    assert request == from_api_params({"DiskContainers": [S3_DISK]})


def test_a_placeholder_between_real_items_keeps_its_place() -> None:
    request, findings = parse_json({"DiskContainers": [S3_DISK, {"Format": "", "Url": ""}, S3_DISK]})
    assert request is None
    assert paths(findings) == ["DiskContainers[1]"]
    assert "exactly one source" in findings[0].message


def test_it_reports_an_unknown_key_with_its_path() -> None:
    request, findings = parse_json({"Foo": 1, "DiskContainers": [S3_DISK, {"Format": "VMDK", "UserBuckett": {}}]})
    assert request is None
    assert paths(findings) == ["Foo", "DiskContainers[1].UserBuckett"]
    assert findings[0].message.startswith("unknown parameter; allowed: Architecture, ClientData,")
    assert "Description, DeviceName, Format, SnapshotId, Url, UserBucket" in findings[1].message


@pytest.mark.parametrize(
    ("document", "path", "says"),
    [
        ({"DiskContainers": "s3://my-images/web.vmdk"}, "DiskContainers", "must be a list ([...]), not a string"),
        ({"DiskContainers": [S3_DISK, "web.vmdk"]}, "DiskContainers[1]", "must be an object"),
        ({"DiskContainers": [S3_DISK], "Architecture": 64}, "Architecture", "must be a string, not a number"),
        ({"DiskContainers": [S3_DISK], "Encrypted": "yes"}, "Encrypted", "must be true or false, not a string"),
        ({"DiskContainers": [S3_DISK], "ClientData": {"UploadSize": "8"}}, "ClientData.UploadSize", "must be a number"),
        (
            {"DiskContainers": [S3_DISK], "ClientData": {"UploadSize": True}},
            "ClientData.UploadSize",
            "must be a number",
        ),
        (
            {"DiskContainers": [S3_DISK], "ClientData": {"UploadStart": "yesterday"}},
            "ClientData.UploadStart",
            "ISO 8601",
        ),
        ({"DiskContainers": [S3_DISK], "ClientData": "note"}, "ClientData", "must be an object"),
        (
            {"DiskContainers": [S3_DISK], "TagSpecifications": [{"Tags": {"Key": "a"}}]},
            "TagSpecifications[0].Tags",
            "must be a list",
        ),
        (
            {"DiskContainers": [{"UserBucket": {"S3Bucket": "my-images", "S3Key": 7}}]},
            "DiskContainers[0].UserBucket.S3Key",
            "must be a string",
        ),
    ],
)
def test_it_reports_a_wrong_type_with_its_path(document: dict[str, Any], path: str, says: str) -> None:
    request, findings = parse_json(document)
    assert request is None
    assert paths(findings) == [path]
    assert says in findings[0].message


def test_a_document_must_be_an_object() -> None:
    for text in ('["DiskContainers"]', "42", '"x"'):
        request, findings = parse_cli_input(text, "json")
        assert request is None and paths(findings) == ["(document)"] and "must be an object" in findings[0].message
    request, findings = parse_cli_input("", "yaml")
    assert request is None and paths(findings) == ["(document)"] and "empty" in findings[0].message


def test_it_reports_bad_json_with_line_and_column() -> None:
    text = '{\n  "Architecture": "x86_64",\n  "DiskContainers": [}\n}'
    request, findings = parse_cli_input(text, "json")
    assert request is None
    assert paths(findings) == ["(document)"]
    assert "not valid JSON" in findings[0].message and "line 3, column 22" in findings[0].message


def test_it_reports_bad_yaml_with_line() -> None:
    text = "Architecture: x86_64\nDiskContainers:\n  - Format: VMDK\n   Url: s3://my-images/web.vmdk\n"
    request, findings = parse_cli_input(text, "yaml")
    assert request is None
    assert paths(findings) == ["(document)"]
    assert "not valid YAML" in findings[0].message and "line 4" in findings[0].message


def test_it_reports_a_nested_invalid_s3_key() -> None:
    too_long = {"Format": "VMDK", "UserBucket": {"S3Bucket": "my-images", "S3Key": "k" * 1025}}
    request, findings = parse_json({"DiskContainers": [S3_DISK, too_long]})
    assert request is None
    assert paths(findings) == ["DiskContainers[1].UserBucket.S3Key"]
    assert "1 to 1024 bytes" in findings[0].message


def test_it_runs_the_request_rules_after_the_document_is_read() -> None:
    request, findings = parse_json({"DiskContainers": [S3_DISK], "Architecture": "arm64", "KmsKeyId": "alias/k"})
    assert request is None
    assert paths(findings) == ["Architecture", "KmsKeyId"]


def test_it_reports_duplicate_keys() -> None:
    text = '{"DiskContainers": [{"Format": "VMDK", "Url": "s3://a-bucket/k", "Url": "s3://b-bucket/k"}]}'
    request, findings = parse_cli_input(text, "json")
    assert request is None and paths(findings) == ["DiskContainers[0].Url"] and "more than once" in findings[0].message
    request, findings = parse_cli_input("Architecture: i386\nArchitecture: x86_64\nDiskContainers: []\n", "yaml")
    assert request is None and paths(findings) == ["Architecture"]


def test_it_refuses_yaml_aliases() -> None:
    text = "Description: &d hello\nDiskContainers:\n  - Description: *d\n"
    request, findings = parse_cli_input(text, "yaml")
    assert request is None and "aliases" in findings[0].message and "line 3" in findings[0].message


def test_tags_belong_to_the_import_task() -> None:
    tags = [{"Key": "a", "Value": "b"}]
    request, findings = parse_json(
        {"DiskContainers": [S3_DISK], "TagSpecifications": [{"ResourceType": "image", "Tags": tags}]}
    )
    assert request is None
    assert paths(findings) == ["TagSpecifications[0].ResourceType"] and "import-image-task" in findings[0].message
    request, _ = parse_json({"DiskContainers": [S3_DISK], "TagSpecifications": [{"Tags": tags}]})
    assert request is not None and request.tags == [Tag("a", "b")]


def test_it_takes_one_tag_specification() -> None:
    one = {"ResourceType": "import-image-task", "Tags": [{"Key": "a"}]}
    request, findings = parse_json({"DiskContainers": [S3_DISK], "TagSpecifications": [one, one]})
    assert request is None
    assert paths(findings) == ["TagSpecifications[1]"] and "only one tag specification" in findings[0].message


def test_it_returns_nothing_while_anything_is_wrong() -> None:
    for text in ('{"DiskContainers": [', '{"DiskContainers": [], "Bar": 1}', '{"DiskContainers": []}'):
        request, findings = parse_cli_input(text, "json")
        assert request is None and findings


def test_it_refuses_an_unknown_format_name() -> None:
    with pytest.raises(ValueError):
        parse_cli_input("{}", "toml")  # type: ignore[arg-type]


# --- writing JSON -------------------------------------------------------------------------


def test_cli_json_keeps_the_api_order() -> None:
    document = json.loads(to_cli_json(replace(full_spec(), usage_operation="RunInstances:0000")))
    assert list(document) == list(INPUT_SHAPE.members)
    assert document["ClientData"]["UploadStart"] == "2024-05-01T12:00:00Z"


def storable(request: ImportSpec) -> bool:
    """No text a database refuses (NUL, lone surrogates, non-characters): such text is refused on reading."""
    return not any(not_text(t) for t in _strings(to_api_params(request)))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@SETTINGS
@given(valid_specs().filter(storable))
def test_json_round_trip_is_the_identity(request: ImportSpec) -> None:
    assert parse_cli_input(to_cli_json(request), "json") == (request, [])


@SETTINGS
@given(valid_specs().filter(storable))
def test_yaml_round_trip_is_the_identity(request: ImportSpec) -> None:
    # allow_unicode=True would let PyYAML write a NEL (U+0085) raw, which YAML then reads as a line break
    document = yaml.safe_dump(to_api_params(request), sort_keys=False)
    assert parse_cli_input(document, "yaml") == (request, [])


# --- writing the command ------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_cli() -> Iterator[tuple[dict[str, Any], Callable[[str], dict[str, Any]]]]:
    """(argument table of `aws ec2 import-image`, run(command) -> the params awscli would send).

    awscli parses the command exactly as in a shell; a before-call handler then answers for
    AWS. Config and credential files are pointed at /dev/null and requests go unsigned.
    """
    saved = dict(os.environ)
    os.environ.update(
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_DEFAULT_REGION="us-east-1"
    )
    from awscli.clidriver import create_clidriver

    driver = create_clidriver()
    sent: list[dict[str, Any]] = []
    driver.session.register("before-parameter-build.ec2.ImportImage", lambda params, **_: sent.append(dict(params)))
    driver.session.register("before-call.ec2.ImportImage", lambda **_: (AWSResponse("https://ec2", 200, {}, None), {}))
    arg_table = driver._get_command_table()["ec2"]._get_command_table()["import-image"].arg_table  # noqa: SLF001

    def run(command: str | list[str]) -> dict[str, Any]:
        words = shlex.split(command) if isinstance(command, str) else command
        assert words[:3] == ["aws", "ec2", "import-image"]
        sent.clear()
        assert driver.main([*words[1:], "--no-sign-request", "--output", "json"]) == 0
        return json.loads(json.dumps(sent[0], default=str))

    try:
        yield arg_table, run
    finally:
        os.environ.clear()
        os.environ.update(saved)


def bash_words(command: str) -> list[str]:
    """The words a real shell makes of the command (bash, as a user would paste it)."""
    printed = subprocess.run(["bash", "-c", "printf '%s\\0' " + command], capture_output=True, text=True, check=True)
    return printed.stdout.split("\0")[:-1]


def option_words(command: str) -> list[str]:
    return [w[2:] for w in shlex.split(command) if w.startswith("--")]


def test_every_api_member_has_its_cli_option(aws_cli: Any) -> None:
    arg_table, _ = aws_cli
    for member in IMPORT_IMAGE.members:
        assert cli_option(member)[2:] in arg_table


def test_the_command_reads_as_expected() -> None:
    command = to_cli_command(spec(architecture="x86_64", encrypted=False, dry_run=True, description="web server"))
    assert command == (
        "aws ec2 import-image --architecture x86_64 --description 'web server' "
        """--disk-containers '[{"Format":"VMDK","UserBucket":{"S3Bucket":"my-images","S3Key":"vms/web.vmdk"}}]' """
        "--dry-run --no-encrypted"
    )


def test_the_full_command_is_what_awscli_sends(aws_cli: Any) -> None:
    arg_table, run = aws_cli
    request = full_spec()
    command = to_cli_command(request)
    assert set(option_words(command)) <= set(arg_table)
    assert {
        "disk-containers",
        "client-data",
        "tag-specifications",
        "license-specifications",
        "kms-key-id",
        "dry-run",
        "encrypted",
    } <= set(option_words(command))
    assert from_api_params(run(command)) == request


def test_a_multiline_command_is_the_same_command(aws_cli: Any) -> None:
    _, run = aws_cli
    request = full_spec()
    command = to_cli_command(request, multiline=True)
    assert command.count(" \\\n    ") == len(to_api_params(request))
    assert command.replace(" \\\n    ", " ") == to_cli_command(request)
    assert bash_words(command) == shlex.split(to_cli_command(request))
    assert from_api_params(run(bash_words(command))) == request


def test_bash_reads_the_command_as_shlex_does(aws_cli: Any) -> None:
    _, run = aws_cli
    tricky = 'it\'s "quoted" $HOME `id` \\ ; & | > * ~ \n é 日本 \t!'
    request = spec(
        description=tricky,
        tags=[Tag(tricky, tricky)],
        disk_containers=[replace(DiskContainer(url="s3://my-images/" + tricky), format="RAW")],
    )
    command = to_cli_command(request)
    assert bash_words(command) == shlex.split(command)
    assert from_api_params(run(bash_words(command))) == request


def test_values_that_look_like_options_or_files_stay_text(aws_cli: Any) -> None:
    _, run = aws_cli
    request = spec(description="file:///etc/passwd", client_token="-starts-with-a-dash", role_name="--")
    command = to_cli_command(request)
    assert command.endswith(
        """ --cli-input-json '{"ClientToken":"-starts-with-a-dash","Description":"file:///etc/passwd","RoleName":"--"}'"""
    )
    assert from_api_params(run(command)) == request


@settings(SETTINGS, max_examples=50)
@given(valid_specs())
def test_any_valid_command_parses_in_awscli_to_the_same_request(aws_cli: Any, request: ImportSpec) -> None:
    arg_table, run = aws_cli
    command = to_cli_command(request)
    assert set(option_words(command)) <= set(arg_table)
    assert from_api_params(run(command)) == request


@SETTINGS
@given(valid_specs())
def test_json_values_in_the_command_parse(request: ImportSpec) -> None:
    words = shlex.split(to_cli_command(request))
    for option, value in zip(words, words[1:], strict=False):
        if option in ("--disk-containers", "--client-data", "--tag-specifications", "--license-specifications"):
            assert json.loads(value) == json.loads(to_cli_json(request))[to_member(option)]


def to_member(option: str) -> str:
    return "".join(part.title() for part in option[2:].split("-"))


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_is_judged_without_crashing(text: str) -> None:
    for fmt in ("json", "yaml"):
        request, findings = parse_cli_input(text, fmt)  # type: ignore[arg-type]
        assert (request is None) == bool(findings)


def test_client_data_upload_size_zero_is_a_placeholder() -> None:
    request, _ = parse_json({"DiskContainers": [S3_DISK], "ClientData": {"Comment": "x", "UploadSize": 0}})
    assert request is not None and request.client_data == ClientData(comment="x")


# --- hostile documents: a finding at the path, never an exception ------------------------------

DIGITS = "9" * 5000


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_a_deeply_nested_document_is_refused(fmt: str, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    for depth in (33, 3000, 60_000):
        text = opener * depth + ("1" if opener != "[" else "") + closer * depth
        request, findings = parse_cli_input(text, fmt)  # type: ignore[arg-type]
        assert request is None and paths(findings) == ["(document)"]
        assert "nested more than 32 levels deep" in findings[0].message


def test_a_deeply_nested_yaml_block_is_refused_with_its_line() -> None:
    text = "Description:\n" + "".join(" " * i + "-\n" for i in range(1, 2000))
    request, findings = parse_cli_input(text, "yaml")
    assert request is None and "nested more than 32 levels" in findings[0].message and "line 33" in findings[0].message


@pytest.mark.parametrize(
    "text, fmt",
    [
        ('{"ClientData": {"UploadSize": ' + DIGITS + "}}", "json"),
        ('{"ClientData": {"UploadSize": 1.' + "0" * 5000 + "1}}", "json"),
        ("ClientData:\n  UploadSize: " + DIGITS + "\n", "yaml"),
        ("ClientData:\n  UploadSize: 0x" + "f" * 5000 + "\n", "yaml"),
    ],
)
def test_a_number_of_thousands_of_digits_is_refused_at_its_path(text: str, fmt: str) -> None:
    request, findings = parse_cli_input(text, fmt)  # type: ignore[arg-type]
    assert request is None and paths(findings) == ["ClientData.UploadSize"]
    assert "cannot be read: a number of 5,00" in findings[0].message


def test_a_number_of_thousands_of_digits_as_a_time_is_refused_at_its_path() -> None:
    request, findings = parse_cli_input('{"ClientData": {"UploadStart": ' + DIGITS + "}}", "json")
    assert request is None and paths(findings) == ["ClientData.UploadStart"]
    assert "5,000 characters" in findings[0].message


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("escape, code", [("\\ud800", "U+D800"), ("\\udfff", "U+DFFF"), ("\\ufffe", "U+FFFE")])
def test_a_string_that_is_not_text_is_refused_at_its_path(fmt: str, escape: str, code: str) -> None:
    text = '{"DiskContainers": [{"Format": "VMDK", "UserBucket": {"S3Bucket": "b-1", "S3Key": "a' + escape + '"}}]}'
    request, findings = parse_cli_input(text, fmt)  # type: ignore[arg-type]
    assert request is None and paths(findings) == ["DiskContainers[0].UserBucket.S3Key"]
    assert f"contains characters that are not text ({code} at position 2)" in findings[0].message


def test_nul_in_a_tag_is_refused_at_its_path() -> None:
    tags = [{"Key": "team", "Value": "a\x00b"}]
    request, findings = parse_json({"DiskContainers": [S3_DISK], "TagSpecifications": [{"Tags": tags}]})
    assert request is None and paths(findings) == ["TagSpecifications[0].Tags[0].Value"]


def test_a_key_that_is_not_text_is_named_without_it() -> None:
    request, findings = parse_cli_input('{"\\ud800x": 1, "DiskContainers": []}', "json")
    assert request is None and paths(findings) == ["\ufffdx"] and "unknown parameter" in findings[0].message
    findings[0].message.encode("utf-8")  # can be shown


@pytest.mark.parametrize(
    "text, path",
    [
        ("ClientData:\n  UploadStart: 2024-02-30\n", "ClientData.UploadStart"),
        ("ClientData:\n  UploadEnd: 2023-02-29 10:00:00\n", "ClientData.UploadEnd"),
        ("Description: 2024-13-01\n", "Description"),
    ],
)
def test_an_impossible_yaml_date_is_refused_at_its_path(text: str, path: str) -> None:
    request, findings = parse_cli_input(text, "yaml")
    assert (
        request is None and paths(findings) == [path] and "not a date and time of the calendar" in findings[0].message
    )


def test_a_time_before_the_first_utc_moment_is_refused_at_its_path() -> None:
    for start in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        request, findings = parse_json({"DiskContainers": [S3_DISK], "ClientData": {"UploadStart": start}})
        assert request is None and paths(findings) == ["ClientData.UploadStart"]


def test_billion_laughs_is_refused() -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    request, findings = parse_cli_input(text, "yaml")
    assert request is None and "aliases" in findings[0].message


def test_infinity_is_refused_as_a_number() -> None:
    request, findings = parse_cli_input('{"ClientData": {"UploadSize": 1e999}}', "json")
    assert request is None and "finite number" in findings[0].message


hostile_leaves = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["\ud800", "a\x00", "\uffff", "2024-02-30T00:00:00", DIGITS]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
)
hostile_json = st.recursive(
    hostile_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from([*IMPORT_IMAGE.members, "x"]), inner),
    max_leaves=12,
)


@SETTINGS
@given(hostile_json, st.sampled_from(["json", "yaml"]))
def test_any_hostile_document_gets_findings_that_can_be_shown(document: Any, fmt: str) -> None:
    request, findings = parse_cli_input(json.dumps(document), fmt)  # type: ignore[arg-type]
    assert (request is None) == bool(findings)
    for finding in findings:
        (finding.path + finding.message).encode("utf-8")  # no lone surrogate: the page can show it
