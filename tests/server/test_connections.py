"""Connection exhaustion: slow and idle clients cannot take the server down.

Reproduces issue #8 defect 3: under a low open-file limit, more partial-header
connections than descriptors made ``accept()`` fail with EMFILE in a loop (/healthz
timed out, the log grew by megabytes a second). The server is a real process whose
open-file limit the test lowers (``preexec_fn``), driven over real sockets.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pbistream.server.log_repeats import RepeatFilter
from pbistream.testing import RunningServer, ServerProcess

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX open-file limits")

FD_LIMIT = 256


def _limit_open_files(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def _poll(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``predicate`` held; fail after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def _healthz(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/healthz", timeout=2.0, trust_env=False).status_code
    except httpx.TransportError:
        return None


_HEARD: dict[int, bytes] = {}  # what the server said on each socket (by id)


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed the socket (anything it said first is kept in _HEARD)."""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
            _HEARD[id(sock)] = _HEARD.get(id(sock), b"") + chunk
    except BlockingIOError:
        return False
    except OSError:  # reset: closed too
        return True


def _partial_requests(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sockets.append(sock)
    return sockets


def test_more_slow_header_connections_than_descriptors_do_not_stop_the_server(
    tmp_path: Path,
) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FD_LIMIT * 2 + 100:  # this test process opens the slow connections itself
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    server = ServerProcess(
        tmp_path / "data",
        args=["--header-timeout-seconds", "2", "--log-level", "info"],
        preexec_fn=_limit_open_files(FD_LIMIT, FD_LIMIT),
    ).start()
    slow: list[socket.socket] = []
    try:
        slow = _partial_requests(server.port, FD_LIMIT + 100)
        # Over the cap (limit minus a reserve), a new connection gets a clear 503 at once.
        _poll(lambda: any(_closed_by_server(s) for s in slow), 10, "a 503 over the cap")
        # Within seconds the slow ones are closed and the server answers again.
        waited = _poll(lambda: _healthz(server.url) == 200, 20, "/healthz to answer 200")
        assert waited < 15
        _poll(lambda: all(_closed_by_server(s) for s in slow), 15, "slow connections closed")
        answers = Counter(_HEARD.get(id(s), b"")[:12] for s in slow)
        assert answers[b"HTTP/1.1 503"] > 0, answers  # over the cap: told why, at once
        assert answers[b"HTTP/1.1 408"] > 0, answers  # too slow: told why, then closed
        assert server.process is not None and server.process.poll() is None
        started = time.monotonic()
        assert _healthz(server.url) == 200
        assert time.monotonic() - started < 2
    finally:
        for sock in slow:
            sock.close()
        server.stop()
    log = server.log_text()
    assert len(log.encode()) < 200_000, f"log grew to {len(log)} characters"
    assert "Too many open files" not in log
    assert "too many open connections" in log


def test_soft_open_file_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data", preexec_fn=_limit_open_files(FD_LIMIT, FD_LIMIT * 2)
    ).start()
    try:
        assert server.process is not None
        limits = Path(f"/proc/{server.process.pid}/limits")
        if limits.exists():
            line = next(x for x in limits.read_text().splitlines() if "open files" in x)
            assert line.split()[3:5] == [str(FD_LIMIT * 2), str(FD_LIMIT * 2)]
    finally:
        server.stop()
    assert f"raised the open-file limit from {FD_LIMIT} to {FD_LIMIT * 2}" in server.log_text()


@pytest.fixture
def quick_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(header_timeout_seconds=1.0, idle_timeout_seconds=1.0)


def _port(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def test_a_connection_that_sends_nothing_is_closed_within_seconds(
    quick_server: RunningServer,
) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(quick_server)), timeout=10)
    with sock:
        waited = _poll(lambda: _closed_by_server(sock), 10, "the silent connection to close")
    assert waited < 8


def test_partial_headers_get_408_and_are_closed(quick_server: RunningServer) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(quick_server)), timeout=10)
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes it
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"RequestTimeout" in answer


def test_keep_alive_connection_trickling_the_next_request_is_closed(
    quick_server: RunningServer,
) -> None:
    # uvicorn's keep-alive timer stops at the first byte: the header deadline does not.
    sock = socket.create_connection(("127.0.0.1", _port(quick_server)), timeout=10)
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 10 and not closed:
            try:
                sock.sendall(b"G")  # one byte every 0.3 s: never a whole request
            except OSError:
                closed = True
                break
            time.sleep(0.3)  # the slow client's pace, not a wait for a condition
            closed = _closed_by_server(sock)
            sock.setblocking(True)
    assert closed, "a keep-alive connection trickling bytes stayed open"


def test_an_idle_keep_alive_connection_is_closed_within_seconds(
    quick_server: RunningServer,
) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(quick_server)), timeout=10)
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        waited = _poll(lambda: _closed_by_server(sock), 10, "the idle connection to close")
    assert waited < 8


def test_a_slow_but_complete_request_and_keep_alive_reuse_still_work(
    quick_server: RunningServer,
) -> None:
    with httpx.Client(base_url=quick_server.url, trust_env=False) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200


def test_repeated_log_lines_are_collapsed_with_a_count() -> None:
    now = [0.0]
    repeat = RepeatFilter(10.0, clock=lambda: now[0])

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, args, None)

    assert repeat.filter(record("accept failed on %s", "fd=11"))
    for _ in range(500):
        assert not repeat.filter(record("accept failed on %s", "fd=11"))
    # Different lines (an access log's, say) are not repeats: each passes.
    assert repeat.filter(record("accept failed on %s", "fd=12"))
    assert repeat.filter(record("another message"))
    now[0] = 11.0
    amended = record("accept failed on %s", "fd=11")
    assert repeat.filter(amended)
    assert (
        amended.getMessage() == "accept failed on fd=11 (and 500 more like this in the last 10 s)"
    )
    now[0] = 30.0
    plain = record("accept failed on %s", "fd=11")
    assert repeat.filter(plain)
    assert plain.getMessage() == "accept failed on fd=11"


def test_metrics_count_open_refused_and_timed_out_connections(
    quick_server: RunningServer,
) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(quick_server)), timeout=10)
    with sock:
        _poll(lambda: _closed_by_server(sock), 10, "the silent connection to close")
    with quick_server.client(timeout=10) as client:
        text = client.get("/metrics").text
    assert "pbistream_connections_max " in text
    timed_out = next(
        x for x in text.splitlines() if x.startswith("pbistream_connections_timed_out_total ")
    )
    assert int(timed_out.split()[1]) >= 1
    assert "pbistream_connections_open 1" in text  # the /metrics request itself


def test_connection_limits_are_documented_for_network_use() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()
    assert "## Running it on a network" in doc
    for name in ("max_connections", "header_timeout_seconds", "idle_timeout_seconds"):
        assert f"| `{name}` | `--{name.replace('_', '-')}` |" in doc, name
    assert "| 408 |" in doc and "| 503 |" in doc
