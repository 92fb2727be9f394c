"""`python manage.py import_image --cli-input-json FILE --user NAME`: a draft from an AWS CLI document."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from wizard.requests import drafts
from wizard.requests.cli_format import parse_cli_input


class Command(BaseCommand):
    help = "Make a draft import request from an `aws ec2 import-image` --cli-input-json/--cli-input-yaml document."

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--cli-input-json", metavar="FILE", help="JSON document ('-' for standard input)")
        source.add_argument("--cli-input-yaml", metavar="FILE", help="YAML document ('-' for standard input)")
        parser.add_argument("--user", required=True, help="the requester who owns the draft")

    def handle(self, *args: Any, **options: Any) -> None:
        fmt: Literal["json", "yaml"] = "json" if options["cli_input_json"] else "yaml"
        path = options["cli_input_json"] or options["cli_input_yaml"]
        text = sys.stdin.read() if path == "-" else _read(path)
        try:
            user = get_user_model().objects.get(username=options["user"])
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"no user named {options['user']!r}") from exc
        spec, errors = parse_cli_input(text, fmt)
        if errors or spec is None:
            for finding in errors:
                self.stderr.write(f"{finding.path}: {finding.message}")
            raise CommandError(f"{len(errors)} problem(s) in {path}; nothing was saved")
        try:
            draft = drafts.draft_from_spec(user, spec, source=f"cli-input-{fmt} via manage.py")
        except drafts.SourceRefused as refused:
            for finding in refused.findings:
                self.stderr.write(f"{finding.path}: {finding.message}")
            raise CommandError(
                f"{path} names {len(refused.findings)} disk(s) {user.get_username()} may not import; nothing was saved"
            ) from refused
        self.stdout.write(f"draft #{draft.pk} made for {user.get_username()}: {draft.get_absolute_url()}")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
