from __future__ import annotations

import json
from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict, key: str) -> object:
    """`mapping|get_item:key`: a dict look-up with a variable key."""
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def duration(value: timedelta | None) -> str:
    """`1 h 02 min`, `3 min 05 s`, `42 s`."""
    if value is None:
        return ""
    seconds = max(0, int(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@register.filter
def if_none_match(etag: str) -> str:
    """The hx-headers of a polled element whose content has ETag `etag`: its next poll asks
    If-None-Match, the first one included (the browser's cache has not seen the partial yet)."""
    return json.dumps({"If-None-Match": etag})
