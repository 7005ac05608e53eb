"""The alerts running inside the server: evaluation off the ingest path, history, webhooks.

Ingest hands each committed batch to :meth:`AlertService.observe`, which only queues
it when a rule looks at that table (a set lookup); one evaluator thread owns the
:class:`~pbistream.server.alerts.evaluator.AlertEvaluator`, so ingest never waits for
evaluation, storage of events or a webhook. Events are stored with their webhook
delivery in one transaction (the outbox); :meth:`AlertService.deliver_forever`, a task
of the server's lifespan, POSTs them with retries and jittered backoff, honouring
``Retry-After``. A delivery that did not finish before a restart is sent after it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpx

from pbistream.redact import redact_url
from pbistream.server.alerts.evaluator import AlertEvaluator, Event
from pbistream.server.alerts.notify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    event_payload,
    sign,
    webhook_body,
)
from pbistream.server.alerts.rules import AlertRule, rule_from_stored
from pbistream.storage.base import AlertDelivery, AlertEventRecord, Storage

__all__ = ["AlertService", "DeliveryPolicy"]

logger = logging.getLogger("pbistream.server.alerts")

#: Rows waiting for evaluation at most; past it rows are counted as skipped, not queued.
MAX_QUEUED_ROWS = 500_000


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How webhook deliveries are retried.

    Attributes:
        timeout_seconds: One POST's timeout.
        first_retry_seconds: The delay before the second attempt; it doubles per attempt
            (with full jitter between half and all of it).
        max_retry_seconds: The longest delay between two attempts.
        give_up_after_seconds: An event older than this is marked ``failed``.
        concurrency: POSTs in flight at once.
    """

    timeout_seconds: float = 10.0
    first_retry_seconds: float = 1.0
    max_retry_seconds: float = 3_600.0
    give_up_after_seconds: float = 86_400.0
    concurrency: int = 8

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones."""
        base = min(self.first_retry_seconds * 2 ** max(0, attempts - 1), self.max_retry_seconds)
        jittered = base * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not security)
        return float(max(jittered, retry_after or 0.0))


class AlertService:
    """Rules, their evaluator thread and the webhook outbox of one server.

    Args:
        storage: Where rules, events and deliveries are kept.
        clock: Epoch seconds (injected for tests).
        tick_seconds: How often silence rules and intervals are checked.
        policy: Webhook retry policy.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Callable[[], float] = time.time,
        tick_seconds: float = 0.25,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._tick = tick_seconds
        self.policy = policy or DeliveryPolicy()
        self._evaluator = AlertEvaluator(now=clock())
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queued_rows = 0
        self._watched: frozenset[tuple[str, str]] = frozenset()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._wake_delivery: Callable[[], None] = lambda: None
        self._names: dict[str, str] = {}
        # Counters for /metrics (under _lock).
        self.rows_skipped = 0
        self.notifications: dict[str, int] = {}
        self.deliveries: dict[str, int] = {"sent": 0, "retry": 0, "failed": 0}
        self._firing: dict[str, list[Any]] = {}
        self._rules: dict[str, AlertRule] = {}
        self._last_event_id = 0
        self._warned_full = 0.0

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Load the rules and start the evaluator thread."""
        self._apply_rules(self._load_rules())
        self._thread = threading.Thread(target=self._run, name="pbistream-alerts", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the evaluator thread (events not yet stored are lost with the process)."""
        self._stopped.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the ingest side -----------------------------------------------------------------
    def observe(
        self,
        dataset_id: str,
        table: str,
        rows: list[dict[str, Any]],
        first_id: int,
        received_at: float,
    ) -> None:
        """Queue committed rows for evaluation; returns at once (any thread)."""
        if (dataset_id, table) not in self._watched:
            return
        with self._lock:
            if self._queued_rows + len(rows) > MAX_QUEUED_ROWS:
                self.rows_skipped += len(rows)
                now = time.monotonic()
                if now - self._warned_full > 60:
                    self._warned_full = now
                    logger.warning(
                        "alert evaluation is %d rows behind; rows of dataset %s skipped "
                        "(counted in pbistream_alert_rows_skipped_total)",
                        self._queued_rows,
                        dataset_id,
                    )
                return
            self._queued_rows += len(rows)
        self._queue.put(("rows", dataset_id, table, rows, first_id, received_at))

    def reload(self) -> None:
        """Rules changed in storage: re-read them (from the evaluator thread)."""
        self._queue.put(("reload",))

    # --- state for the API and /metrics ----------------------------------------------------
    def state(self, rule_id: str) -> dict[str, Any]:
        """A rule's live state: the category values whose condition holds now."""
        with self._lock:
            cats = self._firing.get(rule_id, [])
        return {"firing": bool(cats), "firingCategories": [c for c in cats if c is not None]}

    def snapshot(self) -> dict[str, Any]:
        """Counters and firing states (for /metrics)."""
        with self._lock:
            return {
                "rules": dict(self._rules),
                "firing": {k: len(v) for k, v in self._firing.items()},
                "notifications": dict(self.notifications),
                "deliveries": dict(self.deliveries),
                "rows_skipped": self.rows_skipped,
                "last_event_id": self._last_event_id,
            }

    # --- the evaluator thread ------------------------------------------------------------
    def _load_rules(self) -> list[AlertRule]:
        rules = [rule_from_stored(doc) for doc in self._storage.list_alert_rules()]
        self._names = {}
        return rules

    def _apply_rules(self, rules: list[AlertRule]) -> None:
        self._evaluator.set_rules(rules, now=self._clock())
        with self._lock:
            self._rules = {r.id: r for r in rules}
            self._firing = self._evaluator.firing()
        self._watched = frozenset((r.dataset, r.table) for r in rules if r.enabled)

    def _run(self) -> None:
        next_tick = self._clock() + self._tick
        while not self._stopped.is_set():
            try:
                item = self._queue.get(timeout=max(0.0, next_tick - self._clock()))
            except queue.Empty:
                item = ()
            events: list[Event] = []
            try:
                while item is not None:
                    self._handle(item, events)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if item is None:
                    return
                now = self._clock()
                if now >= next_tick:
                    events.extend(self._evaluator.tick(now))
                    next_tick = now + self._tick
                if events:
                    self._store(events)
            except Exception:  # a bad rule or storage hiccup must not end evaluation
                logger.exception("alert evaluation failed; %d event(s) lost", len(events))
            with self._lock:
                self._firing = self._evaluator.firing()

    def _handle(self, item: tuple[Any, ...], events: list[Event]) -> None:
        if not item:
            return
        if item[0] == "reload":
            self._apply_rules(self._load_rules())
            return
        _, dataset_id, table, rows, first_id, received_at = item
        with self._lock:
            self._queued_rows -= len(rows)
        events.extend(
            self._evaluator.observe(
                dataset_id, table, rows, first_id=first_id, received_at=received_at
            )
        )

    def _dataset_name(self, dataset_id: str) -> str:
        name = self._names.get(dataset_id)
        if name is None:
            found = self._storage.get_dataset(dataset_id)
            name = found.name if found is not None else dataset_id
            self._names[dataset_id] = name
        return name

    def _store(self, events: list[Event]) -> None:
        records: list[AlertEventRecord] = []
        for event in events:
            rule = event.rule
            payload = event_payload(
                rule.to_json(),
                event_id=0,
                at=event.at,
                value=event.value,
                category_value=event.category_value,
                row_id=event.row_id,
                last_seen=event.last_seen,
                dataset_name=self._dataset_name(rule.dataset),
            )
            webhook = rule.webhook if event.kind == "fired" else None
            records.append(
                AlertEventRecord(
                    rule.id,
                    event.at,
                    event.kind,
                    payload,
                    webhook,
                    _body_maker(payload, rule.format) if webhook else None,
                )
            )
        ids = self._storage.record_alert_events(records)
        with self._lock:
            for event in events:
                if event.kind == "fired":
                    self.notifications[event.rule.id] = self.notifications.get(event.rule.id, 0) + 1
            self._last_event_id = max(ids, default=self._last_event_id)
        if any(r.webhook for r in records):
            self._wake_delivery()

    # --- webhook delivery (a task of the server's lifespan) ----------------------------------
    async def deliver_forever(self) -> None:
        """Send due webhook deliveries until cancelled (also those left by a restart)."""
        wake = anyio.Event()
        loop = asyncio.get_running_loop()

        def wake_up() -> None:  # from the evaluator thread
            loop.call_soon_threadsafe(wake.set)

        self._wake_delivery = wake_up
        limiter = anyio.CapacityLimiter(self.policy.concurrency)
        async with httpx.AsyncClient(
            timeout=self.policy.timeout_seconds, follow_redirects=False, trust_env=False
        ) as http:
            while True:
                with anyio.move_on_after(1.0):
                    await wake.wait()
                wake = anyio.Event()
                while True:
                    due = await anyio.to_thread.run_sync(self._claim)
                    if not due:
                        break
                    async with anyio.create_task_group() as tasks:
                        for delivery in due:
                            tasks.start_soon(self._deliver, http, limiter, delivery)

    def _claim(self) -> list[AlertDelivery]:
        # A claim outlives one POST (its timeout) a little; a sender killed mid-POST
        # frees its deliveries when the lease ends.
        lease = self.policy.timeout_seconds + 5
        return self._storage.claim_alert_deliveries(self._clock(), lease=lease, limit=32)

    async def _deliver(
        self, http: httpx.AsyncClient, limiter: anyio.CapacityLimiter, delivery: AlertDelivery
    ) -> None:
        rule = self._rules.get(delivery.rule_id)
        attempts = delivery.attempts + 1
        if rule is None:
            await self._finish(delivery, "dropped", attempts, "rule deleted")
            return
        body = delivery.body.encode()
        stamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "pbistream-alerts",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(rule.secret, stamp, body),
        }
        error: str | None = None
        retry_after: float | None = None
        async with limiter:
            try:
                response = await http.post(delivery.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            else:
                if response.is_success:
                    await self._finish(delivery, "sent", attempts, None)
                    return
                error = f"HTTP {response.status_code}"
                raw = response.headers.get("retry-after", "")
                retry_after = float(raw) if raw.isdigit() else None
        if self._clock() - delivery.created_at > self.policy.give_up_after_seconds:
            logger.warning(
                "alert webhook %s gave up after %d attempts: %s",
                redact_url(delivery.url),
                attempts,
                error,
            )
            await self._finish(delivery, "failed", attempts, error)
            return
        next_at = self._clock() + self.policy.delay(attempts, retry_after)
        await self._finish(delivery, "pending", attempts, error, next_at=next_at)

    async def _finish(
        self,
        delivery: AlertDelivery,
        status: str,
        attempts: int,
        error: str | None,
        *,
        next_at: float | None = None,
    ) -> None:
        with self._lock:
            key = {"sent": "sent", "pending": "retry"}.get(status, "failed")
            self.deliveries[key] = self.deliveries.get(key, 0) + 1
        await anyio.to_thread.run_sync(
            lambda: self._storage.finish_alert_delivery(
                delivery.id,
                status=status,
                attempts=attempts,
                next_at=next_at if next_at is not None else self._clock(),
                error=error,
            )
        )


def _body_maker(payload: dict[str, Any], fmt: str) -> Callable[[int], str]:
    def make(event_id: int) -> str:
        return webhook_body({**payload, "event": event_id}, fmt).decode()

    return make
