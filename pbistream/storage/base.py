"""The storage contract: what the server needs from a backend, and nothing more.

Both backends (SQLite, the embedded default, and PostgreSQL) implement
:class:`Storage` and pass the same suite, ``tests/storage/test_contract.py``.

Methods are synchronous and thread-safe: the server calls them from a worker
thread (``anyio.to_thread``), so a backend may block. A write returns only once it
is committed: the server answers 200 after ``insert_rows`` returns, so an
acknowledged row survives a ``kill -9``.

Rows are stored as they were normalised by :mod:`pbistream.values` (JSON-ready
dicts); a row's ``id`` increases in insert order within a backend and is the cursor
for paging and for the live feed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pbistream.schema import Dataset, Table

if TYPE_CHECKING:
    from pbistream.dax.plan import QueryPlan

__all__ = [
    "Admission",
    "AlertDelivery",
    "AlertEventRecord",
    "Dashboard",
    "Grant",
    "InsertNotice",
    "InsertResult",
    "InsertSubscription",
    "NotifiesInserts",
    "QueryError",
    "SharedLimits",
    "Storage",
    "StoredAlertEvent",
    "StoredRow",
]


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One stored row: its cursor ``id``, when it arrived (epoch seconds) and its values."""

    id: int
    received_at: float
    table: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InsertResult:
    """What ``insert_rows`` did.

    Attributes:
        stored: Rows written (0 for a duplicate sequence number).
        duplicate: True when the sequence number was not above the last accepted one.
        row_count: Rows in the table after the insert (and any FIFO trim).
        first_id: The id of the first stored row (``None`` if nothing was stored).
        last_id: The id of the last stored row.
        last_sequence: When the request carried a sequence number: the table's last
            stored number after this insert (for a duplicate, the number that beat it).
    """

    stored: int
    duplicate: bool
    row_count: int
    first_id: int | None = None
    last_id: int | None = None
    last_sequence: int | None = None


@dataclass(slots=True)
class Dashboard:
    """A saved dashboard: its tiles are JSON the web UI owns."""

    id: str
    name: str
    tiles: list[dict[str, Any]]
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(slots=True)
class Grant:
    """An access grant (an API token or a dashboard link); only its secret's hash is kept.

    Attributes:
        id: Its public id (``token list``, ``revoke ID``).
        kind: ``token`` or ``link`` (:mod:`pbistream.grants`).
        role: ``viewer``, ``contributor``, ``member`` or ``admin``.
        secret_hash: SHA-256 (hex) of the secret; unique.
        name: What it is for, as its creator said.
        datasets: The datasets it is limited to; None for every dataset.
        dashboard_id: A link's dashboard.
        created_at: Epoch seconds.
        expires_at: When it stops working (epoch seconds); None: never.
        last_used_at: When it last signed a request in (updated about once a minute).
        revoked_at: When it was revoked; None while it works.
    """

    id: str
    kind: str
    role: str
    secret_hash: str
    name: str = ""
    datasets: tuple[str, ...] | None = None
    dashboard_id: str | None = None
    created_at: float = 0.0
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None


class QueryError(ValueError):
    """The database refused to compute a query over the stored values.

    For example an overflow, or a value that no longer fits its column's type after
    the table was redefined.
    """


@dataclass(frozen=True, slots=True)
class AlertEventRecord:
    """An alert event to store, with its webhook delivery if the rule has a webhook.

    ``body`` may be a function of the new event's id (the body names its event).
    """

    rule_id: str
    at: float
    kind: str
    payload: dict[str, Any]
    webhook: str | None = None
    body: str | Callable[[int], str] | None = None


@dataclass(frozen=True, slots=True)
class StoredAlertEvent:
    """A stored alert event and the state of its webhook delivery (None without one)."""

    id: int
    rule_id: str
    at: float
    kind: str
    payload: dict[str, Any]
    delivery: str | None = None
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class AlertDelivery:
    """A claimed webhook delivery: POST ``body`` to ``url``."""

    id: int
    event_id: int
    rule_id: str
    url: str
    body: str
    attempts: int
    created_at: float = 0.0


@runtime_checkable
class Storage(Protocol):
    """A place to keep datasets, rows, dashboards and server metadata."""

    # --- datasets -----------------------------------------------------------------
    def create_dataset(self, dataset: Dataset) -> None:
        """Store a new dataset (its id is new)."""

    def get_dataset(self, dataset_id: str) -> Dataset | None:
        """The dataset with this id, or None."""

    def list_datasets(
        self, group_id: str | None = None, *, all_groups: bool = False
    ) -> list[Dataset]:
        """Datasets in one workspace (``None`` = My workspace), or in every one."""

    def delete_dataset(self, dataset_id: str) -> bool:
        """Delete a dataset and all its rows; False if it did not exist."""

    def replace_table(self, dataset_id: str, table: Table) -> None:
        """Replace (or add) one table's definition; its rows are kept."""

    def set_push_key(self, dataset_id: str, key: str) -> None:
        """Store a new push key for the dataset (key rotation)."""

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

        Args:
            dataset_id: The dataset.
            table: The table name.
            rows: Normalised rows.
            received_at: Arrival time (epoch seconds) stamped on every row.
            sequence_number: ``X-PowerBI-PushData-SequenceNumber``; when given and not
                above the last accepted number for this table, nothing is stored and
                ``duplicate`` is True. Otherwise it becomes the last accepted number,
                atomically with the rows.
            fifo: ``(keep, high_water)``: once the table holds more than
                ``high_water`` rows, delete the oldest down to ``keep``.
        """
        ...

    def count_rows(self, dataset_id: str, table: str) -> int:
        """Rows currently stored in one table."""
        ...

    def delete_rows(self, dataset_id: str, table: str) -> int:
        """Delete every row of one table and forget its sequence number; return how many went."""
        ...

    def delete_rows_before(self, dataset_id: str, received_before: float) -> int:
        """Delete a dataset's rows that arrived before a time (the streaming cache)."""
        ...

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
        """Read rows by cursor and/or arrival-time window, oldest first unless asked."""
        ...

    def last_sequence_number(self, dataset_id: str, table: str) -> int | None:
        """The last accepted sequence number for a table, if any."""
        ...

    def execute_plan(
        self, dataset_id: str, plan: QueryPlan, *, max_rows: int
    ) -> list[tuple[Any, ...]]:
        """Run a DAX query plan (:mod:`pbistream.dax`) over a dataset's stored rows.

        The work is done by the database, in one SQL statement. Rows come back in
        ``plan.columns`` order as JSON-ready values by column type (bool, int,
        float, str; DateTime as Power BI writes it; None for BLANK), at most
        ``max_rows`` of them, in the plan's ORDER BY.

        Raises:
            QueryError: The database could not compute it from the stored values.
        """
        ...

    # --- dashboards ---------------------------------------------------------------
    def save_dashboard(self, dashboard: Dashboard) -> None:
        """Create or replace a dashboard."""

    def get_dashboard(self, dashboard_id: str) -> Dashboard | None:
        """The dashboard with this id, or None."""

    def list_dashboards(self) -> list[Dashboard]:
        """Every dashboard, oldest first."""
        ...

    def delete_dashboard(self, dashboard_id: str) -> bool:
        """Delete a dashboard; False if it did not exist."""
        ...

    # --- access grants (tokens and dashboard links) ----------------------------------
    def save_grant(self, grant: Grant) -> None:
        """Store a new grant (its id and secret hash are new)."""

    def get_grant(self, grant_id: str) -> Grant | None:
        """The grant with this id (revoked ones too), or None."""

    def find_grant(self, secret_hash: str) -> Grant | None:
        """The grant whose secret has this hash (revoked ones too), or None."""

    def list_grants(self) -> list[Grant]:
        """Every grant, revoked ones too, oldest first."""
        ...

    def revoke_grant(self, grant_id: str, revoked_at: float) -> bool:
        """Mark a grant revoked; False if there is none or it was already revoked."""
        ...

    def touch_grant(self, grant_id: str, used_at: float) -> None:
        """Record when a grant last signed a request in."""

    # --- alerts (rules, history, webhook outbox) -------------------------------------
    def save_alert_rule(self, rule: dict[str, Any]) -> None:
        """Create or replace an alert rule (its JSON: ``id``, ``dataset``, ``createdAt`` ...)."""

    def list_alert_rules(self) -> list[dict[str, Any]]:
        """Every alert rule's JSON, oldest first."""
        ...

    def delete_alert_rule(self, rule_id: str) -> bool:
        """Delete a rule and drop its pending deliveries; False if it did not exist."""
        ...

    def record_alert_events(self, events: list[AlertEventRecord]) -> list[int]:
        """Store events and their webhook deliveries in one transaction; return their ids."""
        ...

    def list_alert_events(
        self, *, rule_id: str | None = None, after_id: int | None = None, limit: int = 100
    ) -> list[StoredAlertEvent]:
        """Alert events newest first, with their delivery state."""
        ...

    def claim_alert_deliveries(
        self, now: float, *, lease: float, limit: int
    ) -> list[AlertDelivery]:
        """Pending deliveries due by ``now``, claimed until ``now + lease`` (oldest first)."""
        ...

    def finish_alert_delivery(
        self,
        delivery_id: int,
        *,
        status: str,
        attempts: int,
        next_at: float,
        error: str | None = None,
    ) -> None:
        """Record a delivery attempt: ``sent``, ``failed`` or ``pending`` (retry at ``next_at``)."""

    # --- server metadata ----------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A server setting kept with the data (e.g. the generated API token)."""

    def set_meta(self, key: str, value: str) -> None:
        """Keep a server setting with the data."""

    def size_bytes(self) -> int:
        """Bytes the backend uses on disk (for /metrics)."""
        ...

    def close(self) -> None:
        """Release connections and files."""


# --- optional capabilities (backends shared by several server replicas) -----------------


@dataclass(frozen=True, slots=True)
class InsertNotice:
    """Rows were committed to a dataset, possibly by another process.

    Attributes:
        dataset_id: The dataset.
        first_id: The first new row's id.
        last_id: The last new row's id.
    """

    dataset_id: str
    first_id: int
    last_id: int


class InsertSubscription(Protocol):
    """A running insert subscription; :meth:`close` stops it."""

    def close(self) -> None:
        """Stop delivering notices and release the connection."""


@runtime_checkable
class NotifiesInserts(Protocol):
    """A backend that tells every process about inserts made by any process.

    SQLite serves one process, so only the PostgreSQL backend has it.
    """

    def subscribe_inserts(
        self, callback: Callable[[InsertNotice | None], None]
    ) -> InsertSubscription:
        """Call ``callback`` (from a background thread) after every committed insert.

        ``callback(None)`` means notices may have been missed (the connection was
        lost and is back): the receiver should catch up from storage by cursor.
        """
        ...


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of a shared limits check.

    Attributes:
        ticket: The id of the recorded event (hand it back to release it), or None
            when refused.
        reason: Why it was refused (``pending``, ``posts_per_minute``, ...), or None.
        retry_after: Seconds until it could succeed (refusals only).
    """

    ticket: int | None
    reason: str | None = None
    retry_after: float = 0.0


@runtime_checkable
class SharedLimits(Protocol):
    """A backend that counts a dataset's requests and rows for every replica at once.

    Times are the database's clock, so replicas on different machines agree. Each
    method is one short transaction serialised per dataset.
    """

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
        """Count one POST (and one pending request), or refuse it.

        Args:
            dataset_id: The dataset posted to.
            minute: The per-minute window, in seconds.
            hour: The hourly window, in seconds.
            posts_per_minute: At most this many POSTs in ``minute``.
            posts_per_hour: At most this many POSTs in ``hour`` (None: no hourly limit).
            max_pending: At most this many requests in flight at once.
            pending_ttl: A pending request not released after this many seconds (its
                replica died) stops counting.
        """
        ...

    def limits_release(self, ticket: int) -> None:
        """The pending request ``ticket`` has finished."""
        ...

    def limits_reserve_rows(
        self, dataset_id: str, count: int, *, hour: float, limit: int
    ) -> Admission:
        """Count ``count`` rows against the sliding hour, or refuse them."""
        ...

    def limits_unreserve_rows(self, ticket: int) -> None:
        """Give back rows counted by :meth:`limits_reserve_rows`."""
        ...

    def limits_forget(self, dataset_id: str) -> None:
        """Drop a deleted dataset's counters."""
        ...
