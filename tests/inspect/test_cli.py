"""`python -m wizard.inspect`: the report as JSON, exit status 1 when VM Import would fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from wizard.inspect.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wizard.inspect", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def mbr_disk(path: Path) -> Path:
    disk = bytearray(2 * 1024 * 1024)
    disk[446:462] = bytes([0x80, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") + (2048).to_bytes(4, "little")
    disk[510:512] = b"\x55\xaa"
    path.write_bytes(disk)
    return path


def test_good_image_exits_0(tmp_path: Path) -> None:
    done = run(str(mbr_disk(tmp_path / "disk.raw")), "--format", "RAW")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["format"], report["partition_table"], report["boot_mode_hint"], report["ok"]) == (
        "RAW",
        "mbr",
        "legacy-bios",
        True,
    )
    assert report["partitions"][0] == {
        "index": 1,
        "start": 1048576,
        "size": 1048576,
        "type": "0x83",
        "name": "",
        "is_esp": False,
        "bootable": True,
    }


def test_errors_exit_1(tmp_path: Path) -> None:
    done = run(str(mbr_disk(tmp_path / "disk.raw")), "--format", "VHDX")
    assert done.returncode == 1
    assert [f["code"] for f in json.loads(done.stdout)["findings"]] == ["format-mismatch"]
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(4096))
    done = run(str(blank))
    assert done.returncode == 1
    assert json.loads(done.stdout)["findings"][0]["code"] == "no-partitions"


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys) -> None:
    try:
        main([str(tmp_path / "nothing.vmdk")])
    except SystemExit as e:
        assert e.code == 2
    assert "nothing.vmdk" in capsys.readouterr().err
