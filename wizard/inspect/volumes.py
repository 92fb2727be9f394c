"""The volumes inside the guest's partitions and what VM Import makes of them: LVM's logical
volumes (found by `lvm`, their file systems then read like partitions) and Btrfs's subvolumes
(listed by `btrfs`, which also reads the files of the one holding the OS).

VM Import supports LVM when every physical volume of a volume group is in the same import, and
Btrfs but not its subvolumes (the guide's System requirements, "Volume types and file systems":
"MBR partitioned volumes and GUID Partition Table (GPT) partitioned volumes that are formatted
using the ext2, ext3, ext4, Btrfs, JFS, or XFS file system are supported." and "Btrfs
subvolumes are not supported.").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import btrfs, lvm
from .filesystems import FileSystem, identify
from .reader import Reader
from .report import ERROR, INFO, WARNING, Finding, short

UNKNOWN_OS = "ClientError: Unknown OS / Missing OS files."
MAX_LVS = 32  # logical volumes probed for a file system


@dataclass
class Volumes:
    """What the LVM physical volumes of one disk hold."""

    groups: list[lvm.VolumeGroup] = field(default_factory=list)
    systems: list[FileSystem] = field(default_factory=list)  # the file systems of the LVs read
    findings: list[Finding] = field(default_factory=list)
    unread: bool = False  # some LV (or some PV's metadata) was not read: the root may be there

    def summary(self) -> list[dict[str, object]]:
        """The volume groups for the report (bounded: names shortened, at most 32 PVs and LVs)."""
        return [
            {
                "name": short(vg.name, 64),
                "id": short(vg.id, 64),
                "pvs": [pv.uuid[:32] for pv in list(vg.pvs.values())[:32]],
                "missing": [pv.uuid[:32] for pv in vg.missing[:32]],
                "lvs": [short(lv.name, 64) for lv in vg.lvs if lv.visible][:32],
            }
            for vg in self.groups
        ]

    def paths(self) -> dict[str, lvm.LogicalVolume]:
        """/dev/mapper/VG-LV and /dev/VG/LV of every LV of the volume groups found."""
        found: dict[str, lvm.LogicalVolume] = {}
        for vg in self.groups:
            for lv in vg.lvs:
                found[f"/dev/mapper/{lv.mapper}"] = lv
                found[f"/dev/{vg.name}/{lv.name}"] = lv
        return found

    def resolves(self, spec: str) -> bool | None:
        """Whether an fstab device path names an LV of this disk: None if it is no LVM path."""
        if not self.groups or not spec.startswith("/dev/"):
            return None
        lv = self.paths().get(spec)
        if lv is not None:
            return True
        names = {vg.name for vg in self.groups}
        parts = spec.split("/")
        if spec.startswith("/dev/mapper/"):  # VG-LV, each name's own dashes doubled
            group = parts[-1].replace("--", "\0").split("-", 1)[0].replace("\0", "-")
            return False if group in names else None  # else not LVM's (a LUKS mapping, multipath...)
        return False if len(parts) == 4 and parts[2] in names else None

    def missing(self, root_spec: str | None, root_found: bool) -> list[Finding]:
        """One finding per volume group with physical volumes not on this disk: an error when
        the root is (or may be) on a logical volume that lies on one."""
        found: list[Finding] = []
        paths = self.paths()
        for vg in self.groups:
            if not vg.missing:
                continue
            cut = [lv for lv in vg.lvs if lv.visible and any(pv.label is None for pv in vg.needs(lv))]
            root_lv = paths.get(root_spec or "")
            needed = (root_lv is not None and root_lv in cut) or (not root_found and bool(cut))
            names = ", ".join(f"{vg.name}/{lv.name}" for lv in cut[:8]) or "none of its logical volumes"
            uuids = ", ".join(pv.uuid for pv in vg.missing[:4])
            found.append(
                Finding(
                    ERROR if needed else WARNING,
                    "lvm-spans-disks",
                    f"Volume group {short(vg.name, 60)} spans disks: {len(vg.missing)} of its {len(vg.pvs)} physical "
                    f"volumes are not on this disk (PV UUIDs {short(uuids, 160)}), "
                    f"and {short(names, 200)} lie on them, so they were not checked. "
                    + (
                        f'The root file system is on one of them: imported alone, this disk fails with "{UNKNOWN_OS}" '
                        if needed
                        else ""
                    )
                    + "Every PV must be a DiskContainer of the same import: add the disks that hold the others to "
                    "this ImportImage, in the order the machine has them.",
                )
            )
        return found


def logical_volumes(guest: Reader, systems: list[FileSystem]) -> Volumes:
    """The volume groups of the disk's PVs and the file systems of their linear LVs."""
    out = Volumes()
    labels: list[tuple[FileSystem, lvm.Label]] = []
    for s in systems:
        if s.type != "lvm":
            continue
        try:
            found = lvm.label(guest, s.start, s.size)
            if found is not None:
                labels.append((s, found))
        except lvm.LvmError as e:
            out.unread = True
            out.findings.append(_damaged(s, e))
    try:
        out.groups = lvm.volume_groups(guest, [label for _, label in labels])
    except lvm.LvmError as e:
        out.unread = True
        out.findings.append(_damaged(labels[0][0], e))
        return out
    partition = {label.uuid: s.partition for s, label in labels}
    for vg in out.groups:
        for s, label in labels:
            if any(pv.label is label for pv in vg.pvs.values()):
                s.detail = f"volume group {vg.name}"
        not_read: list[str] = []
        for lv in vg.lvs:
            if not lv.visible:
                continue  # a part of another LV (a thin pool's data, a RAID image, a snapshot's origin link)
            if lv.name in vg.snapshots:
                not_read.append(f"{vg.name}/{lv.name} (a snapshot)")
                continue
            if lv.kind != "linear":
                not_read.append(f"{vg.name}/{lv.name} ({lv.kind})")
                continue
            unknown = [pv.name for pv in vg.needs(lv) if pv.name not in vg.pvs]
            if unknown:
                out.unread = True
                out.findings.append(_damaged(labels[0][0], lvm.LvmError(f"{lv.name} is on an unlisted PV")))
                continue
            if any(pv.label is None for pv in vg.needs(lv)):
                out.unread = True  # the spanning finding names it
                continue
            if len(out.systems) >= MAX_LVS:
                out.unread = True
                break
            try:
                reader = lvm.ExtentReader(guest, vg, lv)
            except lvm.LvmError as e:
                out.unread = True
                out.findings.append(_damaged(labels[0][0], e))
                continue
            fs = identify(reader, partition.get(vg.needs(lv)[0].uuid, 0), 0, reader.size)
            fs.volume, fs.reader = f"{vg.name}/{lv.name}", reader
            out.systems.append(fs)
        if not_read:
            out.unread = True
            out.findings.append(
                Finding(
                    WARNING,
                    "lvm-not-read",
                    f"Logical volumes {short(', '.join(not_read[:8]), 300)} are not plain linear volumes: this check "
                    "reads only linear ones, so their contents were not checked, and VM Import's guide says nothing "
                    "of thin, RAID, mirrored or snapshot volumes. If the root or /boot is on one, move it to a linear "
                    "logical volume or a partition (lvconvert, pvmove; merge or remove snapshots) before exporting.",
                )
            )
    return out


def _damaged(s: FileSystem, error: Exception) -> Finding:
    return Finding(
        WARNING,
        "lvm-unreadable",
        f"Partition {s.partition}'s LVM metadata could not be read ({short(str(error), 100)}): its logical volumes "
        "were not checked. The metadata may be damaged (VM Import would then not find the volumes either); check it "
        "with pvck and vgck, or restore it with vgcfgrestore, before exporting the image again.",
    )


def subvolume_findings(guest: Reader, s: FileSystem) -> list[Finding]:
    """What the Btrfs of `s` holds: subvolumes (an error when / is one), several devices, RAID."""
    where = s.where[0].upper() + s.where[1:]
    try:
        fs = btrfs.read(s.reader or guest, s.start, s.size)
    except (btrfs.BtrfsError, struct.error) as e:
        return [
            Finding(
                WARNING,
                "btrfs",
                f"{where} is Btrfs, and its trees could not be read ({short(str(e), 100)}): its subvolumes and files "
                "were not checked. VM Import supports Btrfs, but not Btrfs subvolumes. Run btrfs check on it before "
                "exporting the image again.",
            )
        ]
    if fs.devices != 1:
        return [
            Finding(
                WARNING,
                "btrfs-multi-device",
                f"{where} is one of the {fs.devices} devices of a Btrfs file system: the others are not on this disk, "
                "so its subvolumes and files were not checked. Import every disk of it in the same ImportImage, or "
                "move it onto one device (btrfs device remove) before exporting.",
            )
        ]
    found: list[Finding] = []
    if fs.profiles:
        found.append(
            Finding(
                WARNING,
                "btrfs-raid",
                f"{where}'s Btrfs uses {', '.join(sorted(fs.profiles))}, which this check does not read.",
            )
        )
    names = ", ".join(sub.name for sub in fs.subvolumes[:8]) + ("..." if len(fs.subvolumes) > 8 else "")
    try:
        files = btrfs.root_files(fs)
        os_in = files.subvolume if files is not None and files.lookup("/etc") is not None else None
    except btrfs.BtrfsError:
        os_in = None
    if os_in not in (None, btrfs.FS_TREE, fs.default):
        found.append(
            Finding(
                ERROR,
                "btrfs-subvolume",
                f"{where} is Btrfs whose OS (/etc) is in the subvolume {short(fs.path(os_in or 0), 80)}, not in its "
                "top level: the root file system is mounted from a subvolume (subvol= in /etc/fstab). VM Import does "
                'not support Btrfs subvolumes ("Btrfs subvolumes are not supported", its guide\'s System '
                "requirements). Move the root to a plain file system (ext4 or XFS) or to the top level of the Btrfs "
                "before exporting, or import the disk as a snapshot (ImportSnapshot) and register the AMI yourself.",
            )
        )
    elif fs.default != btrfs.FS_TREE:
        found.append(
            Finding(
                ERROR,
                "btrfs-subvolume",
                f"{where} is Btrfs whose default subvolume is {short(fs.path(fs.default), 80)} (not the top level): "
                'the root file system is a subvolume. VM Import does not support Btrfs subvolumes ("Btrfs '
                "subvolumes are not supported\", its guide's System requirements). Move the root to a plain file "
                "system (ext4 or XFS) or to the top level of the Btrfs before exporting, or import the disk as a "
                "snapshot (ImportSnapshot) and register the AMI yourself.",
            )
        )
    elif fs.subvolumes:
        found.append(
            Finding(
                WARNING,
                "btrfs-subvolumes",
                f"{where} is Btrfs with {len(fs.subvolumes)} subvolume(s) ({short(names, 200)}). VM Import does not "
                'support Btrfs subvolumes ("Btrfs subvolumes are not supported", its guide\'s System requirements): '
                "if / or /boot is mounted from one (subvol= in /etc/fstab), the import fails. Keep the OS in the top "
                "level, or move it to ext4 or XFS, before exporting.",
            )
        )
    else:
        found.append(Finding(INFO, "btrfs", f"{where} is Btrfs with no subvolumes: VM Import supports that."))
    return found
