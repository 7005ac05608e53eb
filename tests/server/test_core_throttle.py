"""The throttle's sliding windows on an injected clock: exact Retry-After values, no sleeping."""

from __future__ import annotations

import pytest

from pbistream.server.errors import InvalidRequest, TooManyRequests
from pbistream.server.settings import Settings
from pbistream.server.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**overrides: object) -> tuple[Throttle, Clock, list[str]]:
    clock = Clock()
    reasons: list[str] = []
    throttle = Throttle(Settings(**overrides), clock=clock, on_throttled=reasons.append)  # type: ignore[arg-type]
    return throttle, clock, reasons


def admit(throttle: Throttle, dataset: str = "d", *, large: bool = False) -> None:
    throttle.admit(dataset, large_table=large)
    throttle.release(dataset)


def test_posts_per_minute_retry_after_is_the_oldest_leaving_the_window() -> None:
    throttle, clock, reasons = make(posts_per_minute=3)
    for _ in range(3):
        admit(throttle)
        clock.now += 10  # admitted at 1000, 1010, 1020
    with pytest.raises(TooManyRequests) as refused:
        admit(throttle)
    assert refused.value.retry_after == 30  # 1000 + 60 - 1030
    assert refused.value.headers == {"Retry-After": "30"}
    assert reasons == ["posts_per_minute"]
    clock.now = 1060.0
    admit(throttle)  # the first one left the window
    admit(throttle, "other")  # and other datasets never shared it


def test_time_scale_shrinks_the_window_and_rounds_retry_after_up() -> None:
    throttle, clock, _ = make(posts_per_minute=1, time_scale=60)
    admit(throttle)
    clock.now += 0.25
    with pytest.raises(TooManyRequests) as refused:
        admit(throttle)
    assert refused.value.retry_after == 1  # 0.75 s, rounded up to a whole second
    clock.now += 0.76
    admit(throttle)


def test_pending_limit_counts_requests_in_flight() -> None:
    throttle, _, reasons = make(max_pending_requests=2)
    throttle.admit("d", large_table=False)
    throttle.admit("d", large_table=False)
    with pytest.raises(TooManyRequests):
        throttle.admit("d", large_table=False)
    throttle.release("d")
    throttle.admit("d", large_table=False)
    assert reasons == ["pending"]


def test_rows_per_hour_retry_after_waits_for_enough_rows_to_leave() -> None:
    throttle, clock, reasons = make(rows_per_hour=100)
    throttle.reserve_rows("d", 40)
    clock.now += 100
    throttle.reserve_rows("d", 40)
    clock.now += 100
    with pytest.raises(TooManyRequests) as refused:
        throttle.reserve_rows("d", 30)
    # 80 held; 30 more fit once the first 40 leave, at 1000 + 3600.
    assert refused.value.retry_after == 3600 - 200
    assert reasons == ["rows_per_hour"]
    throttle.reserve_rows("d", 20)  # exactly up to the quota
    assert throttle.reserve_rows("d", 5, hourly=False) is None  # Streaming-only: no quota


def test_unreserved_rows_do_not_count() -> None:
    throttle, _, _ = make(rows_per_hour=10)
    reservation = throttle.reserve_rows("d", 10)
    throttle.unreserve_rows("d", reservation)
    throttle.reserve_rows("d", 10)


def test_hourly_post_limit_applies_only_to_large_tables() -> None:
    throttle, clock, _ = make(posts_per_hour_large_table=2, posts_per_minute=1000)
    for _ in range(5):
        admit(throttle)  # small table: no hourly limit
    throttle, clock, _ = make(posts_per_hour_large_table=2, posts_per_minute=1000)
    admit(throttle, large=True)
    clock.now += 600
    admit(throttle, large=True)
    with pytest.raises(TooManyRequests) as refused:
        admit(throttle, large=True)
    assert refused.value.retry_after == 3600 - 600


def test_is_large_follows_the_known_row_counts() -> None:
    throttle, _, _ = make(large_table_rows=10)
    assert not throttle.is_large("d")
    throttle.set_row_count("d", "T", 10)
    assert throttle.is_large("d")
    throttle.set_row_count("d", "T", 0)
    assert not throttle.is_large("d")


def test_rows_per_post_and_capacity_are_400() -> None:
    throttle, _, _ = make(max_rows_per_post=5, none_retention_max_rows=10)
    throttle.check_rows_per_post(5)
    with pytest.raises(InvalidRequest, match="at most 5 rows"):
        throttle.check_rows_per_post(6)
    throttle.check_capacity("T", 5, 5)
    with pytest.raises(InvalidRequest, match="at most 10"):
        throttle.check_capacity("T", 5, 6)


def test_limits_off_admits_everything() -> None:
    throttle, _, reasons = make(limits=False, posts_per_minute=1, max_pending_requests=1)
    for _ in range(5):
        throttle.admit("d", large_table=True)
    throttle.check_rows_per_post(10**6)
    assert throttle.reserve_rows("d", 10**9) is None
    throttle.check_capacity("T", 10**9, 1)
    assert reasons == []
