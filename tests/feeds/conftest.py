"""Feed tests: no feed process outlives its test, whatever the test's outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from feed_helpers import Feed


@pytest.fixture(autouse=True)
def _kill_leftover_feeds() -> Iterator[None]:
    yield
    while Feed.running:
        feed = Feed.running.pop()
        if feed.process.poll() is None:
            feed.kill()
