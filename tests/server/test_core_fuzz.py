"""Hypothesis fuzzing of the ingest and dataset-definition paths: never a 5xx.

Values are drawn for the real column names (so they reach the value rules), plus
arbitrary JSON and arbitrary bytes. Each answer must be 200 or a Power BI-shaped
4xx; a 4xx must store nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbistream.testing import RunningServer

FIELDS = {"n": "Int64", "x": "Number", "s": "Text", "b": "Boolean", "t": "DateTime", "d": "Decimal"}
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
    | st.sampled_from(["2024-01-01", "07/30/2014", "8/19/2016 9:24:40 PM", "1e309", "-0", ""])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
rows = st.lists(
    st.dictionaries(st.sampled_from([*FIELDS, "extra"]), json_values, max_size=7), max_size=5
)


@pytest.fixture
def fuzz_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    # Rate limits off, so that every example reaches the value rules instead of a 429.
    return server_factory(limits=False)


def check(response: httpx.Response, server: RunningServer, before: int, dataset_id: str) -> None:
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert error["code"] and isinstance(error.get("message", ""), str)
        assert server.storage.count_rows(dataset_id, "RealTimeData") == before


def _dataset(server: RunningServer) -> tuple[str, str]:
    created = server.create_dataset(FIELDS, mode="PushStreaming")
    return created["id"], created["push_url"]


@FUZZ
@given(body=rows)
def test_fuzzed_rows_on_the_push_url(fuzz_server: RunningServer, body: list[Any]) -> None:
    dataset_id, url = _fuzz_target(fuzz_server)
    before = fuzz_server.storage.count_rows(dataset_id, "RealTimeData")
    response = httpx.post(url, content=json.dumps(body).encode())
    check(response, fuzz_server, before, dataset_id)


@FUZZ
@given(body=json_values)
def test_fuzzed_json_on_post_rows(fuzz_server: RunningServer, body: Any) -> None:
    dataset_id, _ = _fuzz_target(fuzz_server)
    url = f"{fuzz_server.url}/v1.0/myorg/datasets/{dataset_id}/tables/RealTimeData/rows"
    before = fuzz_server.storage.count_rows(dataset_id, "RealTimeData")
    response = httpx.post(url, json={"rows": body}, headers=fuzz_server.headers)
    check(response, fuzz_server, before, dataset_id)


@FUZZ
@given(body=st.binary(max_size=200))
def test_fuzzed_bytes_on_the_push_url(fuzz_server: RunningServer, body: bytes) -> None:
    dataset_id, url = _fuzz_target(fuzz_server)
    before = fuzz_server.storage.count_rows(dataset_id, "RealTimeData")
    check(httpx.post(url, content=body), fuzz_server, before, dataset_id)


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {"name": json_values, "tables": json_values},
        optional={"defaultMode": json_values, "relationships": json_values},
    )
)
def test_fuzzed_dataset_definitions(fuzz_server: RunningServer, body: Any) -> None:
    response = httpx.post(
        f"{fuzz_server.url}/v1.0/myorg/datasets",
        content=json.dumps(body).encode(),
        headers=fuzz_server.headers,
    )
    assert response.status_code in (201, 400), response.text


_TARGETS: dict[str, tuple[str, str]] = {}


def _fuzz_target(server: RunningServer) -> tuple[str, str]:
    # One dataset per server: hypothesis runs many examples on one fixture instance.
    if server.url not in _TARGETS:
        _TARGETS[server.url] = _dataset(server)
    return _TARGETS[server.url]
