"""AWS's answers kept for a few seconds (settings.AWS_ANSWER_SECONDS) for the pages that show them.

A draft's encryption and review steps, the submit and the reviewer's page each ask IAM, S3 and KMS
the same questions (is the service role right, is the bucket in the region, which keys are
there); a person walking the wizard asks them again within seconds. Their answers are kept per
process (Django's local-memory cache "aws") for that long, keyed by everything the answer
depends on: the account (the target's role, or the application's own credentials), the region
and the question's arguments. Nothing that acts reads them: dispatch asks the account afresh
right before ImportImage. Only answers are kept: an exception (AWS unreachable) is not.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.cache import caches

from wizard.aws.clients import TargetLike

ALIAS = "aws"
MISSING = object()  # what `get` returns when nothing is kept (an answer may be [] or "")


def account_of(target: TargetLike | None) -> tuple[str, str, str] | None:
    """Who answers: None for the application's own account, else the target's role and region."""
    return None if target is None else (target.role_arn, target.external_id, target.region)


def _key(question: str, parts: tuple[Any, ...]) -> str:
    return f"{question}:" + hashlib.sha256(repr((settings.AWS_ENDPOINT_URL, parts)).encode()).hexdigest()


def get(question: str, parts: tuple[Any, ...]) -> Any:
    """The answer kept for `question` with `parts`, or `MISSING`."""
    return caches[ALIAS].get(_key(question, parts), MISSING)


def put(question: str, parts: tuple[Any, ...], answer: Any) -> None:
    caches[ALIAS].set(_key(question, parts), answer, settings.AWS_ANSWER_SECONDS)


def forget() -> None:
    """Drop every answer kept (tests; an administrator's change to expect at once)."""
    caches[ALIAS].clear()
