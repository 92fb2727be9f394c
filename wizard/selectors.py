"""Reads: which requests a user may see."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.contrib.auth.models import User
from django.db import connection, connections
from django.db.models import Field, Model, QuerySet
from django.db.models.expressions import Col

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
# _finishing.html, views.imports.progress_context and progress_etag); any other field is
# deferred, and loaded by a query of its own if something reads it.
PROGRESS_FIELDS = ("id", "owner", "status", "failure_message", "target")


def own_request_with_task(pk: int, owner_id: int) -> ImportRequest | None:
    """The owner's request `pk` with its task (None when it is not theirs), for the progress
    partial that every open request page polls every 2 s."""
    found = own_request_for_poll(pk, owner_id)
    return found.request if found is not None else None


MAX_ID = 2**63 - 1  # the largest primary key (BigAutoField) on every database


class PollRead(NamedTuple):
    request: ImportRequest  # with its task (request.import_task), as select_related leaves it
    owner_password: str  # the owner's password hash and is_active: what a session is checked against
    owner_is_active: bool


def own_request_for_poll(pk: int, owner_id: int) -> PollRead | None:
    """The owner's request `pk` with its task and the owner's password hash and is_active, in
    one query; None when the request is not theirs.

    This is the application's most frequent read (bench/progress). A plain cursor and the
    fields' own converters (worked out once per database), so the values are the ORM's:
    building the equivalent QuerySet (select_related of two models, 57 columns) cost about
    ten times running it, and Manager.raw's per-query set-up about as much as the query.
    """
    if not 0 < pk <= MAX_ID or not 0 < owner_id <= MAX_ID:  # no such row (and SQLite would overflow)
        return None
    plan = _poll_plan(connection.alias)
    with connection.cursor() as cursor:
        cursor.execute(plan.sql, [pk, owner_id])
        row = cursor.fetchone()
    if row is None:
        return None
    values = [_convert(value, converters) for value, converters in zip(row, plan.converters, strict=True)]
    n, m = len(plan.request_fields), len(plan.request_fields) + len(plan.task_fields)
    request = ImportRequest.from_db(connection.alias, plan.request_fields, values[:n])
    task = ImportTask.from_db(connection.alias, plan.task_fields, values[n:m]) if values[n] is not None else None
    # As select_related("import_task") leaves it: request.import_task is the task, or raises
    # RelatedObjectDoesNotExist (no query) when there is none.
    ImportRequest.import_task.related.set_cached_value(request, task)
    if task is not None:
        ImportTask.request.field.set_cached_value(task, request)
    password, is_active = values[m:]
    return PollRead(request, str(password), bool(is_active))


Converters = list[tuple[Callable[[Any, Any, Any], Any], Col]]  # what Django applies to a column's value


def _convert(value: object, converters: Converters) -> object:
    for converter, col in converters:
        if value is None:
            break
        value = converter(value, col, connection)
    return value


@dataclass(frozen=True)
class _PollPlan:
    sql: str
    request_fields: list[str]  # attnames, in the models' field order (as Model.from_db expects them)
    task_fields: list[str]
    converters: list[Converters]  # one per column selected


@functools.cache
def _poll_plan(alias: str) -> _PollPlan:
    """own_request_for_poll's SQL, the fields it fills and each column's converters, once per database."""
    db = connections[alias]
    qn = db.ops.quote_name
    request_fields = [f for f in ImportRequest._meta.concrete_fields if f.name in PROGRESS_FIELDS]
    task_fields = list(ImportTask._meta.concrete_fields)
    user_fields = [User._meta.get_field("password"), User._meta.get_field("is_active")]
    columns, converters = [], []
    for table, fields in (("r", request_fields), ("t", task_fields), ("u", user_fields)):
        for field in fields:
            assert isinstance(field, Field) and field.column
            col = field.get_col(table)
            columns.append(f"{table}.{qn(field.column)}")
            converters.append([(c, col) for c in db.ops.get_db_converters(col) + col.get_db_converters(db)])
    request_id, owner = (qn(_column(ImportRequest, name)) for name in ("id", "owner"))
    user_id, of_request = qn(_column(User, "id")), qn(_column(ImportTask, "request"))
    sql = (
        f"SELECT {', '.join(columns)} FROM {qn(ImportRequest._meta.db_table)} r"
        f" JOIN {qn(User._meta.db_table)} u ON u.{user_id} = r.{owner}"
        f" LEFT JOIN {qn(ImportTask._meta.db_table)} t ON t.{of_request} = r.{request_id}"
        f" WHERE r.{request_id} = %s AND r.{owner} = %s"
    )
    return _PollPlan(sql, [f.attname for f in request_fields], [f.attname for f in task_fields], converters)


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column
    return field.column
