"""The settling half of the clients: what happens to rows after an answer, or at close.

Delivered rows are acknowledged (the spool deletes them); refused rows become dead
letters (counted, written to the dead-letter file, passed to the callback) or, when a
many-row batch got a 400, go back to be resent in halves; at close what is left is
reported. :class:`~pbistream.client._base.BaseClient` builds and sends the batches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from pbistream.client._queue import FramePart, MemoryQueue, SpoolQueue
from pbistream.client._types import ClientStats, DeadLetter
from pbistream.client.engine import Batch, Engine, Outcome, Verdict
from pbistream.client.sinks import SinkBase
from pbistream.exceptions import (
    AuthError,
    PbiStreamError,
    PushError,
    PushHTTPStatusError,
    RateLimitedError,
)
from pbistream.redact import redact_text
from pbistream.spool import Spool
from pbistream.values import RowError

__all__ = ["Callback", "SettlingMixin"]

logger = logging.getLogger("pbistream.client")

Callback = Callable[..., Any]


class SettlingMixin:
    """Settles batches and rows for :class:`~pbistream.client._base.BaseClient`.

    Every row ends delivered, dead-lettered (with its reason) or, at close, kept in the
    spool or reported: none leaves without being counted.
    """

    # Set by BaseClient.__init__.
    sink: SinkBase
    stats: ClientStats
    spool: Spool | None
    dead_letter_path: Path | None
    _spool_queue: SpoolQueue | None
    _memory: MemoryQueue
    _lock: threading.Lock
    _dead_letter_lock: threading.Lock
    _engine: Engine
    _on_success: Callback | None
    _on_error: Callback | None
    _on_dead_letter: Callback | None
    _unsettled: int
    _oldest_at: float | None
    _last_error: PbiStreamError | None
    _split: tuple[int, int] | None

    def _letter(self, row: Any, error: RowError) -> DeadLetter:
        return DeadLetter(row, error.row, error.rule, error.column, str(error))

    def _frame_failed(self, part: FramePart, index: int, error: Exception) -> None:
        """Dead-letter the rows of a DataFrame part that could not become rows."""
        why = f"the DataFrame could not be turned into rows: {type(error).__name__}: {error}"
        self._dead_letter(
            [
                DeadLetter(None, index + i, "dataframe", None, f"row {index + i}: {why}")
                for i in range(len(part))
            ]
        )
        self._settle_rows(len(part))

    def _bisect(self, batch: Batch, why: str) -> None:
        """Put a refused many-row batch back, to be resent in halves (worker thread).

        Power BI refuses a request as a whole when one row is bad; halving isolates
        that row in log2(rows) requests, so the valid rows are delivered, not
        dead-lettered with it.
        """
        last = max(index for _, _, index in batch.items)
        self._split = (max(1, batch.rows // 2), last)
        logger.warning(
            "%s: %d rows refused (%s); resending them in halves to find the bad ones",
            self.sink.label,
            batch.rows,
            why,
        )
        if self._spool_queue is not None:
            refs = [ref for ref, _, _ in batch.items if ref is not None]
            self._spool_queue.forget(refs)
            self._spool_queue.spool.unassign(refs)
            return
        with self._lock:
            self._memory.give_back_locked([row for _, row, _ in batch.items])

    def _settle(self, batch: Batch, outcome: Outcome, verdict: Verdict, delay: float) -> None:
        """Book-keeping after a response (worker thread)."""
        self.stats.requests += 1
        if outcome.status == 429:
            self.stats.rate_limited += 1
        refs = [ref for ref, _, _ in batch.items if ref is not None]
        if verdict is Verdict.DELIVERED:
            if self._spool_queue is not None:
                self._spool_queue.ack(refs)
            self.stats.sent += batch.rows
            self._call(self._on_success, batch.rows)
            self._settle_rows(batch.rows)
            return
        error = self._error_for(outcome)
        self._last_error = error
        if verdict is Verdict.RETRY:
            self.stats.retried += 1
            logger.warning(
                "%s: %d rows not delivered (%s); retry %d in %.2f s",
                self.sink.label,
                batch.rows,
                redact_text(outcome.message or str(outcome.status)),
                batch.attempts,
                delay,
            )
            self._call(self._on_error, error)
            return
        if verdict is Verdict.REJECTED and outcome.status == 400 and batch.rows > 1:
            self._bisect(batch, redact_text(outcome.message or "HTTP 400"))
            return
        rule = "gave_up" if verdict is Verdict.GAVE_UP else "server"
        why = (
            f"gave up after {batch.attempts} attempts: {outcome.message}"
            if verdict is Verdict.GAVE_UP
            else f"refused by the server: {outcome.message}"
        )
        why = redact_text(why)
        logger.error("%s: %d rows dead-lettered, %s", self.sink.label, batch.rows, why)
        if self._spool_queue is not None:
            self._spool_queue.forget(refs)
            self._spool_queue.spool.fail(refs, why)
        self._dead_letter(
            [
                DeadLetter(row, index, rule, None, why, outcome.status)
                for _, row, index in batch.items
            ]
        )
        self._call(self._on_error, error)
        self._settle_rows(batch.rows)

    def _error_for(self, outcome: Outcome) -> PushError:
        # The server's answer may quote the request's URL (and its key) back.
        message = redact_text(f"{self.sink.label}: {outcome.message or 'no answer'}")
        if outcome.status is None:
            return PushError(message)
        if outcome.status == 429:
            return RateLimitedError(message, outcome.retry_after)
        if outcome.status in (401, 403):
            return AuthError(message)
        return PushHTTPStatusError(message, outcome.status, redact_text(outcome.message or ""))

    def _settle_rows(self, count: int) -> None:
        with self._lock:
            self._unsettled -= count
            if self._unsettled <= 0:
                self._unsettled = max(0, self._unsettled)
                self._oldest_at = None
        self._notify_settled()

    def _notify_settled(self) -> None:
        raise NotImplementedError

    def _dead_letter(self, letters: list[DeadLetter]) -> None:
        # Callers' threads (spool pre-checks) and the worker both count: under a lock,
        # or concurrent `+=` may lose increments.
        with self._dead_letter_lock:
            self.stats.dead_lettered += len(letters)
        for letter in letters[:3]:
            logger.warning("%s: dead letter: %s", self.sink.label, redact_text(letter.message))
        if self.dead_letter_path is not None:
            try:
                # Callers (spool pre-checks) and the worker may both write: whole lines only.
                with self._dead_letter_lock, self.dead_letter_path.open("ab") as out:
                    for letter in letters:
                        out.write(
                            orjson.dumps(
                                letter.as_json(), default=str, option=orjson.OPT_APPEND_NEWLINE
                            )
                        )
            except OSError as exc:
                logger.error("cannot write the dead-letter file %s: %s", self.dead_letter_path, exc)
        self._call(self._on_dead_letter, letters)

    def _call(self, callback: Callback | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            # A user's hook must never stop delivery.
            logger.exception("%s: a callback raised; delivery goes on", self.sink.label)

    def _leftover_report(self) -> int:
        """After the worker stopped: report (and dead-letter, without a spool) what is left."""
        left = self._unsettled
        if not left:
            return 0
        if self.spool is not None:
            batch = self._engine.abandon()
            if batch is not None:
                # Back to READY with its sequence number: a replay re-sends the same
                # request, which the server drops if this one did arrive.
                self.spool.release([ref for ref, _, _ in batch.items if ref is not None])
            logger.warning(
                "%s: %d rows stay in the spool %s; the next client on it (or "
                "`pbistream spool replay`) sends them",
                self.sink.label,
                left,
                self.spool.path,
            )
            return left
        batch = self._engine.abandon()
        rows: list[Any] = [row for _, row, _ in batch.items] if batch else []
        with self._lock:
            rows.extend(self._memory.drain_locked())
        logger.error(
            "%s: %d rows were NOT delivered before close (no spool to keep them)%s",
            self.sink.label,
            left,
            f"; written to {self.dead_letter_path}" if self.dead_letter_path else "",
        )
        if self.dead_letter_path is not None:
            self._dead_letter(
                [
                    DeadLetter(row, None, "not_delivered", None, "not delivered before close")
                    for row in rows
                ]
            )
        return left

    def _resync_spool(self) -> None:
        """The spool had fewer rows than we counted (purged meanwhile): believe the spool."""
        assert self.spool is not None
        stats = self.spool.stats()
        with self._lock:
            self._unsettled = stats.pending  # READY + LOCKED, the current batch included
            if not self._unsettled:
                self._oldest_at = None
        self._notify_settled()
