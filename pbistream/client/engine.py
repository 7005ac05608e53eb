"""The client's one sans-I/O engine: when to batch, when to send, when to retry.

The engine never reads a clock, sleeps or touches the network. A driver (the
:class:`~pbistream.Client` thread or the :class:`~pbistream.AsyncClient` task) asks
it what to do with :meth:`Engine.poll`, passing ``now``, and gets an action back:

* :class:`Wait` -- nothing to do for ``seconds`` (or until new rows or a flush arrive);
* :class:`Take` -- form a new batch of at most ``max_rows`` rows from the buffer and
  hand it over with :meth:`Engine.start`;
* :class:`Send` -- send the current batch now (a first attempt or a retry).

After a send the driver reports the outcome with :meth:`Engine.on_response` and gets a
verdict: delivered, retry later, or rejected (dead letter). One batch is in flight at a
time, so sequence numbers only ever grow in the order requests reach the server: that
is what lets a server drop a retried request it already stored.
"""

from __future__ import annotations

import bisect
import enum
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from pbistream.client.options import BatchOptions, PacingOptions, RetryOptions

__all__ = [
    "JUMP_SPREAD",
    "Batch",
    "Engine",
    "Outcome",
    "Pacer",
    "Send",
    "SequenceCounter",
    "ServerHints",
    "Take",
    "Verdict",
    "Wait",
]


# A resequenced batch jumps past the table's last number by up to this much (numbers
# are microseconds of wall-clock time, so the jump is under a millisecond).
JUMP_SPREAD = 1_000


@dataclass(slots=True)
class Batch:
    """One request body and what the driver needs to settle it afterwards.

    Attributes:
        body: The JSON body.
        rows: How many rows it holds.
        seq: Its ``X-PowerBI-PushData-SequenceNumber``; kept across retries.
        items: The driver's handles on the rows (spool ids, or the rows themselves).
        attempts: Sends so far.
        first_attempt_at: ``now`` at the first send.
    """

    body: bytes
    rows: int
    seq: int
    items: Any = None
    attempts: int = 0
    first_attempt_at: float | None = None
    #: Its number was drawn by this client (False: replayed from an earlier one's spool).
    fresh: bool = True


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do for ``seconds`` (``math.inf``: until rows or a flush arrive)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Take:
    """Form a batch of at most ``max_rows`` rows and pass it to :meth:`Engine.start`."""

    max_rows: int


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``batch`` now."""

    batch: Batch


Action = Wait | Take | Send


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to a send.

    Attributes:
        status: The HTTP status, or ``None`` when the request failed on the network.
        retry_after: The server's ``Retry-After`` in seconds, if any.
        message: The server's error message or the network error, for logs and dead letters.
        ignored: Rows of a 2xx answer the server skipped for their sequence number
            (a pbistream server's ``X-PBIStream-Rows-Ignored``).
        sequence_last: The table's last stored sequence number, sent with ``ignored``.
        hints: What a pbistream server said about its limits, if anything.
    """

    status: int | None
    retry_after: float | None = None
    message: str = ""
    ignored: int = 0
    sequence_last: int | None = None
    hints: ServerHints | None = None


@dataclass(frozen=True, slots=True)
class ServerHints:
    """A pbistream server's limit settings, read from its answers' headers.

    Attributes:
        time_scale: Its ``--time-scale`` (``X-PBIStream-Time-Scale``).
        limits: Whether it enforces the limits (``X-PBIStream-Limits: on|off``).
        mode: The dataset's mode (``X-PBIStream-Dataset-Mode``): only ``Push`` and
            ``PushStreaming`` datasets count rows an hour, and only ``Push`` takes 16 MB bodies.
    """

    time_scale: float | None = None
    limits: bool | None = None
    mode: str | None = None


class Verdict(enum.Enum):
    """What the driver must do with the batch after :meth:`Engine.on_response`."""

    DELIVERED = "delivered"  # acknowledge its rows (spool: DONE)
    RETRY = "retry"  # keep it; poll() will send it again after the backoff
    RESEQUENCED = "resequenced"  # skipped as old: resend now under batch.seq, a new number
    REJECTED = "rejected"  # the server refused it: dead letter, never resend
    GAVE_UP = "gave_up"  # retries exhausted (RetryOptions): dead letter


def is_retryable(status: int | None) -> bool:
    """Network errors, 408, 429 and 5xx are worth retrying; other answers are final."""
    return status is None or status in (408, 429) or status >= 500


#: The largest ``X-PowerBI-PushData-SequenceNumber`` (a 64-bit integer). A batch whose
#: number reaches it is sent without one: once a table's last number is the largest,
#: no number is above it, and the server stores unnumbered requests (docs/api.md).
SEQUENCE_MAX = 2**63 - 1


class SequenceCounter:
    """Sequence numbers that grow per target, across restarts too.

    Each number is ``max(last + 1, wall clock in microseconds)``, so a new process (with
    or without a spool) starts above anything an earlier one sent, and numbers stay
    roughly ordered with time if two producers ever share a table.
    """

    __slots__ = ("last",)

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def next(self, wall_time: float) -> int:
        """The next number, given the wall-clock time in seconds since the epoch."""
        self.last = max(self.last + 1, int(wall_time * 1_000_000))
        return self.last

    def jump_past(self, number: int) -> int:
        """A number above ``number`` (the table's last), and above all we drew before."""
        self.last = max(self.last, number) + 1
        return self.last


class Pacer:
    """Keeps this client inside Power BI's request and row rates, and plans batch sizes.

    It logs its own POSTs and rows and allows a new POST only when every sliding
    window still has room, which is stricter than both fixed and sliding counting on
    the server. Each POST is dated by its answer (see :meth:`completed`), so network
    delays cannot squeeze more requests into the server's window than ours. Windows
    are scaled by ``time_scale`` and widened by ``safety``.

    It also plans from every limit at once (:meth:`floor_rows`, :meth:`spacing`): when
    POSTs are the scarce limit (120 an hour once a table holds 250,000 rows), a POST
    must carry as many rows as the row quota lets it, so no POST is spent on a batch
    the freed quota could have made larger.
    """

    def __init__(self, options: PacingOptions, *, table_rows: int = 0) -> None:
        self.options = options
        self.enabled = options.enabled
        #: Whether the push limits apply: rows an hour and the large-table hourly POST
        #: limit (Streaming-only datasets have neither).
        self.row_limited = True
        self._set_windows(options.time_scale)
        self._posts: list[float] = []  # send times within the last hour, ascending
        self._rows: deque[tuple[float, int]] = deque()  # (send time, rows) within the hour
        self._rows_in_hour = 0
        #: Rows the table holds as far as we know (for the large-table hourly limit).
        self.table_rows = table_rows
        #: The producer's rows a second, as the engine measures them (for planning).
        self.inflow = 0.0

    def _set_windows(self, time_scale: float) -> None:
        self.time_scale = time_scale
        widen = (1.0 + self.options.safety) / time_scale
        self._minute = 60.0 * widen
        self._hour = 3600.0 * widen

    @property
    def minute_window(self) -> float:
        """The POSTs-a-minute window in this client's seconds (scaled, widened)."""
        return self._minute

    def adopt(self, hints: ServerHints) -> bool:
        """Take a pbistream server's own settings (its answers say them); True if changed."""
        changed = False
        if hints.time_scale is not None and hints.time_scale != self.time_scale:
            self._set_windows(hints.time_scale)
            changed = True
        if hints.limits is not None and hints.limits != self.enabled:
            self.enabled = hints.limits
            changed = True
        if hints.mode is not None:
            row_limited = hints.mode.lower() != "streaming"
            changed |= row_limited != self.row_limited
            self.row_limited = row_limited
        return changed

    @property
    def large(self) -> bool:
        """The table holds enough rows for the hourly POST limit to apply.

        A push limit: a Streaming-only dataset keeps no table, only a one-hour cache.
        """
        return self.row_limited and self.table_rows >= self.options.large_table_rows

    @property
    def plan_large(self) -> bool:
        """Plan as for a large table: it is one, or the producer makes it one within the hour.

        POSTs spent before the table reaches 250,000 rows still count in the hour after,
        so a producer that will get there must already spend them as if it were there.
        """
        limit = self.options.large_table_rows
        return self.large or (
            self.row_limited and self.table_rows + self.inflow * self._hour >= limit
        )

    def _prune(self, now: float) -> None:
        horizon = now - self._hour
        if self._posts and self._posts[0] <= horizon:
            del self._posts[: bisect.bisect_right(self._posts, horizon)]
        rows = self._rows
        while rows and rows[0][0] <= horizon:
            self._rows_in_hour -= rows.popleft()[1]

    def _posts_delay(self, now: float, limit: int, window: float) -> float:
        posts = self._posts
        in_window = len(posts) - bisect.bisect_right(posts, now - window)
        if in_window < limit:
            return 0.0
        # The oldest of the last `limit` posts must leave the window first.
        return posts[len(posts) - limit] + window - now

    def rows_available(self, now: float) -> int:
        """Rows that may be sent now without passing the hourly row limit."""
        if not self.enabled or not self.row_limited:
            return 1 << 62
        self._prune(now)
        return max(0, self.options.rows_per_hour - self._rows_in_hour)

    def holding(self, now: float, rows: int = 1) -> tuple[float, str]:
        """Seconds until a POST of ``rows`` rows is allowed, and the limit that holds it."""
        options = self.options
        if not self.enabled:
            return 0.0, ""
        self._prune(now)
        wait, name = (
            self._posts_delay(now, options.posts_per_minute, self._minute),
            (f"{options.posts_per_minute} POSTs a minute"),
        )
        if self.large:
            hourly = self._posts_delay(now, options.posts_per_hour_large_table, self._hour)
            if hourly > wait:
                wait, name = (
                    hourly,
                    (
                        f"{options.posts_per_hour_large_table} POSTs an hour "
                        f"(the table holds {options.large_table_rows:,}+ rows)"
                    ),
                )
        excess = self._rows_in_hour + rows - options.rows_per_hour if self.row_limited else 0
        if excess > 0:
            freed = 0
            for sent_at, count in self._rows:
                freed += count
                if freed >= excess:
                    if sent_at + self._hour - now > wait:
                        wait, name = (
                            sent_at + self._hour - now,
                            (f"{options.rows_per_hour:,} rows an hour"),
                        )
                    break
        return max(0.0, wait), name if wait > 0 else ""

    def delay(self, now: float, rows: int = 1) -> float:
        """Seconds until a POST of ``rows`` rows is allowed (0.0: now)."""
        return self.holding(now, rows)[0]

    def floor_rows(self, cap: int) -> int:
        """The fewest rows a POST should carry when the row quota holds a batch back.

        Rows an hour divided by the POSTs the hour allows: smaller POSTs would run out
        of POSTs before the row quota is used (8,334 rows once the hourly POST limit
        applies; 139 before, which never binds).
        """
        if not self.enabled or not self.row_limited:
            return cap
        options = self.options
        posts = (
            options.posts_per_hour_large_table if self.plan_large else options.posts_per_minute * 60
        )
        return max(1, min(cap, -(-options.rows_per_hour // posts)))

    def spacing(self) -> float:
        """The even gap between POSTs that the binding POST limit sustains.

        A batch that is not full waits at least this long after the previous POST, so a
        slow producer spends POSTs at the rate they come back instead of in a burst that
        leaves it without any (30 s once a table holds 250,000 rows; 0.5 s before).
        """
        if not self.enabled:
            return 0.0
        options = self.options
        if self.plan_large:
            return self._hour / options.posts_per_hour_large_table
        return self._minute / options.posts_per_minute

    def last_post(self) -> float | None:
        """When the latest POST was answered (or sent), if within the hour."""
        return self._posts[-1] if self._posts else None

    def eta(self, now: float, rows: int, per_post: int) -> float:
        """A plan's estimate of the seconds the limits need to let ``rows`` rows through."""
        if not self.enabled or rows <= 0:
            return 0.0
        options = self.options
        self._prune(now)
        posts = -(-rows // max(1, per_post))
        seconds = 0.0
        if self.large:
            seconds = max(seconds, posts * self._hour / options.posts_per_hour_large_table)
        else:
            seconds = max(seconds, posts * self._minute / options.posts_per_minute)
        if self.row_limited:
            beyond = rows - self.rows_available(now)
            if beyond > 0:
                seconds = max(seconds, beyond * self._hour / options.rows_per_hour)
        return seconds

    def record(self, now: float, rows: int) -> None:
        """Count a POST of ``rows`` rows sent at ``now``."""
        self._posts.append(now)
        self._rows.append((now, rows))
        self._rows_in_hour += rows

    def completed(self, now: float) -> None:
        """Move the latest POST's time to ``now``, when its answer (or failure) came.

        The server counts a request at some moment between our send and its answer. By
        dating each request at its answer and each new one at its send, the gap we keep
        between them is never shorter than the server sees, however slow the network.
        """
        if self._posts:
            self._posts[-1] = max(self._posts[-1], now)
        if self._rows:
            sent_at, rows = self._rows[-1]
            self._rows[-1] = (max(sent_at, now), rows)

    def uncount_rows(self, rows: int) -> None:
        """The latest POST's rows were not stored (skipped as old): they take no quota."""
        if self._rows:
            sent_at, counted = self._rows[-1]
            taken = min(rows, counted)
            self._rows[-1] = (sent_at, counted - taken)
            self._rows_in_hour -= taken


@dataclass(slots=True)
class _RetryState:
    next_attempt_at: float = 0.0
    last_delay: float = 0.0


class Engine:
    """Batching, pacing and retry decisions for one target.

    Args:
        batch: When a batch is due (rows, linger time).
        pacing: The rate limits to stay within.
        retry: The backoff policy.
        rng: The source of jitter (inject a seeded one in tests).
        table_rows: The table's row count when known, for the large-table limit.
        sequence: The sequence numbers of this target (to jump past a server's last).
    """

    def __init__(
        self,
        *,
        batch: BatchOptions,
        pacing: PacingOptions,
        retry: RetryOptions,
        rng: random.Random | None = None,
        table_rows: int = 0,
        sequence: SequenceCounter | None = None,
    ) -> None:
        self.batch_options = batch
        self.retry_options = retry
        self.pacer = Pacer(pacing, table_rows=table_rows)
        self.sequence = sequence or SequenceCounter()
        #: Rows that fit one body, as the driver measures them (``None``: ``max_rows``).
        self.body_rows: int | None = None
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._current: Batch | None = None
        self._retry = _RetryState()
        self._taken = 0  # rows started in batches, to measure the producer's rate
        self._arrivals: deque[tuple[float, int]] = deque()  # (now, rows arrived so far)

    @property
    def current(self) -> Batch | None:
        """The batch being sent or awaiting a retry, if any."""
        return self._current

    def cap(self) -> int:
        """The most rows one POST can carry (the row limit and, once measured, the bytes)."""
        max_rows = self.batch_options.max_rows
        return max_rows if self.body_rows is None else max(1, min(max_rows, self.body_rows))

    def holding(self, now: float, buffered: int) -> tuple[float, str]:
        """Seconds until the next POST may go and the limit that holds it (for reports)."""
        if self._current is not None and now < self._retry.next_attempt_at:
            return self._retry.next_attempt_at - now, "a retry's backoff"
        rows = self._current.rows if self._current is not None else min(buffered, self.cap())
        return self.pacer.holding(now, max(1, rows))

    def poll(
        self, now: float, *, buffered: int, oldest_at: float | None, flushing: bool = False
    ) -> Action:
        """Decide the next step.

        Args:
            now: The driver's monotonic clock, in seconds.
            buffered: Rows waiting in the buffer or spool (not counting the current batch).
            oldest_at: When the oldest of them arrived (``now`` if unknown).
            flushing: A flush or close is waiting: send what is buffered without lingering.
        """
        current = self._current
        pacer = self.pacer
        self._measure_inflow(now, self._taken + buffered)
        if current is not None:
            if now < self._retry.next_attempt_at:
                return Wait(self._retry.next_attempt_at - now)
            wait = pacer.delay(now, current.rows)
            if wait > 0:
                return Wait(wait)
            if current.first_attempt_at is None:
                current.first_attempt_at = now
            current.attempts += 1
            pacer.record(now, current.rows)
            return Send(current)
        if buffered <= 0:
            return Wait(math.inf)
        cap = self.cap()
        want = min(buffered, cap)
        if want < cap and not flushing:
            # Not a full batch: it is due after the linger time, and not before the POST
            # limit's even spacing (so a slow producer cannot spend every POST at once).
            due = (now if oldest_at is None else oldest_at) + self.batch_options.max_delay
            last = pacer.last_post()
            if last is not None:
                due = max(due, last + pacer.spacing())
            if now < due:
                return Wait(due - now)
        wait = pacer.delay(now, want)
        if wait <= 0:
            return Take(self.batch_options.max_rows)
        # The row quota may allow a smaller batch now, if it is large enough not to
        # waste a POST that a later, larger batch needs.
        floor = min(want, pacer.floor_rows(cap))
        if floor < want and pacer.delay(now, floor) <= 0:
            return Take(max(floor, min(cap, pacer.rows_available(now))))
        return Wait(pacer.delay(now, floor) if floor < want else wait)

    def _measure_inflow(self, now: float, arrived: int) -> None:
        """The producer's rate over the last (scaled) minute, sampled 60 times in it."""
        samples = self.pacer.minute_window
        arrivals = self._arrivals
        if arrivals and now - arrivals[-1][0] < samples / 60:
            return
        arrivals.append((now, arrived))
        while len(arrivals) > 2 and now - arrivals[1][0] >= samples:
            arrivals.popleft()
        first_at, first = arrivals[0]
        if now > first_at:
            self.pacer.inflow = max(0.0, (arrived - first) / (now - first_at))

    def start(self, batch: Batch) -> None:
        """Make ``batch`` (built after a :class:`Take`) the current one.

        Raises:
            RuntimeError: A batch is already current (a driver bug).
        """
        if self._current is not None:
            raise RuntimeError("a batch is already in flight")
        self._current = batch
        self._retry = _RetryState()
        self._taken += batch.rows

    def on_response(self, now: float, outcome: Outcome) -> tuple[Verdict, float]:
        """Settle the current batch after a send.

        Returns:
            The verdict and, for :attr:`Verdict.RETRY`, the seconds until the next attempt.

        Raises:
            RuntimeError: No batch is current (a driver bug).
        """
        batch = self._current
        if batch is None:
            raise RuntimeError("no batch in flight")
        self.pacer.completed(now)
        if outcome.hints is not None:
            self.pacer.adopt(outcome.hints)
        status = outcome.status
        if status is not None and 200 <= status < 300:
            if outcome.ignored and outcome.sequence_last is not None:
                self.pacer.uncount_rows(outcome.ignored)
                if self._fell_behind(batch, outcome.sequence_last):
                    # Never stored: our numbers are below the table's. Resend above them,
                    # by a random spread: producers skipped at one table number must not
                    # all jump to the same next one, or a lost answer to one of them could
                    # not be told from another's store of that number.
                    spread = self._rng.randrange(JUMP_SPREAD)
                    batch.seq = self.sequence.jump_past(outcome.sequence_last + spread)
                    batch.fresh = True
                    # The resend is the first send under the new number: if it is skipped
                    # too, another producer took that number and ours was never stored.
                    batch.attempts = 0
                    self._retry.next_attempt_at = now
                    return Verdict.RESEQUENCED, 0.0
                # A retry of a request the server had stored: a real duplicate, delivered.
            self._current = None
            self.pacer.table_rows += batch.rows - min(batch.rows, outcome.ignored)
            return Verdict.DELIVERED, 0.0
        options = self.retry_options
        auth_wait = options.retry_auth and status in (401, 403)
        if not is_retryable(status) and not auth_wait:
            self._current = None
            return Verdict.REJECTED, 0.0
        elapsed = now - (batch.first_attempt_at if batch.first_attempt_at is not None else now)
        if (options.max_attempts is not None and batch.attempts >= options.max_attempts) or (
            options.max_elapsed is not None and elapsed >= options.max_elapsed
        ):
            self._current = None
            return Verdict.GAVE_UP, 0.0
        cap = min(options.max_backoff, options.backoff_base * 2.0 ** (batch.attempts - 1))
        delay = self._rng.uniform(0.0, cap)
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        self._retry.next_attempt_at = now + delay
        self._retry.last_delay = delay
        return Verdict.RETRY, delay

    def _fell_behind(self, batch: Batch, table_last: int) -> bool:
        """Whether a batch the server skipped as old was in fact never stored.

        Its first send under a number this client drew cannot be a duplicate; nor can
        any batch when the table's last number is above every number we drew.
        """
        first_send = batch.fresh and batch.attempts <= 1
        return first_send or table_last > self.sequence.last

    def abandon(self) -> Batch | None:
        """Drop the current batch (the driver is closing); return it so it can be reported."""
        batch, self._current = self._current, None
        return batch
