"""AsyncClient under Power BI's limits, a 1,000,000-row DataFrame, buffer policies, exit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from client_helpers import FIELDS, TIME_SCALE, metric, rows_of

from pbistream import (
    AsyncClient,
    BufferFullError,
    BufferOptions,
    Client,
    PacingOptions,
    UndeliveredRowsError,
)
from pbistream.client import BatchOptions
from pbistream.testing import RunningServer, free_port


def test_async_client_20000_single_pushes_without_a_429(limited_server: RunningServer) -> None:
    dataset = limited_server.create_dataset(FIELDS, mode="PushStreaming")

    async def main() -> AsyncClient:
        async with AsyncClient(
            dataset["push_url"],
            token=limited_server.token,
            pacing=PacingOptions(time_scale=TIME_SCALE),
        ) as client:
            for n in range(20_000):
                client.push({"n": n, "value": n / 3, "ts": "2024-05-01T12:00:00Z"})
                if n % 1000 == 0:
                    await asyncio.sleep(0)  # a producer that yields now and then
            assert await client.aflush(timeout=120) == 0
        return client

    client = asyncio.run(main())
    assert limited_server.count_rows(dataset["id"]) == 20_000
    assert client.stats.rate_limited == 0
    url, token = limited_server.url, limited_server.token
    assert metric(url, token, "pbistream_http_requests_total", status="429") == 0


def test_async_client_with_a_spool(fast_server: RunningServer, tmp_path: Path) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")

    async def main() -> int:
        async with AsyncClient(
            dataset["push_url"], spool=tmp_path / "a.spool", schema=None
        ) as client:
            client.push([{"n": n} for n in range(500)])
            assert client.stats.spooled == 500
        return client.stats.sent

    assert asyncio.run(main()) == 500
    assert fast_server.count_rows(dataset["id"]) == 500


def test_push_dataframe_of_a_million_rows(fast_server: RunningServer) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    dataset = fast_server.create_dataset(FIELDS, mode="Push", table="Big")
    size = 1_000_000
    df = pd.DataFrame(
        {
            "n": np.arange(size, dtype="int64"),
            "value": np.linspace(0.0, 1.0, size),
            "ts": pd.date_range("2024-01-01", periods=size, freq="s", tz="UTC"),
        }
    )
    df.loc[7, "value"] = np.nan  # a missing value becomes a null
    url = f"{fast_server.url}/v1.0/myorg/datasets/{dataset['id']}/tables/Big/rows"
    started = time.monotonic()
    with Client(url, auth=fast_server.token, pacing=PacingOptions(enabled=False)) as client:
        client.push_dataframe(df)
        # The caller pays for a copy of the frame only (~0.02 s); converting it to rows
        # on the caller's thread took 3-4 s on the same machine.
        assert time.monotonic() - started < 1.0
        df.loc[0, "n"] = -1  # the caller may change its frame: the queued copy is kept
        assert client.flush(timeout=240) == 0
    assert client.stats.sent == size and client.stats.dead_lettered == 0
    assert fast_server.count_rows(dataset["id"], "Big") == size
    assert time.monotonic() - started < 240
    with fast_server.client() as http:
        first = http.get(
            f"/api/datasets/{dataset['id']}/rows",
            params={"table": "Big", "limit": 8, "order": "asc"},
        ).json()["rows"]
    assert first[0]["data"] == {"n": 0, "value": 0.0, "ts": "2024-01-01T00:00:00.000Z"}
    assert first[7]["data"]["value"] is None


def test_buffer_full_blocks_then_raises_or_drops_the_oldest(tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"
    blocking = Client(
        unreachable,
        schema=None,
        buffer=BufferOptions(max_rows=10, when_full="block", timeout=0.2),
        batch=BatchOptions(max_delay=60),
        unsent_path=tmp_path / "unsent1.jsonl",
    )
    blocking.push([{"n": n} for n in range(10)])
    started = time.monotonic()
    with pytest.raises(BufferFullError, match=r"held 10 rows for 0\.2 s"):
        blocking.push({"n": 10})
    assert time.monotonic() - started >= 0.2
    with pytest.raises(UndeliveredRowsError) as lost:
        blocking.close(timeout=0.1)
    assert lost.value.rows == 10 and lost.value.path == str(tmp_path / "unsent1.jsonl")
    assert len((tmp_path / "unsent1.jsonl").read_text().splitlines()) == 10

    dropping = Client(
        unreachable,
        schema=None,
        buffer=BufferOptions(max_rows=10, when_full="drop_oldest"),
        batch=BatchOptions(max_delay=60),
        unsent_path=tmp_path / "unsent2.jsonl",
    )
    dropping.push([{"n": n} for n in range(25)])
    assert dropping.stats.dropped == 15 and dropping.pending == 10
    with pytest.raises(UndeliveredRowsError, match="10 rows were not delivered"):
        dropping.close(timeout=0.1)


def test_dataframes_keep_push_order_and_the_buffer_policy(
    fast_server: RunningServer, tmp_path: Path
) -> None:
    pd = pytest.importorskip("pandas")
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    with Client(
        dataset["push_url"], token=fast_server.token, batch=BatchOptions(max_rows=3)
    ) as client:
        client.push({"n": -1})
        client.push_dataframe(pd.DataFrame({"n": range(7)}))
        client.push({"n": 99})
        client.push_dataframe(pd.DataFrame({"n": [100, 101]}))
        assert client.flush(timeout=30) == 0
    assert [row["n"] for row in rows_of(fast_server, dataset["id"])] == [
        -1,
        *range(7),
        99,
        100,
        101,
    ]

    unreachable = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"
    letters: list[int] = []
    dropping = Client(
        unreachable,
        schema=None,
        buffer=BufferOptions(max_rows=10, when_full="drop_oldest"),
        batch=BatchOptions(max_delay=60),
        dead_letter_path=tmp_path / "left.jsonl",
        unsent_path=tmp_path / "unsent3.jsonl",
        on_dead_letter=lambda dead: letters.extend(d.row["n"] for d in dead),
    )
    dropping.push({"n": -1})
    dropping.push_dataframe(pd.DataFrame({"n": range(25)}))
    assert dropping.stats.dropped == 16 and dropping.pending == 10
    with pytest.raises(UndeliveredRowsError):
        dropping.close(timeout=0.1)
    assert letters == list(range(15, 25))  # the oldest went, the newest were reported

    blocking = Client(
        unreachable,
        schema=None,
        buffer=BufferOptions(max_rows=10, when_full="block", timeout=0.2),
        batch=BatchOptions(max_delay=60),
        unsent_path=tmp_path / "unsent4.jsonl",
    )
    blocking.push_dataframe(pd.DataFrame({"n": range(8)}))
    with pytest.raises(BufferFullError, match=r"held 10 rows for 0\.2 s"):
        blocking.push_dataframe(pd.DataFrame({"n": range(3)}))
    with pytest.raises(BufferFullError, match="do not fit a buffer of 10 rows"):
        blocking.push([{"n": n} for n in range(11)])
    with pytest.raises(UndeliveredRowsError) as lost:
        blocking.close(timeout=0.1)
    assert lost.value.rows == 8
    assert [json.loads(line)["n"] for line in (tmp_path / "unsent4.jsonl").open()] == list(range(8))

    partial = Client(
        unreachable,
        schema=None,
        buffer=BufferOptions(max_rows=60_000, when_full="block", timeout=0.2),
        batch=BatchOptions(max_delay=60),
        unsent_path=tmp_path / "unsent5.jsonl",
    )
    with pytest.raises(BufferFullError, match=r"first 50,000 of 100,000 rows were queued"):
        partial.push_dataframe(pd.DataFrame({"n": range(100_000)}))
    assert partial.pending == 50_000
    with pytest.raises(UndeliveredRowsError) as lost:
        partial.close(timeout=0.1)
    assert lost.value.rows == 50_000


def test_async_client_push_dataframe_returns_at_once_and_delivers(
    fast_server: RunningServer,
) -> None:
    pd = pytest.importorskip("pandas")
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    frame = pd.DataFrame({"n": range(30_000), "value": [0.5] * 30_000})

    async def main() -> AsyncClient:
        async with AsyncClient(
            dataset["push_url"], token=fast_server.token, pacing=PacingOptions(enabled=False)
        ) as client:
            client.push({"n": -1})
            client.push_dataframe(frame)
            assert client.pending == 30_001
            assert await client.aflush(timeout=60) == 0
        return client

    client = asyncio.run(main())
    assert client.stats.sent == 30_001 and client.stats.dead_lettered == 0
    stored = [row["n"] for row in rows_of(fast_server, dataset["id"])]
    assert stored == [-1, *range(30_000)]


AT_EXIT = textwrap.dedent(
    """
    import sys
    from pbistream import Client
    from pbistream.client import BatchOptions
    url, spool = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    client = Client(url, schema=None, spool=spool, batch=BatchOptions(max_delay=30),
                    close_timeout=1.5)
    client.push([{"n": n} for n in range(300)])
    # no flush, no close: the interpreter exits with rows still buffered
    """
)


def _run_at_exit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "exit.py"
    script.write_text(AT_EXIT)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        cwd=tmp_path,  # where an unsent-rows file goes
    )


def test_interpreter_exit_flushes_pending_rows(fast_server: RunningServer, tmp_path: Path) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    done = _run_at_exit(tmp_path, dataset["push_url"])
    assert done.returncode == 0, done.stderr
    assert sorted(r["n"] for r in rows_of(fast_server, dataset["id"])) == list(range(300))


def test_interpreter_exit_spools_and_reports_what_it_could_not_send(tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=SECRET"
    done = _run_at_exit(tmp_path, unreachable, str(tmp_path / "exit.spool"))
    assert done.returncode == 0
    assert "300 rows stay in the spool" in done.stderr
    assert "SECRET" not in done.stderr
    lost = _run_at_exit(tmp_path, unreachable)
    assert "300 rows were NOT delivered before close" in lost.stderr
    # Never only a log line: the rows are in a file it names, and the script fails.
    assert lost.returncode == 1
    (unsent,) = tmp_path.glob("pbistream-unsent-*.jsonl")
    assert str(unsent) in lost.stderr
    assert [json.loads(line)["n"] for line in unsent.open()] == list(range(300))


def test_a_frame_that_cannot_become_rows_is_dead_lettered_not_lost(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")

    class Unconvertible(pd.DataFrame):  # type: ignore[misc]
        @property
        def _constructor(self) -> type:
            return Unconvertible

        def astype(self, *args: object, **kwargs: object) -> object:
            raise TypeError("no object form")

    unreachable = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"
    client = Client(unreachable, schema=None, dead_letter_path=tmp_path / "dead.jsonl")
    client.push_dataframe(Unconvertible({"n": range(5)}))
    assert client.flush(timeout=10) == 0  # settled: dead-lettered, not stuck as pending
    assert client.stats.dead_lettered == 5
    lines = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert len(lines) == 5 and "no object form" in lines[0] and '"rule":"dataframe"' in lines[0]
    assert client.close(timeout=0.1) == 0


def test_closing_with_a_frame_pending_writes_it_without_converting_to_dicts(
    tmp_path: Path,
) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    unreachable = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"
    unsent = tmp_path / "unsent.jsonl"
    client = Client(unreachable, schema=None, batch=BatchOptions(max_delay=60), unsent_path=unsent)
    size = 1_000_000
    frame = pd.DataFrame(
        {"n": np.arange(size), "value": np.linspace(0, 1, size), "label": ["a"] * size}
    )
    client.push_dataframe(frame)
    started = time.monotonic()
    with pytest.raises(UndeliveredRowsError) as lost:
        client.close(timeout=0.1)
    assert lost.value.rows == 1_000_000
    # pandas writes the frame itself: turning it into dicts first took 1.7 s here.
    assert time.monotonic() - started < 5.0
    with unsent.open() as lines:
        assert json.loads(next(lines)) == {"n": 0, "value": 0.0, "label": "a"}
        assert sum(1 for _ in lines) == size - 1


ASYNC_INTERRUPTED = textwrap.dedent(
    """
    import asyncio, sys
    import pbistream

    async def main():
        async with pbistream.AsyncClient(sys.argv[1], schema=None,
                                         unsent_path=sys.argv[2]) as client:
            client.push([{"n": n} for n in range(10)])
            print("pushed", flush=True)
            await asyncio.sleep(60)

    asyncio.run(main())
    """
)


def test_ctrl_c_in_an_async_with_block_keeps_the_rows_and_ends(tmp_path: Path) -> None:
    """asyncio.run turns Ctrl-C into a cancellation: `async with` must not then wait."""
    dead = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"
    script = tmp_path / "interrupted.py"
    script.write_text(ASYNC_INTERRUPTED)
    unsent = tmp_path / "unsent.jsonl"
    child = subprocess.Popen(
        [sys.executable, str(script), dead, str(unsent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "pushed"
    child.send_signal(signal.SIGINT)
    try:
        _, err = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail("Ctrl-C did not end an `async with` block whose rows could not go")
    assert child.returncode != 0
    assert f"written to {unsent}" in err
    assert len(unsent.read_text().splitlines()) == 10
