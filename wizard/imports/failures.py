"""What VM Import's failure messages mean and what to do about them (pure: a table and a lookup)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    meaning: str
    action: str


# (pattern searched in AWS's StatusMessage or error message, explanation); first match wins.
TABLE: tuple[tuple[str, Explanation], ...] = (
    (
        r"service role .* does not exist or does not have sufficient permissions",
        Explanation(
            "VM Import could not assume its service role, or the role lacks a permission it needs.",
            "Create the role (default name vmimport) with the trust policy for vmie.amazonaws.com and the condition "
            "sts:Externalid = vmimport, and allow s3:GetBucketLocation, s3:GetObject, s3:ListBucket on the bucket, "
            "the EC2 snapshot and image actions, and kms:Decrypt/CreateGrant for encrypted objects or AMIs.",
        ),
    ),
    (
        r"We do not have access to the given resource|403 Forbidden",
        Explanation(
            "The service could not read the image in S3: the object is missing, the role may not read it, or it is "
            "encrypted with a KMS key the role may not use.",
            "Check the bucket and key, give the role s3:GetObject on it (and kms:Decrypt for SSE-KMS), and keep the "
            "bucket in the import's region.",
        ),
    ),
    (
        r"Unsupported specified file format",
        Explanation(
            "The Format given for a disk is not what the file really is.",
            "Set the disk's Format to the real one (the pre-flight inspection tells which), or convert the image.",
        ),
    ),
    (
        r"Unsupported VMDK File Format",
        Explanation(
            "The VMDK is not stream-optimized (VM Import takes only the stream-optimized VMDKs ESX/vSphere export).",
            "Convert it: qemu-img convert -O vmdk -o subformat=streamOptimized in.vmdk out.vmdk, or export the VM "
            "as OVA/OVF from vSphere.",
        ),
    ),
    (
        r"OVA with chunked disk files|Unsupported OVA format|OVF file parsing error",
        Explanation(
            "The OVA's layout is not one VM Import reads (e.g. disks split into chunks, or a malformed OVF).",
            "Export the VM again as a single OVA without chunking, or import the VMDKs as disk containers.",
        ),
    ),
    (
        r"Unknown OS / Missing OS files",
        Explanation(
            "VM Import did not recognise the operating system on the boot disk.",
            "Make the first disk the boot disk, check the OS is a supported version, and that the disk is not "
            "encrypted or dual-boot.",
        ),
    ),
    (
        r"Unsupported kernel version",
        Explanation(
            "The Linux kernel on the image is not one VM Import supports.",
            "Update the VM to a supported distribution and kernel, then export it again.",
        ),
    ),
    (
        r"Could not read fstab",
        Explanation(
            "VM Import could not read the guest's /etc/fstab (missing, or several /etc directories on the disks).",
            "Give the guest one /etc/fstab that mounts the root file system by UUID, then export it again.",
        ),
    ),
    (
        r"Logical volume group activation failed",
        Explanation(
            "An LVM volume group of the guest could not be activated: one of its physical volumes is missing "
            "(on a disk not in this import) or damaged.",
            "Add every disk of the volume group to the same import (one DiskContainer each), or move the root "
            "logical volume onto the boot disk's volume group.",
        ),
    ),
    (
        r"FirstBootFailure",
        Explanation(
            "Windows was converted but did not boot and reach the network on EC2 (drivers, licensing or boot mode).",
            "Check the pre-flight's findings: Windows 11 needs UEFI (BootMode=uefi), client editions must be US "
            "English, the system volume needs 6 GiB free; disable firewalls and antivirus, use DHCP, and export "
            "again.",
        ),
    ),
    (
        r"No valid partitions|Not a valid volume",
        Explanation(
            "The boot disk has no partition table or no partition VM Import can use.",
            "Import a disk with an MBR or GPT partition table and the OS on it (not a bare filesystem image).",
        ),
    ),
    (
        r"(?i)boot ?mode|uefi|bootx64",
        Explanation(
            "The image's firmware does not match BootMode (a UEFI image imported as legacy-bios, or the reverse), "
            "or a UEFI image lacks the fallback EFI/BOOT/BOOTX64.EFI.",
            "Set BootMode to what the image uses (GPT with an EFI System Partition means uefi), and add the fallback "
            "boot loader on Linux.",
        ),
    ),
    (
        r"(?i)arm64|aarch64",
        Explanation("ARM64 images cannot be imported with VM Import.", "Import an x86_64 (or i386 Windows) image."),
    ),
    (
        r"(?i)kms|key .* (disabled|does not exist|not found)",
        Explanation(
            "The KMS key for the AMI's snapshots is missing, disabled, not symmetric or in another region.",
            "Choose an enabled symmetric key in the import's region and let the role use it.",
        ),
    ),
    (
        r"(?i)region|bucket .* (location|another)",
        Explanation(
            "The bucket is in another region than the import.", "Copy the image to a bucket in the import's region."
        ),
    ),
    (
        r"no longer knows this import task",
        Explanation(
            "The sandbox was restarted and forgot its import tasks (it keeps them in memory only).",
            'Use "Import again with these settings".',
        ),
    ),
    (r"(?i)cancel", Explanation("The import was cancelled.", "Import again when you are ready.")),
)


def explain(message: str) -> Explanation | None:
    for pattern, explanation in TABLE:
        if re.search(pattern, message or ""):
            return explanation
    return None
