"""Forms: the wizard's steps and the CLI import."""

from __future__ import annotations

from django import forms

from wizard.models import DiskContainer

# --- the wizard's steps: each form saves a part of the draft --------------------------------
# Forms only check what storage needs (types, lengths); the ImportImage rules live in
# wizard.importspec and are shown next to the fields without blocking a save, so nothing
# typed is ever lost to a rule.

BLANK = [("", "(not set)")]


class StepForm(forms.Form):
    """A step's form: `values()` gives the request fields it sets."""

    def __init__(self, *args, request=None, **kwargs):
        self.request = request
        super().__init__(*args, **kwargs)

    @classmethod
    def initial_for(cls, request) -> dict:
        return {name: getattr(request, name) for name in cls.base_fields if hasattr(request, name)}

    def values(self) -> dict:
        return dict(self.cleaned_data)


class EncryptionForm(StepForm):
    encrypted = forms.BooleanField(required=False, label="Encrypt the AMI's snapshots")
    kms_key_id = forms.CharField(
        required=False,
        max_length=2048,
        label="KMS key",
        help_text="Key id, key ARN, alias name (alias/...) or alias ARN; empty for the account's default EBS key.",
    )

    @classmethod
    def initial_for(cls, request) -> dict:
        return {"encrypted": bool(request.encrypted), "kms_key_id": request.kms_key_id}

    def values(self) -> dict:
        # Unchecked leaves Encrypted unset (not sent): the account's default encryption applies.
        return {
            "encrypted": True if self.cleaned_data["encrypted"] else None,
            "kms_key_id": self.cleaned_data["kms_key_id"].strip(),
        }


LICENSING = [
    ("", "Let AWS decide (no LicenseType)"),
    ("AWS", "AWS-provided licence (LicenseType AWS): pay for the OS licence with the instance"),
    ("BYOL", "Bring your own licence (LicenseType BYOL): keep using licences you own"),
    ("usage", "A usage operation (UsageOperation): the billing code of the AMI, e.g. RunInstances:0800"),
]


class LicenceForm(StepForm):
    licensing = forms.ChoiceField(choices=LICENSING, required=False, widget=forms.RadioSelect, label="Licensing")
    usage_operation = forms.CharField(required=False, max_length=64, label="UsageOperation")
    license_configuration_arns = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Licence configuration ARNs",
        help_text="One ARN per line (License Manager licence configurations).",
    )
    platform = forms.ChoiceField(choices=BLANK + [("Windows", "Windows"), ("Linux", "Linux")], required=False)
    architecture = forms.ChoiceField(choices=BLANK + [("x86_64", "x86_64"), ("i386", "i386")], required=False)
    boot_mode = forms.ChoiceField(
        choices=BLANK + [("legacy-bios", "legacy-bios (BIOS/MBR)"), ("uefi", "uefi")],
        required=False,
        label="BootMode",
    )

    @classmethod
    def initial_for(cls, request) -> dict:
        licensing = request.license_type or ("usage" if request.usage_operation else "")
        return {
            "licensing": licensing,
            "usage_operation": request.usage_operation,
            "license_configuration_arns": "\n".join(request.license_configuration_arns),
            "platform": request.platform,
            "architecture": request.architecture,
            "boot_mode": request.boot_mode,
        }

    def values(self) -> dict:
        data = self.cleaned_data
        licensing = data["licensing"]
        return {
            "license_type": licensing if licensing in ("AWS", "BYOL") else "",
            "usage_operation": data["usage_operation"].strip() if licensing == "usage" else "",
            "license_configuration_arns": [
                a.strip() for a in data["license_configuration_arns"].splitlines() if a.strip()
            ],
            "platform": data["platform"],
            "architecture": data["architecture"],
            "boot_mode": data["boot_mode"],
        }


class DetailsForm(StepForm):
    """Description, role, comment, and tags as rows (tag_key / tag_value lists in the POST)."""

    description = forms.CharField(required=False, max_length=255)
    role_name = forms.CharField(
        required=False,
        max_length=64,
        label="RoleName",
        help_text="The VM Import service role; empty for the default, vmimport.",
    )
    comment = forms.CharField(required=False, max_length=255, label="Comment (ClientData)")

    def clean(self) -> dict:
        data = super().clean()
        keys, values = self.data.getlist("tag_key"), self.data.getlist("tag_value")
        tags = [{"Key": k.strip(), "Value": v} for k, v in zip(keys, values, strict=False) if k.strip() or v.strip()]
        too_long = [t for t in tags if len(t["Key"]) > 1000 or len(t["Value"]) > 1000]
        if too_long:
            raise forms.ValidationError("A tag is far too long to store (over 1,000 characters).")
        data["tags"] = tags
        return data

    def values(self) -> dict:
        return {k: self.cleaned_data[k] for k in ("description", "role_name", "comment", "tags")}


class DiskForm(forms.ModelForm):
    """One row of the disk containers step."""

    class Meta:
        model = DiskContainer
        fields = ["format", "device_name", "description"]
        labels = {"device_name": "DeviceName"}


DiskFormSet = forms.modelformset_factory(DiskContainer, form=DiskForm, extra=0)


class S3SourceForm(forms.Form):
    s3_bucket = forms.CharField(max_length=63, label="S3Bucket")
    s3_key = forms.CharField(max_length=1024, label="S3Key")


class UrlSourceForm(forms.Form):
    url = forms.CharField(max_length=2048, label="Url", help_text="https://... or s3://bucket/key")


class SnapshotSourceForm(forms.Form):
    snapshot_id = forms.CharField(max_length=32, label="SnapshotId")


class CliImportForm(forms.Form):
    document = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
        label="Paste a --cli-input-json or --cli-input-yaml document",
    )
    file = forms.FileField(required=False, label="or upload the file")
    format = forms.ChoiceField(choices=[("auto", "Detect"), ("json", "JSON"), ("yaml", "YAML")], initial="auto")

    MAX_BYTES = 256 * 1024

    def clean(self) -> dict:
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            if upload.size > self.MAX_BYTES:
                raise forms.ValidationError("The file is larger than 256 KiB: that is no CLI input document.")
            data["document"] = upload.read().decode("utf-8", errors="replace")
        if not (data.get("document") or "").strip():
            raise forms.ValidationError("Paste a document or choose a file.")
        if data.get("format") == "auto":
            data["format"] = "json" if data["document"].lstrip().startswith("{") else "yaml"
        return data
