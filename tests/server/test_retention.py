"""Retention: basicFIFO keeps the newest 200k-210k rows; the streaming cache lasts 60 minutes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"


def poll(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)


def values(server: RunningServer, dataset_id: str, table: str = "T") -> list[int]:
    rows = server.storage.read_rows(dataset_id, table, limit=1_000_000)
    return [r.data["v"] for r in rows]


def test_fifo_keeps_the_newest_rows_within_the_band(server_factory: Any) -> None:
    server = server_factory(fifo_min_rows=20, fifo_max_rows=30)
    created = server.create_dataset({"v": "Int64"}, mode="Push", table="T", retention="basicFIFO")
    url = f"{server.url}{PBI}/datasets/{created['id']}/tables/T/rows"
    for start in range(0, 100, 7):
        rows = [{"v": v} for v in range(start, min(start + 7, 100))]
        assert httpx.post(url, json={"rows": rows}, headers=server.headers).status_code == 200
        kept = values(server, created["id"])
        assert len(kept) <= 30
    kept = values(server, created["id"])
    assert 20 <= len(kept) <= 30
    assert kept == list(range(100 - len(kept), 100))  # the newest, in order


def test_30_fifo_with_the_documented_numbers(pbistream_server: RunningServer) -> None:
    server = pbistream_server
    created = server.create_dataset({"v": "Int64"}, mode="Push", table="T", retention="basicFIFO")
    url = f"{server.url}{PBI}/datasets/{created['id']}/tables/T/rows"
    with httpx.Client(headers=server.headers, timeout=60) as client:
        for start in range(0, 215_000, 10_000):
            rows = [{"v": v} for v in range(start, min(start + 10_000, 215_000))]
            assert client.post(url, json={"rows": rows}).status_code == 200
    count = server.count_rows(created["id"], "T")
    assert 200_000 <= count <= 210_000
    newest = server.storage.read_rows(created["id"], "T", limit=1, newest_first=True)
    assert newest[0].data == {"v": 214_999}


def test_47_streaming_rows_expire_after_the_cache_window(server_factory: Any) -> None:
    # time_scale 3600: the 60-minute cache lasts one second, the purge runs every 50 ms.
    server = server_factory(time_scale=3600)
    streaming = server.create_dataset({"v": "Int64"}, mode="Streaming")
    historic = server.create_dataset({"v": "Int64"}, mode="PushStreaming")
    push = server.create_dataset({"v": "Int64"}, mode="Push", table="RealTimeData")
    assert httpx.post(streaming["push_url"], json=[{"v": 1}]).status_code == 200
    assert httpx.post(historic["push_url"], json=[{"v": 1}]).status_code == 200
    rows_url = f"{server.url}{PBI}/datasets/{push['id']}/tables/RealTimeData/rows"
    assert httpx.post(rows_url, json=[{"v": 1}], headers=server.headers).status_code == 200
    assert server.count_rows(streaming["id"]) == 1
    poll(lambda: server.count_rows(streaming["id"]) == 0, timeout=10)
    # Only the Streaming-only dataset is a cache; stored datasets keep their rows.
    assert server.count_rows(historic["id"]) == 1
    assert server.count_rows(push["id"]) == 1


def test_streaming_rows_within_the_window_stay(server_factory: Any) -> None:
    server = server_factory(time_scale=60)  # the cache lasts one minute
    streaming = server.create_dataset({"v": "Int64"}, mode="Streaming")
    assert httpx.post(streaming["push_url"], json=[{"v": 1}]).status_code == 200
    from pbistream.server.housekeeping import purge_streaming_cache

    assert purge_streaming_cache(server.storage, server.settings) == 0
    assert server.count_rows(streaming["id"]) == 1
    assert purge_streaming_cache(server.storage, server.settings, time.time() + 61) == 1


def test_a_failing_purge_logs_one_traceback_then_short_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import anyio

    from pbistream.server.housekeeping import run_housekeeping
    from pbistream.server.settings import Settings
    from pbistream.storage import open_storage

    storage = open_storage(tmp_path)
    storage.close()  # a closed store refuses reads, as a database that went away does
    settings = Settings(data_dir=str(tmp_path), housekeeping_seconds=0.05)

    async def run_a_few_ticks() -> None:
        with anyio.move_on_after(0.5):
            await run_housekeeping(storage, settings)

    with caplog.at_level(logging.WARNING, logger="pbistream.server"):
        anyio.run(run_a_few_ticks)
    failures = [r for r in caplog.records if "purge" in r.getMessage()]
    assert len(failures) >= 3
    assert failures[0].exc_info is not None
    assert all(r.exc_info is None for r in failures[1:])
