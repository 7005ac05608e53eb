"""PostgreSQL-only guarantees: several replicas on one database, URLs, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from storage_helpers import follow_while_writing

from pbistream.exceptions import ConfigError
from pbistream.schema import Dataset, Mode, Retention
from pbistream.storage import open_storage
from pbistream.storage.postgres import PostgresStorage

pytestmark = pytest.mark.postgres


@pytest.fixture
def replicas(postgres_url: str, postgres_schema: str) -> Iterator[list[PostgresStorage]]:
    """Two backends with their own pools on one schema: two server replicas."""
    stores = [PostgresStorage(postgres_url, schema=postgres_schema, max_size=4) for _ in range(2)]
    try:
        yield stores
    finally:
        for store in stores:
            store.close()


def _dataset(store: PostgresStorage) -> str:
    store.create_dataset(Dataset("ds", "d", Mode.PUSH, Retention.NONE, []))
    return "ds"


def test_replicas_share_ids_counts_and_cursor(replicas: list[PostgresStorage]) -> None:
    ds = _dataset(replicas[0])
    writers, batches, per_batch = 4, 15, 20
    total = writers * batches * per_batch

    def write(worker: int) -> None:
        store = replicas[worker % 2]
        for b in range(batches):
            start = (worker * batches + b) * per_batch
            batch = [{"n": start + i} for i in range(per_batch)]
            store.insert_rows(ds, f"T{worker % 3}", batch, received_at=time.time())

    # Written through both replicas, followed through the second.
    seen = follow_while_writing(
        write,
        lambda cursor: replicas[1].read_rows(ds, after_id=cursor, limit=500),
        lambda row: row.data["n"],
        writers,
    )
    assert sorted(seen.values()) == list(range(total))
    counts = sum(replicas[0].count_rows(ds, f"T{i}") for i in range(3))
    assert counts == total


def test_same_sequence_number_on_two_replicas_is_stored_once(
    replicas: list[PostgresStorage],
) -> None:
    ds = _dataset(replicas[0])
    for seq in range(1, 11):
        results: list[Any] = []
        barrier = threading.Barrier(2)

        def push(
            store: PostgresStorage,
            seq: int = seq,
            barrier: threading.Barrier = barrier,
            results: list[Any] = results,
        ) -> None:
            barrier.wait(timeout=10)
            results.append(
                store.insert_rows(ds, "T", [{"seq": seq}], received_at=1.0, sequence_number=seq)
            )

        threads = [threading.Thread(target=push, args=(s,)) for s in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(r.duplicate for r in results) == [False, True]
    assert replicas[1].count_rows(ds, "T") == 10
    assert [r.data["seq"] for r in replicas[1].read_rows(ds, "T")] == list(range(1, 11))


def test_open_storage_with_url(postgres_url: str, postgres_schema: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(postgres_schema)))
    sep = "&" if "?" in postgres_url else "?"
    store = open_storage(f"{postgres_url}{sep}options=-csearch_path%3D{postgres_schema}")
    try:
        assert isinstance(store, PostgresStorage)
        store.set_meta("k", "v")
        assert store.get_meta("k") == "v"
    finally:
        store.close()
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute(
            sql.SQL("SELECT value FROM {}.meta WHERE key = 'k'").format(
                sql.Identifier(postgres_schema)
            )
        ).fetchone()
    assert found == ("v",)


def test_unreachable_server_is_a_config_error_without_the_password() -> None:
    with pytest.raises(
        ConfigError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1/db"
    ) as info:
        PostgresStorage("postgresql://user:hunter2@127.0.0.1:1/db", connect_timeout=2)
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="not a valid PostgreSQL URL") as bad:
        PostgresStorage("postgresql://user:hunter2@host:notaport:x/db?bogus=1")
    assert "hunter2" not in str(bad.value)


def test_schema_name_must_be_plain(postgres_url: str) -> None:
    with pytest.raises(ConfigError, match="not a plain identifier"):
        PostgresStorage(postgres_url, schema="x; DROP TABLE rows")
