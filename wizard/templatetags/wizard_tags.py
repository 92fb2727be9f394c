from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict, key: str):
    """`mapping|get_item:key`: a dict look-up with a variable key."""
    return mapping.get(key) if hasattr(mapping, "get") else None
