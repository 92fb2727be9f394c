"""Guest disks on LVM and Btrfs for the tests, built by the real tools without mounting and
without device-mapper.

LVM: each PV is a partition image attached to a loop device only while lvm2's own pvcreate,
vgcreate and lvcreate write their label and metadata (`--driverloaded n`: no device-mapper, no
activation; a filter that shows LVM only these loop devices; no backup files). The file
systems are made by mkfs.ext4 -d / mkfs.xfs -p on files of their own and written with dd where
`lvs` says the LV's extents are. Btrfs: mkfs.btrfs --rootdir, and btrfs-convert for a real
subvolume (this btrfs-progs has no mkfs.btrfs --subvol; btrfs-convert keeps the ext4 image in a
subvolume named ext2_saved).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import guests
from .conftest import tool

MiB = 1024 * 1024
LVM_TOOLS = ("pvcreate", "vgcreate", "lvcreate", "lvs", "losetup")
BTRFS_TOOLS = ("mkfs.btrfs", "btrfs-convert", "mkfs.xfs")


def require(tools: tuple[str, ...], package: str) -> None:
    """Fails in CI (which installs scripts/system-packages.sh) and skips elsewhere when missing."""
    missing = [t for t in tools if not Path(tool(t)).exists() and not shutil.which(t)]
    if os.geteuid() != 0 and "losetup" in tools:
        missing.append("root (for losetup)")
    if not missing:
        return
    message = f"missing {missing}: apt-get install {package} (scripts/system-packages.sh), as root"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"})
    if done.returncode:
        raise AssertionError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


@contextmanager
def loops(files: list[Path]) -> Iterator[list[str]]:
    """The files attached to loop devices for the block, detached after (ours only, by name)."""
    devices: list[str] = []
    try:
        for f in files:
            devices.append(_run(tool("losetup"), "-f", "--show", str(f)).strip())
        yield devices
    finally:
        for d in devices:
            subprocess.run([tool("losetup"), "-d", d], capture_output=True)


def _config(devices: list[str]) -> str:
    accept = ", ".join(f'"a|^{d}$|"' for d in devices)
    return (
        f'devices {{ filter = [ {accept}, "r|.*|" ] global_filter = [ {accept}, "r|.*|" ] use_devicesfile = 0 '
        "obtain_device_list_from_udev = 0 } backup { backup = 0 archive = 0 } "
        "activation { udev_sync = 0 udev_rules = 0 }"
    )


@dataclass
class Volume:
    name: str
    size_mib: int
    pv: int | None = None  # the PV (index into the PVs) to put it on; None: wherever LVM likes
    image: Path | None = None  # a file system image to write into it
    options: tuple[str, ...] = ()  # more lvcreate options (-i 2: striped; thin, RAID and snapshots need
    # device-mapper, which these tests do without)


def lvm_pvs(work: Path, vg: str, pv_sizes: list[int], volumes: list[Volume], copies: int = 1) -> list[Path]:
    """PV partition images (sizes in MiB) of one VG holding `volumes`, with their file systems;
    `copies` metadata areas on each PV (2: one more at its end)."""
    work.mkdir(parents=True, exist_ok=True)
    files = [guests.partition_image(work / f"{vg}-pv{i}.part", size) for i, size in enumerate(pv_sizes)]
    with loops(files) as devices:
        config = ["--config", _config(devices)]
        lvm = ["--driverloaded", "n", *config]
        for d in devices:
            _run(tool("pvcreate"), "-y", "--pvmetadatacopies", str(copies), *config, d)
        _run(tool("vgcreate"), "-y", "-s", "4M", *config, vg, *devices)
        for v in volumes:
            where = [devices[v.pv]] if v.pv is not None else []
            _run(
                tool("lvcreate"), "-y", "-an", "-Zn", *lvm, "-L", f"{v.size_mib}M", "-n", v.name, *v.options, vg, *where
            )
        report = json.loads(
            _run(
                tool("lvs"),
                *lvm,
                "-a",
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges,vg_extent_size",
                vg,
            )
        )
        pe_start = {
            row["pv_name"]: int(row["pe_start"])
            for row in json.loads(
                _run(
                    tool("pvs"),
                    *config,
                    "--reportformat",
                    "json",
                    "--units",
                    "b",
                    "--nosuffix",
                    "-o",
                    "pv_name,pe_start",
                )
            )["report"][0]["pv"]
        }
        extent = int(report["report"][0]["lv"][0]["vg_extent_size"])
        segments: dict[str, list[tuple[int, str, int, int]]] = {}
        for row in report["report"][0]["lv"]:
            for pe_range in row["seg_pe_ranges"].split():
                device, _, span = pe_range.rpartition(":")
                first, _, last = span.partition("-")
                segments.setdefault(row["lv_name"], []).append(
                    (int(row["seg_start_pe"]), device, int(first), int(last) - int(first) + 1)
                )
    for v in volumes:
        if v.image is None:
            continue
        for lv_first, device, first, count in sorted(segments[v.name]):
            target = files[devices.index(device)]
            at = pe_start[device] + first * extent
            skip = lv_first * extent
            dd = ["dd", f"if={v.image}", f"of={target}", "bs=1M", f"seek={at // MiB}", f"skip={skip // MiB}"]
            subprocess.run(
                [*dd, f"count={count * extent // MiB}", "conv=notrunc,sparse"], check=True, capture_output=True
            )
    return files


def xfs_image(path: Path, files: dict[str, bytes | str], size_mib: int = 300, uuid: str = guests.ROOT_UUID) -> Path:
    """An XFS file system image made by mkfs.xfs -p (a protofile of `files`)."""
    tree = path.with_suffix(".tree")
    shutil.rmtree(tree, ignore_errors=True)
    guests.write_tree(tree, files)
    proto = path.with_suffix(".proto")
    proto.write_text(guests.protofile(tree))
    guests.partition_image(path, size_mib)
    _run(tool("mkfs.xfs"), "-q", "-f", "-m", f"uuid={uuid}", "-p", str(proto), str(path))
    return path


def ext4_image(path: Path, files: dict[str, bytes | str], size_mib: int, uuid: str) -> Path:
    tree = path.with_suffix(".tree")
    shutil.rmtree(tree, ignore_errors=True)
    guests.write_tree(tree, files)
    guests.partition_image(path, size_mib)
    _run(tool("mkfs.ext4"), "-q", "-F", "-b", "4096", "-U", uuid, "-d", str(tree), str(path))
    return path


def btrfs_image(path: Path, files: dict[str, bytes | str], size_mib: int = 120, uuid: str = "") -> Path:
    tree = path.with_suffix(".tree")
    shutil.rmtree(tree, ignore_errors=True)
    guests.write_tree(tree, files)
    guests.partition_image(path, size_mib)
    _run(tool("mkfs.btrfs"), "-q", "-f", *(["-U", uuid] if uuid else []), "--rootdir", str(tree), str(path))
    return path


def btrfs_converted(path: Path, files: dict[str, bytes | str], size_mib: int = 120, uuid: str = "") -> Path:
    """A Btrfs made by btrfs-convert from an ext4 of `files`: the files in the top level, and
    the ext4's image kept in the subvolume ext2_saved (id 256)."""
    ext4_image(path, files, size_mib, guests.ROOT_UUID)
    _run(tool("btrfs-convert"), *(["--uuid", uuid] if uuid else []), str(path))
    return path
