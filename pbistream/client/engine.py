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
    "Batch",
    "Engine",
    "Outcome",
    "Pacer",
    "Send",
    "SequenceCounter",
    "Take",
    "Verdict",
    "Wait",
]


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
    """

    status: int | None
    retry_after: float | None = None
    message: str = ""


class Verdict(enum.Enum):
    """What the driver must do with the batch after :meth:`Engine.on_response`."""

    DELIVERED = "delivered"  # acknowledge its rows (spool: DONE)
    RETRY = "retry"  # keep it; poll() will send it again after the backoff
    REJECTED = "rejected"  # the server refused it: dead letter, never resend
    GAVE_UP = "gave_up"  # retries exhausted (RetryOptions): dead letter


def is_retryable(status: int | None) -> bool:
    """Network errors, 408, 429 and 5xx are worth retrying; other answers are final."""
    return status is None or status in (408, 429) or status >= 500


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


class Pacer:
    """Keeps this client inside Power BI's request and row rates.

    It logs its own POSTs and rows and allows a new POST only when every sliding
    window still has room, which is stricter than both fixed and sliding counting on
    the server. Each POST is dated by its answer (see :meth:`completed`), so network
    delays cannot squeeze more requests into the server's window than ours. Windows
    are scaled by ``time_scale`` and widened by ``safety``.
    """

    def __init__(self, options: PacingOptions, *, table_rows: int = 0) -> None:
        self.options = options
        widen = (1.0 + options.safety) / options.time_scale
        self._minute = 60.0 * widen
        self._hour = 3600.0 * widen
        self._posts: list[float] = []  # send times within the last hour, ascending
        self._rows: deque[tuple[float, int]] = deque()  # (send time, rows) within the hour
        self._rows_in_hour = 0
        #: Rows the table holds as far as we know (for the large-table hourly limit).
        self.table_rows = table_rows

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
        if not self.options.enabled:
            return 1 << 62
        self._prune(now)
        return max(0, self.options.rows_per_hour - self._rows_in_hour)

    def delay(self, now: float, rows: int = 1) -> float:
        """Seconds until a POST of ``rows`` rows is allowed (0.0: now)."""
        options = self.options
        if not options.enabled:
            return 0.0
        self._prune(now)
        wait = self._posts_delay(now, options.posts_per_minute, self._minute)
        if self.table_rows >= options.large_table_rows:
            wait = max(wait, self._posts_delay(now, options.posts_per_hour_large_table, self._hour))
        excess = self._rows_in_hour + rows - options.rows_per_hour
        if excess > 0:
            freed = 0
            for sent_at, count in self._rows:
                freed += count
                if freed >= excess:
                    wait = max(wait, sent_at + self._hour - now)
                    break
        return max(0.0, wait)

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
    """

    def __init__(
        self,
        *,
        batch: BatchOptions,
        pacing: PacingOptions,
        retry: RetryOptions,
        rng: random.Random | None = None,
        table_rows: int = 0,
    ) -> None:
        self.batch_options = batch
        self.retry_options = retry
        self.pacer = Pacer(pacing, table_rows=table_rows)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._current: Batch | None = None
        self._retry = _RetryState()

    @property
    def current(self) -> Batch | None:
        """The batch being sent or awaiting a retry, if any."""
        return self._current

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
        if current is not None:
            if now < self._retry.next_attempt_at:
                return Wait(self._retry.next_attempt_at - now)
            wait = self.pacer.delay(now, current.rows)
            if wait > 0:
                return Wait(wait)
            if current.first_attempt_at is None:
                current.first_attempt_at = now
            current.attempts += 1
            self.pacer.record(now, current.rows)
            return Send(current)
        if buffered <= 0:
            return Wait(math.inf)
        max_rows = self.batch_options.max_rows
        if buffered < max_rows and not flushing:
            due = (now if oldest_at is None else oldest_at) + self.batch_options.max_delay
            if now < due:
                return Wait(due - now)
        wait = self.pacer.delay(now, min(buffered, max_rows))
        if wait > 0:
            # The row quota may allow a smaller batch right away.
            available = self.pacer.rows_available(now)
            if available > 0 and self.pacer.delay(now, available) == 0:
                return Take(min(max_rows, available))
            return Wait(wait)
        return Take(max_rows)

    def start(self, batch: Batch) -> None:
        """Make ``batch`` (built after a :class:`Take`) the current one.

        Raises:
            RuntimeError: A batch is already current (a driver bug).
        """
        if self._current is not None:
            raise RuntimeError("a batch is already in flight")
        self._current = batch
        self._retry = _RetryState()

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
        status = outcome.status
        if status is not None and 200 <= status < 300:
            self._current = None
            self.pacer.table_rows += batch.rows
            return Verdict.DELIVERED, 0.0
        if not is_retryable(status):
            self._current = None
            return Verdict.REJECTED, 0.0
        options = self.retry_options
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

    def abandon(self) -> Batch | None:
        """Drop the current batch (the driver is closing); return it so it can be reported."""
        batch, self._current = self._current, None
        return batch
