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
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

from pbistream.exceptions import ConfigError
from pbistream.storage._alerts import alerts_schema_sql
from pbistream.storage._grants import grants_schema
from pbistream.storage._records import (
    encode_batch,
    encode_rows,
    read_rows_query,
    schema_sql,
    stored_rows,
)
from pbistream.storage._sql import SQLStorage
from pbistream.storage.base import StoredRow

__all__ = ["SCHEMA_VERSION", "SQLiteStorage"]

#: Kept in ``PRAGMA user_version``; bump it when the tables change. Every statement in
#: ``_SCHEMA`` is ``IF NOT EXISTS``, so an older file is migrated by running it again.
SCHEMA_VERSION = 1

_SCHEMA = schema_sql(
    # AUTOINCREMENT: an id is never handed out again, even after the newest rows
    # are deleted, so it is a safe cursor (plain INTEGER PRIMARY KEY may reuse them).
    row_id="INTEGER PRIMARY KEY AUTOINCREMENT",
    real="REAL",
    integer="INTEGER",
    # No index on (dataset_id, id): each index costs about a quarter of the insert
    # speed, and read_rows merges per-table reads instead (see there).
) + alerts_schema_sql(row_id="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL", integer="INTEGER")
_SCHEMA += grants_schema("REAL")  # access grants (tokens, dashboard links)

# A batch goes in as ONE JSON array that SQLite splits with json_each, in C: binding
# 10,000 rows one at a time through executemany costs ~3x as much (medians on the
# shared 2-core machine: ~120k-210k vs ~330k-650k rows/s). json_each hands back
# each object's JSON text byte for byte as orjson wrote it; ORDER BY key keeps the
# ids in the batch's order.
_INSERT_BATCH = (
    "INSERT INTO rows (dataset_id, table_name, received_at, data) "
    "SELECT ?, ?, ?, value FROM json_each(?) ORDER BY key"
)
# The fallback for SQLite builds without JSON functions. CAST(? AS TEXT): orjson
# hands us UTF-8 bytes and SQLite makes them TEXT in C, sparing a .decode() per row.
_INSERT_ROW = (
    "INSERT INTO rows (dataset_id, table_name, received_at, data) VALUES (?, ?, ?, CAST(? AS TEXT))"
)
# UPSERT (ON CONFLICT ... DO UPDATE) arrived in SQLite 3.24 (2018).
_MIN_SQLITE = (3, 24, 0)


class SQLiteStorage(SQLStorage):
    """A :class:`~pbistream.storage.base.Storage` in one SQLite file (WAL mode).

    Args:
        path: The database file; created with its tables if missing.
        busy_timeout_ms: How long a connection waits for another process's lock.
    """

    # SUM past 2**63 raises "integer overflow"; other OperationalErrors are not the data's.
    _data_errors = (sqlite3.OperationalError, sqlite3.DataError)

    def _is_data_error(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.DataError) or "integer overflow" in str(exc)

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
            # Every statement is IF NOT EXISTS: running them on a current file adds the
            # tables that later releases brought (alerts) without a version bump.
            if version <= SCHEMA_VERSION:
                conn.executescript(
                    "BEGIN IMMEDIATE;"
                    + _SCHEMA
                    + f"PRAGMA user_version = {SCHEMA_VERSION};"
                    + "COMMIT;"
                )

    # --- what SQLStorage needs ---------------------------------------------------------
    def _writing(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._write()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        yield self._reader()

    def _encode(self, rows: list[dict[str, Any]]) -> str | list[bytes]:
        return encode_batch(rows) if self._json_batches else encode_rows(rows)

    def _store(
        self,
        conn: sqlite3.Connection,
        dataset_id: str,
        table: str,
        received_at: float,
        payload: str | list[bytes],
        n: int,
    ) -> tuple[int, int]:
        if isinstance(payload, str):
            stored = conn.execute(_INSERT_BATCH, (dataset_id, table, received_at, payload)).rowcount
        else:
            stored = conn.executemany(
                _INSERT_ROW,
                zip(repeat(dataset_id), repeat(table), repeat(received_at), payload, strict=False),
            ).rowcount
        if stored != n:  # would make the ids below wrong; the transaction rolls back
            raise RuntimeError(f"stored {stored} of {n} rows; nothing was committed")
        # One writer and AUTOINCREMENT: this batch's ids are consecutive.
        last_id = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        return last_id - n + 1, last_id

    # --- rows ---------------------------------------------------------------------------
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
