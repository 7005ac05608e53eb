"""The PostgreSQL backend, for servers that share one database (``pbistream[postgres]``).

The tables and behaviour match :mod:`pbistream.storage.sqlite`; what differs is
how concurrency is made safe when several server replicas write at once:

* every write that touches a dataset's rows first locks the dataset's row
  (``SELECT ... FOR UPDATE``). The sequence-number check, the row insert, the
  ``row_counts`` update and a FIFO trim then run as one unit per dataset, on any
  replica, and a dataset's ids commit in increasing order, so a reader that
  follows the ``id`` cursor (the live feed) never skips a row that commits late;
* ids come from an identity sequence: unique across replicas and never reused,
  but a batch's ids may have gaps when other datasets insert at the same time;
* ``data`` is TEXT, not JSONB, which rejects the escaped NUL (U+0000) that
  Power BI strings may carry;
* every insert sends a ``NOTIFY`` (dataset id and id range, never the rows) in its
  own transaction, so the other replicas' live feeds hear of it at commit
  (:meth:`PostgresStorage.subscribe_inserts`);
* the Power BI rate limits are counted in the ``throttle_events`` table, so N
  replicas together allow one dataset's limits, not N times them (:class:`SharedLimits`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from pbistream.dax.plan import QueryPlan
from pbistream.dax.sql import POSTGRES
from pbistream.exceptions import ConfigError
from pbistream.redact import redact_text
from pbistream.storage._alerts import ALERT_TABLES, alerts_schema_sql
from pbistream.storage._dax_columns import copy_name, ensure_copy
from pbistream.storage._grants import grants_schema
from pbistream.storage._records import (
    encode_rows,
    read_rows_query,
    schema_sql,
    stored_rows,
)
from pbistream.storage._sql import SQLStorage
from pbistream.storage.base import Admission, InsertNotice, StoredRow

__all__ = ["SCHEMA_VERSION", "PostgresStorage"]

logger = logging.getLogger("pbistream.storage")

#: Kept in ``meta`` under ``schema_version``; bump it with a migration when tables change.
SCHEMA_VERSION = 1

# Serialises CREATE TABLE across replicas starting at once (an arbitrary constant).
_MIGRATION_LOCK = 0x70B15_7EA

_TABLES = (
    "datasets",
    "rows",
    "row_counts",
    "sequence_numbers",
    "dashboards",
    "meta",
    "throttle_events",
    "access_grants",
    *ALERT_TABLES,
)

# Added after schema 1 shipped; IF NOT EXISTS makes it a no-op migration that older
# pbistream versions simply ignore, so the schema version stays 1.
# kind: 'post' (one admitted POST), 'rows' (n rows counted against the hour) or
# 'pending' (a request in flight until released, or until expires_at if its replica died).
_THROTTLE_SCHEMA = """
CREATE TABLE IF NOT EXISTS throttle_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    n BIGINT NOT NULL DEFAULT 1,
    expires_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS throttle_events_by_kind ON throttle_events (dataset_id, kind, at);
"""
# Serialises one dataset's limit checks across replicas (class key, then hashtext(id)).
_THROTTLE_LOCK = 0x70B1
_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"
_EVENTS = "FROM throttle_events WHERE dataset_id = %s AND kind = %s"
# Old events are deleted by every this-many-th admission (the queries ignore them anyway).
_CLEANUP_EVERY = 64

_SCHEMA = schema_sql(
    # An identity column draws from a sequence: unique across replicas, never reused.
    row_id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    real="DOUBLE PRECISION",
    integer="BIGINT",
    # A dataset's rows in id order, all tables (the live feed's replay). PostgreSQL
    # reads at READ COMMITTED, so one query, not SQLite's per-table merge.
    extra="CREATE INDEX IF NOT EXISTS rows_by_dataset ON rows (dataset_id, id);",
)

_ALERTS_SCHEMA = alerts_schema_sql(
    row_id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    real="DOUBLE PRECISION",
    integer="BIGINT",
)

# COPY is ~4x faster than INSERT ... unnest(text[]) for 10,000-row batches (measured:
# ~210k vs ~57k rows/s); binary format needs no escaping of the JSON text.
_COPY_ROWS = "COPY rows (dataset_id, table_name, received_at, data) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["text", "text", "float8", "text"]
_LAST_ID = "SELECT max(id) FROM rows WHERE dataset_id = %s AND table_name = %s"
_SPAN_AFTER = (
    "SELECT min(id), max(id) FROM rows WHERE dataset_id = %s AND table_name = %s AND id > %s"
)
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresStorage(SQLStorage):
    """A :class:`~pbistream.storage.base.Storage` in PostgreSQL, safe for several replicas.

    Args:
        url: A libpq URL, ``postgresql://user@host:5432/db`` (``postgres://`` too).
        schema: Keep the tables in this schema (created if missing) instead of the
            connection's default search_path; used by tests to stay isolated.
        min_size: Connections the pool keeps open.
        max_size: Most connections the pool opens (the server's worker threads).
        connect_timeout: Seconds to wait for the database at start.

    Raises:
        ConfigError: The database cannot be reached or ``schema`` is not a plain name.
    """

    _row_lock = " FOR UPDATE"
    _format_style = True
    _dax_dialect = POSTGRES
    # SQLSTATE class 22 (data exception): out of range, a cast the stored text cannot take.
    _data_errors = (psycopg.DataError,)

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self._where = _describe(url)
        kwargs: dict[str, Any] = {}
        if schema is not None:
            if not _SCHEMA_NAME.fullmatch(schema):
                raise ConfigError(f"PostgreSQL schema name {schema!r} is not a plain identifier")
            kwargs["options"] = f"-c search_path={schema}"
        self.schema = schema
        try:
            with psycopg.connect(url, connect_timeout=max(1, int(connect_timeout))) as conn:
                if schema is not None:
                    conn.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                    )
        except psycopg.OperationalError as exc:
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            raise ConfigError(
                f"cannot connect to PostgreSQL at {self._where}: {redact_text(first_line)}"
            ) from None
        self._pool: ConnectionPool[_Connection] = ConnectionPool(
            url,
            kwargs=kwargs,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            open=True,
            name="pbistream-storage",
        )
        self._pool.wait(timeout=connect_timeout)
        self._migrate()
        # Kept for the LISTEN connection; never printed (it may hold a password).
        self._url = url
        self._connect_timeout = connect_timeout
        with self._pool.connection() as conn:
            found = conn.execute("SELECT current_database(), current_schema()").fetchone()
        # One channel per database schema: replicas on other schemas must not hear us.
        # Hashed so any schema name fits NOTIFY's 63-byte channel names.
        where = f"{found[0]}.{found[1]}" if found else ""
        self.channel = "pbistream_rows_" + hashlib.sha256(where.encode()).hexdigest()[:24]
        self._admissions = 0

    def _migrate(self) -> None:
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(_SCHEMA)
            conn.execute(_THROTTLE_SCHEMA)
            conn.execute(grants_schema("DOUBLE PRECISION"))
            conn.execute(_ALERTS_SCHEMA)
            found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(found[0]) if found else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database at {self._where} was written by a newer pbistream "
                    f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade pbistream"
                )
            if version < SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(SCHEMA_VERSION),),
                )

    # --- what SQLStorage needs ---------------------------------------------------------
    def _writing(self) -> AbstractContextManager[_Connection]:
        # The pool's block commits at its end (rolls back on an exception).
        return self._pool.connection()

    def _reading(self) -> AbstractContextManager[_Connection]:
        return self._pool.connection()

    def _encode(self, rows: list[dict[str, Any]]) -> list[str]:
        return [data.decode() for data in encode_rows(rows)]

    def _store(
        self,
        conn: _Connection,
        dataset_id: str,
        table: str,
        received_at: float,
        payload: list[str],
        n: int,
    ) -> tuple[int, int]:
        """COPY a batch in; return its first and last id.

        COPY cannot return ids, but the caller holds the dataset's lock: every row of
        this table already committed has a smaller id than ours, so ours are exactly
        those above the previous maximum (two index look-ups, no scan).
        """
        before = conn.execute(_LAST_ID, (dataset_id, table)).fetchone()
        previous = int(before[0]) if before and before[0] is not None else 0
        with conn.cursor() as cur, cur.copy(_COPY_ROWS) as copy:
            copy.set_types(_COPY_TYPES)
            for data in payload:
                copy.write_row((dataset_id, table, received_at, data))
        span = conn.execute(_SPAN_AFTER, (dataset_id, table, previous)).fetchone()
        assert span is not None and span[0] is not None  # we just inserted n >= 1 rows
        first, last = int(span[0]), int(span[1])
        # Delivered to listeners at commit, and not at all on rollback.
        notice = orjson.dumps({"d": dataset_id, "a": first, "b": last}).decode()
        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, notice))
        return first, last

    # --- insert notifications -----------------------------------------------------------
    def subscribe_inserts(self, callback: Callable[[InsertNotice | None], None]) -> _InsertListener:
        """Call ``callback`` from a background thread after every committed insert.

        Inserts by any process on this database schema are heard, this one's too.
        ``callback(None)`` follows a lost and re-established connection: notices
        may have been missed meanwhile.

        Returns:
            The running listener; ``close()`` stops it.
        """
        listener = _InsertListener(
            self._url, self.channel, callback, self._where, self._connect_timeout
        )
        listener.start()
        return listener

    # --- limits shared by every replica --------------------------------------------------
    def _limits_txn(self, conn: _Connection, dataset_id: str) -> float:
        """Lock the dataset's counters for this transaction; return the database's now."""
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_THROTTLE_LOCK, dataset_id))
        found = conn.execute(_NOW).fetchone()
        assert found is not None
        return float(found[0])

    def limits_admit(
        self,
        dataset_id: str,
        *,
        minute: float,
        hour: float,
        posts_per_minute: int,
        posts_per_hour: int | None,
        max_pending: int,
        pending_ttl: float,
    ) -> Admission:
        """Count one POST and one pending request for every replica, or refuse them.

        See :meth:`pbistream.storage.base.SharedLimits.limits_admit`.
        """
        with self._pool.connection() as conn:
            now = self._limits_txn(conn, dataset_id)
            self._admissions += 1
            if self._admissions % _CLEANUP_EVERY == 1:
                conn.execute(
                    "DELETE FROM throttle_events WHERE dataset_id = %s AND "
                    "((kind <> 'pending' AND at <= %s) OR expires_at <= %s)",
                    (dataset_id, now - hour, now),
                )
            found = conn.execute(
                f"SELECT count(*) {_EVENTS} AND expires_at > %s", (dataset_id, "pending", now)
            ).fetchone()
            if found is not None and found[0] >= max_pending:
                return Admission(None, "pending", 1.0)
            # The posts_per_minute-th newest POST in the window: once it leaves, one fits.
            nth = conn.execute(
                f"SELECT at {_EVENTS} AND at > %s ORDER BY at DESC OFFSET %s LIMIT 1",
                (dataset_id, "post", now - minute, posts_per_minute - 1),
            ).fetchone()
            if nth is not None:
                return Admission(None, "posts_per_minute", float(nth[0]) + minute - now)
            if posts_per_hour is not None:
                nth = conn.execute(
                    f"SELECT at {_EVENTS} AND at > %s ORDER BY at DESC OFFSET %s LIMIT 1",
                    (dataset_id, "post", now - hour, posts_per_hour - 1),
                ).fetchone()
                if nth is not None:
                    return Admission(None, "posts_per_hour_large_table", float(nth[0]) + hour - now)
            conn.execute(
                "INSERT INTO throttle_events (dataset_id, kind, at) VALUES (%s, 'post', %s)",
                (dataset_id, now),
            )
            ticket = conn.execute(
                "INSERT INTO throttle_events (dataset_id, kind, at, expires_at) "
                "VALUES (%s, 'pending', %s, %s) RETURNING id",
                (dataset_id, now, now + pending_ttl),
            ).fetchone()
        assert ticket is not None
        return Admission(int(ticket[0]))

    def limits_release(self, ticket: int) -> None:
        """The pending request ``ticket`` has finished."""
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM throttle_events WHERE id = %s", (ticket,))

    def limits_reserve_rows(
        self, dataset_id: str, count: int, *, hour: float, limit: int
    ) -> Admission:
        """Count ``count`` rows against the sliding hour for every replica, or refuse them."""
        with self._pool.connection() as conn:
            now = self._limits_txn(conn, dataset_id)
            found = conn.execute(
                f"SELECT coalesce(sum(n), 0) {_EVENTS} AND at > %s",
                (dataset_id, "rows", now - hour),
            ).fetchone()
            held = int(found[0]) if found else 0
            if held + count > limit:
                # Walk forward until enough rows leave the window for these to fit.
                retry_at = now + hour
                for at, n in conn.execute(
                    f"SELECT at, n {_EVENTS} AND at > %s ORDER BY at",
                    (dataset_id, "rows", now - hour),
                ):
                    held -= int(n)
                    if held + count <= limit:
                        retry_at = float(at) + hour
                        break
                return Admission(None, "rows_per_hour", retry_at - now)
            ticket = conn.execute(
                "INSERT INTO throttle_events (dataset_id, kind, at, n) "
                "VALUES (%s, 'rows', %s, %s) RETURNING id",
                (dataset_id, now, count),
            ).fetchone()
        assert ticket is not None
        return Admission(int(ticket[0]))

    def limits_unreserve_rows(self, ticket: int) -> None:
        """Give back rows counted by :meth:`limits_reserve_rows`."""
        self.limits_release(ticket)

    def limits_forget(self, dataset_id: str) -> None:
        """Drop a deleted dataset's counters."""
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM throttle_events WHERE dataset_id = %s", (dataset_id,))

    # --- rows ---------------------------------------------------------------------------
    def _prebuild_dax_columns(self, dataset_id: str, plan: QueryPlan) -> None:
        # Copying a large table takes seconds; do it without the dataset's lock, so
        # pushes to it go on meanwhile. The advisory lock keeps two queries from
        # building the same copy at once.
        for scan in plan.scans:
            name = copy_name(dataset_id, scan)
            with self._pool.connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
                ensure_copy(conn, self._q, dataset_id, scan, POSTGRES)

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
        """Read rows by cursor and/or arrival-time window (``since <= t < until``)."""
        query, params = read_rows_query(
            "%s",
            dataset_id,
            table,
            after_id=after_id,
            since=since,
            until=until,
            limit=limit,
            newest_first=newest_first,
        )
        with self._reading() as conn:
            return stored_rows(conn.execute(query, params))

    def size_bytes(self) -> int:
        """Bytes pbistream's tables and their indexes use on disk."""
        with self._pool.connection() as conn:
            found = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relname = ANY(%s) AND c.relkind = 'r'",
                (list(_TABLES),),
            ).fetchone()
        return int(found[0]) if found else 0

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStorage({self._where!r})"


class _InsertListener:
    """A daemon thread that LISTENs on the insert channel and calls back per notice.

    It owns one autocommit connection (not from the pool: LISTEN needs a session
    of its own) and reconnects with a growing pause when the database goes away.
    """

    def __init__(
        self,
        url: str,
        channel: str,
        callback: Callable[[InsertNotice | None], None],
        where: str,
        connect_timeout: float,
    ) -> None:
        self._url = url
        self._channel = channel
        self._callback = callback
        self._where = where
        self._connect_timeout = connect_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pbistream-listen", daemon=True)
        # Set once LISTEN is in place (tests wait for it; so may a caller).
        self.listening = threading.Event()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop listening; returns once the thread has ended (at most ~1 s)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _run(self) -> None:
        pause = 0.1
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=max(1, int(self._connect_timeout)),
                    application_name="pbistream-listen",  # findable in pg_stat_activity
                ) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self.listening.set()
                    if not first:
                        self._callback(None)  # whatever was sent while we were away
                    first = False
                    pause = 0.1
                    while not self._stop.is_set():
                        # The timeout bounds how long close() waits for us.
                        for note in conn.notifies(timeout=0.5):
                            self._deliver(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                logger.warning(
                    "insert notifications from PostgreSQL at %s interrupted (%s); retrying",
                    self._where,
                    redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else ""),
                )
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)

    def _deliver(self, payload: str) -> None:
        try:
            data = orjson.loads(payload)
            notice = InsertNotice(str(data["d"]), int(data["a"]), int(data["b"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("ignored a malformed insert notice on %s", self._channel)
            return
        try:
            self._callback(notice)
        except Exception:  # a receiver's bug must not stop the notifications
            logger.exception("insert notice handler failed")


def _describe(url: str) -> str:
    """``host:port/dbname`` of a libpq URL, for messages: never the password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's message may quote the URL, password and all: say only what is wrong.
        raise ConfigError(
            "not a valid PostgreSQL URL; use postgresql://user@host:5432/dbname"
        ) from None
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"{host}:{port}/{parts.get('dbname') or ''}"
