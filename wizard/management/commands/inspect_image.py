"""`python manage.py inspect_image PATH|s3://bucket/key [--format VMDK] [--json]`: the whole
pre-flight report of one image (container, partitions, guest OS), as the worker makes it: in a
child process with the inspection's time and memory limits (wizard.preflight.inspection). Exit status 1
when VM Import would fail on the image."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from wizard.inspect import FileReader
from wizard.preflight import inspection

MARK = {"error": "ERROR  ", "warning": "WARNING", "info": "info   "}


def render(report: dict[str, Any]) -> str:
    """The report as text: what the image is, the guest it holds, then every finding."""
    lines = [f"image: {report.get('format', '?')}" + (f" ({report['subformat']})" if report.get("subformat") else "")]
    if report.get("virtual_size"):
        lines.append(f"virtual size: {report['virtual_size']} bytes")
    if report.get("partition_table"):
        lines.append(f"partition table: {report['partition_table']}, {len(report.get('partitions') or [])} partitions")
    if report.get("boot_mode_hint"):
        lines.append(f"boots: {report['boot_mode_hint']}")
    guest = report.get("guest") or {}
    if guest.get("os"):
        lines.append(
            f"guest: {guest.get('pretty_name') or (guest.get('distribution', '') + ' ' + guest.get('version', ''))}"
            f" ({guest['os']}, {guest.get('architecture') or 'architecture unknown'})"
        )
        for name in ("root", "kernels", "boot_loader", "default_entry", "fstab"):
            if guest.get(name):
                value = guest[name]
                lines.append(f"  {name}: {', '.join(value) if isinstance(value, list) else value}")
    for system in guest.get("filesystems") or []:
        where = f"logical volume {system['volume']}" if system.get("volume") else f"partition {system.get('partition')}"
        lines.append(f"  {where}: {system.get('type')} {system.get('uuid', '')}".rstrip())
    for f in report.get("findings") or []:
        fix = f.get("fix") or {}
        lines.append(f"{MARK.get(f.get('severity', ''), f.get('severity', ''))} {f.get('code')}: {f.get('message')}")
        if fix:
            lines.append("        suggested: " + ", ".join(f"{k}={v}" for k, v in fix.items()))
    lines.append("OK: VM Import should accept this image" if report.get("ok") else "NOT OK: VM Import would fail")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Inspect a disk image (a local file or s3://bucket/key) as the pre-flight does, and print the report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("image", help="a local path, or s3://bucket/key")
        parser.add_argument("--format", default="", help="the Format the import will name (OVA, VMDK, VHD, VHDX, RAW)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        image, declared = options["image"], options["format"]
        seconds, memory_mb = float(settings.WIZARD_INSPECT_SECONDS), int(settings.WIZARD_INSPECT_MEMORY_MB)
        if image.startswith("s3://"):
            parts = urlsplit(image)
            if not parts.netloc or not parts.path.strip("/"):
                raise CommandError("an S3 image is s3://bucket/key")
            aws = {
                "sandbox": settings.AWS_SANDBOX,
                "region": settings.AWS_REGION,
                "endpoint_url": settings.AWS_ENDPOINT_URL,
            }
            report = inspection.inspect_s3(
                parts.netloc,
                parts.path.lstrip("/"),
                aws=aws,
                declared_format=declared,
                seconds=seconds,
                memory_mb=memory_mb,
            )
        else:
            try:
                reader = FileReader(image)
            except OSError as e:
                raise CommandError(f"{image}: {e.strerror or e}") from None
            report = inspection.inspect_reader(reader, declared_format=declared, seconds=seconds, memory_mb=memory_mb)
        self.stdout.write(json.dumps(report, indent=2) if options["json"] else render(report))
        if not report.get("ok"):
            raise SystemExit(1)
