"""Batch manifests: many import requests in one file, each row read and checked on its own.

Two forms:

* **CSV**, one VM (one disk) per row, columns named after the API: ``S3Bucket``, ``S3Key`` (or
  ``Url``, or ``SnapshotId``), ``Format``, ``DeviceName``, ``Description``, ``Platform``,
  ``Architecture``, ``BootMode``, ``LicenseType``, ``UsageOperation``, ``Encrypted``
  (true/false), ``KmsKeyId``, ``RoleName``, ``Comment`` and ``Tags`` (``Key=Value;Key=Value``).
  An empty cell leaves the parameter to the batch's settings.
* **YAML or JSON**, a list of ``--cli-input-json`` documents (the form of ``aws ec2 import-image``),
  one per VM, several disks each if need be.

The batch's settings, chosen once (API parameters, e.g. ``{"Platform": "Linux", "RoleName":
"vmimport", "TagSpecifications": [...]}``), fill every parameter a row leaves unset; a row's
tags are added to the batch's (the row's value wins for the same key). Every row then goes
through the CLI import's own reader (`wizard.requests.cli_format.parse_cli_input`), so a row's problems
carry the same paths and messages as the CLI import: ``row 3: DiskContainers[0].UserBucket.S3Key:
...``; the CSV column a path comes from is named too. Problems of the whole file (its syntax,
size, columns) are on row 0.

Pure Python (csv, json, yaml through cli_format): no database. Whether the user may import each
source is asked later, by `wizard.batches.batches`, of `wizard.uploads.sources`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from wizard.requests.cli_format import _load as load_document
from wizard.requests.cli_format import parse_cli_input
from wizard.requests.importspec import TAG_RESOURCE_TYPE, Finding, ImportSpec

MAX_BYTES = 1024 * 1024
MAX_ROWS = 500
Format = Literal["csv", "yaml", "json"]

# CSV column -> where it goes in the ImportImage parameters (a path of keys; [0] = the first disk).
COLUMNS: dict[str, tuple[str, ...]] = {
    "S3Bucket": ("DiskContainers", "0", "UserBucket", "S3Bucket"),
    "S3Key": ("DiskContainers", "0", "UserBucket", "S3Key"),
    "Url": ("DiskContainers", "0", "Url"),
    "SnapshotId": ("DiskContainers", "0", "SnapshotId"),
    "Format": ("DiskContainers", "0", "Format"),
    "DeviceName": ("DiskContainers", "0", "DeviceName"),
    "Description": ("Description",),
    "Platform": ("Platform",),
    "Architecture": ("Architecture",),
    "BootMode": ("BootMode",),
    "LicenseType": ("LicenseType",),
    "UsageOperation": ("UsageOperation",),
    "Encrypted": ("Encrypted",),
    "KmsKeyId": ("KmsKeyId",),
    "RoleName": ("RoleName",),
    "Comment": ("ClientData", "Comment"),
    "Tags": ("TagSpecifications",),
}
TRUE = {"true", "yes", "1"}
FALSE = {"false", "no", "0"}


@dataclass(frozen=True)
class RowError:
    """A problem of one row (0: of the whole manifest), at an API path, with the CSV column it came from."""

    row: int
    path: str
    message: str
    column: str = ""

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "manifest"
        column = f" (column {self.column})" if self.column and self.column != self.path else ""
        return f"{where}: {self.path}{column}: {self.message}"


@dataclass
class Row:
    """One VM of the manifest: its spec when every rule passes, else its errors."""

    row: int
    spec: ImportSpec | None
    errors: list[RowError] = field(default_factory=list)
    label: str = ""

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.errors


@dataclass
class Manifest:
    rows: list[Row]
    errors: list[RowError] = field(default_factory=list)

    @property
    def problems(self) -> list[RowError]:
        return self.errors + [e for r in self.rows for e in r.errors]

    @property
    def valid(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    @property
    def invalid(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]


def _document_error(message: str, path: str = "(manifest)") -> Manifest:
    return Manifest(rows=[], errors=[RowError(0, path, message)])


def parse_manifest(text: str, fmt: Format, defaults: dict[str, Any] | None = None) -> Manifest:
    """Read a manifest; every row is checked on its own (nothing raises for any text)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return _document_error(f"The manifest is larger than {MAX_BYTES // 1024} KiB; split it into several batches")
    text = text.removeprefix("\ufeff")
    defaults = defaults or {}
    if fmt == "csv":
        return _parse_csv(text, defaults)
    if fmt in ("yaml", "json"):
        return _parse_documents(text, fmt, defaults)
    return _document_error(f"The manifest's format must be csv, yaml or json, not {fmt!r}")


# --- CSV --------------------------------------------------------------------------------------


def _header(names: list[str]) -> tuple[list[str], list[RowError]]:
    canonical = {c.lower(): c for c in COLUMNS}
    columns, errors, seen = [], [], set()
    for name in names:
        column = canonical.get(name.strip().lower(), "")
        if not column:
            errors.append(
                RowError(0, name.strip() or "(empty column name)", f"unknown column; allowed: {', '.join(COLUMNS)}")
            )
        elif column in seen:
            errors.append(RowError(0, column, f"the column {column} is given more than once; keep one"))
        seen.add(column)
        columns.append(column)
    return columns, errors


def _parse_tags(cell: str) -> list[dict[str, str]] | str:
    tags = []
    for item in cell.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            return f"write each tag as Key=Value, separated by ';' (not {item.strip()!r})"
        tags.append({"Key": key.strip(), "Value": value.strip()})
    return tags


def api_path(path: tuple[str, ...]) -> str:
    """("DiskContainers", "0", "UserBucket", "S3Key") -> "DiskContainers[0].UserBucket.S3Key"."""
    text = ""
    for part in path:
        text += f"[{part}]" if part.isdigit() else f".{part}" if text else part
    return text


def _set(params: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = params
    for i, key in enumerate(path[:-1]):
        following_is_index = path[i + 1].isdigit()
        if key.isdigit():
            continue
        node = node.setdefault(key, [{}])[0] if following_is_index else node.setdefault(key, {})
    node[path[-1]] = value


def _row_params(row_number: int, cells: dict[str, str]) -> tuple[dict[str, Any], list[RowError], dict[str, str]]:
    """The row's ImportImage parameters, its cell errors, and which column each path came from."""
    params: dict[str, Any] = {}
    errors: list[RowError] = []
    origin: dict[str, str] = {}
    for column, raw in cells.items():
        path = COLUMNS[column]
        origin[api_path(path)] = column
        value = raw.strip()
        if not value:
            continue
        if column == "Encrypted":
            lowered = value.lower()
            if lowered not in TRUE | FALSE:
                errors.append(
                    RowError(row_number, "Encrypted", f"Encrypted must be true or false, not {value!r}", column)
                )
                continue
            params["Encrypted"] = lowered in TRUE
        elif column == "Tags":
            tags = _parse_tags(value)
            if isinstance(tags, str):
                errors.append(RowError(row_number, "Tags", tags, column))
                continue
            params["TagSpecifications"] = [{"ResourceType": TAG_RESOURCE_TYPE, "Tags": tags}]
        else:
            _set(params, path, value)
    return params, errors, origin


def _parse_csv(text: str, defaults: dict[str, Any]) -> Manifest:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return _document_error(f"The CSV header cannot be read: {exc}")
    if not header or not any(h.strip() for h in header):
        return _document_error("The manifest is empty: its first line names the columns, e.g. S3Bucket,S3Key,Format")
    columns, errors = _header(header)
    if errors:
        return Manifest(rows=[], errors=errors)
    rows: list[Row] = []
    number = 0
    while True:
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            errors.append(RowError(number + 1, "(row)", f"line {reader.line_num} cannot be read: {exc}"))
            break
        if cells is None:
            break
        if not any(c.strip() for c in cells):
            continue  # blank lines are skipped
        number += 1
        if number > MAX_ROWS:
            return Manifest(
                rows=[], errors=[RowError(0, "(manifest)", f"The manifest has more than {MAX_ROWS} rows; split it")]
            )
        if len(cells) > len(columns):
            rows.append(
                Row(
                    number,
                    None,
                    [RowError(number, "(row)", f"this row has {len(cells)} cells but the header names {len(columns)}")],
                )
            )
            continue
        named = dict(zip(columns, cells, strict=False))
        params, cell_errors, origin = _row_params(number, named)
        rows.append(_checked(number, params, defaults, cell_errors, origin))
    if not rows and not errors:
        errors.append(RowError(0, "(manifest)", "The manifest has a header but no rows"))
    return Manifest(rows=rows, errors=errors)


# --- YAML / JSON ------------------------------------------------------------------------------


def _duplicates(value: Any, path: str = "") -> list[Finding]:
    found = [
        Finding(f"{path}.{k}" if path else str(k), f"{k} is given more than once; keep one")
        for k in getattr(value, "duplicates", [])
    ]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _duplicates(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _duplicates(v, f"{path}[{i}]")
    return found


def _plain(value: Any) -> Any:
    """Decoded YAML as JSON-able data (timestamps as ISO 8601 text)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k) if isinstance(k, (date, datetime)) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _parse_documents(text: str, fmt: Literal["yaml", "json"], defaults: dict[str, Any]) -> Manifest:
    document, findings = load_document(text, fmt)
    if findings:
        return Manifest(rows=[], errors=[RowError(0, f.path, f.message) for f in findings])
    if document is None:
        return _document_error("The manifest is empty: it should be a list of --cli-input-json documents")
    if not isinstance(document, list):
        return _document_error("The manifest must be a list of --cli-input-json documents ([{...}, {...}]), one per VM")
    if len(document) > MAX_ROWS:
        return _document_error(f"The manifest has more than {MAX_ROWS} documents; split it")
    if not document:
        return _document_error("The manifest's list is empty")
    rows = []
    for number, item in enumerate(document, start=1):
        dupes = [RowError(number, f.path, f.message) for f in _duplicates(item)]
        if not isinstance(item, dict):
            rows.append(
                Row(
                    number,
                    None,
                    [RowError(number, "(document)", "each item must be an object of ImportImage parameters")],
                )
            )
            continue
        rows.append(_checked(number, _plain(item), defaults, dupes, {}))
    return Manifest(rows=rows)


# --- one row ----------------------------------------------------------------------------------


def _tags(params: dict[str, Any]) -> list[Any]:
    specs = params.get("TagSpecifications")
    if isinstance(specs, list) and specs and isinstance(specs[0], dict) and isinstance(specs[0].get("Tags"), list):
        return specs[0]["Tags"]
    return []


def merge_defaults(params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The row's parameters over the batch's: a member the row leaves unset comes from the batch;
    the batch's tags are added after the row's (a row's tag wins for the same key)."""
    merged = {**{k: v for k, v in defaults.items() if k != "TagSpecifications"}, **params}
    batch_tags = _tags(defaults)
    if batch_tags:
        row_tags = _tags(params)
        if row_tags or "TagSpecifications" not in params:
            keys = {t.get("Key") for t in row_tags if isinstance(t, dict)}
            extra = [t for t in batch_tags if isinstance(t, dict) and t.get("Key") not in keys]
            specs = params.get("TagSpecifications") or [{"ResourceType": TAG_RESOURCE_TYPE}]
            merged["TagSpecifications"] = [{**specs[0], "Tags": [*row_tags, *extra]}, *specs[1:]]
    return merged


def _label(params: dict[str, Any]) -> str:
    disks = params.get("DiskContainers")
    disk: dict[str, Any] = disks[0] if isinstance(disks, list) and disks and isinstance(disks[0], dict) else {}
    bucket: dict[str, Any] = disk["UserBucket"] if isinstance(disk.get("UserBucket"), dict) else {}
    if bucket.get("S3Key"):
        return f"s3://{bucket.get('S3Bucket', '')}/{bucket['S3Key']}"
    return str(disk.get("Url") or disk.get("SnapshotId") or "")[:200]


def _checked(
    number: int, params: dict[str, Any], defaults: dict[str, Any], errors: list[RowError], origin: dict[str, str]
) -> Row:
    merged = merge_defaults(params, defaults)
    label = _label(merged)
    try:
        text = json.dumps(merged)
    except (TypeError, ValueError) as exc:
        return Row(number, None, [RowError(number, "(document)", f"cannot be read: {exc}")], label)
    spec, findings = parse_cli_input(text, "json")
    found = errors + [_placed(number, f, origin) for f in findings]
    return Row(number, None, found, label) if found else Row(number, spec, [], label)


def _placed(number: int, finding: Finding, origin: dict[str, str]) -> RowError:
    column = next((c for path, c in origin.items() if finding.path == path or finding.path.startswith(path + ".")), "")
    if not column and finding.path.startswith("TagSpecifications") and "TagSpecifications" in origin:
        column = "Tags"
    return RowError(number, finding.path, finding.message, column)


def summary(errors: Iterable[RowError]) -> list[str]:
    return [str(e) for e in errors]
