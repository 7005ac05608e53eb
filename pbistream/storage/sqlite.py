"""The embedded default backend: one SQLite file in WAL mode.

Discipline (after datasette's ``Database`` and litequeue): exactly one writer
connection, guarded by a lock, carries every write in a ``BEGIN IMMEDIATE``
transaction; reads go through one read-only connection per thread, which WAL lets
run while the writer commits. ``insert_rows`` commits before it returns, so an
acknowledged row survives a ``kill -9`` of the server.

Row ids come from ``INTEGER PRIMARY KEY AUTOINCREMENT``: SQLite never hands out an
id again, even after the newest rows are deleted, so an id is a safe cursor.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from pbistream.exceptions import ConfigError
from pbistream.schema import Dataset, Table
from pbistream.storage._sql import (
    dashboard_from_record,
    dataset_from_record,
    dataset_record,
    encode_batch,
    encode_rows,
    read_rows_query,
    stored_rows,
    with_table,
)
from pbistream.storage.base import Dashboard, InsertResult, StoredRow

__all__ = ["SCHEMA_VERSION", "SQLiteStorage"]

#: Kept in ``PRAGMA user_version``; bump it when the tables change. Every statement in
#: ``_SCHEMA`` is ``IF NOT EXISTS``, so an older file is migrated by running it again.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    group_id TEXT,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    retention TEXT NOT NULL,
    push_key TEXT,
    created_at REAL NOT NULL,
    definition TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_group ON datasets (group_id);
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    received_at REAL NOT NULL,
    data TEXT NOT NULL
);
-- A table's rows in id order: cursor reads (per table, or merged over a dataset's
-- tables, see read_rows) and the FIFO trim. Each index costs about a quarter of the
-- insert speed, so there is no third one on (dataset_id, id).
CREATE INDEX IF NOT EXISTS rows_by_table ON rows (dataset_id, table_name, id);
-- Time windows, and the streaming cache's delete_rows_before.
CREATE INDEX IF NOT EXISTS rows_by_time ON rows (dataset_id, received_at);
CREATE TABLE IF NOT EXISTS row_counts (
    dataset_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (dataset_id, table_name)
);
CREATE TABLE IF NOT EXISTS sequence_numbers (
    dataset_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (dataset_id, table_name)
);
CREATE TABLE IF NOT EXISTS dashboards (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tiles TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# A batch goes in as ONE JSON array that SQLite splits with json_each, in C: binding
# 10,000 rows one at a time through executemany costs ~2.5x as much (measured ~180k
# vs ~480k rows/s). json_each hands back each object's JSON text byte for byte as
# orjson wrote it; ORDER BY key keeps the ids in the batch's order.
_INSERT_BATCH = (
    "INSERT INTO rows (dataset_id, table_name, received_at, data) "
    "SELECT ?, ?, ?, value FROM json_each(?) ORDER BY key"
)
# The fallback for SQLite builds without JSON functions. CAST(? AS TEXT): orjson
# hands us UTF-8 bytes and SQLite makes them TEXT in C, sparing a .decode() per row.
_INSERT_ROW = (
    "INSERT INTO rows (dataset_id, table_name, received_at, data) VALUES (?, ?, ?, CAST(? AS TEXT))"
)
_ADD_COUNT = (
    "INSERT INTO row_counts (dataset_id, table_name, n) VALUES (?, ?, ?) "
    "ON CONFLICT (dataset_id, table_name) DO UPDATE SET n = n + excluded.n"
)
# UPSERT (ON CONFLICT ... DO UPDATE) arrived in SQLite 3.24 (2018).
_MIN_SQLITE = (3, 24, 0)
_DATASET_COLUMNS = "id, group_id, name, mode, retention, push_key, created_at, definition"


class SQLiteStorage:
    """A :class:`~pbistream.storage.base.Storage` in one SQLite file (WAL mode).

    Args:
        path: The database file; created with its tables if missing.
        busy_timeout_ms: How long a connection waits for another process's lock.
    """

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise ConfigError(
                f"SQLite {sqlite3.sqlite_version} is too old for pbistream; it needs 3.24 or "
                "newer (use a Python built with a recent SQLite, or PostgreSQL)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect(read_only=False)
        self._json_batches = _has_json_each(self._writer)
        self._migrate()

    # --- connections --------------------------------------------------------------
    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is
        # exactly the block we mean. check_same_thread=False: the writer is shared
        # under a lock, and close() must be able to close every reader.
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            # Prepared statements are cached per connection, so the hot INSERT is
            # parsed once, not once per batch.
            cached_statements=256,
        )
        # Wait for a lock held by another process (a CLI on the same data dir, a
        # checkpoint) instead of failing at once with "database is locked".
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        if read_only:
            # A reader must never write; this turns a bug into an error, not a lock.
            conn.execute("PRAGMA query_only = ON")
            return conn
        # WAL: readers see the last commit while the writer appends, and a commit is
        # one sequential append to the -wal file (much faster than a rollback journal).
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit is in the OS's hands when COMMIT returns, so it
        # survives the process crashing or being killed (kill -9), which is what we
        # promise. Only a power cut / OS crash may lose the last commits (FULL would
        # fsync every commit and cut ingest speed several times).
        conn.execute("PRAGMA synchronous = NORMAL")
        # Keep the -wal file from staying huge after a burst of inserts (64 MiB).
        conn.execute("PRAGMA journal_size_limit = 67108864")
        # A bigger page cache (64 MiB) keeps the row indexes hot during ingest.
        conn.execute("PRAGMA cache_size = -65536")
        return conn

    def _reader(self) -> sqlite3.Connection:
        self._check_open()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(read_only=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the single writer connection."""
        with self._write_lock:
            self._check_open()
            conn = self._writer
            # IMMEDIATE takes the write lock now, so a read-then-write inside the
            # block (sequence numbers, FIFO) cannot be overtaken by another process.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself failed (disk full, I/O error): leave no open
                # transaction behind, or every later BEGIN would fail too.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"storage {self.path} is closed")

    def _migrate(self) -> None:
        with self._write_lock:
            conn = self._writer
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer pbistream (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); upgrade pbistream"
                )
            if version < SCHEMA_VERSION:
                conn.executescript(
                    "BEGIN IMMEDIATE;"
                    + _SCHEMA
                    + f"PRAGMA user_version = {SCHEMA_VERSION};"
                    + "COMMIT;"
                )

    # --- datasets -----------------------------------------------------------------
    def create_dataset(self, dataset: Dataset) -> None:
        """Store a new dataset (its id is new)."""
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO datasets ({_DATASET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                dataset_record(dataset),
            )

    def get_dataset(self, dataset_id: str) -> Dataset | None:
        """The dataset with this id, or None."""
        record = (
            self._reader()
            .execute(
                f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE id = ?",  # noqa: S608
                (dataset_id,),
            )
            .fetchone()
        )
        return dataset_from_record(record) if record else None

    def list_datasets(
        self, group_id: str | None = None, *, all_groups: bool = False
    ) -> list[Dataset]:
        """Datasets in one workspace (``None`` = My workspace), or in every one."""
        sql = f"SELECT {_DATASET_COLUMNS} FROM datasets"  # noqa: S608
        params: tuple[Any, ...] = ()
        if not all_groups:
            # "IS" matches NULL to NULL, so None selects My workspace.
            sql += " WHERE group_id IS ?"
            params = (group_id,)
        sql += " ORDER BY created_at, rowid"
        return [dataset_from_record(r) for r in self._reader().execute(sql, params)]

    def delete_dataset(self, dataset_id: str) -> bool:
        """Delete a dataset and all its rows; False if it did not exist."""
        with self._write() as conn:
            gone = conn.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,)).rowcount
            for table in ("rows", "row_counts", "sequence_numbers"):
                conn.execute(f"DELETE FROM {table} WHERE dataset_id = ?", (dataset_id,))  # noqa: S608
        return gone > 0

    def replace_table(self, dataset_id: str, table: Table) -> None:
        """Replace (or add) one table's definition; its rows are kept.

        Raises:
            KeyError: No such dataset.
        """
        with self._write() as conn:
            found = conn.execute(
                "SELECT definition FROM datasets WHERE id = ?", (dataset_id,)
            ).fetchone()
            if found is None:
                raise KeyError(dataset_id)
            conn.execute(
                "UPDATE datasets SET definition = ? WHERE id = ?",
                (with_table(found[0], table), dataset_id),
            )

    def set_push_key(self, dataset_id: str, key: str) -> None:
        """Store a new push key for the dataset (key rotation).

        Raises:
            KeyError: No such dataset.
        """
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE datasets SET push_key = ? WHERE id = ?", (key, dataset_id)
            ).rowcount
            if not changed:
                raise KeyError(dataset_id)

    # --- rows ---------------------------------------------------------------------
    def insert_rows(
        self,
        dataset_id: str,
        table: str,
        rows: list[dict[str, Any]],
        *,
        received_at: float,
        sequence_number: int | None = None,
        fifo: tuple[int, int] | None = None,
    ) -> InsertResult:
        """Append rows in one transaction, committed before returning.

        See :meth:`pbistream.storage.base.Storage.insert_rows`.

        Raises:
            KeyError: No such dataset (nothing is stored).
            ValueError: A row cannot be encoded as JSON (nothing is stored).
        """
        # Encode before taking the lock: the only per-row work, done in C by orjson.
        n = len(rows)
        payload: str | list[bytes] = encode_batch(rows) if self._json_batches else encode_rows(rows)
        with self._write() as conn:
            if (
                conn.execute("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
                is None
            ):
                raise KeyError(dataset_id)
            if sequence_number is not None:
                last = conn.execute(
                    "SELECT last_seq FROM sequence_numbers WHERE dataset_id = ? AND table_name = ?",
                    (dataset_id, table),
                ).fetchone()
                if last is not None and sequence_number <= last[0]:
                    return InsertResult(0, True, _count(conn, dataset_id, table))
                conn.execute(
                    "INSERT INTO sequence_numbers (dataset_id, table_name, last_seq) "
                    "VALUES (?, ?, ?) ON CONFLICT (dataset_id, table_name) "
                    "DO UPDATE SET last_seq = excluded.last_seq",
                    (dataset_id, table, sequence_number),
                )
            if not n:
                return InsertResult(0, False, _count(conn, dataset_id, table))
            if isinstance(payload, str):
                stored = conn.execute(
                    _INSERT_BATCH, (dataset_id, table, received_at, payload)
                ).rowcount
            else:
                stored = conn.executemany(
                    _INSERT_ROW,
                    zip(
                        repeat(dataset_id),
                        repeat(table),
                        repeat(received_at),
                        payload,
                        strict=False,
                    ),
                ).rowcount
            if stored != n:  # would make the ids below wrong; the transaction rolls back
                raise RuntimeError(f"stored {stored} of {n} rows; nothing was committed")
            # One writer and AUTOINCREMENT: this batch's ids are consecutive.
            last_id = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
            conn.execute(_ADD_COUNT, (dataset_id, table, n))
            count = _count(conn, dataset_id, table)
            if fifo is not None and count > fifo[1]:
                count = _trim_oldest(conn, dataset_id, table, count, keep=fifo[0])
        return InsertResult(n, False, count, last_id - n + 1, last_id)

    def count_rows(self, dataset_id: str, table: str) -> int:
        """Rows currently stored in one table (kept in ``row_counts``: O(1))."""
        return _count(self._reader(), dataset_id, table)

    def delete_rows(self, dataset_id: str, table: str) -> int:
        """Delete every row of one table; return how many went."""
        with self._write() as conn:
            gone = conn.execute(
                "DELETE FROM rows WHERE dataset_id = ? AND table_name = ?", (dataset_id, table)
            ).rowcount
            conn.execute(
                "DELETE FROM row_counts WHERE dataset_id = ? AND table_name = ?",
                (dataset_id, table),
            )
        return int(gone)

    def delete_rows_before(self, dataset_id: str, received_before: float) -> int:
        """Delete a dataset's rows that arrived before a time (the streaming cache)."""
        with self._write() as conn:
            per_table = conn.execute(
                "SELECT table_name, count(*) FROM rows "
                "WHERE dataset_id = ? AND received_at < ? GROUP BY table_name",
                (dataset_id, received_before),
            ).fetchall()
            if not per_table:
                return 0
            conn.execute(
                "DELETE FROM rows WHERE dataset_id = ? AND received_at < ?",
                (dataset_id, received_before),
            )
            conn.executemany(
                "UPDATE row_counts SET n = n - ? WHERE dataset_id = ? AND table_name = ?",
                [(n, dataset_id, name) for name, n in per_table],
            )
        return sum(n for _, n in per_table)

    def read_rows(
        self,
        dataset_id: str,
        table: str | None = None,
        *,
        after_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[StoredRow]:
        """Read rows by cursor and/or arrival-time window (``since <= t < until``).

        Every read walks a table's rows in id order (``rows_by_table``), so it stops
        as soon as it has ``limit`` rows. A time window without a cursor is first
        turned into the ids it spans, by one scan of the time index that reads no
        rows, so the walk neither starts at the table's oldest row nor sorts the
        window. (Ids are not assumed to follow ``received_at``; the window is
        still checked on every row.) A read across a dataset's tables merges the
        best ``limit`` rows of each. Everything runs in one read transaction, so a
        row committed midway can neither be skipped nor read twice.
        """
        if limit <= 0:
            return []
        conn = self._reader()
        found: list[Any] = []
        conn.execute("BEGIN")
        try:
            first, last = after_id, None
            if after_id is None and (since is not None or until is not None):
                span = _window_ids(conn, dataset_id, since, until)
                if span is None:
                    return []
                first, last = span[0] - 1, span[1]
            if table is not None:
                tables = [table]
            else:
                tables = [
                    name
                    for (name,) in conn.execute(
                        "SELECT table_name FROM row_counts WHERE dataset_id = ? AND n > 0",
                        (dataset_id,),
                    )
                ]
            for name in tables:
                sql, params = read_rows_query(
                    "?",
                    dataset_id,
                    name,
                    after_id=first,
                    through_id=last,
                    since=since,
                    until=until,
                    limit=limit,
                    newest_first=newest_first,
                    source="rows INDEXED BY rows_by_table",
                )
                found.extend(conn.execute(sql, params).fetchall())
        finally:
            conn.execute("COMMIT")
        if len(tables) > 1:
            found.sort(key=itemgetter(0), reverse=newest_first)
            del found[limit:]
        return stored_rows(found)

    def last_sequence_number(self, dataset_id: str, table: str) -> int | None:
        """The last accepted sequence number for a table, if any."""
        found = (
            self._reader()
            .execute(
                "SELECT last_seq FROM sequence_numbers WHERE dataset_id = ? AND table_name = ?",
                (dataset_id, table),
            )
            .fetchone()
        )
        return int(found[0]) if found else None

    # --- dashboards ---------------------------------------------------------------
    def save_dashboard(self, dashboard: Dashboard) -> None:
        """Create or replace a dashboard (a replace keeps the original ``created_at``)."""
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO dashboards (id, name, tiles, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "name = excluded.name, tiles = excluded.tiles, updated_at = excluded.updated_at",
                (
                    dashboard.id,
                    dashboard.name,
                    orjson.dumps(dashboard.tiles).decode(),
                    dashboard.created_at or now,
                    dashboard.updated_at or now,
                ),
            )

    def get_dashboard(self, dashboard_id: str) -> Dashboard | None:
        """The dashboard with this id, or None."""
        found = (
            self._reader()
            .execute(
                "SELECT id, name, tiles, created_at, updated_at FROM dashboards WHERE id = ?",
                (dashboard_id,),
            )
            .fetchone()
        )
        return dashboard_from_record(found) if found else None

    def list_dashboards(self) -> list[Dashboard]:
        """Every dashboard, oldest first."""
        return [
            dashboard_from_record(r)
            for r in self._reader().execute(
                "SELECT id, name, tiles, created_at, updated_at FROM dashboards "
                "ORDER BY created_at, rowid"
            )
        ]

    def delete_dashboard(self, dashboard_id: str) -> bool:
        """Delete a dashboard; False if it did not exist."""
        with self._write() as conn:
            return conn.execute("DELETE FROM dashboards WHERE id = ?", (dashboard_id,)).rowcount > 0

    # --- server metadata ----------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A server setting kept with the data (e.g. the generated API token)."""
        found = self._reader().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(found[0]) if found else None

    def set_meta(self, key: str, value: str) -> None:
        """Keep a server setting with the data."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def size_bytes(self) -> int:
        """Bytes of the database file plus its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            with suppress(FileNotFoundError):  # no -wal file right after a checkpoint
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total

    def close(self) -> None:
        """Close the writer and every reader connection; later calls raise RuntimeError."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                for conn in self._readers:
                    conn.close()
                self._readers.clear()
            # Closing the last connection checkpoints the WAL into the main file.
            self._writer.close()

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"


def _has_json_each(conn: sqlite3.Connection) -> bool:
    """True when this SQLite has the JSON functions (built in since 3.38, usual before)."""
    try:
        conn.execute("SELECT count(*) FROM json_each('[1]')").fetchone()
    except sqlite3.OperationalError:
        return False
    return True


def _window_ids(
    conn: sqlite3.Connection, dataset_id: str, since: float | None, until: float | None
) -> tuple[int, int] | None:
    """The lowest and highest id of a dataset's rows in a time window, or None if empty.

    The time index holds each row's id, so this reads index entries only, never rows.
    """
    where = ["dataset_id = ?"]
    params: list[Any] = [dataset_id]
    if since is not None:
        where.append("received_at >= ?")
        params.append(since)
    if until is not None:
        where.append("received_at < ?")
        params.append(until)
    found = conn.execute(
        "SELECT min(id), max(id) FROM rows INDEXED BY rows_by_time WHERE "  # noqa: S608
        + " AND ".join(where),
        params,
    ).fetchone()
    if found is None or found[0] is None:
        return None
    return int(found[0]), int(found[1])


def _count(conn: sqlite3.Connection, dataset_id: str, table: str) -> int:
    found = conn.execute(
        "SELECT n FROM row_counts WHERE dataset_id = ? AND table_name = ?", (dataset_id, table)
    ).fetchone()
    return int(found[0]) if found else 0


def _trim_oldest(
    conn: sqlite3.Connection, dataset_id: str, table: str, count: int, *, keep: int
) -> int:
    """Delete a table's oldest rows down to ``keep`` (FIFO retention); return the new count."""
    excess = count - max(0, keep)
    conn.execute(
        "DELETE FROM rows WHERE id IN (SELECT id FROM rows WHERE dataset_id = ? "
        "AND table_name = ? ORDER BY id LIMIT ?)",
        (dataset_id, table, excess),
    )
    conn.execute(
        "UPDATE row_counts SET n = ? WHERE dataset_id = ? AND table_name = ?",
        (count - excess, dataset_id, table),
    )
    return count - excess
