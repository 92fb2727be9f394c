"""Forms of the walking skeleton: a new import from one uploaded image."""

from __future__ import annotations

from django import forms

from wizard.models import DiskContainer

FORMAT_BY_EXTENSION = {
    ".ova": "OVA",
    ".vmdk": "VMDK",
    ".vhd": "VHD",
    ".vhdx": "VHDX",
    ".raw": "RAW",
    ".img": "RAW",
}


class NewImportForm(forms.Form):
    image = forms.FileField(label="Disk image", help_text="OVA, VMDK, VHD, VHDX or RAW")
    format = forms.ChoiceField(
        label="Format",
        choices=[("", "Detect from the file name")] + list(DiskContainer.Format.choices),
        required=False,
    )
    description = forms.CharField(max_length=255, required=False)

    def clean(self) -> dict:
        data = super().clean()
        image = data.get("image")
        if image is not None and not data.get("format"):
            name = image.name.lower()
            guess = next((f for ext, f in FORMAT_BY_EXTENSION.items() if name.endswith(ext)), "")
            if not guess:
                self.add_error("format", "Choose the format: it cannot be told from the file name.")
            data["format"] = guess
        if image is not None and image.size == 0:
            self.add_error("image", "The file is empty.")
        return data
