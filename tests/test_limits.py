"""The limits table holds exactly the documented Power BI numbers."""

from __future__ import annotations

import pbistream.limits as L


def test_documented_values() -> None:
    assert L.MAX_ROWS_PER_POST.value == 10_000
    assert (L.POSTS_PER_MINUTE.value, L.POSTS_PER_MINUTE.window_seconds) == (120, 60.0)
    assert (L.POSTS_PER_HOUR_LARGE_TABLE.value, L.POSTS_PER_HOUR_LARGE_TABLE.window_seconds) == (
        120,
        3600.0,
    )
    assert L.LARGE_TABLE_ROWS.value == 250_000
    assert (L.ROWS_PER_HOUR.value, L.ROWS_PER_HOUR.window_seconds) == (1_000_000, 3600.0)
    assert L.MAX_PENDING_REQUESTS.value == 5
    assert L.MAX_TABLES.value == L.MAX_COLUMNS.value == L.MAX_RELATIONSHIPS.value == 75
    assert L.MAX_PUSH_BODY_BYTES.value == 16 * 1024 * 1024
    assert L.MAX_STREAMING_BODY_BYTES.value == 15 * 1024
    assert L.MAX_STRING_CHARS.value == 4_000
    assert (L.FIFO_MIN_ROWS.value, L.FIFO_MAX_ROWS.value) == (200_000, 210_000)
    assert L.NONE_RETENTION_MAX_ROWS.value == 5_000_000
    assert L.STREAMING_CACHE_SECONDS.value == 3600


def test_table_is_complete_and_sourced() -> None:
    names = [limit.name for limit in L.LIMITS]
    assert len(names) == len(set(names))
    module_limits = {v for v in vars(L).values() if isinstance(v, L.Limit)}
    assert module_limits == set(L.LIMITS), "every Limit must be listed in LIMITS"
    for limit in L.LIMITS:
        assert limit.source.startswith("https://learn.microsoft.com/")
        assert limit.help.endswith(".")
        assert L.BY_NAME[limit.name] is limit
