"""Is a string text that can be stored and shown? One rule for the forms, the CLI documents and the uploads.

Pure Python (no Django): wizard.requests.cli_format uses it without settings; the forms' validator is
wizard.requests.forms.validate_text.

A lone surrogate (half of a UTF-16 pair, e.g. from the JSON escape ``"\\ud800"``) cannot be
encoded as UTF-8: SQLite, PostgreSQL, the audit log's JSON and every page refuse it. NUL is
refused by PostgreSQL in text and in jsonb. Unicode's non-characters (U+FFFE, U+FFFF, U+FDD0 to
U+FDEF and the last two code points of every plane) are not text either.
"""

from __future__ import annotations

import re

_PLANE_ENDS = "".join(chr(plane + 0xFFFE) + chr(plane + 0xFFFF) for plane in range(0, 0x110000, 0x10000))
NOT_TEXT = re.compile("[\x00\ud800-\udfff\ufdd0-\ufdef" + _PLANE_ENDS + "]")
MESSAGE = "contains characters that are not text"


def not_text(value: str) -> str:
    """A description of the first character that is not text (e.g. "U+D800 at position 3"), or ""."""
    found = NOT_TEXT.search(value)
    return f"U+{ord(found[0]):04X} at position {found.start() + 1}" if found else ""


def shown(value: str, limit: int = 60) -> str:
    """`value` safe to put in a message: what is not text replaced by U+FFFD, and cut to `limit` characters."""
    clean = NOT_TEXT.sub("\ufffd", value)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
