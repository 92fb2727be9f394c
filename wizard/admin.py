"""The Django admin.

Import requests, their disks, tasks, uploads and the audit log are read-only here: a request
changes only through the same services as the pages (the approve and reject actions go through
wizard.requests.review, with its separation of duties). What stays editable (source grants, users and
groups, which decide who may approve and what may be imported) goes through `AuditedAdmin`: every
add, change and delete is an audit event with the fields before and after.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import LogEntry
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission, User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from wizard.audit import audit
from wizard.http import AuthenticatedHttpRequest
from wizard.models import (
    AuditEvent,
    DiskContainer,
    ImportRequest,
    ImportTask,
    SourceGrant,
    Target,
    TaskStatusChange,
    Upload,
)
from wizard.requests import drafts, finishspec, review
from wizard.requests.importspec import bucket_name_problem

# --- read-only -------------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never added, changed or deleted here, whatever the user's permissions."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """Rows shown with their parent, to whoever may view the parent; never edited here."""

    extra = 0
    can_delete = False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.get_model_admin(self.parent_model).has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DiskContainerInline(ReadOnlyInline):
    model = DiskContainer
    fields = (
        "position",
        "format",
        "s3_bucket",
        "s3_key",
        "url",
        "snapshot_id",
        "device_name",
        "file_name",
        "size_bytes",
    )
    readonly_fields = ("file_name", "size_bytes")  # its Upload's


@admin.register(ImportRequest)
class ImportRequestAdmin(ReadOnlyAdmin):
    """Read-only: owner, status, every ImportImage parameter. Approve and reject go through wizard.requests.review."""

    list_display = ("id", "description", "owner", "status", "created_at", "submitted_at")
    list_filter = ("status", "owner", "created_at")
    search_fields = ("description", "client_token", "import_task__import_task_id")
    fieldsets = (
        (None, {"fields": ("owner", "status", "submitted_by", "submitted_at", "created_at", "updated_at")}),
        ("Review", {"fields": ("reviewed_by", "reviewed_at", "review_reason", "failure_message", "cancel_reason")}),
        (
            "ImportImage",
            {
                "fields": (
                    "client_token",
                    *drafts.SPEC_FIELDS,
                    "upload_start",
                    "upload_end",
                    "upload_size",
                )
            },
        ),
    )
    # Read-only even if a permission check above ever said otherwise.
    readonly_fields = tuple(f for _, options in fieldsets for f in options["fields"])  # type: ignore[misc]  # names
    inlines = [DiskContainerInline]
    actions = ["approve_selected", "reject_selected"]

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("wizard.review_importrequest")

    @admin.action(description="Approve selected requests (and dispatch them)", permissions=["review"])
    def approve_selected(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ImportRequest]) -> None:
        for import_request in queryset:
            try:
                review.approve(import_request, request.user)
                self.message_user(request, f"Approved #{import_request.pk}.", messages.SUCCESS)
            except review.ReviewError as exc:
                self.message_user(request, f"#{import_request.pk}: {exc}", messages.ERROR)

    @admin.action(description="Reject selected requests (asks for a reason)", permissions=["review"])
    def reject_selected(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[ImportRequest]
    ) -> TemplateResponse | None:
        """First a page asking for the reason; then each request goes through wizard.requests.review.reject."""
        reason = request.POST.get("reason", "").strip()
        if "confirm" not in request.POST or not reason:
            return TemplateResponse(
                request,
                "admin/wizard/reject_requests.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Reject import requests",
                    "requests": queryset,
                    "missing_reason": "confirm" in request.POST,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "opts": self.model._meta,
                },
            )
        for import_request in queryset:
            try:
                review.reject(import_request, request.user, reason)
                self.message_user(request, f"Rejected #{import_request.pk}.", messages.SUCCESS)
            except review.ReviewError as exc:
                self.message_user(request, f"#{import_request.pk}: {exc}", messages.ERROR)
        return None


class TaskStatusChangeInline(ReadOnlyInline):
    model = TaskStatusChange
    fields = ("at", "status", "status_message", "progress")


@admin.register(ImportTask)
class ImportTaskAdmin(ReadOnlyAdmin):
    list_display = ("import_task_id", "request", "status", "status_message", "progress", "image_id", "changed_at")
    list_filter = ("status",)
    inlines = [TaskStatusChangeInline]


@admin.register(Upload)
class UploadAdmin(ReadOnlyAdmin):
    list_display = ("file_name", "owner", "status", "bucket", "key", "size", "created_at")
    list_filter = ("status",)
    search_fields = ("file_name", "key")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the audit log is append-only."""

    list_display = ("at", "actor_name", "action", "request")
    list_filter = ("action", "actor_name")


# --- audited ---------------------------------------------------------------------------


def _label(obj: models.Model) -> str:
    if isinstance(obj, Permission):
        return f"{obj.content_type.app_label}.{obj.codename}"
    return str(obj)


def _jsonable(value: Any) -> Any:
    # To the second: the admin's date and time fields drop the microseconds on every save.
    if isinstance(value, dict):
        value = {k: v.replace(microsecond=0) if isinstance(v, datetime) else v for k, v in value.items()}
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


class AuditedAdmin(admin.ModelAdmin):
    """Every add, change and delete made in this admin is an audit event in the same transaction:
    "<model> added / changed / deleted", with the fields (many-to-many ones too) before and after.
    Fields in `secret_fields` are never written: only that they changed."""

    secret_fields: tuple[str, ...] = ()

    def snapshot(self, obj: models.Model) -> dict[str, Any]:
        """The object's fields as the database holds them (related objects by name)."""
        values: dict[str, Any] = {f.attname: f.value_from_object(obj) for f in obj._meta.concrete_fields}
        for field in obj._meta.many_to_many:
            values[field.name] = sorted(_label(o) for o in getattr(obj, field.name).all())
        return _jsonable(values)

    def _public(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k not in self.secret_fields}

    def _record(
        self, request: HttpRequest, verb: str, obj: models.Model, before: Any = None, after: Any = None, **details: Any
    ) -> None:
        opts = obj._meta
        audit.record(
            f"{opts.verbose_name} {verb}",
            actor=request.user,
            before=before,
            after=after,
            details={"object": f"{opts.label_lower} #{obj.pk}", "name": str(obj), "via": "admin", **details},
        )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj._audit_before = self.snapshot(type(obj)._default_manager.get(pk=obj.pk))
        super().save_model(request, obj, form, change)

    # The admin calls log_addition / log_change after save_model and save_related (many-to-many
    # saved), inside the transaction of the change form.
    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> LogEntry:
        after = self.snapshot(obj)
        secrets = {name: f"{name} set" for name in self.secret_fields if after.get(name)}
        self._record(request, "added", obj, after={**self._public(after), **secrets})
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> LogEntry:
        before = obj.__dict__.pop("_audit_before", None)
        if before is None:  # a form of its own that save_model does not see: the user admin's password form
            self._record(request, "changed", obj, before={}, after={n: f"{n} changed" for n in self.secret_fields})
            return super().log_change(request, obj, message)
        after = self.snapshot(obj)
        changed = [k for k in after if before.get(k) != after[k]]
        self._record(
            request,
            "changed",
            obj,
            before={k: before.get(k) for k in changed if k not in self.secret_fields},
            after={k: f"{k} changed" if k in self.secret_fields else after[k] for k in changed},
        )
        return super().log_change(request, obj, message)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            before, pk = self.snapshot(obj), obj.pk
            super().delete_model(request, obj)
            obj.pk = pk
            self._record(request, "deleted", obj, before=self._public(before))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """The "delete selected" action: one event per object."""
        with transaction.atomic():
            objs = [(obj, self.snapshot(obj)) for obj in queryset]
            super().delete_queryset(request, queryset)
            for obj, before in objs:
                self._record(request, "deleted", obj, before=self._public(before))


# Users and groups decide who may approve (wizard.requests.review) and which grants apply (wizard.uploads.sources).
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    secret_fields = ("password",)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        with transaction.atomic():  # the new password and its audit event together
            return super().user_change_password(request, id, form_url)


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdmin, GroupAdmin):
    pass


# --- source grants ---------------------------------------------------------------------

HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
FIELDS_BY_KIND = {
    SourceGrant.Kind.S3: ("s3_bucket", "s3_prefix"),
    SourceGrant.Kind.URL: ("host",),
    SourceGrant.Kind.SNAPSHOT_TAG: ("tag_key", "tag_value"),
}


def host_problem(host: str) -> str:
    """What keeps `host` from being a bare DNS host name (as in https://<host>/...), or "" if nothing."""
    if not host:
        return "give the host name, e.g. images.example.com"
    if "://" in host:
        return "only the host name, without https://"
    if any(c in host for c in "/?#@:[]\\") or any(c.isspace() for c in host):
        return "only the host name: no path, port, user name or spaces"
    if not host.isascii():
        return "use the ASCII (xn--) form of an international name"
    if len(host) > 253:
        return f"a host name has at most 253 characters (this has {len(host)})"
    labels = host.split(".")
    if not all(HOST_LABEL.fullmatch(label) for label in labels):
        return (
            "use lowercase letters, digits and hyphens between the dots, each part 1 to 63 long, "
            "not starting or ending with a hyphen"
        )
    if labels[-1].isdigit():
        return "a host name, not an IP address"
    return ""


def tag_key_problem(key: str) -> str:
    if not key:
        return "give the tag's key"
    if key.lower().startswith("aws:"):
        return "keys starting with aws: are AWS's own; a user cannot tag with them"
    return ""


class SourceGrantForm(forms.ModelForm):
    class Meta:
        model = SourceGrant
        fields = ("kind", "groups", "s3_bucket", "s3_prefix", "host", "tag_key", "tag_value", "note")

    def clean(self) -> dict[str, Any]:
        data = cast("dict[str, Any]", super().clean())  # ModelForm.clean returns cleaned_data
        kind = data.get("kind")
        if kind not in FIELDS_BY_KIND:
            return data
        label = SourceGrant.Kind(kind).label
        for other, names in FIELDS_BY_KIND.items():
            for name in names:
                if other != kind and data.get(name):
                    self.add_error(name, f"leave this empty for a grant of kind “{label}”")
        if kind == SourceGrant.Kind.S3:
            if problem := bucket_name_problem(data.get("s3_bucket", "")):
                self.add_error("s3_bucket", f"the bucket name {problem}")
            if data.get("s3_prefix", "").startswith("/"):
                self.add_error("s3_prefix", "an S3Key prefix has no leading slash, e.g. images/team-a/")
        elif kind == SourceGrant.Kind.URL:
            host = data.get("host", "").strip().lower().removesuffix(".")
            if problem := host_problem(host):
                self.add_error("host", problem)
            else:
                data["host"] = host
        elif problem := tag_key_problem(data.get("tag_key", "")):
            self.add_error("tag_key", problem)
        return data


@admin.register(SourceGrant)
class SourceGrantAdmin(AuditedAdmin):
    """Only superusers by default: no role holds SourceGrant permissions (wizard.setup)."""

    form = SourceGrantForm
    list_display = ("__str__", "kind", "group_names", "note", "created_at")
    list_filter = ("kind", "groups")
    search_fields = ("s3_bucket", "s3_prefix", "host", "tag_key", "tag_value", "note")
    filter_horizontal = ("groups",)

    @admin.display(description="groups")
    def group_names(self, obj: SourceGrant) -> str:
        return ", ".join(g.name for g in obj.groups.all())

    def get_queryset(self, request: HttpRequest) -> QuerySet[SourceGrant]:
        return super().get_queryset(request).prefetch_related("groups")


ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::(\d{12}):role/[A-Za-z0-9+=,.@_/-]{1,512}")


class TargetForm(forms.ModelForm):
    class Meta:
        model = Target
        fields = ("name", "account_id", "region", "bucket", "role_arn", "external_id", "groups", "note")

    def clean(self) -> dict[str, Any]:
        data = cast("dict[str, Any]", super().clean())  # forms.ModelForm.clean returns cleaned_data
        account = data.get("account_id", "")
        if account and not (account.isascii() and account.isdigit() and len(account) == 12):
            self.add_error("account_id", "an AWS account id is 12 digits, e.g. 123456789012")
        if (region := data.get("region", "")) and not finishspec.REGION.fullmatch(region):
            self.add_error("region", "a region name such as eu-west-1")
        if problem := bucket_name_problem(data.get("bucket", "")):
            self.add_error("bucket", f"the bucket name {problem}")
        role = ROLE_ARN.fullmatch(data.get("role_arn", ""))
        if not role:
            self.add_error("role_arn", "a role ARN: arn:aws:iam::123456789012:role/ImportWizard")
        elif account and role.group(1) != account:
            self.add_error("role_arn", f"the role is in account {role.group(1)}, not in the target's {account}")
        return data


@admin.register(Target)
class TargetAdmin(AuditedAdmin):
    """Accounts and regions requests may import into (wizard.targets); superusers only by default.
    The ExternalId is kept out of the audit log (only that it changed)."""

    form = TargetForm
    secret_fields = ("external_id",)
    list_display = ("name", "account_id", "region", "bucket", "group_names")
    filter_horizontal = ("groups",)

    @admin.display(description="groups")
    def group_names(self, obj: Target) -> str:
        return ", ".join(g.name for g in obj.groups.all())
