"""Fixtures for the client tests: real servers, with Power BI's limits on or off."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from client_helpers import TIME_SCALE

from pbistream.testing import RunningServer


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pbistream push --file` keeps its resumable spools here, not in the user's home."""
    monkeypatch.setenv("PBISTREAM_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def limited_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """A real server enforcing Power BI's limits, with windows 60 times shorter."""
    return server_factory(time_scale=TIME_SCALE)


@pytest.fixture
def fast_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """A real server with the limits off (self-hosted use)."""
    return server_factory(limits=False)
