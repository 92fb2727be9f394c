"""The JSON API for scripts and pipelines (django-ninja), under /api/v1/.

Thin: every endpoint calls the same services as the pages (wizard.requests.drafts, submission, review,
cancelling, uploads, batches), so the permissions and rules are the same. Authentication is
by a per-user token (wizard.api.tokens) in `Authorization: Bearer iw_...`; the OpenAPI
description is served at /api/v1/openapi.json, generated from the code.
"""

from __future__ import annotations

from wizard.api.endpoints import api

__all__ = ["api"]
