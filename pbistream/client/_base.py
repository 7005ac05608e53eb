"""What the sync and async clients share: push, validation, batch building.

The two drivers (``_sync.Client`` with a thread, ``_async.AsyncClient`` with a task)
only decide how to wait and how to send; everything else is here (and, for what
happens after an answer, in :mod:`pbistream.client._settling`), once.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
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
from pbistream.client._settling import Callback, Isolation, SettlingMixin
from pbistream.client._types import (
    ClientState,
    ClientStats,
    DeadLetter,
    DeliveryProgress,
    rows_text,
)
from pbistream.client.engine import SEQUENCE_MAX, Batch, Engine, SequenceCounter, ServerHints
from pbistream.client.options import BatchOptions, BufferOptions, PacingOptions, RetryOptions
from pbistream.client.sinks import SinkBase, parse_rest_url
from pbistream.encoding import BodyBuilder
from pbistream.exceptions import (
    BufferFullError,
    ClientClosedError,
    ConfigError,
    PbiStreamError,
)
from pbistream.limits import MAX_PUSH_BODY_BYTES, MAX_STREAMING_BODY_BYTES
from pbistream.schema import Table
from pbistream.spool import Spool
from pbistream.values import RowErrorException, RowRules, UntypedRules

logger = logging.getLogger("pbistream.client")

__all__ = ["BaseClient"]


# Rows of a DataFrame queued as one entry: a blocked push_dataframe() waits for this much room.
_FRAME_PART_ROWS = 50_000


class BaseClient(SettlingMixin):
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
        close_timeout: float | None = None,
        on_progress: Callable[[DeliveryProgress], Any] | None = None,
        unsent_path: str | Path | None = None,
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
        self._on_progress = on_progress
        self.unsent_path = Path(unsent_path) if unsent_path else None
        self._clock = clock
        self._snapshot: tuple[str, float, float] = ("", 0.0, 0.0)  # limit, frees_at, eta
        self._snapshot_at = -1e18
        self._last_line_at = 0.0
        self.stats = ClientStats()
        self.state = ClientState.UNOPENED
        self._lock = threading.Lock()
        self._dead_letter_lock = threading.Lock()
        self._max_bytes = self.batch_options.max_body_bytes or self.sink.default_max_bytes
        # After a 400 on a many-row batch: the search for the row the server refuses.
        self._isolation: Isolation | None = None
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
                    "spool %s: replaying %s left by an earlier client (%d were in flight)",
                    self.spool.path,
                    rows_text(stats.pending),
                    requeued,
                )
        else:
            self._unsettled = 0
        self._oldest_at: float | None = clock() if self._unsettled else None
        self.dead_letter_path = Path(dead_letter_path) if dead_letter_path else None
        self._flush_waiters = 0
        self._opened_for_replay = False
        self._closing = False
        self._last_error: PbiStreamError | None = None
        self._engine = Engine(
            batch=self.batch_options,
            pacing=self.pacing_options,
            retry=self.retry_options,
            sequence=self._seq,
        )
        self._init_driver()
        if self._unsettled:
            # Rows an earlier client left (READY, or LOCKED by a killed process): deliver
            # them now, not at the first push(); flush() and close() wait for them.
            self._open_for_replay()

    def _open_for_replay(self) -> None:
        """Start delivering the spool's rows at once (the async twin may have to wait)."""
        self._open()
        # Opened by us, not by the caller: a `with` on this client is still its first.
        self._opened_for_replay = True

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
        if remote.mode:
            self._adopt_hints(ServerHints(mode=remote.mode))

    def _adopt_hints(self, hints: ServerHints) -> None:
        """Pace and size bodies by what a pbistream server says of itself (worker side).

        Its time scale and limits switch replace ours; a Push dataset takes 16 MB
        bodies even through a Push URL, a Streaming one 15 KB (an explicit
        ``BatchOptions(max_body_bytes=...)`` always wins).
        """
        self._engine.pacer.adopt(hints)
        if hints.mode is None or self.batch_options.max_body_bytes is not None:
            return
        mode = hints.mode.lower()
        if mode == "push":
            self._max_bytes = MAX_PUSH_BODY_BYTES.value
        elif mode == "streaming":
            self._max_bytes = MAX_STREAMING_BODY_BYTES.value
        else:
            self._max_bytes = self.sink.default_max_bytes
        if self._row_bytes:
            self._engine.body_rows = int(self._max_bytes / self._row_bytes)

    def _schema_failed(self) -> None:
        """The schema request raised: deliver anyway, checking rows by value."""
        logger.warning(
            "%s: reading the table's schema failed; rows are checked by value only",
            self.sink.label,
            exc_info=True,
        )

    def _worker_failed(self, failures: int) -> float:
        """Log an unexpected worker error; return the pause before it restarts."""
        pause = min(30.0, 0.1 * 2.0**failures)
        logger.exception(
            "%s: the client's worker failed; restarting in %.1f s", self.sink.label, pause
        )
        return pause

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

    def push(
        self,
        row: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        *,
        checkpoint: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one row (a mapping) or many (an iterable of mappings); return at once.

        No network I/O happens here. With a spool the rows are committed to disk when
        this returns. Rows are checked against the schema on the worker; a row that
        breaks a rule goes to the dead letter and never holds back the others.

        Args:
            row: One row, or an iterable of rows.
            checkpoint: Needs a spool: values stored in the spool's meta table in the
                same transaction as the rows (read back with ``client.spool.get_meta``).
                A feed keeps its read position there, so it moves if and only if the
                rows it read are stored.

        Raises:
            ClientClosedError: The client was closed.
            BufferFullError: No spool, ``when_full="block"`` and the buffer stayed full.
            SpoolFullError: The spool reached its cap (nothing was stored).
            ConfigError: A ``checkpoint`` without a spool.
        """
        # A str is not a batch of one-character rows: treat it as one (bad) row.
        rows: list[Any] = [row] if isinstance(row, Mapping | str | bytes) else list(row)
        if checkpoint is not None and self._spool_queue is None:
            raise ConfigError("push(checkpoint=...) needs a client with a spool")
        if not rows and not checkpoint:
            return
        self._check_open()
        if self._spool_queue is not None:
            self._push_spooled(rows, checkpoint)
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

    def _push_spooled(self, rows: list[Any], checkpoint: Mapping[str, str] | None = None) -> None:
        assert self._spool_queue is not None
        good: list[dict[str, Any]] = []
        dead: list[DeadLetter] = []
        normalize = self._untyped.normalize_row
        for offset, row in enumerate(rows):
            try:
                good.append(normalize(row, self.stats.queued + offset))
            except RowErrorException as exc:
                dead.append(self._letter(row, exc.error))
        stored = self._spool_queue.put(good, checkpoint)
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
            BufferFullError: ``when_full="block"`` and the buffer stayed full; the
                message says how many of the frame's rows were queued before.
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
            try:
                self._push_memory([part], len(part))
            except BufferFullError as exc:
                # Say where it stopped: pushing the whole frame again would repeat rows.
                raise BufferFullError(
                    f"{exc}; the frame's first {start:,} of {total:,} rows were queued "
                    f"(push df.iloc[{start}:] to send the rest)"
                ) from None

    # --- worker side: building and settling batches --------------------------------

    def _take_locked(self, max_rows: int) -> tuple[list[Item], int | None]:
        """Take rows for a batch; memory rows under the lock, spool rows from disk."""
        if self._row_bytes:
            # Take about what fits the byte limit, not 10,000 rows to give most back.
            max_rows = max(1, min(max_rows, int(self._max_bytes / self._row_bytes)))
        iso = self._isolation
        if iso is not None and not iso.doomed:
            max_rows = min(max_rows, iso.limit)
        if self._spool_queue is not None:
            items, seq = self._spool_queue.take(max_rows)
        else:
            items, seq = self._memory.take_locked(max_rows), None
        if iso is not None and (not items or items[0][2] > iso.until):
            self._isolation = None  # past the refused rows: full batches again
        return items, seq

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
        iso = self._isolation
        doomed_until = iso.until if iso is not None and iso.doomed else -1
        for position, item in enumerate(items):
            _ref, row, index = item
            if index <= doomed_until:
                assert iso is not None
                why = f"row {index}: not sent, the server refused every part: {iso.why}"
                dead.append(DeadLetter(row, index, "server", None, why, 400))
                continue
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
        # The bytes, not only the 10,000 rows, make a batch full (15 KB: ~150 rows).
        self._engine.body_rows = max(1, int(self._max_bytes / (self._row_bytes * 1.02)))
        seq = prior_seq if prior_seq is not None else self._seq.next(time.time())
        if self.spool is not None and prior_seq is None:
            self.spool.assign([ref for ref, _, _ in kept if ref is not None], seq)
        # A replayed batch (its number from the spool) may have been stored already.
        return Batch(builder.body(), len(kept), seq, kept, fresh=prior_seq is None)

    def _give_back(self, items: list[Item]) -> None:
        if self.spool is not None:
            self.spool.release([ref for ref, _, _ in items if ref is not None])
            return
        with self._lock:
            self._memory.give_back_locked([row for _, row, _ in items])

    def _send_seq(self, batch: Batch) -> int | None:
        # At the 64-bit maximum no number is above the table's: send without one.
        return batch.seq if self._use_seq and batch.seq < SEQUENCE_MAX else None

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
        waiting = self._flush_waiters > 0 or self._closing
        if waiting and now - self._snapshot_at >= 0.25:
            # For the reports of a waiting close(): taken here, on the worker, which
            # owns the engine (the waiting thread must not touch the pacer's logs).
            self._snapshot_at = now
            wait, limit = self._engine.holding(now, buffered)
            eta = self._engine.pacer.eta(now, self._unsettled, self._engine.cap())
            self._snapshot = (limit, now + wait, eta)
        return self._engine.poll(
            now, buffered=buffered, oldest_at=self._oldest_at, flushing=waiting
        )

    def _progress(self, waited: float) -> DeliveryProgress:
        limit, frees_at, eta = self._snapshot
        frees_in = max(0.0, frees_at - self._clock())
        return DeliveryProgress(
            left=self._unsettled,
            delivered=self.stats.sent,
            limit=limit if frees_in > 0 else "",
            frees_in=frees_in,
            # Nothing goes before the holding limit (or a retry's backoff) frees: the
            # plan's estimate must not promise less than that.
            eta=max(eta, frees_in),
            waited=waited,
        )

    def _tick_progress(self, waited: float) -> None:
        """Called about twice a second while close() waits: the hook, or a line every 5 s."""
        if self._unsettled <= 0:
            return
        progress = self._progress(waited)
        error = self._last_error
        if progress.limit == "a retry's backoff" and error is not None:
            # Say what is failing, not only that it is being retried.
            reason = str(error).removeprefix(f"{self.sink.label}: ")
            progress = dataclasses.replace(progress, limit=f"retries ({reason})")
        if self._on_progress is not None:
            self._call(self._on_progress, progress)
            return
        if waited < 3.0 or waited - self._last_line_at < 5.0:
            return
        self._last_line_at = waited
        line = f"pbistream: {self.sink.label}: {progress.line()} (Ctrl-C stops waiting)"
        logger.info("%s", line)
        print(line, file=sys.stderr, flush=True)
