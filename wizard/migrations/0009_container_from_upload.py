from django.db import migrations


class Migration(migrations.Migration):
    """A disk uploaded here reads its file name and size from its Upload (not a copy)."""

    dependencies = [("wizard", "0008_finishing")]

    operations = [
        migrations.RemoveField(model_name="diskcontainer", name="file_name"),
        migrations.RemoveField(model_name="diskcontainer", name="size_bytes"),
    ]
