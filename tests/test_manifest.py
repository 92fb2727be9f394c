"""Manifests: rows read on their own, errors by row and API path, bounded sizes (pure, no database)."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from wizard.batches import manifest
from wizard.batches.manifest import MAX_ROWS, parse_manifest
from wizard.requests.cli_format import parse_cli_input
from wizard.requests.importspec import to_api_params, validate

BATCH = {
    "Platform": "Linux",
    "RoleName": "vmimport",
    "TagSpecifications": [
        {"ResourceType": "import-image-task", "Tags": [{"Key": "wave", "Value": "1"}, {"Key": "env", "Value": "test"}]}
    ],
}


def test_a_csv_row_becomes_the_same_request_as_its_cli_document():
    text = "S3Bucket,S3Key,Format,Description,Tags,Encrypted\nimages-a,vm/web01.vmdk,vmdk,web01,env=prod;team=a,true\n"
    found = parse_manifest(text, "csv", BATCH)
    assert not found.problems
    (row,) = found.rows
    document = {
        "Description": "web01",
        "Encrypted": True,
        "Platform": "Linux",
        "RoleName": "vmimport",
        "DiskContainers": [{"Format": "VMDK", "UserBucket": {"S3Bucket": "images-a", "S3Key": "vm/web01.vmdk"}}],
        "TagSpecifications": [
            {
                "ResourceType": "import-image-task",
                "Tags": [
                    {"Key": "env", "Value": "prod"},
                    {"Key": "team", "Value": "a"},
                    {"Key": "wave", "Value": "1"},
                ],
            }
        ],
    }
    spec, _ = parse_cli_input(json.dumps(document), "json")
    assert to_api_params(row.spec) == to_api_params(spec)  # the row's tag wins over the batch's (env)
    assert row.label == "s3://images-a/vm/web01.vmdk"


def test_errors_come_by_row_with_the_cli_imports_paths_and_messages():
    text = (
        "S3Bucket,S3Key,Format,Encrypted,Tags\n"
        "images-a,ok.vmdk,VMDK,,\n"
        "images-a,,VMDK,maybe,\n"
        "images-a,x.raw,QCOW2,,broken\n"
    )
    found = parse_manifest(text, "csv")
    assert [r.ok for r in found.rows] == [True, False, False]
    errors = [str(e) for e in found.problems]
    assert "row 2: Encrypted: Encrypted must be true or false, not 'maybe'" in errors
    cli = parse_cli_input(
        json.dumps({"DiskContainers": [{"Format": "VMDK", "UserBucket": {"S3Bucket": "images-a"}}]}), "json"
    )
    s3key = next(f for f in cli[1] if f.path == "DiskContainers[0].UserBucket.S3Key")
    assert f"row 2: DiskContainers[0].UserBucket.S3Key (column S3Key): {s3key.message}" in errors
    assert any(e.startswith("row 3: DiskContainers[0].Format (column Format): ") for e in errors)
    assert "row 3: Tags: write each tag as Key=Value, separated by ';' (not 'broken')" in errors


def test_a_yaml_list_of_cli_documents_with_several_disks_and_duplicate_keys():
    text = """
- Description: db01
  DiskContainers:
    - {Format: VMDK, UserBucket: {S3Bucket: images-a, S3Key: db01-boot.vmdk}}
    - {Format: VMDK, UserBucket: {S3Bucket: images-a, S3Key: db01-data.vmdk}}
- Description: db02
  Description: again
  DiskContainers: [{Format: RAW, Url: "s3://images-a/db02.raw"}]
- just text
"""
    found = parse_manifest(text, "yaml", BATCH)
    assert found.rows[0].ok and len(found.rows[0].spec.disk_containers) == 2
    assert found.rows[0].spec.platform == "Linux"
    assert [str(e) for e in found.rows[1].errors] == [
        "row 2: Description: Description is given more than once; keep one"
    ]
    assert [str(e) for e in found.rows[2].errors] == [
        "row 3: (document): each item must be an object of ImportImage parameters"
    ]


def test_whole_manifest_problems_are_on_row_0():
    assert [str(e) for e in parse_manifest("S3Bucket,Colour\n", "csv").problems] == [
        f"manifest: Colour: unknown column; allowed: {', '.join(manifest.COLUMNS)}"
    ]
    assert "not valid JSON" in str(parse_manifest("[{", "json").problems[0])
    assert "must be a list" in str(parse_manifest('{"DiskContainers": []}', "json").problems[0])
    assert "no rows" in str(parse_manifest("S3Bucket,S3Key\n\n", "csv").problems[0])
    assert "empty" in str(parse_manifest("", "csv").problems[0])


def test_sizes_are_bounded_with_a_clear_message():
    rows = "S3Bucket,S3Key\n" + "images-a,x.raw\n" * (MAX_ROWS + 1)
    assert f"more than {MAX_ROWS} rows" in str(parse_manifest(rows, "csv").problems[0])
    big = "S3Bucket,S3Key\n" + "images-a," + "k" * (manifest.MAX_BYTES + 1) + "\n"
    assert "larger than 1024 KiB" in str(parse_manifest(big, "csv").problems[0])
    assert "more than" in str(parse_manifest(json.dumps([{}] * (MAX_ROWS + 1)), "json").problems[0])


def test_a_byte_order_mark_and_column_case_are_forgiven():
    found = parse_manifest("\ufeffs3bucket,S3KEY,format\nimages-a,a.vhd,vhd\n", "csv")
    assert found.rows[0].ok and found.rows[0].spec.disk_containers[0].format == "VHD"


# --- properties ---------------------------------------------------------------------------------

CELL = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(CELL, min_size=0, max_size=6), max_size=8), st.sampled_from(["csv", "yaml", "json"]))
def test_any_text_gives_rows_or_errors_never_an_exception(cells, fmt):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["S3Bucket", "S3Key", "Format", "Tags", "Encrypted", "Description"])
    writer.writerows(cells)
    text = out.getvalue() if fmt == "csv" else json.dumps(cells) if fmt == "json" else "\n".join(map(str, cells))
    found = parse_manifest(text, fmt)
    for row in found.rows:
        assert row.ok == (not row.errors)
        assert all(e.row == row.row for e in row.errors)
        if row.ok:
            assert validate(row.spec) == []
    assert all(e.row == 0 for e in found.errors)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["csv", "yaml", "json"]))
def test_arbitrary_text_never_raises(text, fmt):
    found = parse_manifest(text, fmt)
    assert isinstance(found.problems, list)


NAMES = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
KEYS = st.from_regex(r"[a-z0-9]{1,10}(/[a-z0-9]{1,10}){0,2}", fullmatch=True)
TAG_KEYS = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            NAMES,
            KEYS,
            st.sampled_from(["VMDK", "RAW", "VHD", "VHDX", "OVA"]),
            st.sampled_from(["", "Linux", "Windows"]),
            st.dictionaries(TAG_KEYS, st.from_regex(r"[a-z0-9 ]{0,8}", fullmatch=True), max_size=3),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_valid_rows_round_trip(rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["S3Bucket", "S3Key", "Format", "Platform", "Tags"])
    for bucket, key, fmt, platform, tags in rows:
        writer.writerow([bucket, key + "." + fmt.lower(), fmt, platform, ";".join(f"{k}={v}" for k, v in tags.items())])
    found = parse_manifest(out.getvalue(), "csv")
    assert not found.problems, found.problems
    for row, (bucket, key, fmt, platform, tags) in zip(found.rows, rows, strict=True):
        disk = row.spec.disk_containers[0]
        assert (disk.user_bucket.s3_bucket, disk.user_bucket.s3_key, disk.format) == (
            bucket,
            f"{key}.{fmt.lower()}",
            fmt,
        )
        assert row.spec.platform == platform
        assert {t.key: t.value for t in row.spec.tags} == {k: v.strip() for k, v in tags.items()}
