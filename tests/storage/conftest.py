"""One ``storage`` fixture, parametrised over every backend the contract suite covers.

PostgreSQL runs against ``PBISTREAM_TEST_POSTGRES_URL`` (default: the local server);
each test gets a fresh schema that is dropped afterwards. When the server cannot be
reached the PostgreSQL cases skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbistream.storage.base import Storage
from pbistream.storage.sqlite import SQLiteStorage

POSTGRES_URL = os.environ.get(
    "PBISTREAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@functools.cache
def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None; probed once per run."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except Exception as exc:  # ImportError or any connection failure
        return f"PostgreSQL not reachable at PBISTREAM_TEST_POSTGRES_URL ({exc!s:.120})"


def postgres_or_skip() -> None:
    """Skip when PostgreSQL is unreachable, but fail under CI=true, where it must run."""
    reason = _postgres_problem()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL server the tests use (``PBISTREAM_TEST_POSTGRES_URL``)."""
    postgres_or_skip()
    return POSTGRES_URL


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A new schema name ``pbistream_test_<random>``; the schema is dropped after the test."""
    import psycopg
    from psycopg import sql

    postgres_or_skip()
    schema = f"pbistream_test_{secrets.token_hex(6)}"
    try:
        yield schema
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _open_postgres(schema: str) -> Iterator[Storage]:
    from pbistream.storage.postgres import PostgresStorage

    store = PostgresStorage(POSTGRES_URL, schema=schema, max_size=8)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A fresh, empty backend; closed (and for PostgreSQL, its schema dropped) after."""
    if request.param == "sqlite":
        store = SQLiteStorage(tmp_path / "pbistream.db")
        try:
            yield store
        finally:
            store.close()
    else:
        yield from _open_postgres(request.getfixturevalue("postgres_schema"))
