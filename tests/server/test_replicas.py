"""Several ``pbistream serve`` replicas on one PostgreSQL schema: live feed and limits.

Each replica is a real server (uvicorn on 127.0.0.1) with its own PostgresStorage
(its own connection pool and LISTEN connection), as separate processes would have.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pbistream.storage.base import Storage
from pbistream.testing import RunningServer

# The same server the root conftest's postgres fixtures use.
POSTGRES_URL = os.environ.get(
    "PBISTREAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

pytestmark = pytest.mark.postgres

Json = dict[str, Any]


@pytest.fixture
def replicas(
    server_factory: Callable[..., RunningServer], postgres_replicas: tuple[Storage, Storage]
) -> Callable[..., tuple[RunningServer, RunningServer]]:
    """Start two replicas (same token) with the given settings."""

    def start(**settings: Any) -> tuple[RunningServer, RunningServer]:
        a = server_factory(storage=postgres_replicas[0], **settings)
        b = server_factory(storage=postgres_replicas[1], token=a.token, **settings)
        return a, b

    return start


class Feed:
    """A live feed read by a background thread; rows land in :attr:`rows` as they arrive."""

    def __init__(self, server: RunningServer, dataset_id: str) -> None:
        self.rows: list[tuple[float, Json]] = []  # (arrival monotonic time, row)
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._client = httpx.Client(
            base_url=server.url, headers=server.headers, timeout=httpx.Timeout(30.0)
        )
        self._path = f"/api/datasets/{dataset_id}/live"
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "the live feed never connected"

    def _read(self) -> None:
        try:
            with self._client.stream("GET", self._path) as response:
                self._response = response
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line == ": connected":
                        self.connected.set()
                    elif line.startswith("data: "):
                        now = time.monotonic()
                        with self._lock:
                            self.rows += [(now, r) for r in json.loads(line[6:])["rows"]]
        except (httpx.HTTPError, httpx.StreamClosed, OSError, ValueError):
            pass  # closed by the test

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[float, Json]]:
        """Poll until ``count`` rows arrived (or fail at the deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.rows) >= count:
                    return list(self.rows)
            assert time.monotonic() < deadline, f"only {len(self.rows)} of {count} rows arrived"
            time.sleep(0.005)

    def close(self) -> None:
        """Hang up (the server sees the disconnect) and end the reader thread."""
        if self._response is not None:
            # Shutting the socket down is what wakes a recv() blocked in another thread.
            stream = self._response.extensions["network_stream"]
            sock = stream.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(5)


def _post(server: RunningServer, dataset_id: str, rows: list[Json]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1.0/myorg/datasets/{dataset_id}/tables/RealTimeData/rows",
        json={"rows": rows},
        headers=server.headers,
        timeout=10,
    )


# --- the live feed across replicas --------------------------------------------------------


def test_a_row_pushed_to_one_replica_reaches_the_others_feed_well_within_a_second(
    replicas: Callable[..., tuple[RunningServer, RunningServer]],
) -> None:
    # time_scale 1: the 15 s keepalive resync cannot be what delivers the rows.
    a, b = replicas()
    dataset_id = a.create_dataset({"n": "Int64"}, mode="PushStreaming")["id"]
    feed = Feed(b, dataset_id)
    try:
        latencies = []
        for n in range(5):
            sent = time.monotonic()
            assert _post(a, dataset_id, [{"n": n}]).status_code == 200
            arrived, row = feed.wait_for(n + 1, timeout=5)[n]
            assert row["data"] == {"n": n}
            latencies.append(arrived - sent)
        latencies.sort()
        print(
            f"cross-replica live latency: median {latencies[2] * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms"
        )
        assert max(latencies) < 2.0
    finally:
        feed.close()


def test_rows_pushed_through_both_replicas_arrive_once_each_in_id_order(
    replicas: Callable[..., tuple[RunningServer, RunningServer]],
) -> None:
    a, b = replicas(limits=False)
    dataset_id = a.create_dataset({"n": "Int64"}, mode="PushStreaming")["id"]
    feeds = [Feed(a, dataset_id), Feed(b, dataset_id)]
    try:
        sent = 0

        def push(server: RunningServer, count: int) -> None:
            for i in range(count):
                assert _post(server, dataset_id, [{"n": i}, {"n": i}]).status_code == 200

        writers = [threading.Thread(target=push, args=(s, 20)) for s in (a, b)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        sent = 2 * 20 * 2
        stored = [r.id for r in a.storage.read_rows(dataset_id, limit=1000)]
        assert len(stored) == sent
        for feed in feeds:
            ids = [row["id"] for _, row in feed.wait_for(sent)]
            assert ids == stored  # none missing, none twice, in id order
    finally:
        for feed in feeds:
            feed.close()


# --- limits shared by the replicas ---------------------------------------------------------


def test_two_replicas_together_accept_at_most_posts_per_minute_per_dataset(
    replicas: Callable[..., tuple[RunningServer, RunningServer]],
) -> None:
    # time_scale 20: a "minute" lasts 3 s, long enough to send 120+ POSTs on 2 cores.
    a, b = replicas(time_scale=20)
    minute = 60 / 20
    dataset_id = a.create_dataset({"n": "Int64"}, mode="PushStreaming")["id"]
    accepted: list[tuple[float, float]] = []  # (sent, answered), monotonic
    refused: list[float] = []  # Retry-After values
    clients = [a.client(timeout=10), b.client(timeout=10)]
    path = f"/v1.0/myorg/datasets/{dataset_id}/tables/RealTimeData/rows"
    try:
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 1.6 * minute:
            sent = time.monotonic()
            response = clients[i % 2].post(path, json={"rows": [{"n": i}]})
            answered = time.monotonic()
            if response.status_code == 200:
                accepted.append((sent, answered))
            else:
                assert response.status_code == 429, response.text
                assert "120 POST rows requests a minute" in response.text
                refused.append(float(response.headers["Retry-After"]))
            i += 1
    finally:
        for client in clients:
            client.close()
    print(f"sent {i} POSTs alternately: {len(accepted)} accepted, {len(refused)} refused")
    assert refused, "the replicas never refused: each one counted only its own POSTs"
    assert all(0 < r <= minute + 1 for r in refused)
    # Admission happens between sending and answering, so every POST sent at or after
    # `start` and answered before `start + minute` was admitted inside that minute.
    for start, _ in accepted:
        inside = sum(1 for s, e in accepted if s >= start and e < start + minute)
        assert inside <= 120
    # ... and the first minute's quota was really used, through both replicas.
    first_minute = [s for s, e in accepted if e < started + minute]
    assert len(first_minute) == 120


def test_the_hourly_row_quota_is_shared_by_the_replicas(
    replicas: Callable[..., tuple[RunningServer, RunningServer]],
) -> None:
    a, b = replicas(rows_per_hour=10)
    dataset_id = a.create_dataset({"n": "Int64"}, mode="PushStreaming")["id"]
    assert _post(a, dataset_id, [{"n": n} for n in range(6)]).status_code == 200
    over = _post(b, dataset_id, [{"n": n} for n in range(6)])
    assert over.status_code == 429
    assert "rows per hour limit" in over.text
    assert float(over.headers["Retry-After"]) > 3000  # the first 6 rows leave in ~an hour
    assert _post(b, dataset_id, [{"n": n} for n in range(4)]).status_code == 200
    assert a.storage.count_rows(dataset_id, "RealTimeData") == 10


def _hanging_post(server: RunningServer, dataset_id: str) -> socket.socket:
    """Start a POST whose body never finishes: the request stays pending on the server."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST /v1.0/myorg/datasets/{dataset_id}/tables/RealTimeData/rows HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {server.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        '{"rows": ['
    )
    sock.sendall(head.encode())
    return sock


def test_pending_requests_are_counted_across_replicas(
    replicas: Callable[..., tuple[RunningServer, RunningServer]],
) -> None:
    a, b = replicas(max_pending_requests=3)
    dataset_id = a.create_dataset({"n": "Int64"}, mode="PushStreaming")["id"]
    hanging = [_hanging_post(a, dataset_id), _hanging_post(a, dataset_id)]
    try:
        hanging.append(_hanging_post(b, dataset_id))
        # Wait until all three are admitted: the next one is then refused as pending.
        deadline = time.monotonic() + 10
        while True:
            response = _post(b, dataset_id, [{"n": 1}])
            if response.status_code == 429:
                break
            assert time.monotonic() < deadline, "a fourth pending request was accepted"
            time.sleep(0.02)
        assert "at most 3 POST rows requests may be pending" in response.text
    finally:
        for sock in hanging:
            sock.close()
    # Once they hang up, their slots are released on both replicas.
    deadline = time.monotonic() + 10
    while _post(b, dataset_id, [{"n": 2}]).status_code != 200:
        assert time.monotonic() < deadline, "the pending slots were never released"
        time.sleep(0.02)


def test_the_feed_recovers_when_the_listen_connection_is_cut(
    replicas: Callable[..., tuple[RunningServer, RunningServer]],
) -> None:
    import psycopg

    a, b = replicas()
    dataset_id = a.create_dataset({"n": "Int64"}, mode="PushStreaming")["id"]
    feed = Feed(b, dataset_id)  # B's hub now LISTENs (A's does not: it has no feed)
    try:
        assert _post(a, dataset_id, [{"n": 0}]).status_code == 200
        feed.wait_for(1, timeout=5)
        channel = b.storage.channel  # type: ignore[attr-defined]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            cut = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'pbistream-listen' AND query = %s",
                (f'LISTEN "{channel}"',),
            ).fetchall()
        assert cut == [(True,)]
        # Rows stored while B was not listening still arrive well before a keepalive
        # (15 s): the listener reconnects and the hub catches up by cursor.
        for n in range(1, 4):
            assert _post(a, dataset_id, [{"n": n}]).status_code == 200
        rows = feed.wait_for(4, timeout=5)
        assert [row["data"]["n"] for _, row in rows] == [0, 1, 2, 3]
    finally:
        feed.close()


def test_the_large_table_hourly_post_limit_is_shared_too(
    replicas: Callable[..., tuple[RunningServer, RunningServer]],
) -> None:
    a, b = replicas(large_table_rows=3, posts_per_hour_large_table=2)
    dataset_id = a.create_dataset({"n": "Int64"}, mode="PushStreaming")["id"]
    assert _post(a, dataset_id, [{"n": n} for n in range(3)]).status_code == 200  # now large
    assert _post(b, dataset_id, [{"n": 3}]).status_code == 200  # the hour's second POST
    third = _post(a, dataset_id, [{"n": 4}])
    assert third.status_code == 429
    assert "at most 2 POST rows requests an hour" in third.text
    assert float(third.headers["Retry-After"]) > 3000
