from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def sandbox(request: HttpRequest) -> dict[str, object]:
    """Every page shows a banner while the sandbox AWS is in use."""
    return {"AWS_SANDBOX": settings.AWS_SANDBOX, "AWS_ENDPOINT_URL": settings.AWS_ENDPOINT_URL}
