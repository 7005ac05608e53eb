"""Alert rules, their history and the webhook outbox, in both SQL backends.

An event and its webhook delivery are written in one transaction, so a notification
is either recorded with its pending delivery or not at all; the outbox is how a
delivery survives a restart. Deliveries are *claimed* with a lease (``next_at`` moves
forward), so two replicas never send one at the same time and a sender that died
frees its claim when the lease ends.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import orjson

from pbistream.storage.base import AlertDelivery, AlertEventRecord, StoredAlertEvent

__all__ = ["ALERT_TABLES", "AlertsSQL", "alerts_schema_sql"]

ALERT_TABLES = ("alert_rules", "alert_events", "alert_outbox")
_EVENTS = (
    "SELECT e.id, e.rule_id, e.at, e.kind, e.payload, o.status, o.attempts, o.last_error "
    "FROM alert_events e LEFT JOIN alert_outbox o ON o.event_id = e.id"
)


def alerts_schema_sql(*, row_id: str, real: str, integer: str) -> str:
    """The alert tables in one backend's column types (``IF NOT EXISTS``: a no-op migration)."""
    return f"""
CREATE TABLE IF NOT EXISTS alert_rules (
    id TEXT PRIMARY KEY,
    dataset_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    created_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_events (
    id {row_id},
    rule_id TEXT NOT NULL,
    at {real} NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_by_rule ON alert_events (rule_id, id);
CREATE TABLE IF NOT EXISTS alert_outbox (
    id {row_id},
    event_id {integer} NOT NULL,
    rule_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts {integer} NOT NULL,
    created_at {real} NOT NULL,
    next_at {real} NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (status, next_at);
"""


class AlertsSQL:
    """The alert methods of :class:`~pbistream.storage.base.Storage` (a mixin of SQLStorage)."""

    def _writing(self) -> AbstractContextManager[Any]:  # provided by SQLStorage
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Any]:  # provided by SQLStorage
        raise NotImplementedError

    def _exec(self, conn: Any, query: str, params: Any = ()) -> Any:  # provided by SQLStorage
        raise NotImplementedError

    # --- rules --------------------------------------------------------------------------
    def save_alert_rule(self, rule: dict[str, Any]) -> None:
        """Create or replace a rule (its JSON, with ``id``, ``dataset`` and ``createdAt``)."""
        with self._writing() as conn:
            self._exec(
                conn,
                "INSERT INTO alert_rules (id, dataset_id, rule, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET rule = excluded.rule",
                (rule["id"], rule["dataset"], orjson.dumps(rule).decode(), rule["createdAt"]),
            )

    def list_alert_rules(self) -> list[dict[str, Any]]:
        """Every rule's JSON, oldest first."""
        with self._reading() as conn:
            found = self._exec(conn, "SELECT rule FROM alert_rules ORDER BY created_at, id")
            return [orjson.loads(r[0]) for r in found.fetchall()]

    def delete_alert_rule(self, rule_id: str) -> bool:
        """Delete a rule and its pending deliveries (its history stays); False if unknown."""
        with self._writing() as conn:
            gone = self._exec(conn, "DELETE FROM alert_rules WHERE id = ?", (rule_id,)).rowcount
            self._exec(
                conn,
                "UPDATE alert_outbox SET status = 'dropped', last_error = 'rule deleted' "
                "WHERE rule_id = ? AND status = 'pending'",
                (rule_id,),
            )
        return int(gone) > 0

    # --- events and deliveries ------------------------------------------------------------
    def record_alert_events(self, events: list[AlertEventRecord]) -> list[int]:
        """Store events, and the webhook delivery of each that has one, in one transaction.

        Returns:
            The new events' ids, in order.
        """
        ids: list[int] = []
        with self._writing() as conn:
            for event in events:
                found = self._exec(
                    conn,
                    "INSERT INTO alert_events (rule_id, at, kind, payload) VALUES (?, ?, ?, ?) "
                    "RETURNING id",
                    (event.rule_id, event.at, event.kind, orjson.dumps(event.payload).decode()),
                ).fetchone()
                event_id = int(found[0])
                ids.append(event_id)
                if event.webhook is not None and event.body is not None:
                    body = event.body(event_id) if callable(event.body) else event.body
                    self._exec(
                        conn,
                        "INSERT INTO alert_outbox (event_id, rule_id, url, body, status, "
                        "attempts, created_at, next_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
                        (event_id, event.rule_id, event.webhook, body, event.at, event.at),
                    )
        return ids

    def list_alert_events(
        self, *, rule_id: str | None = None, after_id: int | None = None, limit: int = 100
    ) -> list[StoredAlertEvent]:
        """Events newest first (with their delivery's state), optionally after a cursor."""
        where: list[str] = []
        params: list[Any] = []
        if rule_id is not None:
            where.append("e.rule_id = ?")
            params.append(rule_id)
        if after_id is not None:
            where.append("e.id > ?")
            params.append(after_id)
        # Only fixed clauses are joined; every value is a parameter.
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""
        query = _EVENTS + where_sql + " ORDER BY e.id DESC LIMIT ?"
        params.append(max(0, int(limit)))
        with self._reading() as conn:
            found = self._exec(conn, query, params).fetchall()
        return [
            StoredAlertEvent(
                id=int(r[0]),
                rule_id=r[1],
                at=float(r[2]),
                kind=r[3],
                payload=orjson.loads(r[4]),
                delivery=r[5],
                attempts=int(r[6] or 0),
                last_error=r[7],
            )
            for r in found
        ]

    def claim_alert_deliveries(
        self, now: float, *, lease: float, limit: int
    ) -> list[AlertDelivery]:
        """Pending deliveries due by ``now``, each claimed until ``now + lease``."""
        with self._writing() as conn:
            found = self._exec(
                conn,
                "UPDATE alert_outbox SET next_at = ? WHERE status = 'pending' AND next_at <= ? "
                "AND id IN (SELECT id FROM alert_outbox WHERE status = 'pending' AND "
                "next_at <= ? ORDER BY next_at, id LIMIT ?) "
                "RETURNING id, event_id, rule_id, url, body, attempts, created_at",
                (now + lease, now, now, int(limit)),
            ).fetchall()
        return sorted(
            (
                AlertDelivery(int(r[0]), int(r[1]), r[2], r[3], r[4], int(r[5]), float(r[6]))
                for r in found
            ),
            key=lambda d: d.id,
        )

    def finish_alert_delivery(
        self,
        delivery_id: int,
        *,
        status: str,
        attempts: int,
        next_at: float,
        error: str | None = None,
    ) -> None:
        """Record an attempt: ``sent``, ``failed`` (given up) or ``pending`` (retry later)."""
        with self._writing() as conn:
            self._exec(
                conn,
                "UPDATE alert_outbox SET status = ?, attempts = ?, next_at = ?, last_error = ? "
                "WHERE id = ?",
                (status, attempts, next_at, error, delivery_id),
            )
