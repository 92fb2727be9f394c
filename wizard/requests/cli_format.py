"""The AWS CLI's ways of writing an ImportImage request, both ways.

In: a ``--cli-input-json`` / ``--cli-input-yaml`` document, the shape that
``aws ec2 import-image --generate-cli-skeleton`` prints, so people can bring what they already
run by hand. Out: the same JSON, and a ready ``aws ec2 import-image ...`` command line, so
people can see (and rerun) exactly what the wizard sends.

Reading a document is strict where `wizard.requests.importspec.from_api_params` is lenient: every
unknown key, wrong type, duplicate key and syntax error is reported with its path, and nothing
is returned while anything is wrong. The skeleton is a template, so its placeholders mean
"unset": empty strings, ``null``, ``UploadSize`` 0, the epoch (1970-01-01T00:00:00) as a time,
and a tag specification without tags (the skeleton's ``ResourceType`` is an arbitrary enum
value). A list or object made only of placeholders is unset as a whole, while a placeholder
item inside a list that has real items is kept, so that later findings keep the document's
indexes. ``Format`` is read in any letter case and stored upper case.

Pure Python: json, yaml and shlex only; the shape table below mirrors botocore's ec2 model
(the tests check that it still does).
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Literal

import yaml

from wizard.requests.importspec import TAG_RESOURCE_TYPE, Finding, ImportSpec, from_api_params, to_api_params, validate
from wizard.text import MESSAGE as NOT_TEXT_MESSAGE
from wizard.text import not_text, shown

__all__ = ["IMPORT_IMAGE", "cli_option", "parse_cli_input", "to_cli_command", "to_cli_json"]


# --------------------------------------------------------------------------------------------
# The request's shape (botocore ec2 model, operation ImportImage, input)


@dataclass(frozen=True)
class Struct:
    members: dict[str, Shape]


@dataclass(frozen=True)
class ListOf:
    member: Shape


Shape = Struct | ListOf | Literal["string", "boolean", "double", "timestamp"]

IMPORT_IMAGE = Struct(
    {
        "Architecture": "string",
        "ClientData": Struct(
            {"Comment": "string", "UploadEnd": "timestamp", "UploadSize": "double", "UploadStart": "timestamp"}
        ),
        "ClientToken": "string",
        "Description": "string",
        "DiskContainers": ListOf(
            Struct(
                {
                    "Description": "string",
                    "DeviceName": "string",
                    "Format": "string",
                    "SnapshotId": "string",
                    "Url": "string",
                    "UserBucket": Struct({"S3Bucket": "string", "S3Key": "string"}),
                }
            )
        ),
        "DryRun": "boolean",
        "Encrypted": "boolean",
        "Hypervisor": "string",
        "KmsKeyId": "string",
        "LicenseType": "string",
        "Platform": "string",
        "RoleName": "string",
        "LicenseSpecifications": ListOf(Struct({"LicenseConfigurationArn": "string"})),
        "TagSpecifications": ListOf(
            Struct({"ResourceType": "string", "Tags": ListOf(Struct({"Key": "string", "Value": "string"}))})
        ),
        "UsageOperation": "string",
        "BootMode": "string",
    }
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Unset:
    """A placeholder value: the member is left out of the request."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

# No ImportImage document nests deeper than 5 levels, or needs a number of more than a few
# digits; deeper or longer ones are refused with a finding rather than read.
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 40


class _Unreadable:
    """A value the document holds but that cannot be read (a number of thousands of digits, a
    date not in the calendar): the reader reports it at its path."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return self.why


class _Object(dict[Any, Any]):
    """A decoded JSON/YAML object that remembers keys it saw more than once."""

    duplicates: list[Any]

    def __init__(self, pairs: Iterable[tuple[Any, Any]] = ()) -> None:
        super().__init__()
        self.duplicates = []
        for key, value in pairs:
            if key in self:
                self.duplicates.append(key)
            self[key] = value


# --------------------------------------------------------------------------------------------
# Reading a document


def _describe(value: Any) -> str:
    """How a user would name the kind of value they wrote."""
    if isinstance(value, _Unreadable):
        return value.why
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "true/false"),
        ((int, float), "a number"),
        (str, "a string"),
        (dict, "an object"),
        (list, "a list"),
        ((datetime, date), "a date"),
    ]
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _join(path: str, key: str) -> str:
    key = shown(key)
    return f"{path}.{key}" if path else key


def _name(path: str) -> str:
    """How a message names the value at `path`: its own key, e.g. ``S3Key`` or ``Tags[2]``."""
    return path.rpartition(".")[2] or "The document"


def _read_string(value: Any, path: str, errors: list[Finding]) -> Any:
    if isinstance(value, str):
        if where := not_text(value):
            errors.append(Finding(path, f"{_name(path)} {NOT_TEXT_MESSAGE} ({where})"))
            return UNSET
        return value or UNSET
    errors.append(Finding(path, f"{_name(path)} must be a string, not {_describe(value)}"))
    return UNSET


def _read_boolean(value: Any, path: str, errors: list[Finding]) -> Any:
    if isinstance(value, bool):
        return value
    errors.append(Finding(path, f"{_name(path)} must be true or false, not {_describe(value)}"))
    return UNSET


def _read_double(value: Any, path: str, errors: list[Finding]) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value) or UNSET
        errors.append(Finding(path, f"{_name(path)} must be a finite number, not {value}"))
        return UNSET
    errors.append(Finding(path, f"{_name(path)} must be a number, not {_describe(value)}"))
    return UNSET


def _read_timestamp(value: Any, path: str, errors: list[Finding]) -> Any:
    """ISO 8601 text, epoch seconds or a YAML timestamp, as aware UTC (naive means UTC)."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            moment = None
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    try:
        moment = (
            None if moment is None else moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        )
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before the first UTC moment
        moment = None
    if moment is None:
        got = value if isinstance(value, _Unreadable) else shown(repr(value) if isinstance(value, str) else str(value))
        errors.append(
            Finding(
                path,
                f"{_name(path)} must be a date and time in ISO 8601 form, e.g. 2024-01-31T12:00:00Z (got {got})",
            )
        )
        return UNSET
    return UNSET if moment == EPOCH else moment


SCALAR_READERS: dict[str, Callable[[Any, str, list[Finding]], Any]] = {
    "string": _read_string,
    "boolean": _read_boolean,
    "double": _read_double,
    "timestamp": _read_timestamp,
}


def _read_struct(value: Any, shape: Struct, path: str, errors: list[Finding]) -> Any:
    if not isinstance(value, dict):
        keys = ", ".join(list(shape.members)[:3])
        errors.append(
            Finding(
                path or "(document)",
                f"{_name(path)} must be an object with keys such as {keys}, not {_describe(value)}",
            )
        )
        return UNSET
    for key in getattr(value, "duplicates", []):
        errors.append(Finding(_join(path, str(key)), f"{shown(str(key))} is given more than once; keep one"))
    result: dict[str, Any] = {}
    for key, item in value.items():
        member = shape.members.get(key) if isinstance(key, str) else None
        if member is None:
            errors.append(Finding(_join(path, str(key)), f"unknown parameter; allowed: {', '.join(shape.members)}"))
            continue
        read = _read(item, member, _join(path, key), errors)
        if read is not UNSET:
            result[key] = read
    return result or UNSET


def _read_list(value: Any, shape: ListOf, path: str, errors: list[Finding]) -> Any:
    if not isinstance(value, list):
        errors.append(Finding(path, f"{_name(path)} must be a list ([...]), not {_describe(value)}"))
        return UNSET
    items = [_read(item, shape.member, f"{path}[{i}]", errors) for i, item in enumerate(value)]
    if all(item is UNSET for item in items):
        return UNSET
    return [{} if item is UNSET else item for item in items]


def _read(value: Any, shape: Shape, path: str, errors: list[Finding]) -> Any:
    """The value with placeholders removed, or UNSET; problems go to `errors`."""
    if value is None:
        return UNSET
    if isinstance(value, _Unreadable) and shape != "timestamp":
        errors.append(Finding(path, f"{_name(path)} cannot be read: {value.why}"))
        return UNSET
    if isinstance(shape, Struct):
        return _read_struct(value, shape, path, errors)
    if isinstance(shape, ListOf):
        return _read_list(value, shape, path, errors)
    return SCALAR_READERS[shape](value, path, errors)


def _check_tag_specifications(params: dict[str, Any], errors: list[Finding]) -> None:
    """ImportImage tags one resource, the task: one specification, import-image-task."""
    specs = params.get("TagSpecifications", [])
    kept = [(i, s) for i, s in enumerate(specs) if s.get("Tags")]
    for i, spec in kept:
        resource = spec.get("ResourceType", TAG_RESOURCE_TYPE)
        if resource != TAG_RESOURCE_TYPE:
            errors.append(
                Finding(
                    f"TagSpecifications[{i}].ResourceType",
                    f"ResourceType must be {TAG_RESOURCE_TYPE}, the only resource ImportImage tags (not {resource!r})",
                )
            )
    for i, _ in kept[1:]:
        errors.append(
            Finding(
                f"TagSpecifications[{i}]",
                "only one tag specification is allowed; put every tag in the first one's Tags",
            )
        )
    if kept:
        params["TagSpecifications"] = [s for _, s in kept]
    else:
        params.pop("TagSpecifications", None)


class _Loader(yaml.SafeLoader):
    """Safe YAML without anchors/aliases (a tiny document could expand enormously), at most
    MAX_DEPTH levels deep, and with duplicate keys remembered rather than silently overwritten."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (*name) are not supported here", event.start_mark
            )
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"the document is nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Object:
    loader.flatten_mapping(node)
    pairs = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool, type(None), date)):
            raise yaml.constructor.ConstructorError(None, None, "keys must be plain names", key_node.start_mark)
        pairs.append((key, loader.construct_object(value_node, deep=True)))
    return _Object(pairs)


def _too_long(text: str) -> _Unreadable | None:
    if len(text) > MAX_NUMBER_CHARS:
        return _Unreadable(f"a number of {len(text):,} characters (at most {MAX_NUMBER_CHARS})")
    return None


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> Any:
    return _too_long(node.value) or yaml.SafeLoader.construct_yaml_int(loader, node)


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> Any:
    return _too_long(node.value) or yaml.SafeLoader.construct_yaml_float(loader, node)


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError):
        return _Unreadable(f"{shown(node.value)}, which is not a date and time of the calendar")


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _depth(document: Any) -> int:
    """How deep lists and objects nest in `document` (iteratively: it may be very deep)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((item, level + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def _json_number(text: str, read: Callable[[str], Any]) -> Any:
    return _too_long(text) or read(text)


TOO_DEEP = f"The document is nested more than {MAX_DEPTH} levels deep: that is no ImportImage request"


def _load(text: str, fmt: str) -> tuple[Any, list[Finding]]:
    """The decoded document, or a finding that says where the syntax is wrong."""
    if fmt == "json":
        try:
            document = json.loads(
                text,
                object_pairs_hook=_Object,
                parse_int=lambda t: _json_number(t, int),
                parse_float=lambda t: _json_number(t, float),
            )
        except json.JSONDecodeError as exc:
            return None, [
                Finding(
                    "(document)", f"The document is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
                )
            ]
        except RecursionError:
            return None, [Finding("(document)", TOO_DEEP)]
        if _depth(document) > MAX_DEPTH:
            return None, [Finding("(document)", TOO_DEEP)]
        return document, []
    if fmt == "yaml":
        try:
            return yaml.load(text, Loader=_Loader), []  # noqa: S506 - _Loader is a SafeLoader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            return None, [Finding("(document)", f"The document is not valid YAML: {shown(problem, 200)}{where}")]
    raise ValueError(f"fmt must be 'json' or 'yaml', not {fmt!r}")


def parse_cli_input(text: str, fmt: Literal["json", "yaml"]) -> tuple[ImportSpec | None, list[Finding]]:
    """Read a ``--cli-input-json`` / ``--cli-input-yaml`` document for ``aws ec2 import-image``.

    Returns ``(spec, [])`` for a request that passes `importspec.validate`, otherwise
    ``(None, findings)``: first the document's own problems (syntax, unknown keys, types), and
    only when there are none, the request's (the rules of `validate`). Findings about the whole
    document have the path ``(document)``.
    """
    document, errors = _load(text, fmt)
    if errors:
        return None, errors
    if document is None:
        return None, [
            Finding(
                "(document)",
                "The document is empty; it should be an object of ImportImage parameters such as DiskContainers",
            )
        ]
    params = _read(document, IMPORT_IMAGE, "", errors)
    params = {} if params is UNSET else params
    _check_tag_specifications(params, errors)
    if errors:
        return None, errors
    spec = from_api_params(params)
    findings = validate(spec)
    return (None, findings) if findings else (spec, [])


# --------------------------------------------------------------------------------------------
# Writing


def _jsonable(value: Any) -> Any:
    """Timestamps as ISO 8601 text (``Z`` for UTC), the form the CLI reads back."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def to_cli_json(spec: ImportSpec) -> str:
    """The request as a ``--cli-input-json`` document, keys in the API's order."""
    return json.dumps(_jsonable(to_api_params(spec)), indent=4, ensure_ascii=False)


def cli_option(member: str) -> str:
    """The CLI's option for an API member, as awscli derives it: ``KmsKeyId`` -> ``--kms-key-id``."""
    return "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", member).lower()


# Text that awscli would not pass on as it is: v1 replaces a top-level string argument starting
# with file://, fileb://, http:// or https:// by the file's or URL's contents, and argparse reads
# a leading "-" as an option (and drops a value of exactly "--" even as --option=--). Such values
# travel in --cli-input-json instead, where they are taken as plain text.
REINTERPRETED_PREFIXES = ("file://", "fileb://", "http://", "https://", "-")


def to_cli_command(spec: ImportSpec, *, multiline: bool = False) -> str:
    """A ready, shell-quoted ``aws ec2 import-image ...`` command for this request.

    Structures and lists go as compact JSON; booleans as ``--dry-run``, ``--encrypted`` /
    ``--no-encrypted``; text awscli would reinterpret (see `REINTERPRETED_PREFIXES`) in a final
    ``--cli-input-json``. With ``multiline`` each option starts a new line after a backslash.
    """
    words = [["aws", "ec2", "import-image"]]
    literal: dict[str, str] = {}
    for member, value in _jsonable(to_api_params(spec)).items():
        option = cli_option(member)
        if isinstance(value, bool):
            words.append([option if value else "--no-" + option[2:]])
        elif isinstance(value, str) and value.startswith(REINTERPRETED_PREFIXES):
            literal[member] = value
        elif isinstance(value, str):
            words.append([option, value])
        else:
            words.append([option, json.dumps(value, ensure_ascii=False, separators=(",", ":"))])
    if literal:
        words.append(["--cli-input-json", json.dumps(literal, ensure_ascii=False, separators=(",", ":"))])
    separator = " \\\n    " if multiline else " "
    return separator.join(" ".join(shlex.quote(w) for w in group) for group in words)
