"""AWS CLI documents in and out: the web page, the management command, and the request page's export."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.flows import grant
from wizard.models import ImportRequest

DOCUMENT = {
    "Description": "from the CLI",
    "DiskContainers": [
        {"Format": "VMDK", "UserBucket": {"S3Bucket": "bucket-one", "S3Key": "disks/web01.vmdk"}},
        {"Format": "VHD", "Url": "https://example.com/data.vhd", "DeviceName": "/dev/sdb"},
    ],
    "Architecture": "x86_64",
    "Platform": "Windows",
    "LicenseType": "AWS",
    "BootMode": "uefi",
    "Encrypted": True,
    "KmsKeyId": "alias/imports",
    "RoleName": "vmimport",
    "TagSpecifications": [{"ResourceType": "import-image-task", "Tags": [{"Key": "team", "Value": "infra"}]}],
}


@pytest.fixture(autouse=True)
def granted(db, requester):
    """The document's disks lie where an administrator granted alice's team access."""
    grant(requester, s3_bucket="bucket-one", s3_prefix="disks/")
    grant(requester, "url", host="example.com")


@pytest.fixture
def alice(client, requester):
    client.force_login(requester)
    return client


def test_a_pasted_json_document_becomes_a_draft(alice, requester):
    response = alice.post(reverse("cli-import"), {"document": json.dumps(DOCUMENT), "format": "auto"})
    draft = ImportRequest.objects.get(owner=requester)
    assert response["Location"] == reverse("wizard-step", args=[draft.pk, "review"])
    assert draft.to_api_params() == {**DOCUMENT, "ClientToken": draft.client_token} | {
        "DiskContainers": draft.to_api_params()["DiskContainers"]
    }
    assert [c.source_label for c in draft.disk_containers.all()] == [
        "s3://bucket-one/disks/web01.vmdk",
        "https://example.com/data.vhd",
    ]
    assert draft.tags == [{"Key": "team", "Value": "infra"}] and draft.kms_key_id == "alias/imports"


def test_an_uploaded_yaml_file_becomes_a_draft(alice, requester):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("input.yaml", yaml.safe_dump(DOCUMENT).encode())
    alice.post(reverse("cli-import"), {"file": upload, "format": "yaml"})
    assert ImportRequest.objects.get(owner=requester).platform == "Windows"


@pytest.mark.parametrize(
    "change,path",
    [
        ({"Colour": "blue"}, "Colour"),
        (
            {
                "DiskContainers": [
                    DOCUMENT["DiskContainers"][0],
                    {"Format": "VMDK", "UserBucket": {"S3Bucket": "Bad_Bucket", "S3Key": "k"}},
                ]
            },
            "DiskContainers[1].UserBucket.S3Bucket",
        ),
        ({"Architecture": "arm64"}, "Architecture"),
    ],
)
def test_errors_are_listed_with_their_path_and_nothing_is_saved(alice, requester, change, path):
    page = alice.post(reverse("cli-import"), {"document": json.dumps({**DOCUMENT, **change}), "format": "json"})
    assert f"<code>{path}</code>" in page.content.decode()
    assert "nothing was saved" in page.content.decode()
    assert not ImportRequest.objects.exists()


def test_the_management_command_makes_a_draft(tmp_path, requester, capsys):
    path = tmp_path / "input.json"
    path.write_text(json.dumps(DOCUMENT))
    call_command("import_image", "--cli-input-json", str(path), "--user", "alice")
    assert "draft #" in capsys.readouterr().out
    assert ImportRequest.objects.get(owner=requester).description == "from the CLI"


def test_the_management_command_reads_standard_input(requester, capsys, monkeypatch):
    """`--cli-input-json -` reads the document from standard input (it raised AttributeError once)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(DOCUMENT)))
    call_command("import_image", "--cli-input-json", "-", "--user", "alice")
    assert "draft #" in capsys.readouterr().out
    assert ImportRequest.objects.get(owner=requester).description == "from the CLI"


def test_the_management_command_refuses_a_bad_document_on_standard_input(requester, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Architecture: arm64\nDiskContainers: []\n"))
    err = io.StringIO()
    with pytest.raises(CommandError, match="problem.* in -; nothing was saved"):
        call_command("import_image", "--cli-input-yaml", "-", "--user", "alice", stderr=err)
    assert "Architecture" in err.getvalue()
    assert not ImportRequest.objects.exists()


def test_the_management_command_refuses_a_bad_document(tmp_path, requester):
    path = tmp_path / "input.yaml"
    path.write_text("Architecture: arm64\nDiskContainers: []\n")
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was saved"):
        call_command("import_image", "--cli-input-yaml", str(path), "--user", "alice", stderr=err)
    assert "Architecture" in err.getvalue()
    assert not ImportRequest.objects.exists()


def test_the_request_page_exports_json_and_a_command_line(alice, requester):
    alice.post(reverse("cli-import"), {"document": json.dumps(DOCUMENT), "format": "json"})
    draft = ImportRequest.objects.get(owner=requester)
    page = alice.get(draft.get_absolute_url()).content.decode()
    assert 'id="cli-json"' in page and "aws ec2 import-image" in page and "--disk-containers" in page
    assert f"&quot;ClientToken&quot;: &quot;{draft.client_token}&quot;" in page
