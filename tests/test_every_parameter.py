"""Every ImportImage parameter reaches the sandbox unchanged, read back with DescribeImportImageTasks;
and the wizard's AWS look-ups (dry run, KMS keys, snapshots) work against it over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

from django.urls import reverse

from tests.flows import grant
from wizard.aws import ec2, kms
from wizard.imports import dispatch
from wizard.models import ImportRequest, ImportTask
from wizard.requests import drafts, importspec


def full_spec(sandbox, key_arn: str) -> importspec.ImportSpec:
    s3 = sandbox.client("s3")
    s3.put_object(Bucket=sandbox.bucket, Key="uploads/1/boot.vmdk", Body=b"KDMV" + bytes(2044))
    return importspec.ImportSpec(
        disk_containers=[
            importspec.DiskContainer(
                format="VMDK",
                description="boot disk",
                device_name="/dev/sda1",
                user_bucket=importspec.UserBucket(sandbox.bucket, "uploads/1/boot.vmdk"),
            ),
            importspec.DiskContainer(format="VHD", description="data disk", url=f"s3://{sandbox.bucket}/data.vhd"),
        ],
        architecture="x86_64",
        boot_mode="uefi",
        client_data=importspec.ClientData(
            comment="every parameter",
            upload_start=datetime(2026, 11, 1, 10, tzinfo=UTC),
            upload_end=datetime(2026, 11, 1, 11, tzinfo=UTC),
            upload_size=0.5,
        ),
        description="all of them",
        encrypted=True,
        hypervisor="xen",
        kms_key_id=key_arn,
        license_type="BYOL",
        platform="Linux",
        role_name="vmimport",
        license_configuration_arns=[
            "arn:aws:license-manager:us-east-1:123456789012:license-configuration:lic-0123456789abcdef0123456789abcdef"
        ],
        tags=[importspec.Tag("team", "infra"), importspec.Tag("cost-centre", "42")],
    )


def test_every_parameter_reaches_the_sandbox_unchanged(sandbox, requester):
    key = sandbox.client("kms").create_key(Description="imports")["KeyMetadata"]
    spec = full_spec(sandbox, key["Arn"])
    assert importspec.validate(spec) == []
    grant(requester, s3_bucket=sandbox.bucket)  # the whole bucket
    draft = drafts.draft_from_spec(requester, spec, source="test")
    ImportRequest.objects.filter(pk=draft.pk).update(status=ImportRequest.Status.APPROVED)
    sent = draft.to_api_params()
    assert set(sent) >= {
        "Architecture",
        "BootMode",
        "ClientData",
        "ClientToken",
        "Description",
        "DiskContainers",
        "Encrypted",
        "Hypervisor",
        "KmsKeyId",
        "LicenseType",
        "Platform",
        "RoleName",
        "LicenseSpecifications",
        "TagSpecifications",
    }

    task_id = dispatch.dispatch(draft.pk)
    got = sandbox.client("ec2").describe_import_image_tasks(ImportTaskIds=[task_id])["ImportImageTasks"][0]
    assert ImportTask.objects.get(request=draft).import_task_id == task_id
    for member in ("Architecture", "BootMode", "Description", "Encrypted", "KmsKeyId", "LicenseType", "Platform"):
        assert got[member] == sent[member], member
    assert got["LicenseSpecifications"] == sent["LicenseSpecifications"]
    assert got["Tags"] == sent["TagSpecifications"][0]["Tags"]
    details = got["SnapshotDetails"]
    assert [d.get("Description") for d in details] == ["boot disk", "data disk"]
    assert details[0]["UserBucket"] == {"S3Bucket": sandbox.bucket, "S3Key": "uploads/1/boot.vmdk"}
    assert details[1]["Url"] == f"s3://{sandbox.bucket}/data.vhd"
    assert [d["Format"].upper() for d in details] == ["VMDK", "VHD"]


def test_the_dry_run_button_says_permitted(client, sandbox, requester):
    grant(requester, "url", host="example.com")
    draft = drafts.draft_from_spec(
        requester,
        importspec.ImportSpec(
            disk_containers=[importspec.DiskContainer(format="RAW", url="https://example.com/disk.raw")]
        ),
        source="test",
    )
    client.force_login(requester)
    page = client.post(reverse("wizard-dry-run", args=[draft.pk])).content.decode()
    assert 'id="dry-run-permitted"' in page
    assert not sandbox.client("ec2").describe_import_image_tasks()["ImportImageTasks"]


def test_the_kms_picker_lists_keys_with_aliases_and_state(sandbox):
    kms_client = sandbox.client("kms")
    key = kms_client.create_key(Description="imports")["KeyMetadata"]["KeyId"]
    kms_client.create_alias(AliasName="alias/imports", TargetKeyId=key)
    off = kms_client.create_key(Description="old")["KeyMetadata"]["KeyId"]
    kms_client.disable_key(KeyId=off)
    keys = {k.key_id: k for k in kms.list_keys()}
    assert keys[key].aliases == ["alias/imports"] and keys[key].usable
    assert keys[off].state == "Disabled" and not keys[off].usable


def test_the_snapshot_look_up_finds_the_accounts_snapshots_by_id_or_tag(sandbox):
    client = sandbox.client("ec2")
    volume = client.create_volume(AvailabilityZone=f"{sandbox.region}a", Size=8)["VolumeId"]
    snap = client.create_snapshot(VolumeId=volume, Description="golden image")["SnapshotId"]
    tagged = client.create_snapshot(
        VolumeId=volume, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "golden", "Value": "yes"}]}]
    )["SnapshotId"]
    assert [s["SnapshotId"] for s in ec2.own_snapshots(snapshot_ids=[snap, "snap-0123456789abcdef0"])] == [snap]
    assert [s["SnapshotId"] for s in ec2.own_snapshots(tags=[("golden", "yes")])] == [tagged]
    assert ec2.own_snapshots() == []  # never every snapshot of the account (wizard.uploads.sources picks)


def test_a_missing_or_disabled_kms_key_is_caught_before_submission(sandbox, requester):
    from wizard.preflight import preflight

    key = sandbox.client("kms").create_key()["KeyMetadata"]["KeyId"]
    sandbox.client("kms").disable_key(KeyId=key)
    draft = drafts.create_draft(requester, encrypted=True, kms_key_id="alias/nothing")
    [finding] = [f for f in preflight.all_findings(draft, check_aws=True) if f.path == "KmsKeyId"]
    assert "no KMS key alias/nothing" in finding.message and finding.step == "encryption"
    draft.kms_key_id = key
    [finding] = [f for f in preflight.all_findings(draft, check_aws=True) if f.path == "KmsKeyId"]
    assert "disabled" in finding.message
