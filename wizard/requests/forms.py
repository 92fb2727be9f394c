"""Forms: the wizard's steps and the CLI import."""

from __future__ import annotations

from datetime import UTC
from itertools import zip_longest
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict

from wizard import targets
from wizard.models import DiskContainer, ImportRequest, Target
from wizard.requests import finishspec
from wizard.text import MESSAGE as NOT_TEXT_MESSAGE
from wizard.text import NOT_TEXT, not_text


def validate_text(value: object) -> None:
    """Form validator: refuse a value with characters that are not text, saying which and where.
    (NUL is left to Django's own validator of every CharField, which says "Null characters are not allowed.")"""
    if not isinstance(value, str):
        return
    found = next((m for m in NOT_TEXT.finditer(value) if m[0] != "\x00"), None)
    if found:
        where = f"U+{ord(found[0]):04X} at position {found.start() + 1}"
        raise ValidationError(f"This value {NOT_TEXT_MESSAGE} ({where}).", code="not_text")


class TextFields:
    """Every text field of the form refuses characters that are not text (lone surrogates,
    NUL, non-characters): no database, page or audit log takes them."""

    fields: dict[str, forms.Field]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.CharField) and validate_text not in field.validators:
                field.validators.append(validate_text)


def error_summary(form: forms.BaseForm, limit: int = 3) -> str:
    """The form's errors in one line, each with its field's label: for a status note that is shown
    without the form (htmx autosave)."""
    parts = []
    for name, errors in form.errors.as_data().items():
        field = form.fields.get(name)
        label = (field.label or name.replace("_", " ").capitalize()) if field else ""
        for error in errors:
            if error.code == "tag":  # the rows' own errors follow
                continue
            parts += [f"{label}: {m.rstrip('.')}" if label else m.rstrip(".") for m in error.messages]
    for row in getattr(form, "tag_rows", []):
        parts += [f"tag {row['n']} {what}: {row[what + '_error']}" for what in ("key", "value") if row[what + "_error"]]
    shown = "; ".join(parts[:limit])
    return shown + (f" (and {len(parts) - limit} more)" if len(parts) > limit else "")


# --- the wizard's steps: each form saves a part of the draft --------------------------------
# Forms only check what storage needs (types, lengths); the ImportImage rules live in
# wizard.requests.importspec and are shown next to the fields without blocking a save, so nothing
# typed is ever lost to a rule.

BLANK = [("", "(not set)")]


class StepForm(TextFields, forms.Form):
    """A step's form: `values()` gives the request fields it sets."""

    def __init__(self, *args: Any, request: ImportRequest | None = None, **kwargs: Any) -> None:
        self.request = request
        super().__init__(*args, **kwargs)

    @classmethod
    def initial_for(cls, request: ImportRequest) -> dict:
        return {name: getattr(request, name) for name in cls.base_fields if hasattr(request, name)}

    def values(self) -> dict:
        return dict(self.cleaned_data)


class TargetForm(StepForm):
    """The upload step's choice of target (wizard.targets): the account and region the AMI is made
    in. The default target, and the targets of the owner's groups; any other value, a target
    the owner lost or another one's pk, is refused next to the field (never trusted as saved)."""

    target = forms.CharField(required=False, max_length=20, label="Target: the account and region of the AMI")

    def __init__(self, *args: Any, request: ImportRequest | None = None, **kwargs: Any) -> None:
        super().__init__(*args, request=request, **kwargs)
        owner = request.owner if request is not None else None
        allowed = list(targets.allowed_targets(owner)) if owner is not None else []
        current = request.target if request is not None else None
        if current is not None and current not in allowed:
            allowed.append(current)  # shown as chosen, refused at save until another is chosen
        self.choices = [("", targets.label(None))] + [(str(t.pk), targets.label(t)) for t in allowed]
        self.offered = len(self.choices) > 1

    @classmethod
    def initial_for(cls, request: ImportRequest) -> dict:
        return {"target": str(request.target_id or "")}

    def clean_target(self) -> str:
        value = (self.cleaned_data.get("target") or "").strip()
        if not value:
            return ""
        target = Target.objects.filter(pk=int(value)).first() if value.isascii() and value.isdigit() else None
        owner = self.request.owner if self.request is not None else None
        if target is not None and owner is not None and targets.may_use(owner, target):
            return value
        own = self.request is not None and target is not None and target.pk == self.request.target_id
        if own and owner is not None and target is not None:
            raise forms.ValidationError(targets.refusal(owner, target))  # the draft's own target, since lost
        # Another target's pk (or none): said without naming it, whatever it is.
        raise forms.ValidationError(
            "You may not use that target: choose one of the list (the default target, or a target of one of "
            "your groups)."
        )

    def values(self) -> dict:
        value = self.cleaned_data["target"]
        return {"target": Target.objects.get(pk=int(value)) if value else None}


class EncryptionForm(StepForm):
    encrypted = forms.BooleanField(required=False, label="Encrypt the AMI's snapshots")
    kms_key_id = forms.CharField(
        required=False,
        max_length=2048,
        label="KMS key",
        help_text="Key id, key ARN, alias name (alias/...) or alias ARN; empty for the account's default EBS key.",
    )

    @classmethod
    def initial_for(cls, request: ImportRequest) -> dict:
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
    def initial_for(cls, request: ImportRequest) -> dict:
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


def tag_rows(posted: QueryDict, key_field: str, value_field: str) -> list[dict[str, Any]]:
    """The tag rows posted as parallel lists (blank rows dropped), each with the error that keeps
    it from being stored next to its key or value (DetailsForm's limits)."""
    rows: list[dict[str, Any]] = []
    for key, value in zip_longest(posted.getlist(key_field), posted.getlist(value_field), fillvalue=""):
        if not (key.strip() or value.strip()):
            continue
        row: dict[str, Any] = {"n": len(rows) + 1, "Key": key.strip(), "Value": value}
        row["key_error"], row["value_error"] = DetailsForm._tag_problem(key.strip()), DetailsForm._tag_problem(value)
        rows.append(row)
    return rows


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

    MAX_TAG_CHARS = 1000  # far beyond AWS's 127/255 (shown as findings); only what storage needs

    def clean(self) -> dict:
        """Tags as rows; a row that cannot be stored gets its error next to its key or value
        (`tag_rows`), and nothing is saved."""
        data = cast("dict[str, Any]", super().clean())  # forms.Form.clean returns cleaned_data
        self.tag_rows = tag_rows(cast(QueryDict, self.data), "tag_key", "tag_value")  # a bound form's data: the POST
        if any(row["key_error"] or row["value_error"] for row in self.tag_rows):
            raise forms.ValidationError("A tag cannot be saved: see its row.", code="tag")
        data["tags"] = [{"Key": row["Key"], "Value": row["Value"]} for row in self.tag_rows]
        return data

    @classmethod
    def _tag_problem(cls, text: str) -> str:
        if where := not_text(text):
            return f"{NOT_TEXT_MESSAGE} ({where})"
        if len(text) > cls.MAX_TAG_CHARS:
            return f"is far too long to store ({len(text):,} characters; at most {cls.MAX_TAG_CHARS:,})"
        return ""

    def values(self) -> dict:
        return {k: self.cleaned_data[k] for k in ("description", "role_name", "comment", "tags")}


class FinishForm(StepForm):
    """Finishing the AMI once imported (wizard.requests.finishspec): name, tags, shares, copies, IMDSv2,
    deprecation, deleting the upload. Tags as rows (ami_tag_key / ami_tag_value lists in the POST)."""

    ami_name = forms.CharField(
        required=False,
        max_length=128,
        label="Name of the AMI",
        help_text="VM Import names the AMI after its task: with a name, it is copied under that name (CopyImage).",
    )
    ami_description = forms.CharField(required=False, max_length=255, label="Description of the AMI")
    deregister_import = forms.BooleanField(
        required=False, label="Then deregister the import's own AMI and delete its snapshots"
    )
    launch_user_ids = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Share with accounts",
        help_text="12-digit account ids, one a line: they may launch the AMI.",
    )
    share_snapshots = forms.BooleanField(
        required=False, label="Also let those accounts create volumes from its snapshots"
    )
    launch_organization_arns = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Share with organisations",
        help_text="arn:aws:organizations::<account>:organization/o-..., one a line.",
    )
    launch_organizational_unit_arns = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Share with organisational units",
        help_text="arn:aws:organizations::<account>:ou/o-.../ou-..., one a line.",
    )
    region_copies = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Copy to other regions",
        help_text=(
            "One a line: the region, then optionally a KMS key of that region to encrypt the copy, "
            'e.g. "eu-west-1 alias/images".'
        ),
    )
    imds_v2 = forms.BooleanField(required=False, label="Require IMDSv2 (ImdsSupport v2.0)")
    deprecation_time = forms.DateTimeField(
        required=False,
        label="Deprecate at (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
    )
    delete_source = forms.ChoiceField(
        required=False,
        choices=[("", "As the site does by default"), ("yes", "Yes"), ("no", "No")],
        label="Delete the uploaded image from S3 once all is done",
    )

    MAX_TAG_CHARS = DetailsForm.MAX_TAG_CHARS
    MAX_BOX_CHARS = 20000  # a text box of ids or ARNs: far above what the rules allow

    @classmethod
    def initial_for(cls, request: ImportRequest) -> dict[str, Any]:
        return {
            "ami_name": request.ami_name,
            "ami_description": request.ami_description,
            "deregister_import": request.deregister_import,
            "launch_user_ids": finishspec.format_list(request.launch_user_ids),
            "share_snapshots": request.share_snapshots,
            "launch_organization_arns": finishspec.format_list(request.launch_organization_arns),
            "launch_organizational_unit_arns": finishspec.format_list(request.launch_organizational_unit_arns),
            "region_copies": finishspec.format_region_copies(request.region_copies),
            "imds_v2": request.imds_v2,
            "deprecation_time": request.deprecation_time,
            "delete_source": {None: "", True: "yes", False: "no"}[request.delete_source],
        }

    def clean(self) -> dict[str, Any]:
        data = cast("dict[str, Any]", super().clean())  # forms.Form.clean returns cleaned_data
        for name in ("launch_user_ids", "launch_organization_arns", "launch_organizational_unit_arns", "region_copies"):
            if len(data.get(name) or "") > self.MAX_BOX_CHARS:
                self.add_error(name, f"is far too long to store (at most {self.MAX_BOX_CHARS:,} characters)")
        self.tag_rows = tag_rows(cast(QueryDict, self.data), "ami_tag_key", "ami_tag_value")
        if any(row["key_error"] or row["value_error"] for row in self.tag_rows):
            raise forms.ValidationError("A tag cannot be saved: see its row.", code="tag")
        data["ami_tags"] = [{"Key": row["Key"], "Value": row["Value"]} for row in self.tag_rows]
        return data

    def values(self) -> dict:
        data = self.cleaned_data
        when = data["deprecation_time"]
        return {
            "ami_name": data["ami_name"].strip(),
            "ami_description": data["ami_description"],
            "deregister_import": data["deregister_import"],
            "ami_tags": data["ami_tags"],
            "launch_user_ids": finishspec.parse_list(data["launch_user_ids"]),
            "share_snapshots": data["share_snapshots"],
            "launch_organization_arns": finishspec.parse_list(data["launch_organization_arns"]),
            "launch_organizational_unit_arns": finishspec.parse_list(data["launch_organizational_unit_arns"]),
            "region_copies": finishspec.parse_region_copies(data["region_copies"]),
            "imds_v2": data["imds_v2"],
            "deprecation_time": when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when,
            "delete_source": {"": None, "yes": True, "no": False}[data["delete_source"] or ""],
        }


class DiskForm(TextFields, forms.ModelForm):
    """One row of the disk containers step."""

    class Meta:
        model = DiskContainer
        fields = ["format", "device_name", "description"]
        labels = {"device_name": "DeviceName"}


# Edits the draft's disks only: a formset never adds one (disks come from the upload step),
# whatever the management form says.
DiskFormSet = forms.modelformset_factory(DiskContainer, form=DiskForm, extra=0, edit_only=True)


class S3SourceForm(TextFields, forms.Form):
    s3_bucket = forms.CharField(max_length=63, label="S3Bucket")
    s3_key = forms.CharField(max_length=1024, label="S3Key")


class UrlSourceForm(TextFields, forms.Form):
    url = forms.CharField(max_length=2048, label="Url", help_text="https://... or s3://bucket/key")


class SnapshotSourceForm(TextFields, forms.Form):
    snapshot_id = forms.CharField(max_length=32, label="SnapshotId")


class CliImportForm(TextFields, forms.Form):
    document = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
        label="Paste a --cli-input-json or --cli-input-yaml document",
    )
    file = forms.FileField(required=False, label="or upload the file")
    format = forms.ChoiceField(choices=[("auto", "Detect"), ("json", "JSON"), ("yaml", "YAML")], initial="auto")

    MAX_BYTES = 256 * 1024

    def clean(self) -> dict:
        data = cast("dict[str, Any]", super().clean())  # forms.Form.clean returns cleaned_data
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


class DecideForm(TextFields, forms.Form):
    """A reviewer's decision on a submitted request."""

    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(required=False, max_length=2000, label="Reason")


class CancelForm(TextFields, forms.Form):
    """Cancelling a running import: the box ticked, and a reason kept in the history."""

    confirm = forms.ChoiceField(choices=[("yes", "yes")], error_messages={"required": "Tick the box to confirm."})
    reason = forms.CharField(required=False, max_length=255, label="Reason")
