"""What both SQL backends share: every query but two, in :class:`SQLStorage`.

SQLite and PostgreSQL keep the same tables with the same columns (their schema and
record forms are in :mod:`pbistream.storage._records`), so the methods of
:class:`SQLStorage` are written once here, with ``?`` placeholders (PostgreSQL's
``%s`` is substituted). Each backend supplies its connections, its bulk insert, its
``read_rows`` (each steers its own planner) and its own open/close.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import orjson

from pbistream.dax import QueryPlan, json_rows
from pbistream.dax.sql import SQLITE, Dialect, compile_plan
from pbistream.schema import Dataset, Table
from pbistream.storage._alerts import AlertsSQL
from pbistream.storage._dax_columns import Source, sync_copy
from pbistream.storage._grants import GrantRecords
from pbistream.storage._records import (
    dashboard_from_record,
    dataset_from_record,
    dataset_record,
    format_style,
    with_table,
)
from pbistream.storage.base import Dashboard, InsertResult, QueryError

__all__ = ["SQLStorage"]

_DATASET_COLUMNS = "id, group_id, name, mode, retention, push_key, created_at, definition"
_SELECT_DATASETS = f"SELECT {_DATASET_COLUMNS} FROM datasets"  # noqa: S608
_DASHBOARD_COLUMNS = "SELECT id, name, tiles, created_at, updated_at FROM dashboards"
_COUNT = "SELECT n FROM row_counts WHERE dataset_id = ? AND table_name = ?"
_ADD_COUNT = (
    "INSERT INTO row_counts (dataset_id, table_name, n) VALUES (?, ?, ?) "
    "ON CONFLICT (dataset_id, table_name) DO UPDATE SET n = row_counts.n + excluded.n"
)
_LAST_SEQ = "SELECT last_seq FROM sequence_numbers WHERE dataset_id = ? AND table_name = ?"
_SET_SEQ = (
    "INSERT INTO sequence_numbers (dataset_id, table_name, last_seq) VALUES (?, ?, ?) "
    "ON CONFLICT (dataset_id, table_name) DO UPDATE SET last_seq = excluded.last_seq"
)


class SQLStorage(GrantRecords, AlertsSQL, ABC):
    """The :class:`~pbistream.storage.base.Storage` methods both SQL backends share.

    A subclass provides connections (:meth:`_writing`, :meth:`_reading`), its
    bulk insert (:meth:`_encode`, :meth:`_store`) and ``read_rows``; every write
    that touches a dataset's rows starts by :meth:`_lock_dataset`.
    """

    #: Appended to the dataset-lock SELECT: PostgreSQL's row lock; SQLite's single
    #: writer already serialises every write, and it has no FOR UPDATE.
    _row_lock = ""
    #: Whether queries need ``%s`` placeholders (psycopg) instead of ``?``.
    _format_style = False
    #: How DAX plans become this backend's SQL.
    _dax_dialect: Dialect = SQLITE
    #: The driver's exceptions that mean "the data could not be computed" (not a bug).
    _data_errors: tuple[type[Exception], ...] = ()

    # --- what a backend provides ------------------------------------------------------
    @abstractmethod
    def _writing(self) -> AbstractContextManager[Any]:
        """A connection in a write transaction, committed when the block ends."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Any]:
        """A connection for reads."""

    @abstractmethod
    def _encode(self, rows: list[dict[str, Any]]) -> Any:
        """Rows ready for :meth:`_store`, encoded before any lock is taken."""

    @abstractmethod
    def _store(
        self, conn: Any, dataset_id: str, table: str, received_at: float, payload: Any, n: int
    ) -> tuple[int, int]:
        """Insert ``n`` encoded rows under the dataset's lock; return the first and last id."""

    # --- helpers ------------------------------------------------------------------------
    def _q(self, query: str) -> str:
        return format_style(query) if self._format_style else query

    def _exec(self, conn: Any, query: str, params: Iterable[Any] = ()) -> Any:
        return conn.execute(self._q(query), tuple(params))

    def _lock_dataset(self, conn: Any, dataset_id: str) -> bool:
        """Serialise writes to one dataset's rows; False if it does not exist."""
        found = self._exec(
            conn,
            "SELECT 1 FROM datasets WHERE id = ?" + self._row_lock,  # noqa: S608
            (dataset_id,),
        ).fetchone()
        return found is not None

    def _count(self, conn: Any, dataset_id: str, table: str) -> int:
        found = self._exec(conn, _COUNT, (dataset_id, table)).fetchone()
        return int(found[0]) if found else 0

    # --- datasets -----------------------------------------------------------------------
    def create_dataset(self, dataset: Dataset) -> None:
        """Store a new dataset (its id is new)."""
        with self._writing() as conn:
            self._exec(
                conn,
                f"INSERT INTO datasets ({_DATASET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                dataset_record(dataset),
            )

    def get_dataset(self, dataset_id: str) -> Dataset | None:
        """The dataset with this id, or None."""
        with self._reading() as conn:
            record = self._exec(conn, _SELECT_DATASETS + " WHERE id = ?", (dataset_id,)).fetchone()
        return dataset_from_record(record) if record else None

    def list_datasets(
        self, group_id: str | None = None, *, all_groups: bool = False
    ) -> list[Dataset]:
        """Datasets in one workspace (``None`` = My workspace), or in every one."""
        query = _SELECT_DATASETS
        params: tuple[str, ...] = ()
        if all_groups:
            pass
        elif group_id is None:
            query += " WHERE group_id IS NULL"
        else:
            query += " WHERE group_id = ?"
            params = (group_id,)
        with self._reading() as conn:
            found = self._exec(conn, query + " ORDER BY created_at, id", params).fetchall()
        return [dataset_from_record(r) for r in found]

    def delete_dataset(self, dataset_id: str) -> bool:
        """Delete a dataset and all its rows; False if it did not exist."""
        with self._writing() as conn:
            # Deleting the dataset's row first also takes its lock (PostgreSQL).
            gone = self._exec(conn, "DELETE FROM datasets WHERE id = ?", (dataset_id,)).rowcount
            for name in ("rows", "row_counts", "sequence_numbers", "alert_rules"):
                self._exec(conn, f"DELETE FROM {name} WHERE dataset_id = ?", (dataset_id,))  # noqa: S608
        return int(gone) > 0

    def replace_table(self, dataset_id: str, table: Table) -> None:
        """Replace (or add) one table's definition; its rows are kept.

        Raises:
            KeyError: No such dataset.
        """
        with self._writing() as conn:
            found = self._exec(
                conn,
                "SELECT definition FROM datasets WHERE id = ?" + self._row_lock,  # noqa: S608
                (dataset_id,),
            ).fetchone()
            if found is None:
                raise KeyError(dataset_id)
            self._exec(
                conn,
                "UPDATE datasets SET definition = ? WHERE id = ?",
                (with_table(found[0], table), dataset_id),
            )

    def set_push_key(self, dataset_id: str, key: str) -> None:
        """Store a new push key for the dataset (key rotation).

        Raises:
            KeyError: No such dataset.
        """
        with self._writing() as conn:
            query = "UPDATE datasets SET push_key = ? WHERE id = ?"
            if not self._exec(conn, query, (key, dataset_id)).rowcount:
                raise KeyError(dataset_id)

    # --- rows ---------------------------------------------------------------------------
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
        n = len(rows)
        payload = self._encode(rows)  # the only per-row work, done in C, before any lock
        with self._writing() as conn:
            if not self._lock_dataset(conn, dataset_id):
                raise KeyError(dataset_id)
            last_sequence: int | None = None
            if sequence_number is not None:
                last = self._exec(conn, _LAST_SEQ, (dataset_id, table)).fetchone()
                if last is not None and sequence_number <= last[0]:
                    count = self._count(conn, dataset_id, table)
                    return InsertResult(0, True, count, last_sequence=int(last[0]))
                self._exec(conn, _SET_SEQ, (dataset_id, table, sequence_number))
                last_sequence = sequence_number
            if not n:
                count = self._count(conn, dataset_id, table)
                return InsertResult(0, False, count, last_sequence=last_sequence)
            first_id, last_id = self._store(conn, dataset_id, table, received_at, payload, n)
            self._exec(conn, _ADD_COUNT, (dataset_id, table, n))
            count = self._count(conn, dataset_id, table)
            if fifo is not None and count > fifo[1]:
                # FIFO retention: the oldest rows go, down to `keep`, in this transaction.
                excess = count - max(0, fifo[0])
                self._exec(
                    conn,
                    "DELETE FROM rows WHERE id IN (SELECT id FROM rows WHERE dataset_id = ? "
                    "AND table_name = ? ORDER BY id LIMIT ?)",
                    (dataset_id, table, excess),
                )
                count -= excess
                self._exec(
                    conn,
                    "UPDATE row_counts SET n = ? WHERE dataset_id = ? AND table_name = ?",
                    (count, dataset_id, table),
                )
        return InsertResult(n, False, count, first_id, last_id, last_sequence)

    def count_rows(self, dataset_id: str, table: str) -> int:
        """Rows currently stored in one table (kept in ``row_counts``: O(1))."""
        with self._reading() as conn:
            return self._count(conn, dataset_id, table)

    def delete_rows(self, dataset_id: str, table: str) -> int:
        """Delete every row of one table; return how many went."""
        with self._writing() as conn:
            self._lock_dataset(conn, dataset_id)
            gone = self._exec(
                conn,
                "DELETE FROM rows WHERE dataset_id = ? AND table_name = ?",
                (dataset_id, table),
            ).rowcount
            self._exec(
                conn,
                "DELETE FROM row_counts WHERE dataset_id = ? AND table_name = ?",
                (dataset_id, table),
            )
            # An emptied table starts afresh: a producer may number from 1 again.
            self._exec(
                conn,
                "DELETE FROM sequence_numbers WHERE dataset_id = ? AND table_name = ?",
                (dataset_id, table),
            )
        return int(gone)

    def delete_rows_before(self, dataset_id: str, received_before: float) -> int:
        """Delete a dataset's rows that arrived before a time (the streaming cache)."""
        with self._writing() as conn:
            self._lock_dataset(conn, dataset_id)
            per_table = self._exec(
                conn,
                "SELECT table_name, count(*) FROM rows "
                "WHERE dataset_id = ? AND received_at < ? GROUP BY table_name",
                (dataset_id, received_before),
            ).fetchall()
            if not per_table:
                return 0
            self._exec(
                conn,
                "DELETE FROM rows WHERE dataset_id = ? AND received_at < ?",
                (dataset_id, received_before),
            )
            for name, n in per_table:
                self._exec(
                    conn,
                    "UPDATE row_counts SET n = n - ? WHERE dataset_id = ? AND table_name = ?",
                    (n, dataset_id, name),
                )
        return sum(int(n) for _, n in per_table)

    def last_sequence_number(self, dataset_id: str, table: str) -> int | None:
        """The last accepted sequence number for a table, if any."""
        with self._reading() as conn:
            found = self._exec(conn, _LAST_SEQ, (dataset_id, table)).fetchone()
        return int(found[0]) if found else None

    # --- dashboards ---------------------------------------------------------------------
    def save_dashboard(self, dashboard: Dashboard) -> None:
        """Create or replace a dashboard (a replace keeps the original ``created_at``)."""
        now = time.time()
        with self._writing() as conn:
            self._exec(
                conn,
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
        with self._reading() as conn:
            found = self._exec(conn, _DASHBOARD_COLUMNS + " WHERE id = ?", (dashboard_id,))
            record = found.fetchone()
        return dashboard_from_record(record) if record else None

    def list_dashboards(self) -> list[Dashboard]:
        """Every dashboard, oldest first."""
        with self._reading() as conn:
            found = self._exec(conn, _DASHBOARD_COLUMNS + " ORDER BY created_at, id").fetchall()
        return [dashboard_from_record(r) for r in found]

    def delete_dashboard(self, dashboard_id: str) -> bool:
        """Delete a dashboard; False if it did not exist."""
        with self._writing() as conn:
            query = "DELETE FROM dashboards WHERE id = ?"
            return int(self._exec(conn, query, (dashboard_id,)).rowcount) > 0

    # --- server metadata ----------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A server setting kept with the data (e.g. the generated API token)."""
        with self._reading() as conn:
            found = self._exec(conn, "SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(found[0]) if found else None

    def set_meta(self, key: str, value: str) -> None:
        """Keep a server setting with the data."""
        with self._writing() as conn:
            self._exec(
                conn,
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # --- DAX queries ------------------------------------------------------------------
    def _prebuild_dax_columns(self, dataset_id: str, plan: QueryPlan) -> None:
        """Build missing copies before taking the dataset's lock (where a backend can)."""

    def _sync_dax_columns(self, dataset_id: str, plan: QueryPlan) -> dict[str, Source]:
        """Bring the typed copies of the tables ``plan`` reads up to date (_dax_columns)."""
        sources: dict[str, Source] = {}
        if not plan.scans:
            return sources
        self._prebuild_dax_columns(dataset_id, plan)
        with self._writing() as conn:
            # The lock inserts take: the rows and their count hold still while we copy.
            if not self._lock_dataset(conn, dataset_id):
                return sources
            for scan in plan.scans:
                count = self._count(conn, dataset_id, scan.table)
                sources[scan.table] = sync_copy(
                    conn, self._q, dataset_id, scan, self._dax_dialect, count
                )
        return sources

    def _is_data_error(self, exc: Exception) -> bool:
        """Whether one of ``_data_errors`` is about the values (not the database)."""
        return True

    def execute_plan(
        self, dataset_id: str, plan: QueryPlan, *, max_rows: int
    ) -> list[tuple[Any, ...]]:
        """Run a DAX query plan over a dataset's rows, in one SQL statement."""
        try:
            sources = self._sync_dax_columns(dataset_id, plan)
            query, params = compile_plan(
                plan, dataset_id, self._dax_dialect, limit=max_rows, sources=sources
            )
            if self._format_style:
                # Not through the cached _q: every DAX query is a new text.
                query = query.replace("?", "%s")
            with self._reading() as conn:
                records = conn.execute(query, tuple(params)).fetchall()
        except self._data_errors as exc:
            if not self._is_data_error(exc):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QueryError(f"The database could not compute the query: {first}") from None
        try:
            return json_rows(plan.columns, records)
        except OverflowError as exc:
            raise QueryError(f"The database could not compute the query: {exc}") from None
