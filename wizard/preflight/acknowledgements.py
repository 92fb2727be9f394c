"""Warnings need an acknowledgement: which findings need one, and whether one covers them.

Errors block a submission; a warning (an image's, e.g. `static-network`, or the account check's)
does not, but the requester must say they read it: "I have read these warnings and want to
import anyway". An acknowledgement is the exact set of warnings it covers, each as a `Key`:
(the DiskContainer's pk, or None for a warning of the whole request; the finding's code). It
covers the current findings when every warning's key is in it; a new image, or a re-inspection
that finds a new warning, brings a key it does not hold, and the submission asks again.

Pure, generic over codes (the inspector grows new ones): the storing and the audit are in
wizard.requests.acknowledgement, the rule is applied by wizard.requests.submission.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from wizard.requests.steps import Placed
from wizard.text import NOT_TEXT

WARNING = "warning"
Key = tuple[int | None, str]
MAX_TOKEN = 50_000  # characters of a posted set of warnings; a page shows far fewer
MAX_CODE = 200
_SLUG = re.compile(r"[^a-z0-9]+")


def fallback_code(path: str, message: str, prefix: str = "warning") -> str:
    """A code for a warning that has none (the account check's problems): the place it concerns and
    a digest of what it says, so that another problem at the same place is another warning."""
    slug = _SLUG.sub("-", path.lower()).strip("-")[:60] or "request"
    digest = hashlib.sha256(f"{path}\n{message}".encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{prefix}-{slug}-{digest}"


def account_code(path: str, message: str) -> str:
    return fallback_code(path, message, prefix="account")


def needing(findings: Iterable[Placed]) -> list[Placed]:
    """The findings that need an acknowledgement: every warning, whatever its code."""
    return [f for f in findings if f.severity == WARNING]


def key_of(finding: Placed) -> Key:
    return (finding.disk, finding.code or fallback_code(finding.path, finding.message))


def keys(findings: Iterable[Placed]) -> frozenset[Key]:
    """The keys of the warnings among `findings` (errors and infos need no acknowledgement)."""
    return frozenset(key_of(f) for f in needing(findings))


def uncovered(findings: Iterable[Placed], acknowledged: Iterable[Key]) -> list[Placed]:
    """The warnings `acknowledged` does not cover, in the order they were found."""
    have = frozenset(acknowledged)
    return [f for f in needing(findings) if key_of(f) not in have]


def covers(acknowledged: Iterable[Key], findings: Iterable[Placed]) -> bool:
    return not uncovered(findings, acknowledged)


def codes(found: Iterable[Key]) -> list[str]:
    """The codes of a set of keys, each once, sorted."""
    return sorted({code for _, code in found})


def from_codes(findings: Iterable[Placed], wanted: Iterable[str]) -> tuple[frozenset[Key], list[str]]:
    """The API acknowledges by code: the keys of the warnings whose code is one of `wanted`, and
    the codes of `wanted` that no warning has (sorted)."""
    wanted = set(wanted)
    found = keys(findings)
    return frozenset(k for k in found if k[1] in wanted), sorted(wanted - {code for _, code in found})


def _sorted(found: Iterable[Key]) -> list[Key]:
    return sorted(found, key=lambda k: (k[0] is not None, k[0] or 0, k[1]))


def as_stored(found: Iterable[Key]) -> list[dict[str, Any]]:
    """A set of keys as JSON, in a fixed order: [{"disk": pk or null, "code": ...}, ...]."""
    return [{"disk": disk, "code": code} for disk, code in _sorted(found)]


def _key(disk: Any, code: Any) -> Key | None:
    if disk is not None and (isinstance(disk, bool) or not isinstance(disk, int) or not 0 < disk < 2**63):
        return None
    if not isinstance(code, str) or not code or len(code) > MAX_CODE or NOT_TEXT.search(code):
        return None
    return (disk, code)


def from_stored(value: Any) -> frozenset[Key]:
    """The keys of a stored acknowledgement; anything malformed in it covers nothing."""
    found = set()
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and (k := _key(item.get("disk"), item.get("code"))):
            found.add(k)
    return frozenset(found)


def token(found: Iterable[Key]) -> str:
    """The set of warnings a page showed, for its form to post back (compact JSON, fixed order)."""
    return json.dumps([[disk, code] for disk, code in _sorted(found)], separators=(",", ":"))


def parse_token(text: Any) -> frozenset[Key] | None:
    """The set of warnings a form posted (see `token`); None when it is not one (tampered, cut, absurd)."""
    if not isinstance(text, str) or len(text) > MAX_TOKEN:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    found = set()
    for item in value:
        if not (isinstance(item, list) and len(item) == 2) or (k := _key(item[0], item[1])) is None:
            return None
        found.add(k)
    return frozenset(found)
