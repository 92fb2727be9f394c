"""Many rows written with one statement executed for all of them (DB-API executemany).

For the poller's busy cycles (1,000 changed tasks: their rows, 1,000 TaskStatusChange and
1,000 audit events). QuerySet.bulk_update builds a CASE WHEN per row and field, and
bulk_create prepares and compiles every value; both cost more Python than the database's
work (0.75 s for 2,000 inserted rows, seconds for 1,000 updates on this machine). Here the
SQL is built once and each value is prepared once by its field's kind: datetimes and JSON as
the backend wants them, other values (str, int, None, a pk) as they are.

No signals, no save(), no auto_now: the caller passes every value. Runs in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connection, models


def _preparer(field: models.Field) -> Callable[[Any], Any]:
    if isinstance(field, models.JSONField):
        return lambda value: connection.ops.adapt_json_value(value, field.encoder)
    if isinstance(field, models.DateTimeField):
        return connection.ops.adapt_datetimefield_value
    return lambda value: value


def _field(model: type[models.Model], name: str) -> models.Field:
    """A concrete column of `model` (a relation's reverse side has no column to write)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or not field.column:
        raise ValueError(f"{model.__name__}.{name} is no column")
    return field


def _column(model: type[models.Model], name: str) -> str:
    column = _field(model, name).column
    assert column is not None  # _field checked it
    return connection.ops.quote_name(column)


def _columns(model: type[models.Model], fields: Sequence[str]) -> tuple[list[str], list[Callable[[Any], Any]]]:
    return [_column(model, name) for name in fields], [_preparer(_field(model, name)) for name in fields]


# PostgreSQL answers each statement of an executemany in turn (a round trip each: 0.6 s for
# 1,000 rows here); there, rows go in multi-row statements of at most this many parameters.
PG_PARAMS = 20_000


def _chunks(params: list[list[Any]], columns: int) -> Iterable[list[list[Any]]]:
    size = max(1, PG_PARAMS // columns)
    for start in range(0, len(params), size):
        yield params[start : start + size]


def insert_rows(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """INSERT one row per sequence of values, in the order of `fields` (attnames: `task_id`)."""
    columns, prepare = _columns(model, fields)
    params = [[p(v) for p, v in zip(prepare, row, strict=True)] for row in rows]
    if not params:
        return
    head = f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) VALUES "
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.executemany(head + one, params)
            return
        for chunk in _chunks(params, len(columns)):
            cursor.execute(head + ", ".join([one] * len(chunk)), [v for row in chunk for v in row])


def update_rows(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """UPDATE by primary key: each sequence is the values of `fields`, then the pk."""
    columns, prepare = _columns(model, fields)
    params = [[*(p(v) for p, v in zip(prepare, row[:-1], strict=True)), row[-1]] for row in rows]
    if not params:
        return
    meta = model._meta
    assert meta.pk is not None
    table, pk = connection.ops.quote_name(meta.db_table), _column(model, meta.pk.name)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            sets = ", ".join(f"{c} = %s" for c in columns)
            cursor.executemany(f"UPDATE {table} SET {sets} WHERE {pk} = %s", params)
            return
        # UPDATE ... FROM (VALUES ...): a value with no type of its own (a str, None) is cast to
        # its column's type, except text (an explicit cast to varchar(n) would cut a long value
        # short, where the assignment refuses it).
        names = [f"c{i}" for i in range(len(columns))]
        sets = ", ".join(
            f"{c} = {_cast(f'v.{n}', _field(model, name))}" for c, n, name in zip(columns, names, fields, strict=True)
        )
        one = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
        for chunk in _chunks(params, len(columns) + 1):
            cursor.execute(
                f"UPDATE {table} SET {sets} FROM (VALUES {', '.join([one] * len(chunk))}) "
                f"AS v({', '.join(names)}, pk) WHERE {table}.{pk} = CAST(v.pk AS bigint)",
                [v for row in chunk for v in row],
            )


def _cast(value: str, field: models.Field) -> str:
    if isinstance(field, (models.CharField, models.TextField)):
        return value
    return f"CAST({value} AS {field.cast_db_type(connection)})"
