"""Enforcement of the documented Power BI push limits, per dataset.

Reads its numbers from :class:`~pbistream.server.settings.Settings` (whose defaults
are :mod:`pbistream.limits`). Rates use sliding windows, so ``Retry-After`` is the
real time until the oldest counted request (or enough counted rows) leaves the
window; windows are divided by ``time_scale``. The clock is injected for tests.

All methods run on the event loop thread (no locks needed): ``admit`` before the
body is read, ``reserve_rows`` once the row count is known, ``release`` at the end.

Several replicas on one database must share one dataset's limits, or N replicas
would allow N times them. When the storage has the
:class:`~pbistream.storage.base.SharedLimits` capability (PostgreSQL), the request
windows, pending requests and the hourly rows are counted there instead, on the
database's clock, in one short transaction per check (a millisecond or so on the
event loop, once per POST). Should the database fail a check, the replica counts
locally (and says so in the log) rather than refuse or drop the request.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pbistream import limits
from pbistream.redact import redact_text
from pbistream.server.errors import InvalidRequest, TooManyRequests
from pbistream.server.settings import Settings
from pbistream.storage.base import SharedLimits

__all__ = ["PENDING_TTL_SECONDS", "RowReservation", "Throttle"]

logger = logging.getLogger("pbistream.server")

#: A pending request still counted in the database after this long (its replica died
#: before releasing it) stops counting. Real seconds: a slow upload is not scaled.
PENDING_TTL_SECONDS = 300.0

_REQUESTS_MESSAGE = (
    "You have exceeded the amount of requests allowed in the current time frame and "
    "further requests will fail."
)
_ROWS_MESSAGE = (
    "You are over your rows per hour limit for this dataset. To push more rows per hour, "
    "upgrade your account to Power BI Pro or retry your push later."
)


@dataclass(eq=False, slots=True)
class RowReservation:
    """Rows counted against the hourly quota; hand it back to give them back.

    Attributes:
        at: When they were counted (the throttle's clock).
        count: How many rows.
        ticket: Their event in the shared database, when limits are shared.
    """

    at: float
    count: int
    ticket: int | None = None


@dataclass(slots=True)
class _DatasetState:
    posts: deque[float] = field(default_factory=deque)  # admission times, last hour
    rows: deque[RowReservation] = field(default_factory=deque)  # last hour, oldest first
    rows_in_window: int = 0
    pending: int = 0
    tickets: list[int] = field(default_factory=list)  # shared pending requests held here
    row_counts: dict[str, int] = field(default_factory=dict)  # table -> rows held (cached)


class Throttle:
    """Counts requests and rows per dataset and refuses what the limits forbid.

    Args:
        settings: The limit values, ``limits`` on/off and ``time_scale``.
        clock: Monotonic seconds (injectable).
        on_throttled: Called with the reason of each 429 (for /metrics).
        storage: The server's storage; when it has the ``SharedLimits`` capability,
            requests and rows are counted there, for every replica at once.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_throttled: Callable[[str], object] | None = None,
        storage: object | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.on_throttled = on_throttled
        self.shared: SharedLimits | None = storage if isinstance(storage, SharedLimits) else None
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

    def _refusal(self, reason: str, retry_after: float) -> TooManyRequests:
        """The 429 for a request limit, its message naming the limit."""
        s = self.settings
        if reason == "pending":
            detail = (
                f"at most {s.max_pending_requests} POST rows requests may be pending at once "
                "per dataset"
            )
        elif reason == "posts_per_minute":
            detail = f"at most {s.posts_per_minute} POST rows requests a minute per dataset"
        elif reason == "posts_per_hour_large_table":
            detail = (
                f"a table holds {s.large_table_rows:,} rows or more, so at most "
                f"{s.posts_per_hour_large_table} POST rows requests an hour"
            )
        else:
            return self._refuse(_ROWS_MESSAGE, retry_after, reason)
        return self._refuse(f"{_REQUESTS_MESSAGE} ({detail})", retry_after, reason)

    def _shared_failed(self, what: str, exc: Exception) -> None:
        logger.warning(
            "shared limits: %s failed in the database (%s); counting on this replica only",
            what,
            redact_text(type(exc).__name__ + ": " + (str(exc).splitlines() or [""])[0]),
        )

    def forget(self, dataset_id: str) -> None:
        """Drop a deleted dataset's counters."""
        self._datasets.pop(dataset_id, None)
        if self.shared is not None:
            try:
                self.shared.limits_forget(dataset_id)
            except Exception as exc:  # old events expire by themselves anyway
                self._shared_failed("forget", exc)

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
        if self.shared is not None:
            try:
                answer = self.shared.limits_admit(
                    dataset_id,
                    minute=self._minute,
                    hour=self._hour,
                    posts_per_minute=s.posts_per_minute,
                    posts_per_hour=s.posts_per_hour_large_table if large_table else None,
                    max_pending=s.max_pending_requests,
                    pending_ttl=PENDING_TTL_SECONDS,
                )
            except Exception as exc:
                self._shared_failed("admit", exc)
            else:
                if answer.ticket is None:
                    raise self._refusal(answer.reason or "pending", answer.retry_after)
                state.tickets.append(answer.ticket)
                state.pending += 1
                return
        if state.pending >= s.max_pending_requests:
            raise self._refusal("pending", 1.0)
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
            raise self._refusal("posts_per_minute", oldest + self._minute - now)
        if large_table and len(posts) >= s.posts_per_hour_large_table:
            oldest = posts[len(posts) - s.posts_per_hour_large_table]
            raise self._refusal("posts_per_hour_large_table", oldest + self._hour - now)
        posts.append(now)
        state.pending += 1

    def release(self, dataset_id: str) -> None:
        """The request admitted by :meth:`admit` has finished (whatever its outcome)."""
        state = self._datasets.get(dataset_id)
        if state is not None and state.pending > 0:
            state.pending -= 1
        if state is not None and state.tickets and self.shared is not None:
            # Any of this replica's tickets will do: they differ only by their expiry.
            ticket = state.tickets.pop(0)
            try:
                self.shared.limits_release(ticket)
            except Exception as exc:  # it expires after PENDING_TTL_SECONDS anyway
                self._shared_failed("release", exc)

    # --- rows -----------------------------------------------------------------------
    def check_rows_per_post(self, count: int, *, more_than: bool = False) -> None:
        """Refuse more than ``max_rows_per_post`` rows in one request (400).

        Args:
            count: Rows in the request.
            more_than: ``count`` is a lower bound (a scan that stopped early): the
                message says "more than ``count - 1``".

        Raises:
            InvalidRequest: Too many rows.
        """
        if self.settings.limits and count > self.settings.max_rows_per_post:
            held = f"more than {count - 1:,}" if more_than else f"{count:,}"
            refused = InvalidRequest(
                f"The request holds {held} rows; at most "
                f"{self.settings.max_rows_per_post:,} rows are allowed per POST. "
                "Split it into several requests."
            )
            refused.status = self.settings.rows_per_post_status  # 400, or 413 (§7.1)
            raise refused

    def reserve_rows(
        self, dataset_id: str, count: int, *, hourly: bool = True
    ) -> RowReservation | None:
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
        limit = self.settings.rows_per_hour
        if self.shared is not None:
            try:
                answer = self.shared.limits_reserve_rows(
                    dataset_id, count, hour=self._hour, limit=limit
                )
            except Exception as exc:
                self._shared_failed("reserve rows", exc)
            else:
                if answer.ticket is None:
                    raise self._refusal("rows_per_hour", answer.retry_after)
                return RowReservation(now, count, answer.ticket)
        rows = state.rows
        while rows and rows[0].at <= now - self._hour:
            state.rows_in_window -= rows.popleft().count
        if state.rows_in_window + count > limit:
            # Walk forward until enough rows leave the window for this request to fit.
            freed = state.rows_in_window
            retry_at = now + self._hour
            for held in rows:
                freed -= held.count
                if freed + count <= limit:
                    retry_at = held.at + self._hour
                    break
            raise self._refusal("rows_per_hour", retry_at - now)
        reservation = RowReservation(now, count)
        rows.append(reservation)
        state.rows_in_window += count
        return reservation

    def unreserve_rows(self, dataset_id: str, reservation: RowReservation | None) -> None:
        """Give back rows reserved for a request that was then refused or was a duplicate."""
        if reservation is not None and reservation.ticket is not None:
            if self.shared is not None:
                try:
                    self.shared.limits_unreserve_rows(reservation.ticket)
                except Exception as exc:  # counted until it leaves the hour: stricter, not laxer
                    self._shared_failed("unreserve rows", exc)
            return
        state = self._datasets.get(dataset_id)
        if state is None or reservation is None:
            return
        try:
            state.rows.remove(reservation)
        except ValueError:
            return  # already left the window
        state.rows_in_window -= reservation.count

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
