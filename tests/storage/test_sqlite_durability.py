"""SQLite-only guarantees: acknowledged rows survive kill -9; the file carries its schema."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pbistream.exceptions import ConfigError
from pbistream.schema import Dataset, Mode, Retention
from pbistream.storage import open_storage
from pbistream.storage.sqlite import SCHEMA_VERSION, SQLiteStorage

WRITER = textwrap.dedent(
    """
    import sys, time
    from pbistream.schema import Dataset, Mode, Retention
    from pbistream.storage.sqlite import SQLiteStorage

    store = SQLiteStorage(sys.argv[1])
    store.create_dataset(Dataset("ds", "d", Mode.PUSH, Retention.NONE, []))
    n = 0
    while True:
        batch = [{"n": n + i, "text": "x" * 50} for i in range(200)]
        result = store.insert_rows("ds", "T", batch, received_at=time.time())
        n += 200
        # Acknowledge only after insert_rows returned (= committed), as the server does.
        print(result.last_id, n, flush=True)
    """
)


def test_acknowledged_rows_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "pbistream.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acked_id, acked_rows = 0, 0
    deadline = time.monotonic() + 30
    try:
        while acked_rows < 20_000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked_id, acked_rows = map(int, line.split())
        # Kill it mid-run: it is still inserting as the signal lands.
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert acked_rows >= 20_000, "the writer did not get far enough"
    store = SQLiteStorage(db)
    try:
        kept = store.read_rows("ds", "T", limit=10**7)
        assert len(kept) >= acked_rows
        assert [r.data["n"] for r in kept[:acked_rows]] == list(range(acked_rows))
        assert kept[acked_rows - 1].id == acked_id
        # The O(1) counter agrees with the rows themselves after the crash.
        assert store.count_rows("ds", "T") == len(kept)
    finally:
        store.close()


def test_schema_version_is_recorded_and_newer_files_refused(tmp_path: Path) -> None:
    db = tmp_path / "pbistream.db"
    SQLiteStorage(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer pbistream"):
        SQLiteStorage(db)


def test_reopen_keeps_data_and_ids_keep_growing(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "a.db")
    store.create_dataset(Dataset("ds", "d", Mode.PUSH, Retention.NONE, []))
    first = store.insert_rows("ds", "T", [{"a": 1}], received_at=1.0)
    store.delete_rows("ds", "T")
    store.set_meta("token", "t")
    assert store.get_meta("token") == "t"  # this thread now has a reader connection
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        store.get_meta("token")
    again = SQLiteStorage(tmp_path / "a.db")
    try:
        assert again.get_meta("token") == "t"
        second = again.insert_rows("ds", "T", [{"a": 2}], received_at=2.0)
        assert first.last_id is not None and second.first_id is not None
        assert second.first_id > first.last_id
    finally:
        again.close()


def test_open_storage_targets(tmp_path: Path) -> None:
    store = open_storage(tmp_path / "data")
    try:
        assert isinstance(store, SQLiteStorage)
        assert store.path == tmp_path / "data" / "pbistream.db"
    finally:
        store.close()
    url_store = open_storage(f"sqlite:///{tmp_path}/other.db")
    try:
        assert isinstance(url_store, SQLiteStorage)
        assert url_store.path == tmp_path / "other.db"
    finally:
        url_store.close()


def test_open_storage_rejects_bad_targets(tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        open_storage(a_file)
    with pytest.raises(ConfigError, match="unknown storage URL scheme 'mysql'"):
        open_storage("mysql://user:secret@host/db?key=hidden")
    with pytest.raises(ConfigError, match="no file path"):
        open_storage("sqlite://")


def test_row_by_row_fallback_without_json_functions(tmp_path: Path) -> None:
    """SQLite builds without json_each insert row by row, with the same results."""
    store = SQLiteStorage(tmp_path / "a.db")
    try:
        assert store._json_batches  # this build has JSON functions: the fast path
        store._json_batches = False
        store.create_dataset(Dataset("ds", "d", Mode.PUSH, Retention.NONE, []))
        odd = [{"s": "nul\u0000 🚀", "n": 2**63 - 1}, {"s": None, "f": 1e300}]
        first = store.insert_rows("ds", "T", odd, received_at=1.0, fifo=(1, 2))
        assert (first.stored, first.row_count, first.last_id) == (2, 2, 2)
        second = store.insert_rows("ds", "T", odd, received_at=2.0, fifo=(1, 2))
        assert (second.first_id, second.last_id, second.row_count) == (3, 4, 1)
        assert [r.data for r in store.read_rows("ds", "T")] == odd[1:]
        with pytest.raises(ValueError, match="row 0 cannot be stored"):
            store.insert_rows("ds", "T", [{"s": "\udc00"}], received_at=3.0)
    finally:
        store.close()
