"""The server's core behaviours on every storage backend (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, server_factory: Callable[..., RunningServer]) -> Any:
    overrides: dict[str, Any] = {"fifo_min_rows": 20, "fifo_max_rows": 30}
    if request.param == "postgres":
        return server_factory(storage=request.getfixturevalue("postgres_storage"), **overrides)
    return server_factory(**overrides)


def test_push_sequence_fifo_delete_on_each_backend(server: RunningServer) -> None:
    url = server.create_streaming_dataset({"v": "Int64"}, historic=True)
    dataset_id = url.split("/datasets/")[1].split("/")[0]
    assert httpx.post(url, json=[{"v": 1}, {"v": 2}]).status_code == 200
    header = {"X-PowerBI-PushData-SequenceNumber": "5"}
    assert httpx.post(url, json=[{"v": 3}], headers=header).status_code == 200
    assert httpx.post(url, json=[{"v": 3}], headers=header).status_code == 200
    assert server.count_rows() == 3
    assert httpx.post(url, json=[{"v": "x"}]).status_code == 400
    assert server.count_rows() == 3

    fifo = server.create_dataset({"v": "Int64"}, mode="Push", table="T", retention="basicFIFO")
    rows_url = f"{server.url}{PBI}/datasets/{fifo['id']}/tables/T/rows"
    with server.client() as client:
        for start in range(0, 50, 10):
            rows = [{"v": v} for v in range(start, start + 10)]
            assert client.post(rows_url, json={"rows": rows}).status_code == 200
        kept = [r.data["v"] for r in server.storage.read_rows(fifo["id"], "T", limit=100)]
        assert 20 <= len(kept) <= 30 and kept[-1] == 49
        assert (
            client.delete(f"{PBI}/datasets/{dataset_id}/tables/RealTimeData/rows").status_code
            == 200
        )
        assert server.count_rows(dataset_id) == 0
        assert client.delete(f"{PBI}/datasets/{dataset_id}").status_code == 200
        assert [d["id"] for d in client.get(f"{PBI}/datasets").json()["value"]] == [fifo["id"]]
