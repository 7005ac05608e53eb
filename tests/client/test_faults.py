"""Faults against the real server: 500s, 429s, resets, a stopped server, a killed client.

Every row must be stored, and thanks to sequence numbers none twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_helpers import FIELDS, rows_of
from fault_proxy import FaultProxy

from pbistream import Client, RetryOptions
from pbistream.client import BatchOptions, PacingOptions
from pbistream.testing import RunningServer, ServerProcess

FAST_RETRY = RetryOptions(backoff_base=0.05, max_backoff=0.3)
FAULTS = ("500", "reset", "429", "store_then_reset", "503", "store_then_reset", "reset")


@pytest.fixture
def proxy(fast_server: RunningServer) -> Iterator[FaultProxy]:
    faulty = FaultProxy(fast_server.url, retry_after=1)
    yield faulty
    faulty.close()


def assert_each_once(stored: list[dict[str, object]], expected: int) -> None:
    counts = Counter(row["n"] for row in stored)
    twice = sorted(n for n, c in counts.items() if c > 1)
    assert not twice, f"stored twice: {twice[:10]}"
    assert sorted(counts) == list(range(expected))


def test_500s_429s_and_resets_lose_nothing_and_store_nothing_twice(
    fast_server: RunningServer, proxy: FaultProxy
) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    proxy.inject(*FAULTS)
    with Client(
        proxy.rewrite(dataset["push_url"]),
        schema=None,
        batch=BatchOptions(max_rows=50, max_delay=0.01),
        retry=FAST_RETRY,
    ) as client:
        for n in range(1000):
            client.push({"n": n, "value": n * 1.5})
        assert client.flush(timeout=60) == 0
    assert_each_once(rows_of(fast_server, dataset["id"]), 1000)
    assert client.stats.retried == 7 and client.stats.rate_limited == 1
    assert proxy.seen[: len(FAULTS)] == list(FAULTS)


def test_async_client_survives_the_same_faults(
    fast_server: RunningServer, proxy: FaultProxy
) -> None:
    import asyncio

    from pbistream import AsyncClient

    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    proxy.inject("reset", "500", "store_then_reset", "429")

    async def main() -> AsyncClient:
        async with AsyncClient(
            proxy.rewrite(dataset["push_url"]),
            token=fast_server.token,
            batch=BatchOptions(max_rows=40, max_delay=0.01),
            retry=FAST_RETRY,
        ) as client:
            for n in range(600):
                client.push({"n": n})
            assert await client.aflush(timeout=60) == 0
        return client

    client = asyncio.run(main())
    assert_each_once(rows_of(fast_server, dataset["id"]), 600)
    assert client.stats.retried == 4


def _create_on_process(server: ServerProcess) -> tuple[str, str]:
    body = {
        "name": "faults",
        "defaultMode": "PushStreaming",
        "tables": [{"name": "RealTimeData", "columns": [{"name": "n", "dataType": "Int64"}]}],
    }
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as http:
        dataset_id = http.post("/v1.0/myorg/datasets", json=body).json()["id"]
        push_url = http.get(f"/api/datasets/{dataset_id}").json()["pushUrl"]
    return dataset_id, push_url


def _stored_ns(server: ServerProcess, dataset_id: str) -> list[int]:
    out: list[int] = []
    after = 0
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        while True:
            page = http.get(
                f"/api/datasets/{dataset_id}/rows",
                params={"table": "RealTimeData", "after": after, "limit": 10_000, "order": "asc"},
            ).json()
            out.extend(r["data"]["n"] for r in page["rows"])
            if not page.get("next"):
                return out
            after = page["next"]


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", args=["--time-scale", "60"])
    server.start()
    yield server
    server.stop()


def test_server_stopped_and_restarted_mid_stream(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    dataset_id, push_url = _create_on_process(server_process)
    total = 3000
    with Client(
        push_url,
        schema=None,
        spool=tmp_path / "client.spool",
        batch=BatchOptions(max_rows=100, max_delay=0.01),
        pacing=PacingOptions(time_scale=60),
        retry=FAST_RETRY,
    ) as client:

        def producer() -> None:
            for n in range(total):
                client.push({"n": n})
                if n % 100 == 0:
                    time.sleep(0.02)  # a steady stream, not one burst

        thread = threading.Thread(target=producer)
        thread.start()
        deadline = time.monotonic() + 30
        while client.stats.sent < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        server_process.stop()  # down for 10 scaled minutes' worth of pushes
        time.sleep(1.5)
        assert client.stats.retried == 0 or client.stats.sent < total
        server_process.start()
        thread.join()
        assert client.flush(timeout=60) == 0
    assert client.stats.retried > 0
    assert_each_once([{"n": n} for n in _stored_ns(server_process, dataset_id)], total)


KILLED_CLIENT = textwrap.dedent(
    """
    import sys, time
    from pbistream import Client
    from pbistream.client import BatchOptions, PacingOptions
    url, spool, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = Client(url, schema=None, spool=spool,
                    batch=BatchOptions(max_rows=20, max_delay=0.0),
                    pacing=PacingOptions(posts_per_minute=120, time_scale=30))
    for n in range(total):
        client.push({"n": n})
    print("spooled", flush=True)
    time.sleep(600)
    """
)


def test_client_sigkilled_then_a_new_one_replays_the_spool(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    dataset_id, push_url = _create_on_process(server_process)
    script = tmp_path / "pusher.py"
    script.write_text(KILLED_CLIENT)
    spool = tmp_path / "killed.spool"
    total = 2000
    child = subprocess.Popen(
        [sys.executable, str(script), push_url, str(spool), str(total)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"spooled"
        deadline = time.monotonic() + 30
        while len(_stored_ns(server_process, dataset_id)) < 100:
            assert time.monotonic() < deadline, "the child delivered nothing"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert len(_stored_ns(server_process, dataset_id)) < total  # killed mid-way

    with Client(push_url, schema=None, spool=spool, retry=FAST_RETRY) as replayer:
        assert replayer.pending > 0
        assert replayer.flush(timeout=60) == 0
    assert_each_once([{"n": n} for n in _stored_ns(server_process, dataset_id)], total)
