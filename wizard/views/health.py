from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from wizard.health import run_checks


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 with each part's state, or 503 naming what is down."""
    healthy, results = run_checks()
    return JsonResponse({"status": "ok" if healthy else "down", "checks": results}, status=200 if healthy else 503)
