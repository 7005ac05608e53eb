# Table names here are "dax_" + a hex digest and column names "c0", "c1", ...: made by
# this module, never from a request; every value is a bound parameter.
# ruff: noqa: S608
"""Typed columns for DAX queries: a lazily kept copy of a table's rows, one SQL column each.

Rows are stored as JSON text, and parsing it is most of a query's time (measured by
``bench/bench_dax.py``: typed columns answer 5 to 20 times faster). So the first
executeQueries on a table copies its rows into ``dax_<hash>`` (``id``, then
``c0, c1, ...`` in the database's own types); later queries first bring the copy up
to date and then read it. Ingest never pays: the copy catches up at query time.

Keeping it exact, cheaply. Under the dataset's write lock (the lock inserts take):

1. rows below the table's smallest stored id are gone (FIFO and streaming-cache
   trims delete the oldest): delete them from the copy;
2. rows above the copy's largest id are new: copy them (inserts into one dataset
   are serialised, so ids arrive in order and none is skipped);
3. if the copy's row count still differs from the table's (a deletion elsewhere),
   rebuild it.

A table's columns are part of the copy's name, so a redefined table gets a new copy;
``dax_columns`` lists the copies, and copies of deleted datasets or of a table's old
definitions are dropped when a new copy is made.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from pbistream.dax.plan import Scan
from pbistream.dax.sql import Dialect

__all__ = ["Source", "copy_name", "ensure_copy", "sync_copy"]

#: ``(copy table name, {field: column name})`` for one scanned table.
Source = tuple[str, dict[str, str]]

_REGISTRY = (
    "CREATE TABLE IF NOT EXISTS dax_columns ("
    "name TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, table_name TEXT NOT NULL, n BIGINT NOT NULL)"
)
_TYPES = {
    "sqlite": {"Int64": "INTEGER", "Double": "REAL", "Decimal": "REAL", "Boolean": "INTEGER"},
    "postgres": {"Int64": "BIGINT", "Double": "FLOAT8", "Decimal": "FLOAT8", "Boolean": "BOOLEAN"},
}


def copy_name(dataset_id: str, scan: Scan) -> str:
    """The copy's table name: a hash of the dataset, the table and its columns."""
    fields = [(f.field, f.dtype.value) for f in scan.fields]
    digest = hashlib.sha256(orjson.dumps([dataset_id, scan.table, fields])).hexdigest()
    return f"dax_{digest[:24]}"


def sync_copy(
    conn: Any, q: Any, dataset_id: str, scan: Scan, dialect: Dialect, count: int
) -> Source:
    """Bring the typed copy of one table up to date; return where a scan reads it.

    Args:
        conn: A connection inside a write transaction holding the dataset's lock.
        q: Turns ``?`` placeholders into the backend's style.
        dataset_id: The dataset.
        scan: The table and its columns.
        dialect: The backend.
        count: The table's stored row count (``row_counts``), read under the same lock.
    """
    name = copy_name(dataset_id, scan)
    columns = {f.field: f"c{i}" for i, f in enumerate(scan.fields)}
    held = ensure_copy(conn, q, dataset_id, scan, dialect)
    if held is None:
        return name, columns  # just built, under this lock: it is current
    # ORDER BY ... LIMIT 1, not min(id): one index probe on both backends.
    first = conn.execute(
        q("SELECT id FROM rows WHERE dataset_id = ? AND table_name = ? ORDER BY id LIMIT 1"),
        (dataset_id, scan.table),
    ).fetchone()
    low = first[0] if first else None
    if low is None:
        held -= conn.execute(f"DELETE FROM {name}").rowcount
    else:
        held -= conn.execute(q(f"DELETE FROM {name} WHERE id < ?"), (low,)).rowcount
        top = conn.execute(f"SELECT max(id) FROM {name}").fetchone()
        after = top[0] if top and top[0] is not None else 0
        source, params = _select(dataset_id, scan, dialect, after)
        held += int(conn.execute(q(f"INSERT INTO {name} {source}"), params).rowcount)
        if held != count:
            # A deletion the two steps above cannot see: copy the table afresh.
            conn.execute(f"DROP TABLE {name}")
            held = _build(conn, q, name, dataset_id, scan, dialect)
    conn.execute(q("UPDATE dax_columns SET n = ? WHERE name = ?"), (held, name))
    return name, columns


def ensure_copy(conn: Any, q: Any, dataset_id: str, scan: Scan, dialect: Dialect) -> int | None:
    """Build the copy if it does not exist (then None); else return its row count.

    PostgreSQL calls it first without the dataset's lock (under an advisory lock on
    the copy), so a first query on a big table does not hold up the table's writers:
    the copy then holds the rows committed when it started, and :func:`sync_copy`
    catches up under the lock.
    """
    name = copy_name(dataset_id, scan)
    conn.execute(_REGISTRY)
    found = conn.execute(q("SELECT n FROM dax_columns WHERE name = ?"), (name,)).fetchone()
    if found is not None:
        return int(found[0])
    _drop_stale(conn, q, dataset_id, scan.table)
    held = _build(conn, q, name, dataset_id, scan, dialect)
    conn.execute(
        q("INSERT INTO dax_columns (name, dataset_id, table_name, n) VALUES (?, ?, ?, ?)"),
        (name, dataset_id, scan.table, held),
    )
    return None


def _select(dataset_id: str, scan: Scan, dialect: Dialect, after: int) -> tuple[str, list[Any]]:
    """SELECT id, c0, c1, ... of the table's stored rows above id ``after``."""
    parts: list[str] = []
    params: list[Any] = []
    for i, field in enumerate(scan.fields):
        text, more = dialect.extract(field.field, field.dtype)
        parts.append(f"{text} AS c{i}")
        params += more
    select = ", ".join(["id", *parts])
    where = "dataset_id = ? AND table_name = ? AND id > ?"
    params += [dataset_id, scan.table, after]
    if dialect.name == "sqlite":
        return f"SELECT {select} FROM rows WHERE {where}", params
    return (
        f"SELECT {select} FROM (SELECT id, data::jsonb AS j FROM rows WHERE {where}) AS s",
        params,
    )


def _build(conn: Any, q: Any, name: str, dataset_id: str, scan: Scan, dialect: Dialect) -> int:
    """Create the copy holding every stored row of the table; return its row count."""
    source, params = _select(dataset_id, scan, dialect, 0)
    if dialect.name == "postgres":
        # CREATE TABLE AS, then the key: twice as fast as filling a keyed table.
        # UNLOGGED: a copy needs no WAL; after a crash it is empty, the counts
        # differ, and the next query rebuilds it.
        created = conn.execute(q(f"CREATE UNLOGGED TABLE {name} AS {source}"), params)
        conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
        return int(created.rowcount)
    types = _TYPES[dialect.name]
    defs = [f"c{i} {types.get(f.dtype.value, 'TEXT')}" for i, f in enumerate(scan.fields)]
    conn.execute(f"CREATE TABLE {name} ({', '.join(['id INTEGER PRIMARY KEY', *defs])})")
    return int(conn.execute(q(f"INSERT INTO {name} {source}"), params).rowcount)


def _drop_stale(conn: Any, q: Any, dataset_id: str, table: str) -> None:
    """Drop the copies of this table's old definitions and of deleted datasets."""
    stale = conn.execute(
        q(
            "SELECT name FROM dax_columns WHERE (dataset_id = ? AND table_name = ?) "
            "OR dataset_id NOT IN (SELECT id FROM datasets)"
        ),
        (dataset_id, table),
    ).fetchall()
    for (old,) in stale:
        conn.execute(f"DROP TABLE IF EXISTS {old}")
        conn.execute(q("DELETE FROM dax_columns WHERE name = ?"), (old,))
