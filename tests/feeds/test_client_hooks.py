"""The two client hooks feeds stand on: push(checkpoint=) and reject()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pbistream import Client
from pbistream.client import DeadLetter
from pbistream.exceptions import ConfigError, SpoolFullError
from pbistream.spool import Spool
from pbistream.testing import free_port

DEAD_URL = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"


def test_the_checkpoint_commits_with_the_rows_or_not_at_all(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.spool", max_rows=3)
    client = Client(DEAD_URL, spool=spool, schema=None)
    client.push([{"a": 1}, {"a": 2}], checkpoint={"feed": "line 2"})
    assert spool.get_meta("feed") == "line 2" and spool.stats().pending == 2
    client.push([], checkpoint={"feed": "line 3 (blank)"})  # no rows: still recorded
    assert spool.get_meta("feed") == "line 3 (blank)"
    with pytest.raises(SpoolFullError):
        client.push([{"a": 3}, {"a": 4}], checkpoint={"feed": "line 5"})
    assert spool.get_meta("feed") == "line 3 (blank)"  # neither the rows nor the position
    assert spool.stats().pending == 2
    client.close(0.1)
    reopened = Spool(tmp_path / "s.spool")
    assert reopened.get_meta("feed") == "line 3 (blank)"
    reopened.close()


def test_a_checkpoint_needs_a_spool() -> None:
    client = Client(DEAD_URL, schema=None)
    with pytest.raises(ConfigError, match="needs a client with a spool"):
        client.push([{"a": 1}], checkpoint={"feed": "x"})
    client.close(0.1)


def test_reject_writes_the_dead_letter_file_and_calls_back(tmp_path: Path) -> None:
    seen: list[DeadLetter] = []
    client = Client(DEAD_URL, spool=tmp_path / "r.spool", schema=None, on_dead_letter=seen.extend)
    letter = DeadLetter({"topic": "a/b", "payload": "x"}, None, "payload", None, "topic a/b: no")
    client.reject([letter])
    assert seen == [letter] and client.stats.dead_lettered == 1
    lines = Path(f"{tmp_path / 'r.spool'}.deadletter.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["message"] == "topic a/b: no"
    assert client.pending == 0
    client.close(0.1)
