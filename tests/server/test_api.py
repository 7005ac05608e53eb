"""pbistream's own ``/api`` endpoints, over real HTTP against a live server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

Json = dict[str, Any]


def _push(url: str, rows: list[Json]) -> None:
    response = httpx.post(url, json=rows, timeout=10)
    assert response.status_code == 200, response.text


def _post_rows(api: httpx.Client, dataset_id: str, table: str, rows: list[Json]) -> None:
    response = api.post(
        f"/v1.0/myorg/datasets/{dataset_id}/tables/{table}/rows", json={"rows": rows}
    )
    assert response.status_code == 200, response.text


def _assert_pbi_error(response: httpx.Response, status: int, code: str | None = None) -> Json:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


# --- dataset details ------------------------------------------------------------------


def test_detail_of_a_streaming_dataset_has_tables_counts_and_a_working_push_url(
    pbistream_server: RunningServer, api: httpx.Client
) -> None:
    created = pbistream_server.create_dataset({"temp": "Number", "room": "Text"}, name="Sensors")
    before = time.time()
    _push(created["push_url"], [{"temp": 20.5, "room": "a"}, {"temp": 21.0, "room": "b"}])

    answer = api.get(f"/api/datasets/{created['id']}")
    assert answer.headers["cache-control"] == "no-store"  # the Push URL carries its key
    detail = answer.json()
    assert detail["id"] == created["id"]
    assert detail["name"] == "Sensors"
    assert detail["defaultMode"] == "Streaming"
    assert detail["defaultRetentionPolicy"] == "None"
    assert detail["tables"] == [
        {
            "name": "RealTimeData",
            "columns": [
                {"name": "temp", "dataType": "Double"},
                {"name": "room", "dataType": "String"},
            ],
            "rowCount": 2,
        }
    ]
    assert detail["lastRowAt"] >= before - 1
    # The Push URL is built from the URL the client used, and it works.
    assert detail["pushUrl"].startswith(f"{pbistream_server.url}/beta/")
    assert detail["pushUrl"] == created["push_url"]
    _push(detail["pushUrl"], [{"temp": 1.0, "room": "c"}])
    assert api.get(f"/api/datasets/{created['id']}").json()["tables"][0]["rowCount"] == 3


def test_push_datasets_have_no_push_url_and_pushstreaming_ones_do(
    pbistream_server: RunningServer, api: httpx.Client
) -> None:
    push = pbistream_server.create_dataset(
        {"n": "Int64"}, mode="Push", table="Sales", retention="basicFIFO"
    )
    both = pbistream_server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    push_detail = api.get(f"/api/datasets/{push['id']}").json()
    assert push_detail["pushUrl"] is None
    assert push_detail["defaultMode"] == "Push"
    assert push_detail["defaultRetentionPolicy"] == "basicFIFO"
    assert push_detail["tables"][0]["name"] == "Sales"
    both_detail = api.get(f"/api/datasets/{both['id']}").json()
    assert both_detail["defaultMode"] == "PushStreaming"
    assert "/beta/" in both_detail["pushUrl"]


def test_list_covers_every_workspace_with_counts(
    pbistream_server: RunningServer, api: httpx.Client
) -> None:
    group = "0f8fad5b-d9cb-469f-a165-70867728950e"
    mine = pbistream_server.create_dataset({"v": "Number"}, name="mine")
    theirs = pbistream_server.create_dataset(
        {"v": "Number"}, name="theirs", mode="Push", table="T", group_id=group
    )
    _push(mine["push_url"], [{"v": 1}, {"v": 2}, {"v": 3}])
    listed = {d["id"]: d for d in api.get("/api/datasets").json()["value"]}
    assert set(listed) == {mine["id"], theirs["id"]}
    assert listed[mine["id"]]["rowCount"] == 3
    assert listed[mine["id"]]["lastRowAt"] is not None
    assert listed[mine["id"]]["groupId"] is None
    assert listed[theirs["id"]]["rowCount"] == 0
    assert listed[theirs["id"]]["lastRowAt"] is None
    assert listed[theirs["id"]]["groupId"] == group
    assert listed[theirs["id"]]["defaultMode"] == "Push"


def test_unknown_dataset_is_a_power_bi_404(api: httpx.Client) -> None:
    missing = "7d1bb6f1-7a3e-4c5d-9f1e-000000000000"
    for path in ("", "/rows", "/live"):
        response = api.get(f"/api/datasets/{missing}{path}")
        error = _assert_pbi_error(response, 404, "PowerBIEntityNotFound")
        assert missing in error["message"]
    _assert_pbi_error(api.post(f"/api/datasets/{missing}/rotate-key"), 404)


def test_every_api_route_needs_the_token(pbistream_server: RunningServer) -> None:
    created = pbistream_server.create_dataset({"v": "Number"})
    paths = [
        "/api/datasets",
        f"/api/datasets/{created['id']}",
        f"/api/datasets/{created['id']}/rows",
    ]
    paths.append(f"/api/datasets/{created['id']}/live")
    with httpx.Client(base_url=pbistream_server.url, timeout=10) as anonymous:
        for path in paths:
            error = _assert_pbi_error(anonymous.get(path), 401, "PowerBINotAuthorizedException")
            assert error["pbi.error"]["exceptionCulprit"] == 1
            wrong = anonymous.get(path, headers={"Authorization": "Bearer not-the-token"})
            _assert_pbi_error(wrong, 401)
        _assert_pbi_error(anonymous.post(f"/api/datasets/{created['id']}/rotate-key"), 401)


# --- key rotation -----------------------------------------------------------------------


def test_rotate_key_stops_the_old_url_at_once(
    pbistream_server: RunningServer, api: httpx.Client
) -> None:
    created = pbistream_server.create_dataset({"v": "Number"})
    old_url = created["push_url"]
    _push(old_url, [{"v": 1}])

    rotated = api.post(f"/api/datasets/{created['id']}/rotate-key")
    assert rotated.status_code == 200, rotated.text
    new_url = rotated.json()["pushUrl"]
    assert new_url != old_url
    assert new_url.split("?key=")[0] == old_url.split("?key=")[0]

    refused = httpx.post(old_url, json=[{"v": 2}], timeout=10)
    _assert_pbi_error(refused, 403)
    _push(new_url, [{"v": 3}])
    assert api.get(f"/api/datasets/{created['id']}").json()["pushUrl"] == new_url
    assert pbistream_server.count_rows(created["id"]) == 2


def test_rotate_key_of_a_push_dataset_is_refused(
    pbistream_server: RunningServer, api: httpx.Client
) -> None:
    created = pbistream_server.create_dataset({"v": "Number"}, mode="Push", table="T")
    error = _assert_pbi_error(api.post(f"/api/datasets/{created['id']}/rotate-key"), 400)
    assert "Push URL" in error["message"]


# --- paged rows -------------------------------------------------------------------------


@pytest.fixture
def filled(pbistream_server: RunningServer, api: httpx.Client) -> Json:
    """A PushStreaming dataset with 25 rows in three posts, and the times between posts."""
    created = pbistream_server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    marks = [time.time()]
    for start, count in ((0, 10), (10, 10), (20, 5)):
        _push(created["push_url"], [{"n": i} for i in range(start, start + count)])
        marks.append(time.time())
    return {"id": created["id"], "marks": marks}


def test_rows_page_forwards_with_next(api: httpx.Client, filled: Json) -> None:
    seen: list[int] = []
    after: int | None = None
    pages = 0
    while True:
        params: Json = {"limit": 10} | ({"after": after} if after is not None else {})
        page = api.get(f"/api/datasets/{filled['id']}/rows", params=params).json()
        pages += 1
        seen += [row["data"]["n"] for row in page["rows"]]
        for row in page["rows"]:
            assert set(row) == {"id", "received_at", "table", "data"}
            assert row["table"] == "RealTimeData"
        if page["next"] is None:
            break
        assert page["next"] == page["rows"][-1]["id"]
        after = page["next"]
    assert seen == list(range(25))
    assert pages == 3


def test_rows_filters_by_time_window_table_and_order(api: httpx.Client, filled: Json) -> None:
    marks = filled["marks"]
    url = f"/api/datasets/{filled['id']}/rows"
    middle = api.get(url, params={"since": marks[1], "until": marks[2]}).json()
    assert [r["data"]["n"] for r in middle["rows"]] == list(range(10, 20))
    assert middle["next"] is None

    newest = api.get(url, params={"order": "desc", "limit": 3}).json()
    assert [r["data"]["n"] for r in newest["rows"]] == [24, 23, 22]
    assert newest["next"] is None

    by_table = api.get(url, params={"table": "RealTimeData", "limit": 1}).json()
    assert len(by_table["rows"]) == 1
    assert by_table["next"] == by_table["rows"][0]["id"]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"after": "-1"}, "after"),
        ({"after": "x"}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"since": "nan"}, "since"),
        ({"until": "inf"}, "until"),
        ({"since": "yesterday"}, "since"),
        ({"order": "sideways"}, "order"),
        ({"after": "99999999999999999999999"}, "after"),
    ],
)
def test_bad_row_query_parameters_name_the_parameter(
    api: httpx.Client, filled: Json, params: Json, name: str
) -> None:
    response = api.get(f"/api/datasets/{filled['id']}/rows", params=params)
    error = _assert_pbi_error(response, 400, "InvalidRequest")
    assert f"'{name}'" in error["message"]


def test_unknown_table_is_a_404(api: httpx.Client, filled: Json) -> None:
    response = api.get(f"/api/datasets/{filled['id']}/rows", params={"table": "realtimedata"})
    error = _assert_pbi_error(response, 404, "ItemNotFound")
    assert "realtimedata" in error["message"]


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)


def test_streaming_only_rows_are_readable_for_the_cache_window_only(
    server_factory: Callable[..., RunningServer],
) -> None:
    # time_scale 3600: the 60-minute streaming cache lasts one second.
    server = server_factory(time_scale=3600)
    streaming = server.create_dataset({"v": "Number"}, name="cache")
    historic = server.create_dataset({"v": "Number"}, name="kept", mode="PushStreaming")
    _push(streaming["push_url"], [{"v": 1}])
    _push(historic["push_url"], [{"v": 1}])
    with server.client(timeout=10) as api:
        first = api.get(f"/api/datasets/{streaming['id']}/rows").json()
        assert len(first["rows"]) == 1

        def expired() -> bool:
            page = api.get(f"/api/datasets/{streaming['id']}/rows").json()
            return page["rows"] == []

        _wait_for(expired)
        # Stored (PushStreaming) rows are not a cache: still there.
        assert len(api.get(f"/api/datasets/{historic['id']}/rows").json()["rows"]) == 1
        listed = {d["id"]: d for d in api.get("/api/datasets").json()["value"]}
        assert listed[streaming["id"]]["lastRowAt"] is None


def test_rows_from_the_rest_api_carry_their_table(
    pbistream_server: RunningServer, api: httpx.Client
) -> None:
    body = {
        "name": "two tables",
        "tables": [
            {"name": "A", "columns": [{"name": "x", "dataType": "Int64"}]},
            {"name": "B", "columns": [{"name": "y", "dataType": "String"}]},
        ],
    }
    created = api.post("/v1.0/myorg/datasets", json=body)
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    _post_rows(api, dataset_id, "A", [{"x": 1}, {"x": 2}])
    _post_rows(api, dataset_id, "B", [{"y": "<b>hi</b>"}])
    rows = api.get(f"/api/datasets/{dataset_id}/rows").json()["rows"]
    assert [(r["table"], r["data"]) for r in rows] == [
        ("A", {"x": 1}),
        ("A", {"x": 2}),
        ("B", {"y": "<b>hi</b>"}),
    ]
    only_b = api.get(f"/api/datasets/{dataset_id}/rows", params={"table": "B"}).json()["rows"]
    assert [r["table"] for r in only_b] == ["B"]
    detail = api.get(f"/api/datasets/{dataset_id}").json()
    assert [(t["name"], t["rowCount"]) for t in detail["tables"]] == [("A", 2), ("B", 1)]
