"""The SQLite spool: lifecycle, sequence numbers kept for replay, caps, stale claims."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pbistream.exceptions import SpoolError, SpoolFullError
from pbistream.spool import MessageStatus, Spool


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lifecycle_ready_locked_done(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    ids = [spool.put(f'{{"n":{i}}}'.encode()) for i in range(5)]
    claimed = spool.claim(3)
    assert [r.id for r in claimed] == ids[:3]
    stats = spool.stats()
    assert (stats.ready, stats.locked) == (2, 3)
    spool.assign([r.id for r in claimed], 77)
    spool.ack([r.id for r in claimed])
    stats = spool.stats()
    assert (stats.ready, stats.locked, stats.done, stats.last_seq) == (2, 0, 0, 77)
    assert spool.held_rows == 2


def test_failed_rows_keep_their_reason_and_can_be_requeued(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.put_many([b'{"a":1}', b'{"a":2}'])
    claimed = spool.claim(10)
    spool.fail([claimed[0].id], "HTTP 404 unknown column")
    assert spool.failed() == [(claimed[0].id, b'{"a":1}', "HTTP 404 unknown column")]
    assert spool.requeue_failed() == 1
    assert spool.stats().failed == 0


def test_a_replayed_batch_comes_back_whole_with_its_sequence_number(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "s.db"
    spool = Spool(path, clock=clock)
    spool.put_many([f'{{"n":{i}}}'.encode() for i in range(10)])
    first = spool.claim(4)
    spool.assign([r.id for r in first], 500)
    spool.close()  # the process dies with the batch in flight

    again = Spool(path, clock=clock)
    assert again.acquire() == 4  # the dead owner's claims are READY again
    replay = again.claim(100)
    assert [r.id for r in replay] == [r.id for r in first]
    assert {r.seq for r in replay} == {500}
    rest = again.claim(100)
    assert len(rest) == 6 and all(r.seq is None for r in rest)


def test_stale_claims_are_requeued_on_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    spool = Spool(tmp_path / "s.db", clock=clock)
    spool.put(b"{}")
    spool.claim(1)
    assert spool.requeue_stale(older_than=60) == 0
    clock.now += 61
    assert spool.requeue_stale(older_than=60) == 1
    assert spool.stats().ready == 1


def test_cap_refuses_new_rows_and_keeps_old_ones(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_rows=3)
    spool.put_many([b"{}"] * 3)
    with pytest.raises(SpoolFullError, match="cap is 3"):
        spool.put(b"{}")
    assert spool.stats().ready == 3
    by_bytes = Spool(tmp_path / "b.db", max_bytes=10)
    by_bytes.put(b'{"a":123}')
    with pytest.raises(SpoolFullError, match="bytes"):
        by_bytes.put_many([b"{}", b"{}"])


def test_only_one_client_per_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path / "s.db")
    first.acquire()
    second = Spool(tmp_path / "s.db")
    with pytest.raises(SpoolError, match="in use"):
        second.acquire()
    first.close()
    second.acquire()


def test_file_is_private_and_purge_empties(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    assert os.stat(tmp_path / "s.db").st_mode & 0o077 == 0
    spool.put_many([b"{}"] * 4)
    spool.fail([r.id for r in spool.claim(1)], "x")
    assert spool.purge(MessageStatus.FAILED) == 1
    assert spool.purge() == 3
    assert spool.held_rows == 0


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SpoolError, match="cannot open"):
        Spool(bad)
