"""Reads: which requests a user may see."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Field, Model, QuerySet

from wizard.models import AuditEvent, ImportRequest, ImportTask

SEE_ALL_PERMS = ("wizard.review_importrequest", "wizard.view_importrequest")


def can_see_all(user: User) -> bool:
    return user.is_superuser or any(user.has_perm(p) for p in SEE_ALL_PERMS)


def visible_requests(user: User) -> QuerySet[ImportRequest]:
    """Requesters see their own requests; reviewers, auditors and admins see every one."""
    qs = ImportRequest.objects.select_related("owner")
    return qs if can_see_all(user) else qs.filter(owner=user)


def visible_events(user: User) -> QuerySet[AuditEvent]:
    """Reviewers, auditors and admins read the whole audit log; requesters their own requests' events."""
    qs = AuditEvent.objects.all()
    if can_see_all(user) or user.has_perm("wizard.view_auditevent"):
        return qs
    return qs.filter(request__owner=user)


# What the progress partial reads of a request (templates/imports/_progress.html and
# _finishing.html, views.imports._progress_context and progress_etag); any other field is
# deferred, and loaded by a query of its own if something reads it.
PROGRESS_FIELDS = ("id", "owner", "status", "failure_message", "target")


def own_request_with_task(pk: int, owner_id: int) -> ImportRequest | None:
    """The owner's request `pk` with its task (None when it is not theirs), for the progress
    partial that every open request page polls every 2 s.

    Two raw queries (Manager.raw: the fields' own converters, so the same values as the ORM's):
    building the equivalent QuerySet (select_related of two models, 57 columns) cost about ten
    times running it, and this is the application's most frequent read (bench/progress).
    """
    qn = connection.ops.quote_name
    column = {name: qn(_column(ImportRequest, name)) for name in PROGRESS_FIELDS}
    found = list(
        ImportRequest.objects.raw(
            f"SELECT {', '.join(column.values())} FROM {qn(ImportRequest._meta.db_table)}"
            f" WHERE {column['id']} = %s AND {column['owner']} = %s",
            [pk, owner_id],
        )
    )
    if not found:
        return None
    request = found[0]
    task_table, of_request = qn(ImportTask._meta.db_table), qn(_column(ImportTask, "request"))
    tasks = list(ImportTask.objects.raw(f"SELECT * FROM {task_table} WHERE {of_request} = %s", [pk]))
    # As select_related("import_task") leaves it: request.import_task is the task, or raises
    # RelatedObjectDoesNotExist (no query) when there is none.
    ImportRequest.import_task.related.set_cached_value(request, tasks[0] if tasks else None)
    if tasks:
        ImportTask.request.field.set_cached_value(tasks[0], request)
    return request


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column
    return field.column
