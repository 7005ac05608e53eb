"""Shared test helpers. The server fixtures come from the ``pbistream.testing`` plugin.

``pbistream_server`` / ``server_factory`` start a real server on 127.0.0.1 (see
``pbistream/testing.py``); ``api`` is an httpx client on it with the token set.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pbistream.testing import RunningServer


@pytest.fixture
def api(pbistream_server: RunningServer) -> Iterator[httpx.Client]:
    """An httpx client on the test server, sending the API token."""
    with pbistream_server.client(timeout=30.0) as client:
        yield client
