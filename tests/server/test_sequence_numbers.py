"""X-PowerBI-PushData-SequenceNumber: range checked, and a skipped row is never silent.

Both the Push URL and PostRows, on SQLite and PostgreSQL. Issue #8 items 1 and 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"
HEADER = "X-PowerBI-PushData-SequenceNumber"
IGNORED = "X-PBIStream-Rows-Ignored"
LAST = "X-PBIStream-Sequence-Last"
INT64_MAX = 2**63 - 1


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, server_factory: Callable[..., RunningServer]) -> Any:
    if request.param == "postgres":
        return server_factory(storage=request.getfixturevalue("postgres_storage"))
    return server_factory()


def _targets(server: RunningServer) -> list[tuple[str, str, dict[str, str], Callable[..., Any]]]:
    """(name, url, headers, body-of-rows) for the Push URL and for PostRows."""
    push = server.create_dataset({"v": "Int64"}, mode="PushStreaming")
    rest = server.create_dataset({"v": "Int64"}, mode="Push", table="T")
    rows_url = f"{server.url}{PBI}/datasets/{rest['id']}/tables/T/rows"
    return [
        ("push url", push["push_url"], {}, lambda rows: rows),
        ("post rows", rows_url, server.headers, lambda rows: {"rows": rows}),
    ]


@pytest.mark.parametrize(
    "number",
    [
        str(2**63),  # one past Int64's maximum
        "1" + "0" * 24,  # a 1e24-sized number
        str(-(2**63) - 1),  # below Int64's minimum, on a fresh table
        "9" * 5000,  # past Python's int-parsing digit limit
    ],
)
def test_out_of_range_sequence_number_is_a_400_naming_header_and_range(
    server: RunningServer, number: str
) -> None:
    for name, url, headers, body in _targets(server):
        response = httpx.post(url, json=body([{"v": 1}]), headers={**headers, HEADER: number})
        assert response.status_code == 400, (name, response.text)
        message = response.json()["error"]["message"]
        assert "X-PowerBI-PushData-SequenceNumber" in message, message
        assert str(-(2**63)) in message and str(INT64_MAX) in message, message
    for dataset in server.storage.list_datasets():
        assert server.storage.count_rows(dataset.id, dataset.tables[0].name) == 0


def test_the_extremes_of_the_range_are_accepted(server: RunningServer) -> None:
    for name, url, headers, body in _targets(server):
        low = httpx.post(url, json=body([{"v": 1}]), headers={**headers, HEADER: str(-(2**63))})
        high = httpx.post(url, json=body([{"v": 2}]), headers={**headers, HEADER: str(INT64_MAX)})
        assert (low.status_code, high.status_code) == (200, 200), name
        assert IGNORED not in low.headers and IGNORED not in high.headers


def test_rows_skipped_for_their_sequence_number_are_reported(server: RunningServer) -> None:
    for name, url, headers, body in _targets(server):
        first = httpx.post(url, json=body([{"v": 1}]), headers={**headers, HEADER: str(INT64_MAX)})
        assert first.status_code == 200 and IGNORED not in first.headers, name
        later = httpx.post(url, json=body([{"v": 2}, {"v": 3}]), headers={**headers, HEADER: "7"})
        assert later.status_code == 200, name
        assert later.headers[IGNORED] == "2", name
        assert later.headers[LAST] == str(INT64_MAX), name
        # The same number again (a retried request) is also reported, not silently eaten.
        again = httpx.post(url, json=body([{"v": 1}]), headers={**headers, HEADER: str(INT64_MAX)})
        assert again.headers[IGNORED] == "1", name
    with server.client() as client:
        text = client.get("/metrics").text
    counted = [
        line for line in text.splitlines() if line.startswith("pbistream_rows_ignored_total{")
    ]
    assert len(counted) == 2, text
    assert {line.rsplit(" ", 1)[1] for line in counted} == {"3"}
    assert any('table="T"' in line for line in counted)
    assert any('table="RealTimeData"' in line for line in counted)


def test_deleting_a_tables_rows_resets_its_sequence(server: RunningServer) -> None:
    for name, url, headers, body in _targets(server):
        dataset_id = url.split("/datasets/")[1].split("/")[0]
        table = "T" if name == "post rows" else "RealTimeData"
        assert httpx.post(url, json=body([{"v": 1}]), headers={**headers, HEADER: "100"}).is_success
        with server.client() as client:
            gone = client.delete(f"{PBI}/datasets/{dataset_id}/tables/{table}/rows")
        assert gone.status_code == 200, gone.text
        after = httpx.post(url, json=body([{"v": 2}]), headers={**headers, HEADER: "1"})
        assert after.status_code == 200 and IGNORED not in after.headers, name
        assert [r.data["v"] for r in server.storage.read_rows(dataset_id, table)] == [2], name
        assert server.storage.last_sequence_number(dataset_id, table) == 1


def test_rows_without_a_sequence_number_are_never_skipped(server: RunningServer) -> None:
    for name, url, headers, body in _targets(server):
        httpx.post(url, json=body([{"v": 1}]), headers={**headers, HEADER: str(INT64_MAX)})
        plain = httpx.post(url, json=body([{"v": 2}]), headers=headers)
        assert plain.status_code == 200 and IGNORED not in plain.headers, name


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_a_client_delivers_its_rows_after_a_table_reached_the_largest_number(
    server: RunningServer, spooled: bool, tmp_path: Any
) -> None:
    """The issue's reproduction: one push under 2**63-1, then a pbistream Client's rows.

    No number is above the table's, so the client sends them without one (which the
    server always stores) instead of dead-lettering them with 400s past the range.
    """
    import pbistream

    for name, url, headers, body in _targets(server):
        dataset_id = url.split("/datasets/")[1].split("/")[0]
        table = "T" if name == "post rows" else "RealTimeData"
        top = httpx.post(url, json=body([{"v": 0}]), headers={**headers, HEADER: str(INT64_MAX)})
        assert top.status_code == 200, name
        for run in range(2):  # a second client (with the first's spool) starts at the max
            spool = tmp_path / f"{table}.spool" if spooled else None
            with pbistream.Client(url, token=server.token, spool=spool) as client:
                for i in range(5):
                    client.push({"v": 10 * run + i + 1})
                    client.flush()
                stats = client.stats
            assert (stats.sent, stats.dead_lettered) == (5, 0), (name, stats)
        stored = sorted(r.data["v"] for r in server.storage.read_rows(dataset_id, table))
        assert stored == [0, 1, 2, 3, 4, 5, 11, 12, 13, 14, 15], name
