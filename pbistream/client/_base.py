"""What the sync and async clients share: push, validation, batch building, settling.

The two drivers (``_sync.Client`` with a thread, ``_async.AsyncClient`` with a task)
only decide how to wait and how to send; everything else is here, once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson

from pbistream.client._queue import (
    FramePart,
    Item,
    MemoryQueue,
    SpoolQueue,
    expand_frames,
    monotonic,
)
from pbistream.client._types import ClientState, ClientStats, DeadLetter
from pbistream.client.engine import Batch, Engine, Outcome, SequenceCounter, Verdict
from pbistream.client.options import BatchOptions, BufferOptions, PacingOptions, RetryOptions
from pbistream.client.sinks import SinkBase, parse_rest_url
from pbistream.encoding import BodyBuilder
from pbistream.exceptions import (
    AuthError,
    ClientClosedError,
    ConfigError,
    PbiStreamError,
    PushError,
    PushHTTPStatusError,
    RateLimitedError,
)
from pbistream.redact import redact_text
from pbistream.schema import Table
from pbistream.spool import Spool
from pbistream.values import RowError, RowErrorException, RowRules, UntypedRules

logger = logging.getLogger("pbistream.client")

__all__ = ["BaseClient"]


Callback = Callable[..., Any]

# Rows of a DataFrame queued as one entry: a blocked push_dataframe() waits for this much room.
_FRAME_PART_ROWS = 50_000


class BaseClient:
    """The shared half of :class:`~pbistream.Client` and :class:`~pbistream.AsyncClient`.

    See :class:`~pbistream.Client` for the arguments.
    """

    _push_url_sink: type[SinkBase]
    _rest_sink: type[SinkBase]
    _may_block = True

    def __init__(
        self,
        target: str | SinkBase,
        *,
        schema: Table | Literal["auto"] | None = "auto",
        spool: str | Path | Spool | None = None,
        token: str | None = None,
        auth: httpx.Auth | str | None = None,
        batch: BatchOptions | None = None,
        pacing: PacingOptions | None = None,
        retry: RetryOptions | None = None,
        buffer: BufferOptions | None = None,
        unknown: Literal["error", "ignore"] = "error",
        naive: Literal["utc", "local"] = "utc",
        sequence_numbers: bool = True,
        dead_letter_path: str | Path | None = None,
        on_success: Callback | None = None,
        on_error: Callback | None = None,
        on_dead_letter: Callback | None = None,
        close_timeout: float = 30.0,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.sink = self._make_sink(target, token=token, auth=auth)
        self.batch_options = batch or BatchOptions()
        self.pacing_options = pacing or PacingOptions()
        self.retry_options = retry or RetryOptions()
        self.buffer_options = buffer or BufferOptions()
        self._declared_schema = schema
        self._unknown: Literal["error", "ignore"] = unknown
        self._naive: Literal["utc", "local"] = naive
        self._untyped = UntypedRules(naive=naive)
        self._rules: RowRules | UntypedRules = (
            schema.rules(unknown=unknown, naive=naive)
            if isinstance(schema, Table)
            else self._untyped
        )
        self._use_seq = sequence_numbers
        self._on_success = on_success
        self._on_error = on_error
        self._on_dead_letter = on_dead_letter
        self.close_timeout = close_timeout
        self._clock = clock
        self.stats = ClientStats()
        self.state = ClientState.UNOPENED
        self._lock = threading.Lock()
        self._dead_letter_lock = threading.Lock()
        self._max_bytes = self.batch_options.max_body_bytes or self.sink.default_max_bytes
        # After a 400 on a many-row batch: (rows per batch, last index of the refused
        # rows) while they are resent in halves to isolate the row the server refuses.
        self._split: tuple[int, int] | None = None
        self._row_bytes = 0.0  # running estimate of one encoded row (sizes the takes)

        self._memory = MemoryQueue(self.buffer_options, self._lock)
        self._spool_queue: SpoolQueue | None = None
        self._seq = SequenceCounter()
        self.spool: Spool | None = None
        if spool is not None:
            self.spool = spool if isinstance(spool, Spool) else Spool(spool)
            requeued = self.spool.acquire()
            self._spool_queue = SpoolQueue(self.spool)
            self._seq = SequenceCounter(self.spool.last_seq())
            self.spool.set_meta("target", self.sink.label)
            if dead_letter_path is None:
                dead_letter_path = f"{self.spool.path}.deadletter.jsonl"
            stats = self.spool.stats()
            self._unsettled = stats.pending
            if stats.pending:
                logger.info(
                    "spool %s: replaying %d rows left by an earlier client (%d were in flight)",
                    self.spool.path,
                    stats.pending,
                    requeued,
                )
        else:
            self._unsettled = 0
        self._oldest_at: float | None = clock() if self._unsettled else None
        self.dead_letter_path = Path(dead_letter_path) if dead_letter_path else None
        self._flush_waiters = 0
        self._closing = False
        self._last_error: PbiStreamError | None = None
        self._engine = Engine(
            batch=self.batch_options, pacing=self.pacing_options, retry=self.retry_options
        )
        self._init_driver()

    def _init_driver(self) -> None:
        """The driver's own state (threads or tasks start later, on open)."""
        raise NotImplementedError

    # --- construction helpers ------------------------------------------------------

    def _make_sink(
        self, target: str | SinkBase, *, token: str | None, auth: httpx.Auth | str | None
    ) -> SinkBase:
        if isinstance(target, SinkBase):
            return target
        if not isinstance(target, str):
            raise ConfigError(f"target must be a URL or a sink, got {type(target).__name__}")
        rest = parse_rest_url(target)
        if rest is not None:
            base, group, dataset, table = rest
            return self._rest_sink(  # type: ignore[call-arg]
                dataset, table, auth=auth or token, base_url=base, group_id=group
            )
        return self._push_url_sink(target, token=token)  # type: ignore[call-arg]

    def _use_remote_table(self, remote: Any) -> None:
        """Adopt the schema a server described (worker side, before the first send)."""
        if remote is None or remote.table is None:
            logger.info("%s: no schema from the server; rows are checked by value", self.sink.label)
            return
        self._rules = remote.table.rules(unknown=self._unknown, naive=self._naive)
        self._engine.pacer.table_rows = remote.row_count

    @property
    def wants_schema(self) -> bool:
        """True when the worker should ask the server for the table's columns first."""
        return self._declared_schema == "auto"

    # --- push ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state is ClientState.CLOSED:
            raise ClientClosedError("this client is closed; create a new one to push again")
        if self.state is ClientState.UNOPENED:
            self._open()

    def _open(self) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        raise NotImplementedError

    def push(self, row: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
        """Queue one row (a mapping) or many (an iterable of mappings); return at once.

        No network I/O happens here. With a spool the rows are committed to disk when
        this returns. Rows are checked against the schema on the worker; a row that
        breaks a rule goes to the dead letter and never holds back the others.

        Raises:
            ClientClosedError: The client was closed.
            BufferFullError: No spool, ``when_full="block"`` and the buffer stayed full.
            SpoolFullError: The spool reached its cap (nothing was stored).
        """
        # A str is not a batch of one-character rows: treat it as one (bad) row.
        rows: list[Any] = [row] if isinstance(row, Mapping | str | bytes) else list(row)
        if not rows:
            return
        self._check_open()
        if self._spool_queue is not None:
            self._push_spooled(rows)
            return
        self._push_memory(rows, len(rows))

    def _push_memory(self, entries: list[Any], count: int) -> None:
        """Queue ``count`` rows (dicts, or FrameParts standing for many) in memory."""
        parts = None if count == len(entries) else count
        with self._lock:
            dropped = self._memory.put_locked(
                entries, self._clock, may_block=self._may_block, count=parts
            )
            self.stats.queued += count
            was_empty = self._unsettled == 0
            self._unsettled += count - dropped
            if dropped:
                self.stats.dropped += dropped
                if self.stats.dropped == dropped or self.stats.dropped % 10_000 < dropped:
                    logger.warning(
                        "%s: buffer full (%d rows), dropped the oldest; %d dropped so far",
                        self.sink.label,
                        self.buffer_options.max_rows,
                        self.stats.dropped,
                    )
            if was_empty:
                self._oldest_at = self._clock()
            wake = was_empty or len(self._memory) >= self.batch_options.max_rows
        if wake:
            self._wake()

    def _push_spooled(self, rows: list[Any]) -> None:
        assert self._spool_queue is not None
        good: list[dict[str, Any]] = []
        dead: list[DeadLetter] = []
        normalize = self._untyped.normalize_row
        for offset, row in enumerate(rows):
            try:
                good.append(normalize(row, self.stats.queued + offset))
            except RowErrorException as exc:
                dead.append(self._letter(row, exc.error))
        stored = self._spool_queue.put(good)
        with self._lock:
            self.stats.queued += len(rows)
            self.stats.spooled += stored
            was_empty = self._unsettled == 0
            self._unsettled += stored
            if was_empty:
                self._oldest_at = self._clock()
        if dead:
            self._dead_letter(dead)
        if stored:
            self._wake()

    def push_dataframe(self, df: Any) -> None:
        """Queue every row of a pandas DataFrame (columns are the fields); return at once.

        Without a spool the frame is copied (so the caller may change it afterwards) and
        queued as it is: the worker turns it into rows a batch at a time, so the caller
        pays neither for the conversion nor, beyond the copy, in memory. The buffer
        bound and policy count the frame's rows like any others. With a spool the rows
        are converted and committed before this returns (the spool's promise).
        NaN, NaT and NA become nulls; numpy and pandas scalars are normalised like any
        other value.

        Raises:
            ConfigError: ``df`` is not a DataFrame.
            ClientClosedError: The client was closed.
            BufferFullError: ``when_full="block"`` and the buffer stayed full.
        """
        if getattr(df, "iloc", None) is None or getattr(df, "to_dict", None) is None:
            raise ConfigError(f"push_dataframe() needs a pandas DataFrame, got {type(df).__name__}")
        total = len(df)
        if not total:
            return
        self._check_open()
        if self._spool_queue is not None:
            for start in range(0, total, _FRAME_PART_ROWS):
                self.push(FramePart(df, start, start + _FRAME_PART_ROWS).rows())
            return
        frame = df.copy(deep=True)
        # In parts, so under the "block" policy a frame larger than the free room waits
        # for room part by part (as push() of as many rows would) instead of failing.
        for start in range(0, total, _FRAME_PART_ROWS):
            part = FramePart(frame, start, min(total, start + _FRAME_PART_ROWS))
            self._push_memory([part], len(part))

    # --- worker side: building and settling batches --------------------------------

    def _letter(self, row: Any, error: RowError) -> DeadLetter:
        return DeadLetter(row, error.row, error.rule, error.column, str(error))

    def _take_locked(self, max_rows: int) -> tuple[list[Item], int | None]:
        """Take rows for a batch; memory rows under the lock, spool rows from disk."""
        if self._row_bytes:
            # Take about what fits the byte limit, not 10,000 rows to give most back.
            max_rows = max(1, min(max_rows, int(self._max_bytes / self._row_bytes)))
        if self._split is not None:
            max_rows = min(max_rows, self._split[0])
        if self._spool_queue is not None:
            items, seq = self._spool_queue.take(max_rows)
        else:
            items, seq = self._memory.take_locked(max_rows), None
        if self._split is not None and (not items or items[0][2] > self._split[1]):
            self._split = None  # past the refused rows: full batches again
        return items, seq

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

    def _build(self, items: list[Item], prior_seq: int | None) -> Batch | None:
        """Validate, encode and group taken rows into one batch (worker thread)."""
        items = expand_frames(items, self._frame_failed)
        builder = BodyBuilder(
            self.sink.shape,
            max_rows=self.batch_options.max_rows if prior_seq is None else len(items),
            max_bytes=self._max_bytes if prior_seq is None else 1 << 62,
        )
        normalize = self._rules.normalize_row
        kept: list[Item] = []
        dead: list[DeadLetter] = []
        leftover: list[Item] = []
        for position, item in enumerate(items):
            _ref, row, index = item
            try:
                part = orjson.dumps(normalize(row, index))
            except RowErrorException as exc:
                dead.append(self._letter(row, exc.error))
                continue
            except TypeError as exc:  # orjson: a value with no JSON form slipped through
                dead.append(DeadLetter(row, index, "type", None, f"row {index}: {exc}"))
                continue
            except Exception as exc:  # a row object that fails in its own code (a Mapping)
                why = f"row {index}: the row could not be read: {type(exc).__name__}: {exc}"
                dead.append(DeadLetter(row, index, "shape", None, why))
                continue
            if builder.add(part):
                kept.append(item)
            elif not builder.fits_alone(part):
                dead.append(
                    DeadLetter(
                        row,
                        index,
                        "size",
                        None,
                        f"row {index}: encodes to {len(part):,} bytes, more than the "
                        f"{builder.max_bytes:,}-byte body limit",
                    )
                )
            else:
                leftover = items[position:]
                break
        if leftover:
            self._give_back(leftover)
        if dead:
            if self._spool_queue is not None:
                failed = [d.index for d in dead if d.index is not None]
                self._spool_queue.forget(failed)
                for letter in dead:  # rare: one short transaction each, with its reason
                    if letter.index is not None:
                        self._spool_queue.spool.fail([letter.index], letter.message)
            # Recorded before settled: a flush() that returns has every dead letter
            # counted, written and passed to the callback.
            self._dead_letter(dead)
            self._settle_rows(len(dead))
        if not kept:
            return None
        # A running estimate of a row's encoded size, to size the next take.
        measured = builder.size / len(kept)
        self._row_bytes = (
            measured if not self._row_bytes else 0.8 * self._row_bytes + 0.2 * measured
        )
        seq = prior_seq if prior_seq is not None else self._seq.next(time.time())
        if self.spool is not None and prior_seq is None:
            self.spool.assign([ref for ref, _, _ in kept if ref is not None], seq)
        return Batch(builder.body(), len(kept), seq, kept)

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

    def _give_back(self, items: list[Item]) -> None:
        if self.spool is not None:
            self.spool.release([ref for ref, _, _ in items if ref is not None])
            return
        with self._lock:
            self._memory.give_back_locked([row for _, row, _ in items])

    def _send_seq(self, batch: Batch) -> int | None:
        return batch.seq if self._use_seq else None

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

    # --- state for the drivers --------------------------------------------------------

    @property
    def pending(self) -> int:
        """Rows accepted but not yet delivered nor dead-lettered."""
        return self._unsettled

    @property
    def last_error(self) -> PbiStreamError | None:
        """The most recent delivery error, if any (for reports such as the CLI's)."""
        return self._last_error

    def _poll(self, now: float) -> Any:
        current = self._engine.current
        buffered = self._unsettled - (current.rows if current is not None else 0)
        return self._engine.poll(
            now,
            buffered=buffered,
            oldest_at=self._oldest_at,
            flushing=self._flush_waiters > 0 or self._closing,
        )

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
