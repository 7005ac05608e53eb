"""The live feed: the hub's fan-out, and the SSE stream over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from pbistream.server.live import LiveHub, group_by_table
from pbistream.server.live_feed import event_stream, format_event
from pbistream.storage.base import Storage, StoredRow
from pbistream.testing import RunningServer, ServerProcess

Json = dict[str, Any]


def _rows(first: int, n: int, table: str = "RealTimeData") -> list[StoredRow]:
    return [StoredRow(first + i, 1000.0 + i, table, {"v": first + i}) for i in range(n)]


# --- the hub (no server needed) ------------------------------------------------------


def test_publish_reaches_every_subscriber_of_that_dataset_only() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        async with (
            hub.subscribe("a") as one,
            hub.subscribe("a") as two,
            hub.subscribe("b") as other,
        ):
            assert hub.subscriber_count == 3
            hub.publish("a", "T", _rows(1, 2))
            got_one = await one.get(timeout=1)
            got_two = await two.get(timeout=1)
            assert got_one is not None and got_two is not None
            assert [r.id for b in got_one for r in b.rows] == [1, 2]
            assert [r.id for b in got_two for r in b.rows] == [1, 2]
            assert await other.get(timeout=0.01) == []  # timeout: nothing for dataset b
        assert hub.subscriber_count == 0

    asyncio.run(scenario())


def test_batches_that_arrive_together_are_returned_together() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        async with hub.subscribe("a") as sub:
            hub.publish("a", "T", _rows(1, 1))
            hub.publish("a", "T", _rows(2, 1))
            hub.publish("a", "U", _rows(3, 1, "U"))
            got = await sub.get(timeout=1)
            assert got is not None
            assert [(b.table, [r.id for r in b.rows]) for b in got] == [
                ("T", [1]),
                ("T", [2]),
                ("U", [3]),
            ]

    asyncio.run(scenario())


def test_a_slow_subscriber_is_dropped_not_buffered_without_bound() -> None:
    async def scenario() -> None:
        hub = LiveHub(queue_size=4)
        async with hub.subscribe("a") as slow, hub.subscribe("a") as fast:
            for i in range(4):
                hub.publish("a", "T", _rows(i + 1, 1))
                assert await fast.get(timeout=1)
            hub.publish("a", "T", _rows(5, 1))  # the slow one's fifth: over its bound
            assert slow.lagged
            assert not fast.lagged
            assert hub.subscriber_count == 1
            # It still reads what it had, then learns it must resync (None).
            got = await slow.get(timeout=1)
            assert got is None
            hub.publish("a", "T", _rows(6, 1))
            assert await fast.get(timeout=1)

    asyncio.run(scenario())


def test_queued_rows_are_bounded_too_but_one_big_batch_always_fits() -> None:
    async def scenario() -> None:
        hub = LiveHub(queue_rows=100)
        async with hub.subscribe("a") as sub:
            hub.publish("a", "T", _rows(1, 500))  # alone in an empty queue: fits
            got = await sub.get(timeout=1)
            assert got is not None and len(got[0].rows) == 500
            hub.publish("a", "T", _rows(501, 60))
            hub.publish("a", "T", _rows(561, 60))  # 120 rows queued > 100: dropped
            assert sub.lagged
            assert hub.subscriber_count == 0

    asyncio.run(scenario())


def test_publish_from_a_worker_thread_is_handed_to_the_loop() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        async with hub.subscribe("a") as sub:
            await asyncio.to_thread(hub.publish, "a", "T", _rows(7, 3))
            got = await sub.get(timeout=1)
            assert got is not None
            assert [r.id for b in got for r in b.rows] == [7, 8, 9]

    asyncio.run(scenario())


def test_close_ends_every_subscription() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        async with hub.subscribe("a") as sub:
            waiter = asyncio.create_task(sub.get(timeout=5))
            await asyncio.sleep(0)
            hub.close()
            assert await asyncio.wait_for(waiter, 1) is None
            assert sub.closed

    asyncio.run(scenario())


def test_event_format_is_one_sse_message_with_the_last_id() -> None:
    event = format_event("RealTimeData", _rows(41, 2))
    assert event.endswith(b"\n\n")
    lines = event.decode().splitlines()
    assert lines[0] == "id: 42"
    assert lines[1] == "event: rows"
    assert lines[2].startswith('data: {"table":"RealTimeData","rows":[{"id":41,')
    assert len([x for x in lines if x]) == 3


def test_group_by_table_keeps_order_and_splits_runs() -> None:
    rows = _rows(1, 2, "A") + _rows(3, 1, "B") + _rows(4, 1, "A")
    assert [(t, [r.id for r in run]) for t, run in group_by_table(rows)] == [
        ("A", [1, 2]),
        ("B", [3]),
        ("A", [4]),
    ]


# --- the stream's catch-up path, on a real SQLite store -----------------------------------


def test_a_dropped_subscriber_catches_up_from_storage_without_gaps_or_repeats(
    tmp_path: Path,
) -> None:
    from pbistream.schema import Column, Dataset, Mode, Retention, Table
    from pbistream.storage import open_storage
    from pbistream.values import DataType

    storage = open_storage(str(tmp_path))
    table = Table("RealTimeData", (Column("v", DataType.INT64),))
    storage.create_dataset(Dataset("d1", "d", Mode.PUSH_STREAMING, Retention.NONE, [table]))

    def insert(values: range) -> list[StoredRow]:
        now = time.time()
        rows = [{"v": v} for v in values]
        result = storage.insert_rows("d1", "RealTimeData", rows, received_at=now)
        assert result.first_id is not None
        return [StoredRow(result.first_id + i, now, "RealTimeData", r) for i, r in enumerate(rows)]

    async def scenario() -> list[int]:
        hub = LiveHub(queue_size=2)
        stream = event_stream(hub, storage, "d1", after=None, keepalive=5)
        assert b": connected" in await anext(stream)
        # Ten posts while the reader is busy elsewhere: its queue (2) overflows.
        for start in range(0, 100, 10):
            hub.publish("d1", "RealTimeData", insert(range(start, start + 10)))
        assert hub.subscriber_count == 0  # dropped, not buffered
        got: list[int] = []
        while len(got) < 100:
            event = await asyncio.wait_for(anext(stream), 5)
            got += [row["data"]["v"] for row in _data(event)["rows"]]
        hub.publish("d1", "RealTimeData", insert(range(100, 101)))
        got += [row["data"]["v"] for row in _data(await asyncio.wait_for(anext(stream), 5))["rows"]]
        await stream.aclose()
        return got

    try:
        assert asyncio.run(scenario()) == list(range(101))
    finally:
        storage.close()


def _data(event: bytes) -> Json:
    line = next(x for x in event.decode().splitlines() if x.startswith("data: "))
    return json.loads(line[len("data: ") :])  # type: ignore[no-any-return]


# --- the SSE endpoint over real HTTP -------------------------------------------------------


class SSEReader:
    """Reads Server-Sent Events from an httpx streaming response, one message at a time."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.iter_lines()

    def next_message(self) -> Json:
        """The next message: its fields (id, event, data) and its comment lines."""
        message: Json = {"comments": []}
        for line in self._lines:
            if line == "":
                if message.keys() - {"comments"} or message["comments"]:
                    return message
                continue
            if line.startswith(":"):
                message["comments"].append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            message[name] = value[1:] if value.startswith(" ") else value
        raise AssertionError("the stream ended")

    def next_event(self) -> Json:
        """The next ``rows`` event (skipping comments), with ``data`` decoded."""
        while True:
            message = self.next_message()
            if message.get("event") == "rows":
                message["data"] = json.loads(message["data"])
                return message

    def wait_connected(self) -> None:
        """Read until the ``: connected`` greeting (the subscription is live)."""
        while "connected" not in self.next_message()["comments"]:
            pass


@contextmanager
def live(server: RunningServer, dataset_id: str, **kwargs: Any) -> Iterator[SSEReader]:
    """Open the live feed; the read timeout keeps a broken test from hanging."""
    timeout = httpx.Timeout(10.0)
    with (
        httpx.Client(base_url=server.url, headers=server.headers, timeout=timeout) as client,
        client.stream("GET", f"/api/datasets/{dataset_id}/live", **kwargs) as response,
    ):
        yield SSEReader(response)


def _push(url: str, rows: list[Json]) -> None:
    response = httpx.post(url, json=rows, timeout=10)
    assert response.status_code == 200, response.text


def test_pushed_rows_arrive_live_in_one_event_per_post(pbistream_server: RunningServer) -> None:
    created = pbistream_server.create_dataset({"temp": "Number", "room": "Text"})
    _push(created["push_url"], [{"temp": 1.0, "room": "before"}])  # not replayed: no `after`
    with live(pbistream_server, created["id"]) as feed:
        feed.wait_connected()
        _push(created["push_url"], [{"temp": 20.5, "room": "<a>"}, {"temp": 21.5, "room": "b"}])
        event = feed.next_event()
        data = event["data"]
        assert data["table"] == "RealTimeData"
        assert [r["data"] for r in data["rows"]] == [
            {"temp": 20.5, "room": "<a>"},
            {"temp": 21.5, "room": "b"},
        ]
        assert int(event["id"]) == data["rows"][-1]["id"]
        assert data["rows"][0]["id"] + 1 == data["rows"][1]["id"]
        assert data["rows"][0]["received_at"] == pytest.approx(time.time(), abs=30)


def test_reconnecting_with_last_event_id_replays_only_newer_rows(
    pbistream_server: RunningServer,
) -> None:
    created = pbistream_server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    url = created["push_url"]
    with live(pbistream_server, created["id"]) as feed:
        feed.wait_connected()
        _push(url, [{"n": 1}, {"n": 2}])
        last_id = feed.next_event()["id"]
    # Rows pushed while no one listens...
    _push(url, [{"n": 3}])
    _push(url, [{"n": 4}, {"n": 5}])
    with live(pbistream_server, created["id"], headers={"Last-Event-ID": last_id}) as feed:
        replayed: list[int] = []
        while len(replayed) < 3:
            replayed += [r["data"]["n"] for r in feed.next_event()["data"]["rows"]]
        assert replayed == [3, 4, 5]
        # ...then the feed goes on live.
        _push(url, [{"n": 6}])
        assert [r["data"]["n"] for r in feed.next_event()["data"]["rows"]] == [6]


def test_after_zero_replays_everything_stored(pbistream_server: RunningServer) -> None:
    created = pbistream_server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    for i in range(3):
        _push(created["push_url"], [{"n": i}])
    with live(pbistream_server, created["id"], params={"after": 0}) as feed:
        got: list[int] = []
        while len(got) < 3:
            got += [r["data"]["n"] for r in feed.next_event()["data"]["rows"]]
        assert got == [0, 1, 2]


def test_bad_last_event_id_is_a_400(pbistream_server: RunningServer) -> None:
    created = pbistream_server.create_dataset({"n": "Int64"})
    with pbistream_server.client(timeout=10) as api:
        response = api.get(f"/api/datasets/{created['id']}/live", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]["message"]


def test_head_answers_at_once_without_subscribing(pbistream_server: RunningServer) -> None:
    created = pbistream_server.create_dataset({"n": "Int64"})
    with pbistream_server.client(timeout=5) as api:
        response = api.head(f"/api/datasets/{created['id']}/live")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert _gauge(api, "pbistream_live_subscribers") == 0


def test_keepalive_comments_and_subscriber_gauge(
    server_factory: Callable[..., RunningServer],
) -> None:
    # time_scale 60: the 15-second keepalive comes every 0.25 s.
    server = server_factory(time_scale=60)
    created = server.create_dataset({"n": "Int64"})
    with server.client(timeout=10) as api:
        with live(server, created["id"]) as feed:
            feed.wait_connected()
            assert feed.next_message()["comments"] == ["keepalive"]
            assert _gauge(api, "pbistream_live_subscribers") == 1
        # The server notices the closed connection and unsubscribes.
        deadline = time.monotonic() + 10
        while _gauge(api, "pbistream_live_subscribers") != 0:
            assert time.monotonic() < deadline, "the subscriber was never removed"
            time.sleep(0.05)


def test_rows_stored_by_another_replica_arrive_within_a_keepalive(
    server_factory: Callable[..., RunningServer],
) -> None:
    # Another replica on the same database writes straight to storage: this server's
    # hub never hears of it, so the feed must find the rows on its quiet ticks.
    server = server_factory(time_scale=60)
    created = server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    with live(server, created["id"]) as feed:
        feed.wait_connected()
        server.storage.insert_rows(
            created["id"], "RealTimeData", [{"n": 7}, {"n": 8}], received_at=time.time()
        )
        assert [r["data"]["n"] for r in feed.next_event()["data"]["rows"]] == [7, 8]
        _push(created["push_url"], [{"n": 9}])  # and the hub still works alongside
        assert [r["data"]["n"] for r in feed.next_event()["data"]["rows"]] == [9]


@pytest.mark.postgres
def test_two_replicas_on_one_postgres_database_share_the_live_feed(
    server_factory: Callable[..., RunningServer], postgres_replicas: tuple[Storage, Storage]
) -> None:
    writer = server_factory(time_scale=60, storage=postgres_replicas[0])
    reader = server_factory(time_scale=60, storage=postgres_replicas[1], token=writer.token)
    created = writer.create_dataset({"n": "Int64"}, mode="PushStreaming")
    with live(reader, created["id"], params={"after": 0}) as feed:
        feed.wait_connected()
        _push(created["push_url"], [{"n": 1}, {"n": 2}])  # stored through the other replica
        got: list[int] = []
        while len(got) < 2:
            got += [r["data"]["n"] for r in feed.next_event()["data"]["rows"]]
        assert got == [1, 2]


def test_the_feed_ends_when_its_dataset_is_deleted(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(time_scale=60)
    created = server.create_dataset({"n": "Int64"})
    with live(server, created["id"]) as feed:
        feed.wait_connected()
        with server.client(timeout=10) as api:
            assert api.delete(f"/v1.0/myorg/datasets/{created['id']}").status_code == 200
        message = feed.next_message()
        while message.get("event") != "deleted":
            assert message["comments"] == ["keepalive"]
            message = feed.next_message()
        with pytest.raises(AssertionError, match="the stream ended"):
            feed.next_message()


def _gauge(api: httpx.Client, name: str) -> float:
    response = api.get("/metrics")
    assert response.status_code == 200
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


pytestmark = pytest.mark.timeout(60)


def test_serve_stops_at_once_on_ctrl_c_with_20_open_feeds(tmp_path: Path) -> None:
    """Open feeds never end by themselves: without closing them first, uvicorn waits
    out its graceful timeout (5 s) and then cancels each one with a traceback."""
    with ServerProcess(tmp_path / "data") as server:
        with httpx.Client(base_url=server.url, headers=server.headers) as api:
            body = {
                "name": "feeds",
                "defaultMode": "PushStreaming",
                "tables": [{"name": "T", "columns": [{"name": "v", "dataType": "Double"}]}],
            }
            dataset_id = api.post("/v1.0/myorg/datasets", json=body).json()["id"]
        connected: list[int] = []

        def feed() -> None:
            url = f"{server.url}/api/datasets/{dataset_id}/live"
            with (
                contextlib.suppress(httpx.HTTPError),
                httpx.stream("GET", url, headers=server.headers, timeout=30) as response,
            ):
                for line in response.iter_lines():
                    if line == ": connected":
                        connected.append(1)

        readers = [threading.Thread(target=feed, daemon=True) for _ in range(20)]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 20
        while len(connected) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a condition with a deadline
        assert len(connected) == 20
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert server.process.wait(15) == 0
        took = time.monotonic() - started
        for reader in readers:
            reader.join(5)
        log = server.log_text()
    assert "timeout graceful shutdown exceeded" not in log
    assert "Traceback" not in log
    assert took < 4, f"serve took {took:.1f} s to stop with 20 open feeds"
    assert not any(reader.is_alive() for reader in readers)  # every feed ended cleanly


def test_feeds_past_the_subscription_cap_are_refused_until_one_closes(
    server_factory: Any,
) -> None:
    server = server_factory()
    server.app.state.hub.max_subscriptions = 2  # the default (2,000) scaled down
    first = server.create_dataset({"v": "Number"}, mode="PushStreaming")["id"]
    second = server.create_dataset({"v": "Number"}, mode="PushStreaming")["id"]
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as api:
        merged = f"/api/live?dataset={first}&dataset={second}"
        with api.stream("GET", merged) as open_feed:
            lines = open_feed.iter_lines()  # kept: dropping the iterator closes the feed
            assert next(lines) == "retry: 1000"
            deadline = time.monotonic() + 10
            while server.app.state.hub.subscriber_count < 2 and time.monotonic() < deadline:
                time.sleep(0.02)  # polling a condition with a deadline
            for path in (f"/api/datasets/{first}/live", f"/api/live?dataset={second}"):
                refused = api.get(path, timeout=5)  # a 200 here would stream forever
                assert refused.status_code == 429, refused.text
                assert refused.headers["Retry-After"] == "5"
                assert "live feed subscriptions" in refused.json()["error"]["message"]
        # Closing the open feed makes room again (its subscriptions end with it).
        deadline = time.monotonic() + 10
        while server.app.state.hub.subscriber_count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert api.head(f"/api/datasets/{first}/live").status_code == 200
        with api.stream("GET", f"/api/datasets/{first}/live") as again:
            assert again.status_code == 200
