"""The seeded, bounded fuzz of the whole inspection over real LVM and Btrfs disks: the PV label,
the metadata area's header and its text, the Btrfs superblock and tree nodes mutated (with
LVM's checksums made right again most of the time, so the parsing behind them is reached).
Each case runs in a child under the watchdog of tests/inspect/fuzzing.py: none may hang,
raise, be caught only by the inspector's last-resort net, or go over its memory and read
limits."""

from __future__ import annotations

import random
import re
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from wizard.inspect import FileReader, btrfs, lvm

from . import guests
from . import volume_guests as vg
from .conftest import require_tools
from .fuzzing import Case, Limits, Result, describe, run_built
from .helpers import PatchedReader
from .test_btrfs import sles

MiB = 1024 * 1024
CASES = 150
EXTREMES = [0, 1, 511, 512, 2**31, 2**32 - 1, 2**63, 2**64 - 1]
PV_AT = MiB  # the PV is partition 1


@pytest.fixture(scope="module")
def lvm_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    vg.require(vg.LVM_TOOLS, "lvm2")
    work = tmp_path_factory.mktemp("lvm-fuzz")
    root, _ = guests.linux("rhel", "8.6", "4.18.0-372.9.1.el8_6.x86_64", boot="bls-default")
    root["etc/fstab"] = guests.fstab("/dev/mapper/rhel-root / xfs defaults 0 0")
    xfs = vg.xfs_image(work / "root.xfs", root)
    (pv,) = vg.lvm_pvs(work, "rhel", [320], [vg.Volume("root", 304, image=xfs), vg.Volume("swap", 8)])
    return guests.assemble(work / "disk.raw", [(320, pv)])


@pytest.fixture(scope="module")
def btrfs_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    vg.require(vg.BTRFS_TOOLS, "btrfs-progs")
    work = tmp_path_factory.mktemp("btrfs-fuzz")
    fs = vg.btrfs_converted(work / "root.btrfs", sles())
    return guests.assemble(work / "disk.raw", [(120, fs)])


def lvm_cases(disk: Path) -> Callable[[int], Case]:
    base = FileReader(disk)
    mda = PV_AT + 4096
    header = bytearray(base.read(mda, 512))
    where, length = struct.unpack_from("<QQ", header, 40)
    text = bytearray(base.read(mda + where, length))
    numbers = [m.start() for m in re.finditer(rb"\d+", text)]
    specials = [m.start() for m in re.finditer(rb'[{}\[\]="]', text)]

    def build(index: int) -> Case:
        rng = random.Random(f"lvm:{index}")
        label = bytearray(base.read(PV_AT + 512, 512))
        head, body = bytearray(header), bytearray(text)
        what = rng.choice(["label", "header", "text", "text", "text"])
        if what == "label":
            for _ in range(rng.randint(1, 4)):
                label[rng.randrange(20, 200)] = rng.randrange(256)
        elif what == "header":
            at = rng.choice([20, 24, 32, 40, 48, 56, 60, 64])
            head[at : at + 8] = struct.pack("<Q", rng.choice(EXTREMES + [rng.randrange(2**20)]))
        else:
            for _ in range(rng.randint(1, 3)):
                kind = rng.random()
                if kind < 0.4 and numbers:  # a number made extreme
                    at = rng.choice(numbers)
                    body[at : at + 1] = str(rng.choice(EXTREMES)).encode()
                elif kind < 0.7 and specials:  # a brace, bracket, '=' or quote changed
                    body[rng.choice(specials)] = rng.choice(b'{}[]=",# \n')
                else:
                    body[rng.randrange(len(body))] = rng.randrange(256)
            struct.pack_into("<QQI", head, 40, where, len(body), lvm.crc(bytes(body)))
        fixed = rng.random() < 0.8
        if fixed:  # the checksums made right again: the parsing behind them is reached
            struct.pack_into("<I", label, 16, lvm.crc(bytes(label[20:])))
            struct.pack_into("<I", head, 0, lvm.crc(bytes(head[4:])))
        patches = {PV_AT + 512: bytes(label), mda: bytes(head), mda + where: bytes(body)}
        return Case(index, f"lvm {what}{' (checksums fixed)' if fixed else ''}", PatchedReader(base, patches))

    return build


def btrfs_cases(disk: Path) -> Callable[[int], Case]:
    base = FileReader(disk)
    start = MiB
    fs = btrfs.read(base, start, 120 * MiB)
    files = btrfs.root_files(fs)
    assert fs.reader is not None and files is not None and files.file("/etc/os-release")
    nodes = [start + fs.reader.physical(logical, fs.reader.nodesize) for logical in fs.reader.cache]
    superblock = start + btrfs.SUPERBLOCK
    fields = [0x50, 0x58, 0x80, 0x88, 0x90, 0x94, 0xA0, 0xC6, 0xC7, 0x32B, 0x32B + 17, 0x32B + 17 + 44, 0x32B + 65]

    def build(index: int) -> Case:
        rng = random.Random(f"btrfs:{index}")
        patches: dict[int, bytes] = {}
        what = rng.choice(["superblock", "node", "node"])
        for _ in range(rng.randint(1, 6)):
            if what == "superblock":
                at = superblock + rng.choice(fields)
            else:
                node = rng.choice(nodes)
                at = node + rng.choice([0x30, 0x60, 0x64, 101 + 25 * rng.randrange(8) + rng.randrange(25)])
                at = at if rng.random() < 0.7 else node + rng.randrange(4096)
            value = rng.choice(EXTREMES + [rng.randrange(2**16)])
            patches[at] = struct.pack("<Q", value) if rng.random() < 0.6 else bytes([value & 0xFF])
        return Case(index, f"btrfs {what}", PatchedReader(base, patches))

    return build


def check(results: list[Result]) -> Counter[str]:
    assert len(results) == CASES
    failed = [r for r in results if r.kind != "ok"]
    assert not failed, "\n".join(describe(r) for r in failed[:10])
    limits = Limits()
    assert max(r.reads for r in results) <= limits.reads
    assert max(r.read_bytes for r in results) <= limits.read_bytes
    assert max(r.peak_memory for r in results) <= limits.peak_memory
    return Counter(code for r in results for code in r.codes)


def test_mutated_lvm_disks(lvm_disk: Path) -> None:
    results = list(run_built(lvm_cases(lvm_disk), range(CASES), Limits(timeout=10)))
    found = check(results)
    # not degenerate: some cases are still read to the OS, some are judged damaged
    assert found["os-supported"] > 10 and found["lvm-unreadable"] > 10, found


def test_mutated_btrfs_disks(btrfs_disk: Path) -> None:
    results = list(run_built(btrfs_cases(btrfs_disk), range(CASES), Limits(timeout=10)))
    found = check(results)
    assert found["btrfs-subvolumes"] > 10 and found["btrfs"] > 10, found
