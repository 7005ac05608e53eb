"""Every documented limit is enforced (reference §3), with small windows via time_scale."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"


def push_dataset(server: RunningServer, **kwargs: Any) -> str:
    """A Push dataset with one table T(v: Int64); returns its rows URL."""
    created = server.create_dataset({"v": "Int64"}, mode="Push", table="T", **kwargs)
    return f"{server.url}{PBI}/datasets/{created['id']}/tables/T/rows"


def post(server: RunningServer, url: str, n: int = 1) -> httpx.Response:
    return httpx.post(url, json={"rows": [{"v": i} for i in range(n)]}, headers=server.headers)


def retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    value = response.headers["Retry-After"]
    assert value.isdigit(), value  # an integer number of seconds
    return int(value)


def poll(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)


def test_24_more_than_10000_rows_in_one_post_is_400(pbistream_server: RunningServer) -> None:
    url = push_dataset(pbistream_server)
    response = post(pbistream_server, url, 10_001)
    assert response.status_code == 400
    assert "10,001 rows" in response.json()["error"]["message"]
    assert pbistream_server.count_rows(table="T") == 0
    assert post(pbistream_server, url, 10_000).status_code == 200


def test_26_the_121st_post_in_a_minute_is_429(pbistream_server: RunningServer) -> None:
    url = push_dataset(pbistream_server)
    with httpx.Client(headers=pbistream_server.headers) as client:
        for _ in range(120):
            assert client.post(url, json={"rows": [{"v": 1}]}).status_code == 200
        response = client.post(url, json={"rows": [{"v": 1}]})
    seconds = retry_after(response)
    assert 1 <= seconds <= 60
    assert "exceeded the amount of requests" in response.json()["error"]["message"]
    assert pbistream_server.count_rows(table="T") == 120


def test_posts_per_minute_window_frees_after_retry_after(server_factory: Any) -> None:
    server = server_factory(time_scale=60, posts_per_minute=3)  # a "minute" is 1 s
    url = push_dataset(server)
    for _ in range(3):
        assert post(server, url).status_code == 200
    refused = post(server, url)
    assert retry_after(refused) == 1  # scaled, rounded up to a whole second
    poll(lambda: post(server, url).status_code == 200, timeout=5)
    # Other datasets have their own window.
    assert post(server, push_dataset(server)).status_code == 200


def test_25_rows_per_hour_quota_is_429_with_retry_after(server_factory: Any) -> None:
    server = server_factory(time_scale=3600, rows_per_hour=100)  # an "hour" is 1 s
    url = push_dataset(server)
    assert post(server, url, 60).status_code == 200
    response = post(server, url, 50)
    assert retry_after(response) == 1
    assert "rows per hour limit" in response.json()["error"]["message"]
    assert server.count_rows(table="T") == 60
    assert post(server, url, 40).status_code == 200  # exactly up to the quota
    poll(lambda: post(server, url, 50).status_code == 200, timeout=5)


def test_rows_per_hour_retry_after_is_the_real_time_left(server_factory: Any) -> None:
    server = server_factory(rows_per_hour=10)  # an unscaled hour
    url = push_dataset(server)
    assert post(server, url, 10).status_code == 200
    seconds = retry_after(post(server, url, 1))
    assert 3590 <= seconds <= 3600


def test_hourly_post_limit_once_a_table_holds_large_table_rows(server_factory: Any) -> None:
    server = server_factory(large_table_rows=20, posts_per_hour_large_table=3)
    url = push_dataset(server)
    assert post(server, url, 19).status_code == 200
    assert post(server, url, 1).status_code == 200  # now 20 rows: the hourly limit applies
    assert post(server, url, 1).status_code == 200  # third POST this hour
    response = post(server, url, 1)
    assert 3500 <= retry_after(response) <= 3600
    assert "an hour" in response.json()["error"]["message"]
    # Deleting the rows lifts it.
    assert httpx.delete(url, headers=server.headers).status_code == 200
    assert post(server, url, 1).status_code == 200


def test_the_large_table_rule_is_a_push_limit_not_a_streaming_one(server_factory: Any) -> None:
    # Power BI lists "120 POST rows requests an hour once a table holds 250,000 rows"
    # among the push limits; a Streaming-only dataset keeps rows only in its one-hour cache.
    server = server_factory(large_table_rows=20, posts_per_hour_large_table=3)
    push_url = server.create_streaming_dataset({"v": "Int64"})
    for _ in range(6):
        answer = httpx.post(push_url, json=[{"v": i} for i in range(10)])
        assert answer.status_code == 200, answer.text


def _start_request(server: RunningServer, path: str, length: int) -> socket.socket:
    """Send the headers and part of the body of a POST, leaving it in flight."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.token}\r\nContent-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"[")
    return sock


def _status_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "connection closed without a response"
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_27_sixth_pending_post_is_429(server_factory: Any) -> None:
    server = server_factory()
    created = server.create_dataset({"v": "Int64"}, mode="Push", table="T")
    path = f"{PBI}/datasets/{created['id']}/tables/T/rows"
    body = b'{"v": 1}]'
    pending = [_start_request(server, path, 1 + len(body)) for _ in range(5)]
    try:
        # The five are admitted (reading their bodies) once the sixth is refused.
        def sixth_refused() -> bool:
            return post(server, server.url + path).status_code == 429

        poll(sixth_refused, timeout=5)
        response = post(server, server.url + path)
        assert retry_after(response) >= 1
        assert "pending" in response.json()["error"]["message"]
        for sock in pending:
            sock.sendall(body)
        assert [_status_of(sock) for sock in pending] == [200] * 5
    finally:
        for sock in pending:
            sock.close()
    assert post(server, server.url + path).status_code == 200
    assert server.count_rows(created["id"], "T") == 6


def test_28_body_over_16_mb_is_413(pbistream_server: RunningServer) -> None:
    url = push_dataset(pbistream_server)
    padding = b" " * (16 * 1024 * 1024)
    body = b'{"rows": [{"v": 1}]}' + padding
    response = httpx.post(url, content=body, headers=pbistream_server.headers, timeout=60)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestEntityTooLarge"

    def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        yield b'{"rows": [{"v": 1}]}'
        for _ in range(17):
            yield b" " * (1024 * 1024)

    response = httpx.post(url, content=chunks(), headers=pbistream_server.headers, timeout=60)
    assert response.status_code == 413
    assert pbistream_server.count_rows(table="T") == 0


def test_declared_huge_content_length_is_refused_before_reading(
    pbistream_server: RunningServer,
) -> None:
    created = pbistream_server.create_dataset({"v": "Int64"}, mode="Push", table="T")
    path = f"{PBI}/datasets/{created['id']}/tables/T/rows"
    sock = _start_request(pbistream_server, path, 10 * 1024**3)
    try:
        assert _status_of(sock) == 413
    finally:
        sock.close()


def test_31_retention_none_table_stops_at_its_maximum(server_factory: Any) -> None:
    server = server_factory(none_retention_max_rows=50)
    url = push_dataset(server)
    assert post(server, url, 50).status_code == 200
    response = post(server, url, 1)
    assert response.status_code == 400
    assert "at most 50" in response.json()["error"]["message"]
    assert server.count_rows(table="T") == 50
    # basicFIFO tables are trimmed instead of refused.
    fifo = push_dataset(server, retention="basicFIFO")
    assert post(server, fifo, 60).status_code == 200


def test_limits_off_lifts_rates_and_row_caps(server_factory: Any) -> None:
    server = server_factory(limits=False, posts_per_minute=2, none_retention_max_rows=5)
    url = push_dataset(server)
    assert post(server, url, 10_001).status_code == 200
    for _ in range(3):
        assert post(server, url, 1).status_code == 200
    assert server.count_rows(table="T") == 10_004
    stream = server.create_streaming_dataset({"text": "Text"})
    assert httpx.post(stream, json=[{"text": "x" * 1000}] * 20).status_code == 200


@pytest.mark.parametrize("status", [429])
def test_throttled_requests_are_counted_in_metrics(server_factory: Any, status: int) -> None:
    server = server_factory(posts_per_minute=1)
    url = push_dataset(server)
    assert post(server, url).status_code == 200
    assert post(server, url).status_code == status
    text = httpx.get(f"{server.url}/metrics", headers=server.headers).text
    assert "posts_per_minute" in text
