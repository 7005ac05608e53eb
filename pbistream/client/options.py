"""The client's configuration: small keyword-only value objects, seconds as floats.

Every option has a safe default, so ``Client(url)`` is already correct for Power BI:
batches within the documented limits, paced so that no 429 is ever provoked, retried
with capped, jittered backoff. Pass an object to change one group of settings::

    Client(url, batch=BatchOptions(max_rows=500, max_delay=0.2))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pbistream.exceptions import ConfigError
from pbistream.limits import (
    LARGE_TABLE_ROWS,
    MAX_PENDING_REQUESTS,
    MAX_ROWS_PER_POST,
    POSTS_PER_HOUR_LARGE_TABLE,
    POSTS_PER_MINUTE,
    ROWS_PER_HOUR,
)

__all__ = ["BatchOptions", "BufferOptions", "PacingOptions", "RetryOptions"]


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOptions:
    """How rows are grouped into POST requests.

    Attributes:
        max_rows: Rows per request, at most Power BI's 10,000.
        max_delay: Seconds a row may wait for companions before its batch is sent
            (the linger time). While the pacer holds requests back, batches grow.
        max_body_bytes: Bytes per request body. ``None`` picks the documented limit
            for the target: 15 KB for a Push URL (a Streaming dataset refuses more),
            16 MB for the REST API.
    """

    max_rows: int = MAX_ROWS_PER_POST.value
    max_delay: float = 0.5
    max_body_bytes: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_rows <= MAX_ROWS_PER_POST.value:
            raise ConfigError(
                f"max_rows must be between 1 and {MAX_ROWS_PER_POST.value:,}, got {self.max_rows}"
            )
        _positive("max_delay", self.max_delay, allow_zero=True)
        _positive("max_body_bytes", self.max_body_bytes)


@dataclass(frozen=True, slots=True, kw_only=True)
class PacingOptions:
    """Client-side rate limits, read from :mod:`pbistream.limits` by default.

    The pacer keeps a log of its own requests and rows over sliding windows, so it
    stays inside the limits however the server counts (fixed or sliding windows).

    Attributes:
        enabled: ``False`` sends as fast as the server answers (self-hosted, limits off).
        posts_per_minute: POST rows requests per minute per dataset.
        posts_per_hour_large_table: POSTs per hour once the table holds
            ``large_table_rows`` rows (counted from what this client delivered, plus the
            table's row count when the server reports it).
        large_table_rows: The table size from which the hourly POST limit applies.
        rows_per_hour: Rows per hour per dataset.
        time_scale: Divides every window (minute, hour); match the server's
            ``--time-scale`` in tests and benchmarks.
        safety: Fraction added to each window: a margin for clock differences (network
            delays are covered already: each POST is dated by its answer).
    """

    enabled: bool = True
    posts_per_minute: int = POSTS_PER_MINUTE.value
    posts_per_hour_large_table: int = POSTS_PER_HOUR_LARGE_TABLE.value
    large_table_rows: int = LARGE_TABLE_ROWS.value
    rows_per_hour: int = ROWS_PER_HOUR.value
    time_scale: float = 1.0
    safety: float = 0.01

    def __post_init__(self) -> None:
        for name in ("posts_per_minute", "posts_per_hour_large_table", "rows_per_hour"):
            _positive(name, getattr(self, name))
        _positive("time_scale", self.time_scale)
        _positive("safety", self.safety, allow_zero=True)

    @property
    def max_pending(self) -> int:
        """Power BI's cap on requests in flight; the client sends one at a time, below it."""
        return MAX_PENDING_REQUESTS.value


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryOptions:
    """Exponential backoff with full jitter, on network errors, 429 and 5xx.

    The n-th retry waits a random time in ``[0, min(max_backoff, backoff_base * 2**n)]``
    (AWS's "full jitter"); a 429's ``Retry-After`` is honoured when it asks for longer.
    With the defaults the waits are at most 0.5, 1, 2, 4, 8, 16, 30, 30, ... seconds.
    A 4xx other than 408 and 429 is never retried: its rows go to the dead letter.

    Attributes:
        backoff_base: Seconds; the cap of the first wait.
        max_backoff: Seconds; no wait is longer, except a longer ``Retry-After``.
        max_attempts: Attempts per batch before giving up, or ``None`` for no limit.
        max_elapsed: Seconds from a batch's first attempt before giving up, or ``None``.
            A batch given up goes to the dead letter (and stays in the spool as FAILED).
    """

    backoff_base: float = 0.5
    max_backoff: float = 30.0
    max_attempts: int | None = None
    max_elapsed: float | None = None
    #: Retry a 401 or 403 too, instead of dead-lettering the batch: for relays and
    #: bridges, whose rows were already acknowledged at their entry and must wait for a
    #: renewed or corrected credential rather than be given up.
    retry_auth: bool = False

    def __post_init__(self) -> None:
        _positive("backoff_base", self.backoff_base)
        _positive("max_backoff", self.max_backoff)
        _positive("max_attempts", self.max_attempts)
        _positive("max_elapsed", self.max_elapsed)


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferOptions:
    """The in-memory buffer used without a spool: bounded, with a policy when full.

    Attributes:
        max_rows: Rows held in memory awaiting delivery.
        when_full: ``"block"`` makes ``push()`` wait up to ``timeout`` seconds for room,
            then raise :class:`~pbistream.BufferFullError`; ``"drop_oldest"`` discards
            the oldest rows, counts them in ``stats.dropped`` and logs a warning.
        timeout: Seconds ``push()`` may block with ``when_full="block"``.
    """

    max_rows: int = 1_000_000
    when_full: Literal["block", "drop_oldest"] = "block"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        _positive("max_rows", self.max_rows)
        _positive("timeout", self.timeout, allow_zero=True)
        if self.when_full not in ("block", "drop_oldest"):
            raise ConfigError(f"when_full must be 'block' or 'drop_oldest', got {self.when_full!r}")
