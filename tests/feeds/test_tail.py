"""`pbistream tail` as a real process: growth, rotation (rename, truncate), SIGKILL, restart."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from feed_helpers import Feed, stored_rows, wait_for

from pbistream.testing import RunningServer


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(limits=False)


def append(path: Path, start: int, stop: int, *, csv: bool = False) -> None:
    with path.open("a") as out:
        for n in range(start, stop):
            out.write(f"{n},{n / 2},dev{n % 3}\n" if csv else json.dumps({"n": n}) + "\n")


def tail_args(path: Path, url: str, spool: Path, *extra: str) -> list[str]:
    return [
        "tail", str(path), "--to", url, "--spool", str(spool), "--no-pacing", "--json",
        "--poll", "0.05", "--status-every", "0.2", *extra,
    ]  # fmt: skip


def wait_rows(server: RunningServer, dataset_id: str, count: int) -> list[dict[str, int]]:
    rows = wait_for(
        lambda: len(r := stored_rows(server, dataset_id)) >= count and r, 60, f"{count} rows"
    )
    return rows  # type: ignore[no-any-return]


def test_follows_rename_and_truncate_rotations_exactly(
    server: RunningServer, tmp_path: Path
) -> None:
    dataset = server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    log = tmp_path / "app.jsonl"
    append(log, 0, 100)
    feed = Feed(tail_args(log, dataset["push_url"], tmp_path / "t.spool"), tmp_path, "tail")
    wait_rows(server, dataset["id"], 100)

    # rename rotation: the writer still adds to the old file, then opens a new one
    os.rename(log, tmp_path / "app.jsonl.1")
    append(tmp_path / "app.jsonl.1", 100, 120)
    append(log, 120, 170)
    feed.wait_event("rotated")
    wait_rows(server, dataset["id"], 170)

    # truncate rotation (copytruncate): the file becomes shorter than the position
    with log.open("r+") as handle:
        handle.truncate(0)
    feed.wait_event("truncated")
    append(log, 170, 200)
    rows = wait_rows(server, dataset["id"], 200)
    feed.wait_event("status", lines=200, rows=200, pending=0)
    assert feed.stop() == 0, feed.log()
    assert [row["n"] for row in rows] == list(range(200))  # in order, none twice


def test_sigkill_and_restart_neither_skip_nor_repeat_a_line(
    server: RunningServer, tmp_path: Path
) -> None:
    dataset = server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    log = tmp_path / "big.jsonl"
    spool = tmp_path / "k.spool"
    args = tail_args(log, dataset["push_url"], spool)
    feed = Feed(args, tmp_path, "tail")
    written = 0
    # Write in slices while it reads, and kill it while the file still grows.
    while written < 30_000:
        append(log, written, written + 1_000)
        written += 1_000
        if written == 10_000:
            wait_rows(server, dataset["id"], 5_000)
    feed.kill()
    killed_at = len(stored_rows(server, dataset["id"]))
    append(log, written, 40_000)  # written while it is down
    os.rename(log, tmp_path / "big.jsonl.1")  # and rotated while it is down
    append(log, 40_000, 45_000)
    again = Feed(args, tmp_path, "tail2")
    again.wait_event("resume_rotated")
    rows = wait_rows(server, dataset["id"], 45_000)
    append(log, 45_000, 45_010)
    rows = wait_rows(server, dataset["id"], 45_010)
    assert again.stop() == 0, again.log()
    counts = Counter(row["n"] for row in rows)
    assert len(rows) == 45_010 and set(counts) == set(range(45_010))  # exact
    assert killed_at < 30_000, "the tail must be killed mid-file"


def test_csv_header_survives_rotation_and_restart_and_bad_lines_are_dead_letters(
    server: RunningServer, tmp_path: Path
) -> None:
    dataset = server.create_dataset(
        {"n": "Int64", "value": "Number", "device": "Text"}, mode="PushStreaming"
    )
    log = tmp_path / "meter.csv"
    log.write_text("n,value,device\n")
    append(log, 0, 10, csv=True)
    with log.open("a") as out:
        out.write("1,2\n")  # too few values: a dead letter naming the line
    spool = tmp_path / "c.spool"
    args = tail_args(log, dataset["push_url"], spool, "--token", server.token)
    feed = Feed(args, tmp_path, "tail")
    wait_rows(server, dataset["id"], 10)
    assert feed.stop() == 0, feed.log()
    append(log, 10, 20, csv=True)  # the restart needs the header it read before
    again = Feed(args, tmp_path, "tail2")
    wait_rows(server, dataset["id"], 20)
    os.rename(log, tmp_path / "meter.csv.1")
    log.write_text("n,value,device\n")
    append(log, 20, 25, csv=True)
    rows = wait_rows(server, dataset["id"], 25)
    assert again.stop() == 0, again.log()
    assert rows == [{"n": n, "value": n / 2, "device": f"dev{n % 3}"} for n in range(25)]
    letters = Path(f"{spool}.deadletter.jsonl").read_text().splitlines()
    assert len(letters) == 1
    assert "meter.csv line 12: 2 values for 3 header columns" in json.loads(letters[0])["message"]


def test_a_file_that_does_not_exist_yet_is_waited_for(
    server: RunningServer, tmp_path: Path
) -> None:
    dataset = server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    log = tmp_path / "later.jsonl"
    feed = Feed(tail_args(log, dataset["push_url"], tmp_path / "l.spool"), tmp_path, "tail")
    append(log, 0, 5)
    with log.open("a") as out:
        out.write('{"n": 5}')  # no newline yet: a line still being written waits
    rows = wait_rows(server, dataset["id"], 5)
    assert len(rows) == 5  # the unfinished line is not read
    with log.open("a") as out:
        out.write("\n")
    rows = wait_rows(server, dataset["id"], 6)
    assert feed.stop() == 0, feed.log()
    assert [row["n"] for row in rows] == list(range(6))
