"""The guest on LVM: physical volumes written by lvm2's own tools (on loop devices, without
device-mapper), their logical volumes filled by mkfs images, the root found inside an LV and
checked like a partition; a volume group spanning two disks; the text parser on any input."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wizard.inspect import FileReader, inspect_image, lvm
from wizard.inspect.reader import HEAD, NEAR
from wizard.inspect.volumes import Volumes

from . import guests
from . import volume_guests as vg
from .conftest import require_tools
from .helpers import BytesReader, CountingReader, PatchedReader

MiB = 1024 * 1024
KERNEL = "4.18.0-372.9.1.el8_6.x86_64"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    vg.require(vg.LVM_TOOLS, "lvm2")
    return tmp_path_factory.mktemp("lvm")


def codes(report) -> dict[str, str]:
    return {f.code: f.severity for f in report.findings}


def rhel_on_lvm(work: Path, name: str, fstab: list[str], boot: str = "bls-default") -> Path:
    """The standard RHEL layout: /boot (ext4) on partition 1, the PV on partition 2 holding
    rhel/root (XFS) and rhel/swap."""
    root, files = guests.linux("rhel", "8.6", KERNEL, boot=boot, separate_boot=True)
    assert files is not None
    root["etc/fstab"] = guests.fstab(*fstab)
    folder = work / name
    xfs = vg.xfs_image(folder / "root.xfs", root)
    boot_fs = vg.ext4_image(folder / "boot.ext4", files, 16, guests.BOOT_UUID)
    (pv,) = vg.lvm_pvs(folder, "rhel", [320], [vg.Volume("root", 304, image=xfs), vg.Volume("swap", 8)])
    return guests.assemble(folder / "disk.raw", [(16, boot_fs), (320, pv)])


STANDARD = [
    "/dev/mapper/rhel-root / xfs defaults 0 0",
    f"UUID={guests.BOOT_UUID} /boot ext4 defaults 1 2",
    "/dev/mapper/rhel-swap none swap defaults 0 0",
]


@pytest.fixture(scope="module")
def rhel(work: Path) -> Path:
    return rhel_on_lvm(work, "rhel", STANDARD)


@pytest.mark.parametrize("fmt", ["raw", "vhdx"])
def test_rhel_root_on_a_logical_volume_is_checked_like_a_partition(rhel: Path, fmt: str) -> None:
    report = inspect_image(FileReader(guests.convert(rhel, fmt)))
    g = report.guest
    assert report.ok, report.findings
    assert (g.distribution, g.version, g.architecture, g.boot_loader) == ("rhel", "8.6", "x86_64", "grub-bls")
    assert g.root == "logical volume rhel/root (xfs)" and g.separate_boot and g.kernels == [KERNEL]
    assert g.default_entry == f"abc123-{KERNEL}"
    assert g.fstab[0] == "/dev/mapper/rhel-root / xfs"
    assert [(s["type"], s.get("volume")) for s in g.filesystems] == [
        ("ext4", None),
        ("lvm", None),
        ("xfs", "rhel/root"),
    ]
    assert codes(report)["lvm"] == "info"
    assert "volume group rhel" in next(f.message for f in report.findings if f.code == "lvm")
    assert "fstab-unresolved" not in codes(report) and "lvm-spans-disks" not in codes(report)


def test_the_command_names_the_logical_volume(rhel: Path) -> None:
    from wizard.management.commands.inspect_image import render

    text = render(inspect_image(FileReader(rhel)).to_dict())
    assert "  root: logical volume rhel/root (xfs)" in text
    assert f"  logical volume rhel/root: xfs {guests.ROOT_UUID}" in text and "  partition 2: lvm " in text


def test_the_lvm_guest_is_read_in_few_reads(rhel: Path) -> None:
    reader = CountingReader(FileReader(rhel))
    report = inspect_image(reader)
    assert report.guest.root.startswith("logical volume")
    # measured: 19 reads, 592 KiB (head, tail, PV label and metadata pages, the XFS and ext4 pages)
    # before the first 4 MiB were read at once; 4.8 MiB with them
    assert len(reader.reads) <= 24
    assert reader.total < NEAR + 1 * MiB
    assert max(length for _, length in reader.reads) <= NEAR - HEAD


def test_fstab_names_by_dev_vg_lv_and_a_missing_lv(work: Path) -> None:
    disk = rhel_on_lvm(
        work,
        "paths",
        [
            f"UUID={guests.ROOT_UUID} / xfs defaults 0 0",
            f"UUID={guests.BOOT_UUID} /boot ext4 defaults 1 2",
            "/dev/rhel/swap none swap defaults 0 0",
            "/dev/mapper/rhel-home /home xfs defaults 0 0",
            "/dev/rhel/var /var xfs defaults 0 0",
        ],
        boot="bls",
    )
    report = inspect_image(FileReader(disk))
    unresolved = [f.message for f in report.findings if f.code == "fstab-unresolved"]
    assert len(unresolved) == 2 and all("no LVM logical volume of that name" in m for m in unresolved)
    assert "/dev/mapper/rhel-home" in unresolved[0] and "/dev/rhel/var" in unresolved[1]
    assert codes(report)["fstab-unresolved"] == "warning"
    assert codes(report)["bls-no-default"] == "error"  # the BLS check reads /boot as for a partition root


@pytest.fixture(scope="module")
def spanning(work: Path) -> tuple[Path, Path, Path]:
    """One VG on two disks: rhel/root on the first disk's PV only, rhel/data on the second's,
    rhel/big over both; and a copy of the first disk whose root LV also spans both."""
    root, _ = guests.linux("rhel", "8.6", KERNEL, boot="bls-default")
    root["etc/fstab"] = guests.fstab("/dev/mapper/rhel-root / xfs defaults 0 0")
    folder = work / "span"
    xfs = vg.xfs_image(folder / "root.xfs", root)
    volumes = [
        vg.Volume("root", 304, pv=0, image=xfs),
        vg.Volume("data", 16, pv=1),
        vg.Volume("big", 32),  # what is left of PV 0, then PV 1
    ]
    pv0, pv1 = vg.lvm_pvs(folder, "rhel", [320, 320], volumes)
    first = guests.assemble(folder / "first.raw", [(320, pv0)])
    second = guests.assemble(folder / "second.raw", [(320, pv1)])
    other = work / "span-root"
    xfs = vg.xfs_image(other / "root.xfs", root)
    a, _ = vg.lvm_pvs(other, "rhel", [200, 200], [vg.Volume("root", 304, image=xfs)])
    return first, second, guests.assemble(other / "first.raw", [(200, a)])


def test_a_volume_group_spanning_disks_is_a_warning_when_the_root_is_here(spanning: tuple[Path, Path, Path]) -> None:
    report = inspect_image(FileReader(spanning[0]))
    assert report.guest.distribution == "rhel" and report.guest.root == "logical volume rhel/root (xfs)"
    assert codes(report)["lvm-spans-disks"] == "warning"
    message = next(f.message for f in report.findings if f.code == "lvm-spans-disks")
    assert "1 of its 2 physical volumes" in message and "rhel/data, rhel/big" in message
    assert "DiskContainer of the same import" in message
    second = inspect_image(FileReader(spanning[1])).guest
    (group,) = report.guest.volume_groups
    (other,) = second.volume_groups
    assert group["id"] == other["id"] and group["name"] == "rhel" and group["lvs"] == ["root", "data", "big"]
    assert group["missing"] == [pv for pv in group["pvs"] if pv not in other["missing"]]  # the disks match by PV
    assert sorted(group["missing"] + other["missing"]) == sorted(group["pvs"])


def test_a_volume_group_spanning_disks_is_an_error_when_the_root_is_cut(spanning: tuple[Path, Path, Path]) -> None:
    second = inspect_image(FileReader(spanning[1]))
    assert codes(second)["lvm-spans-disks"] == "error" and "no-os" not in codes(second)
    cut = inspect_image(FileReader(spanning[2]))
    assert codes(cut)["lvm-spans-disks"] == "error"
    assert "rhel/root" in next(f.message for f in cut.findings if f.code == "lvm-spans-disks")
    assert not cut.ok


def test_a_striped_logical_volume_is_named_not_read(work: Path) -> None:
    pv0, pv1 = vg.lvm_pvs(work / "striped", "data", [40, 40], [vg.Volume("stripes", 16, options=("-i", "2"))])
    report = inspect_image(FileReader(guests.assemble(work / "striped.raw", [(40, pv0), (40, pv1)])))
    assert codes(report)["lvm-not-read"] == "warning"
    assert "data/stripes (striped over 2 PVs)" in next(f.message for f in report.findings if f.code == "lvm-not-read")
    assert "no-os" not in codes(report)  # the root may be on it: not judged missing


def test_a_btrfs_root_on_a_logical_volume(work: Path) -> None:
    root, _ = guests.linux("sles", "15.3", "5.3.18-57-default")
    root["etc/fstab"] = guests.fstab("/dev/system/root / btrfs defaults 0 0")
    fs = vg.btrfs_image(work / "root.btrfs", root)
    (pv,) = vg.lvm_pvs(work / "btrfs", "system", [130], [vg.Volume("root", 120, image=fs)])
    report = inspect_image(FileReader(guests.assemble(work / "btrfs-lv.raw", [(130, pv)])))
    assert report.ok, report.findings
    assert report.guest.root == "logical volume system/root (btrfs)" and report.guest.distribution == "sles"
    assert "Logical volume system/root is Btrfs" in next(f.message for f in report.findings if f.code == "btrfs")


def test_an_lvm_root_holding_no_os_is_no_os(work: Path) -> None:
    data = vg.ext4_image(work / "data.ext4", {"srv/file": b"x"}, 16, guests.ROOT_UUID)
    (pv,) = vg.lvm_pvs(work / "data", "data", [24], [vg.Volume("srv", 16, image=data)])
    report = inspect_image(FileReader(guests.assemble(work / "data.raw", [(24, pv)])))
    assert codes(report)["no-os"] == "error"


# --- the PV label, the metadata area and the text, on damaged input -------------------------


def test_damaged_metadata_is_a_warning(rhel: Path) -> None:
    start = MiB * 17  # partition 2
    base = FileReader(rhel)
    current = int.from_bytes(base.read(start + 4096 + 40, 8), "little")  # the metadata text's place in its area
    bad_label = PatchedReader(base, {start + 512 + 40: b"\xff"})  # in the label's checksummed part
    bad_text = PatchedReader(base, {start + 4096 + current + 10: b"}}}"})
    for reader in (bad_label, bad_text):
        report = inspect_image(reader)
        assert codes(report)["lvm-unreadable"] == "warning"
        assert "no-os" not in codes(report)


def test_a_second_metadata_copy_is_read_when_the_first_is_damaged(work: Path) -> None:
    data = vg.ext4_image(work / "copies.ext4", {"etc/hostname": b"x\n"}, 16, guests.ROOT_UUID)
    (pv,) = vg.lvm_pvs(work / "copies", "two", [24], [vg.Volume("lv", 16, image=data)], copies=2)
    disk = FileReader(guests.assemble(work / "copies.raw", [(24, pv)]))
    label = lvm.label(disk, MiB, 24 * MiB)
    assert label is not None and len(label.metadata) == 2 and label.metadata[1][0] > 20 * MiB
    damaged = PatchedReader(disk, {MiB + label.metadata[0][0] + 8: b"\xff"})  # the first header's magic
    for reader in (disk, damaged):
        (group,) = lvm.volume_groups(reader, [lvm.label(reader, MiB, 24 * MiB)])  # type: ignore[list-item]
        assert [lv.name for lv in group.lvs] == ["lv"]
        report = inspect_image(reader)
        assert "lvm-unreadable" not in codes(report)
        assert [s.get("volume") for s in report.guest.filesystems] == [None, "two/lv"]
    both = PatchedReader(damaged, {MiB + label.metadata[1][0] + 8: b"\xff"})
    assert codes(inspect_image(both))["lvm-unreadable"] == "warning"


def test_metadata_text_wraps_round_the_circular_buffer() -> None:
    text = b'vg {\nid = "x"\nseqno = 2\nextent_size = 8192\nphysical_volumes {\n}\n}\n'
    size = 8 * 512
    area = bytearray(size)
    where = size - 20  # the text runs past the end, and goes on right after the header
    area[where:] = text[:20]
    area[512 : 512 + len(text) - 20] = text[20:]
    header = bytearray(512)
    header[4:20] = lvm.MDA_MAGIC
    header[20:40] = (1).to_bytes(4, "little") + (4096).to_bytes(8, "little") + size.to_bytes(8, "little")
    header[40:60] = where.to_bytes(8, "little") + len(text).to_bytes(8, "little") + lvm.crc(text).to_bytes(4, "little")
    header[0:4] = lvm.crc(bytes(header[4:])).to_bytes(4, "little")
    area[:512] = header
    disk = bytes(4096) + bytes(area)
    label = lvm.Label(0, len(disk), "x" * 32, len(disk), [], [(4096, size)])
    assert lvm.metadata_text(BytesReader(disk), label) == text.decode()
    assert lvm.volume_group(text.decode()).name == "vg"


THIN = """
vg {
id = "a"
seqno = 7
extent_size = 8192
physical_volumes { pv0 { id = "abc-def" pe_start = 2048 pe_count = 10 } }
logical_volumes {
pool { status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 4 type = "thin-pool" metadata = "pool_tmeta" pool = "pool_tdata" } }
pool_tdata { status = ["READ", "WRITE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 4 type = "striped" stripe_count = 1 stripes = ["pv0", 0] } }
thin { status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 8 type = "thin" thin_pool = "pool" device_id = 1 } }
r { status = ["VISIBLE"] segment_count = 1 segment1 { start_extent = 0 extent_count = 1 type = "raid1" } }
snap { status = ["VISIBLE"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv0", 9] } }
snapshot0 { status = ["READ"] segment_count = 1
  segment1 { start_extent = 0 extent_count = 1 type = "snapshot" origin = "thin" cow_store = "snap" } }
"a-b" { }
}
}
"""


def test_thin_raid_and_snapshot_volumes_are_told_apart() -> None:
    with pytest.raises(lvm.LvmError):
        lvm.volume_group(THIN)  # a quoted section name is no LVM text
    group = lvm.volume_group(THIN.replace('"a-b" { }\n', ""))
    kinds = {lv.name: (lv.visible, lv.kind) for lv in group.lvs}
    assert kinds == {
        "pool": (True, "thin-pool"),
        "pool_tdata": (False, "linear"),
        "thin": (True, "thin"),
        "r": (True, "raid1"),
        "snap": (True, "linear"),
        "snapshot0": (False, "snapshot"),
    }
    assert group.snapshots == {"snap"} and group.extent_size == 4 * MiB
    assert group.pvs["pv0"].uuid == "abcdef" and group.pvs["pv0"].pe_start == MiB
    assert next(lv for lv in group.lvs if lv.name == "thin").mapper == "vg-thin"
    assert lvm.LogicalVolume("my-lv", "my-vg", True, [], 0).mapper == "my--vg-my--lv"  # as device-mapper names it


def test_fstab_device_paths_of_logical_volumes() -> None:
    text = THIN.replace('"a-b" { }\n', "").replace("vg {", "my-vg {", 1)
    volumes = Volumes(groups=[lvm.volume_group(text)])
    assert volumes.resolves("/dev/mapper/my--vg-thin") is True and volumes.resolves("/dev/my-vg/thin") is True
    assert volumes.resolves("/dev/mapper/my--vg-home") is False and volumes.resolves("/dev/my-vg/home") is False
    assert volumes.resolves("/dev/mapper/luks-0a6f2c2e") is None  # not LVM's: not judged here
    assert volumes.resolves("/dev/sda1") is None and volumes.resolves("UUID=x") is None
    assert Volumes().resolves("/dev/mapper/rhel-root") is None  # no LVM in the image at all


def test_names_longer_than_lvm_allows_are_damage() -> None:
    text = THIN.replace('"a-b" { }\n', "")
    with pytest.raises(lvm.LvmError):
        lvm.volume_group(text.replace("vg {", "v" * 129 + " {", 1))
    with pytest.raises(lvm.LvmError):
        lvm.volume_group(text.replace("thin {", "t" * 129 + " {", 1))
    assert lvm.volume_group(text.replace("vg {", "v" * 128 + " {", 1)).name == "v" * 128


def test_parse_examples() -> None:
    assert lvm.parse('a = 1\nb = "x \\"y\\""  # comment\nc = [1, "z"]\nd { e = -2 f = [] }\n') == {
        "a": 1,
        "b": 'x "y"',
        "c": [1, "z"],
        "d": {"e": -2, "f": []},
    }
    for bad in ["a = ", "a {", "}", "a = [1", "= 1", "a b", "a = {", "a = [[1]]", "a = ]"]:
        with pytest.raises(lvm.LvmError):
            lvm.parse(bad)
    with pytest.raises(lvm.LvmError):
        lvm.parse("a { " * (lvm.MAX_DEPTH + 1) + "}" * (lvm.MAX_DEPTH + 1))
    with pytest.raises(lvm.LvmError):
        lvm.parse("x" * (lvm.MAX_TEXT + 1))


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.+]{0,8}", fullmatch=True)
SCALARS = st.integers(-(2**63), 2**63) | st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
VALUES = st.recursive(
    SCALARS | st.lists(SCALARS, max_size=4),
    lambda inner: st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=12,
)


def dump(section: dict[str, object], depth: int = 0) -> str:
    """A test-side writer of LVM's text format (strings escaped as LVM writes them)."""

    def scalar(v: object) -> str:
        return str(v) if isinstance(v, int) else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for key, value in section.items():
        if isinstance(value, dict):
            lines.append(f"{key} {{\n{dump(value, depth + 1)}}}")
        elif isinstance(value, list):
            lines.append(f"{key} = [{', '.join(scalar(v) for v in value)}]")
        else:
            lines.append(f"{key} = {scalar(value)}")
    return "".join(line + "\n" for line in lines)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(NAMES, VALUES, max_size=5))
def test_parse_reads_back_what_the_format_writes(tree: dict[str, object]) -> None:
    assert lvm.parse(dump(tree)) == tree


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_parse_and_volume_group_on_any_text_raise_only_their_error(text: str) -> None:
    for f in (lvm.parse, lvm.volume_group):
        with contextlib.suppress(lvm.LvmError):
            f(text)


def test_mutated_pv_bytes_raise_only_lvm_error(rhel: Path) -> None:
    """A bounded fuzz: bytes of the real PV's label, metadata area header and text flipped,
    fields set to extreme values; the LVM reader either reads it or raises LvmError."""
    start = 17 * MiB
    base = FileReader(rhel)
    pv = base.read(start, 16 * 1024)
    rng = random.Random(2012)
    outcomes = {"read": 0, "error": 0}
    for _ in range(400):
        data = bytearray(pv)
        for _ in range(rng.randint(1, 6)):
            at = rng.choice([rng.randrange(512, 1024), rng.randrange(4096, 4096 + 64), rng.randrange(4096, 16384)])
            data[at] = rng.randrange(256)
        if rng.random() < 0.3:  # and fix the checksums, so the parsing behind them is reached
            data[512 + 16 : 512 + 20] = lvm.crc(bytes(data[512 + 20 : 1024])).to_bytes(4, "little")
            data[4096 : 4096 + 4] = lvm.crc(bytes(data[4096 + 4 : 4096 + 512])).to_bytes(4, "little")
        reader = PatchedReader(base, {start: bytes(data)})
        try:
            label = lvm.label(reader, start, 320 * MiB)
            groups = lvm.volume_groups(reader, [label] if label else [])
            for group in groups:
                for lv in group.lvs:
                    if lv.kind == "linear" and lv.visible:
                        lvm.ExtentReader(reader, group, lv).read(0, 4096)
            outcomes["read"] += 1
        except lvm.LvmError:
            outcomes["error"] += 1
    assert outcomes["read"] > 20 and outcomes["error"] > 20, outcomes
