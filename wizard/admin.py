"""The Django admin: requests with an approve action that goes through wizard.review."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from wizard import review
from wizard.models import AuditEvent, DiskContainer, ImportRequest, ImportTask


class DiskContainerInline(admin.TabularInline):
    model = DiskContainer
    extra = 0
    fields = ("position", "format", "s3_bucket", "s3_key", "url", "snapshot_id", "device_name", "file_name")


@admin.register(ImportRequest)
class ImportRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "description", "owner", "status", "created_at", "submitted_at")
    list_filter = ("status", "owner", "created_at")
    search_fields = ("description", "client_token", "import_task__import_task_id")
    readonly_fields = ("status", "client_token", "submitted_at", "reviewed_by", "reviewed_at", "failure_message")
    inlines = [DiskContainerInline]
    actions = ["approve_selected", "reject_selected"]

    @admin.action(description="Approve selected requests (and dispatch them)")
    def approve_selected(self, request, queryset):
        for import_request in queryset:
            try:
                review.approve(import_request, request.user)
                self.message_user(request, f"Approved #{import_request.pk}.", messages.SUCCESS)
            except review.ReviewError as exc:
                self.message_user(request, f"#{import_request.pk}: {exc}", messages.ERROR)

    @admin.action(description="Reject selected requests (asks for a reason)")
    def reject_selected(self, request, queryset):
        """First a page asking for the reason; then each request goes through wizard.review.reject."""
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


@admin.register(ImportTask)
class ImportTaskAdmin(admin.ModelAdmin):
    list_display = ("import_task_id", "request", "status", "status_message", "progress", "image_id", "changed_at")
    list_filter = ("status",)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only."""

    list_display = ("at", "actor_name", "action", "request")
    list_filter = ("action", "actor_name")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
