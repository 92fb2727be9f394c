"""`python -m wizard.inspect IMAGE [--format VMDK]`: the report as JSON; exit 1 on errors."""

from __future__ import annotations

import argparse
import json
import sys

from . import FileReader, inspect_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wizard.inspect", description="Check a disk image for EC2 VM Import."
    )
    parser.add_argument("image", help="path of the image file")
    parser.add_argument("--format", default="", help="the Format the import will name: OVA, VMDK, VHD, VHDX or RAW")
    args = parser.parse_args(argv)
    try:
        reader = FileReader(args.image)
    except OSError as e:
        parser.error(str(e))
    report = inspect_image(reader, args.format)
    json.dump(report.to_dict(), sys.stdout, indent=2)
    print()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
