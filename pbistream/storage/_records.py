"""How datasets, dashboards and rows become database records and SQL text, and back.

SQLite and PostgreSQL keep the same tables with the same columns, so the schema, the
record form of a :class:`~pbistream.schema.Dataset`, the JSON text of a row and the
row-reading SELECT are written once here; :mod:`pbistream.storage._sql` runs them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import orjson

from pbistream.schema import Dataset, Mode, Retention, Table
from pbistream.storage.base import Dashboard, StoredRow

__all__ = [
    "DatasetRecord",
    "dashboard_from_record",
    "dataset_from_record",
    "dataset_record",
    "encode_batch",
    "encode_rows",
    "format_style",
    "read_rows_query",
    "schema_sql",
    "stored_rows",
    "with_table",
]

#: ``(id, group_id, name, mode, retention, push_key, created_at, definition)``
DatasetRecord = tuple[str, str | None, str, str, str, str | None, float, str]

# orjson turns a normalised row into compact UTF-8 JSON in C. It escapes U+0000 as
# the six characters ``\u0000``, which is why the column is TEXT (PostgreSQL's TEXT
# and JSONB both reject a raw NUL; the escaped form is plain text).
_encode_row = orjson.dumps


def encode_rows(rows: list[dict[str, Any]]) -> list[bytes]:
    """Each row as compact UTF-8 JSON (the only per-row work of an insert, done in C).

    Raises:
        ValueError: A row holds something JSON cannot carry (a lone surrogate, an
            object orjson does not know); the message names the row's index.
    """
    try:
        return list(map(_encode_row, rows))
    except orjson.JSONEncodeError:
        _raise_for_bad_row(rows)
        raise


def encode_batch(rows: list[dict[str, Any]]) -> str:
    """The rows as one JSON array (SQLite splits it with ``json_each``).

    Raises:
        ValueError: As :func:`encode_rows`.
    """
    try:
        return _encode_row(rows).decode()
    except orjson.JSONEncodeError:
        _raise_for_bad_row(rows)
        raise


def _raise_for_bad_row(rows: list[dict[str, Any]]) -> None:
    """Raise ValueError naming the first row orjson refuses (the slow path, errors only)."""
    for index, row in enumerate(rows):
        try:
            _encode_row(row)
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"row {index} cannot be stored as JSON: {exc}") from None


def dataset_record(dataset: Dataset) -> DatasetRecord:
    """The ``datasets`` row for a dataset; tables and extra properties go in ``definition``."""
    definition = {
        "tables": [t.to_json() for t in dataset.tables],
        "properties": dataset.properties,
    }
    return (
        dataset.id,
        dataset.group_id,
        dataset.name,
        dataset.mode.value,
        dataset.retention.value,
        dataset.push_key,
        dataset.created_at,
        orjson.dumps(definition).decode(),
    )


def dataset_from_record(record: Iterable[Any]) -> Dataset:
    """Rebuild a dataset from a ``datasets`` row (column order as in :data:`DatasetRecord`)."""
    ds_id, group_id, name, mode, retention, push_key, created_at, definition = record
    parsed = orjson.loads(definition)
    return Dataset(
        id=ds_id,
        name=name,
        mode=Mode.parse(mode),
        retention=Retention.parse(retention),
        tables=[Table.from_json(t) for t in parsed.get("tables", [])],
        group_id=group_id,
        push_key=push_key,
        created_at=float(created_at),
        properties=dict(parsed.get("properties") or {}),
    )


def with_table(definition: str, table: Table) -> str:
    """A dataset's ``definition`` JSON with one table replaced (same name) or appended."""
    parsed = orjson.loads(definition)
    tables: list[dict[str, Any]] = parsed.get("tables", [])
    new = table.to_json()
    for i, existing in enumerate(tables):
        if existing.get("name") == table.name:
            tables[i] = new
            break
    else:
        tables.append(new)
    parsed["tables"] = tables
    return orjson.dumps(parsed).decode()


def dashboard_from_record(record: Iterable[Any]) -> Dashboard:
    """Rebuild a dashboard from ``(id, name, tiles, created_at, updated_at)``."""
    dash_id, name, tiles, created_at, updated_at = record
    return Dashboard(dash_id, name, orjson.loads(tiles), float(created_at), float(updated_at))


def read_rows_query(
    placeholder: str,
    dataset_id: str,
    table: str | None,
    *,
    after_id: int | None,
    since: float | None,
    until: float | None,
    limit: int,
    newest_first: bool,
    through_id: int | None = None,
    source: str = "rows",
) -> tuple[str, list[Any]]:
    """The SELECT behind ``read_rows`` and its parameters.

    ``through_id`` is an inclusive upper id bound and ``source`` the FROM clause;
    SQLite uses both to steer its planner (see ``SQLiteStorage.read_rows``).

    The time window is half-open, ``since <= received_at < until``, so consecutive
    windows never return a row twice. Order is by ``id`` (insert order), not by
    ``received_at``, because the wall clock may step back while ids never do.
    """
    p = placeholder
    where = [f"dataset_id = {p}"]
    params: list[Any] = [dataset_id]
    if table is not None:
        where.append(f"table_name = {p}")
        params.append(table)
    if after_id is not None:
        where.append(f"id > {p}")
        params.append(after_id)
    if through_id is not None:
        where.append(f"id <= {p}")
        params.append(through_id)
    if since is not None:
        where.append(f"received_at >= {p}")
        params.append(since)
    if until is not None:
        where.append(f"received_at < {p}")
        params.append(until)
    order = "DESC" if newest_first else "ASC"
    params.append(max(0, limit))
    # Only fixed SQL fragments are joined here; every value is a bound parameter.
    sql = (
        f"SELECT id, received_at, table_name, data FROM {source} WHERE "  # noqa: S608
        + " AND ".join(where)
        + f" ORDER BY id {order} LIMIT {p}"
    )
    return sql, params


def stored_rows(records: Iterable[Any]) -> list[StoredRow]:
    """Turn ``(id, received_at, table_name, data)`` records into :class:`StoredRow`."""
    loads = orjson.loads
    return [StoredRow(int(i), float(r), t, loads(d)) for i, r, t, d in records]


def schema_sql(*, row_id: str, real: str, integer: str, extra: str = "") -> str:
    """The tables both backends keep, in one backend's column types.

    Args:
        row_id: The ``rows.id`` column: never-reused, increasing integers.
        real: The 64-bit float type.
        integer: The 64-bit integer type.
        extra: Backend-specific statements appended at the end (more indexes).
    """
    return f"""
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    group_id TEXT,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    retention TEXT NOT NULL,
    push_key TEXT,
    created_at {real} NOT NULL,
    definition TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_group ON datasets (group_id);
CREATE TABLE IF NOT EXISTS rows (
    id {row_id},
    dataset_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    received_at {real} NOT NULL,
    data TEXT NOT NULL
);
-- A table's rows in id order: cursor reads and the FIFO trim.
CREATE INDEX IF NOT EXISTS rows_by_table ON rows (dataset_id, table_name, id);
-- Time windows, and the streaming cache's delete_rows_before.
CREATE INDEX IF NOT EXISTS rows_by_time ON rows (dataset_id, received_at);
CREATE TABLE IF NOT EXISTS row_counts (
    dataset_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    n {integer} NOT NULL,
    PRIMARY KEY (dataset_id, table_name)
);
CREATE TABLE IF NOT EXISTS sequence_numbers (
    dataset_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    last_seq {integer} NOT NULL,
    PRIMARY KEY (dataset_id, table_name)
);
CREATE TABLE IF NOT EXISTS dashboards (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tiles TEXT NOT NULL,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
{extra}
"""


@functools.cache
def format_style(query: str) -> str:
    """``query`` with ``?`` placeholders as psycopg's ``%s`` (our SQL has no literal ``?``)."""
    return query.replace("?", "%s")
