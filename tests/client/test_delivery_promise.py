"""Issue 7: every row delivered or accounted for by default, against the real server.

The server runs with Power BI's limits and ``time_scale`` (a minute lasts a second);
the client is never told the scale: it reads it from the server's answers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from client_helpers import TIME_SCALE, rows_of

from pbistream import Client, UndeliveredRowsError
from pbistream.client import RetryOptions
from pbistream.testing import RunningServer, free_port


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_with_block_of_50000_single_rows_to_a_streaming_dataset_stores_all(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(time_scale=TIME_SCALE)  # limits on
    dataset = server.create_dataset({"n": "Int64", "label": "Text"}, mode="Streaming")
    with Client(dataset["push_url"], schema=None) as client:
        for n in range(50_000):
            client.push({"n": n, "label": "reading"})
    # close() waited for every row however long the limits made it (no timeout).
    assert client.stats.sent == 50_000 and client.stats.rate_limited == 0
    assert client._engine.pacer.time_scale == TIME_SCALE  # learned from the server
    assert server.count_rows(dataset["id"]) == 50_000


HANGING = textwrap.dedent(
    """
    import sys, time
    from pbistream import Client
    url, spool, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = Client(url, schema=None, spool=spool)
    client.push([{"n": n} for n in range(total)])
    print("spooled", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: requests stay in flight."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


def _locked_rows(spool: Path) -> int:
    with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM messages WHERE status = 1").fetchone()[0])


def test_a_sigkilled_clients_spool_alone_delivers_every_row_once(
    fast_server: RunningServer, silent_port: int, tmp_path: Path
) -> None:
    dataset = fast_server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    spool = tmp_path / "killed.spool"
    script = tmp_path / "pusher.py"
    script.write_text(HANGING)
    hanging_url = f"http://127.0.0.1:{silent_port}/beta/t/datasets/d/rows?key=k"
    child = subprocess.Popen(
        [sys.executable, str(script), hanging_url, str(spool), "3000"],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"spooled"
        _wait_for(lambda: _locked_rows(spool) > 0, "a batch in flight (LOCKED rows)")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert _locked_rows(spool) > 0  # the killed process left rows LOCKED

    # No push(), no `with`: the spool's rows (LOCKED ones too) are delivered at once.
    client = Client(dataset["push_url"], schema=None, spool=spool)
    assert client.pending == 3000
    assert client.flush(timeout=60) == 0
    assert client.close() == 0
    assert sorted(r["n"] for r in rows_of(fast_server, dataset["id"])) == list(range(3000))


UNSPOOLED = textwrap.dedent(
    """
    import sys
    from pbistream import Client
    url, timeout = sys.argv[1], sys.argv[2]
    with Client(url, schema=None, close_timeout=None if timeout == "none" else float(timeout),
                unsent_path=sys.argv[3]) as client:
        client.push([{"n": n} for n in range(40)])
        print("closing", flush=True)
    """
)


def test_undelivered_rows_without_a_spool_raise_and_fail_the_script(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=SECRET"
    script = tmp_path / "unspooled.py"
    script.write_text(UNSPOOLED)
    unsent = tmp_path / "unsent.jsonl"
    done = subprocess.run(
        [sys.executable, str(script), dead, "1.0", str(unsent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "UndeliveredRowsError: 40 rows were not delivered" in done.stderr
    assert "nothing answers at 127.0.0.1" in done.stderr and "SECRET" not in done.stderr
    assert [json.loads(line)["n"] for line in unsent.open()] == list(range(40))


def test_ctrl_c_while_close_waits_writes_the_rows_and_says_where(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"
    script = tmp_path / "unspooled.py"
    script.write_text(UNSPOOLED)
    unsent = tmp_path / "unsent.jsonl"
    child = subprocess.Popen(
        [sys.executable, str(script), dead, "none", str(unsent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline().strip() == "closing"
    # close() waits with no limit and says so every few seconds: the rows, the limit
    # or error that holds them, and how to stop.
    while "Ctrl-C stops waiting" not in (line := child.stderr.readline()):
        assert line, "the waiting close() said nothing"
    assert "40 rows left to deliver" in line
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode != 0
    assert f"written to {unsent}" in err
    assert len(unsent.read_text().splitlines()) == 40


UNCLOSED = textwrap.dedent(
    """
    import sys
    from pbistream import Client
    url, timeout = sys.argv[1], sys.argv[2]
    client = Client(url, schema=None, close_timeout=None if timeout == "none" else float(timeout),
                    unsent_path=sys.argv[3])
    client.push([{"n": n} for n in range(40)])
    print("flush left", client.flush(timeout=0.2), flush=True)
    """
)


def test_an_unclosed_client_at_exit_fails_the_script_or_says_ctrl_c(tmp_path: Path) -> None:
    """No `with`, no close(): the exit hook waits, then exits 1 (or 130 after Ctrl-C)."""
    dead = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"
    script = tmp_path / "unclosed.py"
    script.write_text(UNCLOSED)
    unsent = tmp_path / "unsent.jsonl"
    done = subprocess.run(
        [sys.executable, str(script), dead, "1.0", str(unsent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "flush left 40" in done.stdout
    assert "pbistream: at exit: 40 rows were not delivered" in done.stderr
    assert len(unsent.read_text().splitlines()) == 40

    unsent.unlink()
    child = subprocess.Popen(
        [sys.executable, str(script), dead, "none", str(unsent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline().startswith("flush left 40")
    while "Ctrl-C stops waiting" not in (line := child.stderr.readline()):
        assert line, "the exit hook's wait said nothing"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130
    assert "pbistream: at exit: interrupted" in err and f"written to {unsent}" in err
    assert len(unsent.read_text().splitlines()) == 40


class _SequenceReceiver(BaseHTTPRequestHandler):
    """A stand-in for a pbistream server that skips rows by sequence number.

    It keeps the table's last number; a request at or below it is answered 200 with
    ``X-PBIStream-Rows-Ignored`` and ``X-PBIStream-Sequence-Last`` (the serve-data
    branch's contract). ``fail_once`` stores the first request then answers 503, as
    when an answer is lost after the commit.
    """

    last = 0
    seen: list[tuple[int, int]] = []  # (sequence number, rows)
    stored = 0
    fail_once = False

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        rows = len(json.loads(body))
        seq = int(self.headers["X-PowerBI-PushData-SequenceNumber"])
        cls = type(self)
        cls.seen.append((seq, rows))
        headers: dict[str, str] = {}
        if seq <= cls.last:
            headers = {
                "X-PBIStream-Rows-Ignored": str(rows),
                "X-PBIStream-Sequence-Last": str(cls.last),
            }
            status = 200
        else:
            cls.last = seq
            cls.stored += rows
            status = 200
            if cls.fail_once:
                cls.fail_once = False
                status = 503
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_SequenceReceiver]]]:
    handler = type("Receiver", (_SequenceReceiver,), {"seen": [], "last": 0, "stored": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/beta/t/datasets/d/rows?key=k", handler
    httpd.shutdown()
    httpd.server_close()


def test_rows_skipped_as_old_on_a_first_send_are_resent_above_the_tables_number(
    receiver: tuple[str, type[_SequenceReceiver]], caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = receiver
    handler.last = 10**18  # another producer's numbers are far ahead of ours
    with caplog.at_level(logging.INFO, logger="pbistream.client"), Client(url, schema=None) as c:
        c.push([{"n": n} for n in range(5)])
    client = c
    assert handler.stored == 5 and client.stats.sent == 5
    # Routine with several producers on one table, and handled: not a warning (an
    # unconfigured program prints every warning on stderr).
    skipped = [r for r in caplog.records if "skipped 5 rows as old" in r.getMessage()]
    assert skipped and all(r.levelno == logging.INFO for r in skipped)
    first, second = handler.seen
    assert first[0] < 10**18 < second[0] <= 10**18 + 1_000 and second[1] == 5


def test_a_retry_of_a_stored_batch_skipped_as_old_counts_as_delivered(
    receiver: tuple[str, type[_SequenceReceiver]],
) -> None:
    url, handler = receiver
    handler.fail_once = True  # stored, but the answer says 503: the client retries
    with Client(url, schema=None, retry=RetryOptions(backoff_base=0.01)) as client:
        client.push([{"n": n} for n in range(5)])
    assert handler.stored == 5 and client.stats.sent == 5
    assert len(handler.seen) == 2 and handler.seen[0] == handler.seen[1]  # no third send


def test_real_server_rows_behind_the_tables_sequence_number_are_still_stored(
    fast_server: RunningServer,
) -> None:
    """Needs the server side of the sequence contract (the serve-data branch)."""
    dataset = fast_server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    ahead = 2**62  # a producer whose numbers run far ahead of this client's clock
    headers = {"X-PowerBI-PushData-SequenceNumber": str(ahead)}
    first = httpx.post(dataset["push_url"], json=[{"n": -1}], headers=headers, timeout=10)
    again = httpx.post(dataset["push_url"], json=[{"n": -2}], headers=headers, timeout=10)
    assert first.status_code == again.status_code == 200
    if "X-PBIStream-Rows-Ignored" not in again.headers:
        pytest.skip("this server does not report skipped rows yet (serve-data branch)")
    with Client(dataset["push_url"], schema=None) as client:
        client.push({"n": 1})
    assert [r["n"] for r in rows_of(fast_server, dataset["id"])] == [-1, 1]


def test_the_server_tells_its_time_scale_limits_and_mode(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(time_scale=30.0, limits=False)
    dataset = server.create_dataset({"n": "Int64"}, mode="Push")
    url = f"{server.url}/v1.0/myorg/datasets/{dataset['id']}/tables/RealTimeData/rows"
    answer = httpx.post(url, json={"rows": [{"n": 1}]}, headers=server.headers, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["X-PBIStream-Time-Scale"] == "30.0"
    assert answer.headers["X-PBIStream-Limits"] == "off"
    assert answer.headers["X-PBIStream-Dataset-Mode"] == "Push"
    with Client(url, token=server.token) as client:
        client.push({"n": 2})
        assert client.flush(timeout=30) == 0
        pacer = client._engine.pacer
        assert (pacer.time_scale, pacer.enabled, pacer.row_limited) == (30.0, False, True)
        assert client._max_bytes == 16 * 1024 * 1024  # a Push dataset takes 16 MB bodies


def test_on_success_receives_the_count_it_is_documented_to(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    counts: list[int] = []
    with Client(dataset["push_url"], schema=None, on_success=counts.append) as client:
        client.push([{"n": n} for n in range(7)])
    assert sum(counts) == 7 and all(isinstance(c, int) for c in counts)
    assert Client.__doc__ is not None and "f(count)" in Client.__doc__


def test_close_without_a_timeout_is_not_bounded_by_30_s(tmp_path: Path) -> None:
    unsent = tmp_path / "unsent.jsonl"
    client = Client(
        "http://127.0.0.1:1/beta/t/datasets/d/rows?key=k", schema=None, unsent_path=unsent
    )
    assert client.close_timeout is None
    client.push({"n": 1})
    with pytest.raises(UndeliveredRowsError) as lost:
        client.close(timeout=0.2)
    assert lost.value.path == str(unsent) and unsent.read_text() == '{"n":1}\n'
    assert "1 row was not delivered" in str(lost.value)


def test_the_progress_eta_is_never_shorter_than_the_wait_that_holds_the_rows() -> None:
    """A line read "held by retries, frees in 50 min; about 4.5 s to go"."""
    reports: list[Any] = []
    client = Client(
        f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k",
        schema=None,
        retry=RetryOptions(backoff_base=4.0),
        on_progress=reports.append,
        unsent_path=os.devnull,
    )
    client.push({"n": 1})
    with pytest.raises(UndeliveredRowsError):
        client.close(timeout=3.0)
    held = [r for r in reports if r.frees_in > 0]
    assert held, reports
    assert all(r.eta >= r.frees_in for r in held), held
    assert "retries (nothing answers at 127.0.0.1" in held[-1].limit
