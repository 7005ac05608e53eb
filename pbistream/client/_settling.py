"""The settling half of the clients: what happens to rows after an answer, or at close.

Delivered rows are acknowledged (the spool deletes them); refused rows become dead
letters (counted, written to the dead-letter file, passed to the callback) or, when a
many-row batch got a 400, go back to be resent in halves; at close what is left is
reported. :class:`~pbistream.client._base.BaseClient` builds and sends the batches.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from pbistream.client._queue import FramePart, MemoryQueue, SpoolQueue, entry_rows
from pbistream.client._types import ClientStats, DeadLetter, rows_text
from pbistream.client.engine import SEQUENCE_MAX, Batch, Engine, Outcome, Verdict
from pbistream.client.sinks import SinkBase
from pbistream.exceptions import (
    AuthError,
    PbiStreamError,
    PushError,
    PushHTTPStatusError,
    RateLimitedError,
    UndeliveredRowsError,
)
from pbistream.redact import redact_text
from pbistream.spool import Spool
from pbistream.values import RowError

__all__ = ["Callback", "Isolation", "SettlingMixin"]

logger = logging.getLogger("pbistream.client")

Callback = Callable[..., Any]


class Isolation:
    """The search for the row(s) a server refused in a batch (see ``_isolate``).

    Attributes:
        limit: Rows per batch while searching.
        until: The last index of the first refused batch: past it, the search is over.
        why: The server's last refusal, for rows dead-lettered unsent.
        refusals_left: Refusals still allowed before the rest is given up.
        doomed: The budget ran out: rows up to ``until`` are dead-lettered unsent.
    """

    __slots__ = ("doomed", "limit", "refusals_left", "until", "why")

    def __init__(self, rows: int, until: int, why: str) -> None:
        self.limit = rows
        self.until = until
        self.why = why
        # Enough for a few bad rows (each costs about 2·log2(rows)), not one per row.
        self.refusals_left = 3 * max(1, (rows - 1).bit_length()) + 3
        self.doomed = False


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
    _isolation: Isolation | None
    _unsent_file: str | None = None

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

    def _isolate(self, batch: Batch, why: str) -> bool:
        """Handle a 400 by isolating the refused row(s) (worker thread).

        Power BI refuses a request as a whole when one row is bad. The batch goes back
        to the front of the queue and is resent in halves; after each delivered part
        the size doubles again. One bad row costs about 2·log2(rows) requests. When
        every part is refused (a schema mismatch: every row is bad), a budget of
        refusals ends the search and the rest of the refused rows are dead-lettered
        unsent, so a systematic refusal never turns into one request per row.

        Returns:
            True when the batch was put back to be resent in parts; False when it is
            to be dead-lettered as it is.
        """
        first = min(index for _, _, index in batch.items)
        iso = self._isolation
        if iso is None or first > iso.until:
            if batch.rows == 1:
                return False
            last = max(index for _, _, index in batch.items)
            iso = self._isolation = Isolation(batch.rows, last, why)
            logger.warning(
                "%s: %s refused (%s); resending them in halves to find the bad ones",
                self.sink.label,
                rows_text(batch.rows),
                why,
            )
        iso.why = why
        iso.refusals_left -= 1
        if iso.refusals_left <= 0:
            iso.doomed = True  # _build dead-letters the rest of the refused rows unsent
            return False
        if batch.rows == 1:
            return False
        iso.limit = max(1, batch.rows // 2)
        if self._spool_queue is not None:
            refs = [ref for ref, _, _ in batch.items if ref is not None]
            self._spool_queue.forget(refs)
            self._spool_queue.spool.unassign(refs)
        else:
            with self._lock:
                self._memory.give_back_locked([row for _, row, _ in batch.items])
        return True

    def _adopt_hints(self, hints: Any) -> None:
        raise NotImplementedError

    def _settle(self, batch: Batch, outcome: Outcome, verdict: Verdict, delay: float) -> None:
        """Book-keeping after a response (worker thread)."""
        self.stats.requests += 1
        if outcome.status == 429:
            self.stats.rate_limited += 1
        if outcome.hints is not None:
            self._adopt_hints(outcome.hints)
        refs = [ref for ref, _, _ in batch.items if ref is not None]
        if verdict is Verdict.RESEQUENCED:
            # The server skipped the rows as already seen, but they never were: our numbers
            # had fallen behind the table's. Resend them at once under the new number.
            if batch.seq >= SEQUENCE_MAX:
                logger.warning(
                    "%s: the server skipped %s as old (its last sequence number is %s, the "
                    "largest there is); resending them, and all later rows, without a "
                    "sequence number (deleting the table's rows resets its number)",
                    self.sink.label,
                    rows_text(batch.rows),
                    outcome.sequence_last,
                )
            else:
                # INFO: routine when several producers share a table, and handled here.
                logger.info(
                    "%s: the server skipped %s as old (its last sequence number is %s); "
                    "resending them as number %d",
                    self.sink.label,
                    rows_text(batch.rows),
                    outcome.sequence_last,
                    batch.seq,
                )
            if self.spool is not None:
                self.spool.assign(refs, batch.seq)
            return
        if verdict is Verdict.DELIVERED:
            if self._spool_queue is not None:
                self._spool_queue.ack(refs)
            self.stats.sent += batch.rows
            if outcome.ignored:
                logger.info(
                    "%s: %s: a retry of a request the server had stored",
                    self.sink.label,
                    rows_text(batch.rows),
                )
            if self._isolation is not None:  # a part got through: try larger parts again
                self._isolation.limit = min(self._isolation.limit * 2, 1 << 30)
            self._call(self._on_success, batch.rows)
            self._settle_rows(batch.rows)
            return
        error = self._error_for(outcome)
        self._last_error = error
        if verdict is Verdict.RETRY:
            self.stats.retried += 1
            logger.warning(
                "%s: %s not delivered (%s); retry %d in %.2f s",
                self.sink.label,
                rows_text(batch.rows),
                redact_text(outcome.message or str(outcome.status)),
                batch.attempts,
                delay,
            )
            self._call(self._on_error, error)
            return
        if (
            verdict is Verdict.REJECTED
            and outcome.status == 400
            and self._isolate(batch, redact_text(outcome.message or "HTTP 400"))
        ):
            return
        rule = "gave_up" if verdict is Verdict.GAVE_UP else "server"
        why = (
            f"gave up after {batch.attempts} attempts: {outcome.message}"
            if verdict is Verdict.GAVE_UP
            else f"refused by the server: {outcome.message}"
        )
        why = redact_text(why)
        logger.error("%s: %s dead-lettered, %s", self.sink.label, rows_text(batch.rows), why)
        if self._spool_queue is not None:
            self._spool_queue.forget(refs)
            self._spool_queue.spool.fail(refs, why)
        self._dead_letter(
            [
                DeadLetter(row, index, rule, None, f"row {index}: {why}", outcome.status)
                for _, row, index in batch.items
            ]
        )
        self._call(self._on_error, error)
        self._settle_rows(batch.rows)

    def _error_for(self, outcome: Outcome) -> PushError:
        # The server's answer may quote the request's URL (and its key) back.
        message = f"{self.sink.label}: {redact_text(outcome.message or 'no answer')}"
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

    def reject(self, letters: list[DeadLetter]) -> None:
        """Record input that never became a row (a feed's unreadable message) as dead letters.

        They are counted, written to the dead-letter file and passed to
        ``on_dead_letter`` like the rows the client refuses itself: one file holds
        every refusal. Nothing is queued or sent.
        """
        if letters:
            self._dead_letter(list(letters))

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
                # 0600 like the spool: the file holds the rows themselves.
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
                with (
                    self._dead_letter_lock,
                    os.fdopen(os.open(self.dead_letter_path, flags, 0o600), "ab") as out,
                ):
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

    def _leftover_report(self, interrupted: bool = False) -> int:
        """After the worker stopped: say where the rows that are left are, and keep them.

        With a spool they stay in it (the in-flight batch back to READY with its sequence
        number). Without one they are written, one row a line, to the unsent-rows file
        (``self._unsent_file``), ready for ``pbistream push URL --file PATH``.
        """
        left = self._unsettled
        self._unsent_file = None
        if not left:
            return 0
        if self.spool is not None:
            batch = self._engine.abandon()
            if batch is not None:
                # Back to READY with its sequence number: a replay re-sends the same
                # request, which the server drops if this one did arrive.
                self.spool.release([ref for ref, _, _ in batch.items if ref is not None])
            message = (
                f"{left:,} {'row stays' if left == 1 else 'rows stay'} in the spool "
                f"{self.spool.path}; the next client on it (or `pbistream spool replay`) "
                "sends them"
            )
            logger.warning("%s: %s", self.sink.label, message)
            if interrupted:
                print(f"pbistream: {message}", file=sys.stderr, flush=True)
            return left
        batch = self._engine.abandon()
        entries: list[Any] = [row for _, row, _ in batch.items] if batch else []
        with self._lock:
            entries.extend(self._memory.drain_locked())
        path = self._write_unsent(entries)
        if self._on_dead_letter is not None:  # it hears of every row that will not go
            self._call(
                self._on_dead_letter,
                [
                    DeadLetter(row, None, "not_delivered", None, "not delivered before close")
                    for row in entry_rows(entries)
                ],
            )
        self._unsent_file = path
        where = f"; written to {path}" if path else ""
        logger.error(
            "%s: %s NOT delivered before close (no spool to keep them)%s",
            self.sink.label,
            f"{rows_text(left)} {'was' if left == 1 else 'were'}",
            where,
        )
        if path:
            print(
                f"pbistream: {left:,} {'row was' if left == 1 else 'rows were'} not delivered; "
                f"written to {path} (send them with: pbistream push URL --file {path})",
                file=sys.stderr,
                flush=True,
            )
        return left

    def _undelivered(self, left: int) -> PushError:
        """The error close() raises for rows left without a spool."""
        path = self._unsent_file
        reason = f": {self._last_error}" if self._last_error is not None else ""
        where = f"; they were written to {path}" if path else ""
        noun = "row was" if left == 1 else "rows were"
        return UndeliveredRowsError(
            f"{left:,} {noun} not delivered before close(){reason}{where}. Give close() more "
            "time (close_timeout=None waits as long as delivery takes), or use a spool.",
            left,
            path,
        )

    def _write_unsent(self, rows: list[Any]) -> str | None:
        """Write rows (or DataFrame parts) to the unsent-rows file (0600); its path or None."""
        if not rows:
            return None
        path: Path | None = getattr(self, "unsent_path", None)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        candidates = [path] if path else []
        name = f"pbistream-unsent-{stamp}-{os.getpid()}.jsonl"
        candidates += [Path.cwd() / name, Path(tempfile.gettempdir()) / name]
        option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
        for candidate in candidates:
            try:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
                with os.fdopen(os.open(candidate, flags, 0o600), "ab") as out:
                    for row in rows:
                        if type(row) is FramePart:  # pandas writes a million rows in ~1 s
                            part = row.frame.iloc[row.start : row.stop]
                            text = part.to_json(orient="records", lines=True, date_format="iso")
                            out.write(text.encode() + (b"" if text.endswith("\n") else b"\n"))
                            continue
                        out.write(orjson.dumps(row, default=str, option=option))
            except OSError as exc:
                logger.error("cannot write the unsent rows to %s: %s", candidate, exc)
                continue
            return str(candidate)
        return None

    def _resync_spool(self) -> None:
        """The spool had fewer rows than we counted (purged meanwhile): believe the spool."""
        assert self.spool is not None
        stats = self.spool.stats()
        with self._lock:
            self._unsettled = stats.pending  # READY + LOCKED, the current batch included
            if not self._unsettled:
                self._oldest_at = None
        self._notify_settled()
