"""Enforcement of the documented Power BI push limits, per dataset.

Reads its numbers from :class:`~pbistream.server.settings.Settings` (whose defaults
are :mod:`pbistream.limits`). Rates use sliding windows, so ``Retry-After`` is the
real time until the oldest counted request (or enough counted rows) leaves the
window; windows are divided by ``time_scale``. The clock is injected for tests.

All methods run on the event loop thread (no locks needed): ``admit`` before the
body is read, ``reserve_rows`` once the row count is known, ``release`` at the end.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pbistream import limits
from pbistream.server.errors import InvalidRequest, TooManyRequests
from pbistream.server.settings import Settings

__all__ = ["Throttle"]

_REQUESTS_MESSAGE = (
    "You have exceeded the amount of requests allowed in the current time frame and "
    "further requests will fail."
)
_ROWS_MESSAGE = (
    "You are over your rows per hour limit for this dataset. To push more rows per hour, "
    "upgrade your account to Power BI Pro or retry your push later."
)


@dataclass(slots=True)
class _DatasetState:
    posts: deque[float] = field(default_factory=deque)  # admission times, last hour
    rows: deque[tuple[float, int]] = field(default_factory=deque)  # (time, rows), last hour
    rows_in_window: int = 0
    pending: int = 0
    row_counts: dict[str, int] = field(default_factory=dict)  # table -> rows held (cached)


class Throttle:
    """Counts requests and rows per dataset and refuses what the limits forbid.

    Args:
        settings: The limit values, ``limits`` on/off and ``time_scale``.
        clock: Monotonic seconds (injectable).
        on_throttled: Called with the reason of each 429 (for /metrics).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_throttled: Callable[[str], object] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.on_throttled = on_throttled
        self._datasets: dict[str, _DatasetState] = {}
        self._minute = settings.scaled(limits.POSTS_PER_MINUTE.window_seconds or 60.0)
        self._hour = settings.scaled(limits.ROWS_PER_HOUR.window_seconds or 3600.0)

    def _state(self, dataset_id: str) -> _DatasetState:
        state = self._datasets.get(dataset_id)
        if state is None:
            state = self._datasets[dataset_id] = _DatasetState()
        return state

    def _refuse(self, message: str, retry_after: float, reason: str) -> TooManyRequests:
        if self.on_throttled is not None:
            self.on_throttled(reason)
        return TooManyRequests(message, retry_after=retry_after, reason=reason)

    def forget(self, dataset_id: str) -> None:
        """Drop a deleted dataset's counters."""
        self._datasets.pop(dataset_id, None)

    # --- requests -------------------------------------------------------------------
    def admit(self, dataset_id: str, *, large_table: bool) -> None:
        """Count one POST rows request, or refuse it (429) when a rate or pending limit is hit.

        Args:
            dataset_id: The dataset posted to.
            large_table: A table of the dataset holds ``large_table_rows`` or more, so the
                hourly request limit applies.

        Raises:
            TooManyRequests: Too many requests in the window, or too many in flight.
        """
        state = self._state(dataset_id)
        if not self.settings.limits:
            state.pending += 1
            return
        s = self.settings
        if state.pending >= s.max_pending_requests:
            raise self._refuse(
                f"{_REQUESTS_MESSAGE} (at most {s.max_pending_requests} POST rows requests "
                "may be pending at once per dataset)",
                1.0,
                "pending",
            )
        now = self.clock()
        posts = state.posts
        while posts and posts[0] <= now - self._hour:
            posts.popleft()
        # The per-minute window: count admissions newer than now - minute.
        in_minute = 0
        for t in reversed(posts):
            if t <= now - self._minute:
                break
            in_minute += 1
        if in_minute >= s.posts_per_minute:
            oldest = posts[len(posts) - in_minute]
            raise self._refuse(
                f"{_REQUESTS_MESSAGE} (at most {s.posts_per_minute} POST rows requests a "
                "minute per dataset)",
                oldest + self._minute - now,
                "posts_per_minute",
            )
        if large_table and len(posts) >= s.posts_per_hour_large_table:
            oldest = posts[len(posts) - s.posts_per_hour_large_table]
            raise self._refuse(
                f"{_REQUESTS_MESSAGE} (a table holds {s.large_table_rows:,} rows or more, so "
                f"at most {s.posts_per_hour_large_table} POST rows requests an hour)",
                oldest + self._hour - now,
                "posts_per_hour_large_table",
            )
        posts.append(now)
        state.pending += 1

    def release(self, dataset_id: str) -> None:
        """The request admitted by :meth:`admit` has finished (whatever its outcome)."""
        state = self._datasets.get(dataset_id)
        if state is not None and state.pending > 0:
            state.pending -= 1

    # --- rows -----------------------------------------------------------------------
    def check_rows_per_post(self, count: int) -> None:
        """Refuse more than ``max_rows_per_post`` rows in one request (400).

        Raises:
            InvalidRequest: Too many rows.
        """
        if self.settings.limits and count > self.settings.max_rows_per_post:
            raise InvalidRequest(
                f"The request holds {count:,} rows; at most "
                f"{self.settings.max_rows_per_post:,} rows are allowed per POST. "
                "Split it into several requests."
            )

    def reserve_rows(
        self, dataset_id: str, count: int, *, hourly: bool = True
    ) -> tuple[float, int] | None:
        """Count ``count`` rows against the hourly quota, or refuse them (429).

        Args:
            dataset_id: The dataset posted to.
            count: Rows in this request.
            hourly: False for Streaming-only datasets, which have no throughput limit (S8).

        Returns:
            The reservation, to hand :meth:`unreserve_rows` if the rows are not stored.

        Raises:
            TooManyRequests: The rows would pass ``rows_per_hour`` in the sliding hour.
        """
        if not self.settings.limits or not hourly or count == 0:
            return None
        state = self._state(dataset_id)
        now = self.clock()
        rows = state.rows
        while rows and rows[0][0] <= now - self._hour:
            state.rows_in_window -= rows.popleft()[1]
        limit = self.settings.rows_per_hour
        if state.rows_in_window + count > limit:
            # Walk forward until enough rows leave the window for this request to fit.
            freed = state.rows_in_window
            retry_at = now + self._hour
            for t, n in rows:
                freed -= n
                if freed + count <= limit:
                    retry_at = t + self._hour
                    break
            raise self._refuse(_ROWS_MESSAGE, retry_at - now, "rows_per_hour")
        reservation = (now, count)
        rows.append(reservation)
        state.rows_in_window += count
        return reservation

    def unreserve_rows(self, dataset_id: str, reservation: tuple[float, int] | None) -> None:
        """Give back rows reserved for a request that was then refused or was a duplicate."""
        state = self._datasets.get(dataset_id)
        if state is None or reservation is None:
            return
        try:
            state.rows.remove(reservation)
        except ValueError:
            return  # already left the window
        state.rows_in_window -= reservation[1]

    # --- table sizes ----------------------------------------------------------------
    def known_row_count(self, dataset_id: str, table: str) -> int | None:
        """The last row count seen for a table, if any."""
        state = self._datasets.get(dataset_id)
        return None if state is None else state.row_counts.get(table)

    def set_row_count(self, dataset_id: str, table: str, count: int) -> None:
        """Remember a table's row count (after an insert, a delete or a first look)."""
        self._state(dataset_id).row_counts[table] = count

    def is_large(self, dataset_id: str) -> bool:
        """True once any table of the dataset holds ``large_table_rows`` or more."""
        state = self._datasets.get(dataset_id)
        if state is None:
            return False
        return any(n >= self.settings.large_table_rows for n in state.row_counts.values())

    def check_capacity(self, table: str, held: int, count: int) -> None:
        """Refuse rows that would take a retention-None table past its maximum.

        Raises:
            InvalidRequest: The table would pass ``none_retention_max_rows``.
        """
        cap = self.settings.none_retention_max_rows
        if self.settings.limits and held + count > cap:
            raise InvalidRequest(
                f"Table {table!r} holds {held:,} rows; with retention None a table keeps at "
                f"most {cap:,}. Delete its rows or create the dataset with "
                "?defaultRetentionPolicy=basicFIFO."
            )
