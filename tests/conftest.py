"""Shared test helpers. The server fixtures come from the ``pbistream.testing`` plugin.

``pbistream_server`` / ``server_factory`` start a real server on 127.0.0.1 (see
``pbistream/testing.py``); ``api`` is an httpx client on it with the token set.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from pbistream.storage.base import Storage
from pbistream.testing import RunningServer


@pytest.fixture
def api(pbistream_server: RunningServer) -> Iterator[httpx.Client]:
    """An httpx client on the test server, sending the API token."""
    with pbistream_server.client(timeout=30.0) as client:
        yield client


POSTGRES_URL = os.environ.get(
    "PBISTREAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL schema name, dropped afterwards; skips if PostgreSQL is absent.

    Under ``CI=true`` an unreachable PostgreSQL fails the test instead of skipping it.
    """
    try:
        import psycopg
        from psycopg import sql

        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except Exception as exc:  # ImportError or any connection failure
        reason = f"PostgreSQL not reachable at PBISTREAM_TEST_POSTGRES_URL ({exc!s:.120})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)
    schema = f"{prefix}_{secrets.token_hex(6)}"
    try:
        yield schema
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def postgres_storage() -> Iterator[Storage]:
    """A PostgreSQL storage in a fresh schema (dropped after), or skip."""
    from pbistream.storage.postgres import PostgresStorage

    with postgres_schema("pbistream_test") as schema:
        store = PostgresStorage(POSTGRES_URL, schema=schema, max_size=8)
        try:
            yield store
        finally:
            store.close()


@pytest.fixture
def postgres_replicas() -> Iterator[tuple[Storage, Storage]]:
    """Two storages on one fresh PostgreSQL schema, as two server replicas open it, or skip."""
    from pbistream.storage.postgres import PostgresStorage

    with postgres_schema("pbistream_replicas") as schema:
        first = PostgresStorage(POSTGRES_URL, schema=schema, max_size=4)
        second = PostgresStorage(POSTGRES_URL, schema=schema, max_size=4)
        try:
            yield first, second
        finally:
            first.close()
            second.close()
