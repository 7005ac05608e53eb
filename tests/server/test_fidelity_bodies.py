"""Bodies and properties real Power BI clients send, against the real server on loopback.

* ``{"rows": [...]}`` on the Push URL of a push or hybrid (PushStreaming) dataset;
  a pure Streaming dataset keeps the bare array; a bare object is still the seed's 400.
* Column and table properties at their empty defaults (``""``, ``false``, ``null``)
  mean "unset", so they pass where only name and dataType may be set (C1).
* Numbers sent as text into Int64/Double/Decimal columns are converted (Microsoft's
  ``Add-PowerBIRow -Rows (Import-Csv ...)``); ``text_numbers=refuse`` keeps the 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

FIELDS = {"value": "Number", "count": "Int64", "price": "Decimal", "ok": "Boolean"}


def _rows(server: RunningServer, dataset_id: str, table: str = "RealTimeData") -> list[Any]:
    response = httpx.get(
        f"{server.url}/api/datasets/{dataset_id}/rows",
        params={"table": table, "order": "asc"},
        headers=server.headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return [row["data"] for row in response.json()["rows"]]


def _push(url: str, body: Any) -> httpx.Response:
    return httpx.post(url, json=body, timeout=10)


# --- {"rows": [...]} on the Push URL ---------------------------------------------------


@pytest.mark.parametrize("mode", ["PushStreaming", "Push"])
def test_push_url_takes_a_rows_object_on_push_and_hybrid_datasets(
    pbistream_server: RunningServer, mode: str
) -> None:
    server = pbistream_server
    created = server.create_dataset(FIELDS, mode=mode)
    # A Push dataset has no key of its own: its Push URL is reached with a Bearer token.
    url = created["push_url"] or f"{server.url}/beta/x/datasets/{created['id']}/rows"
    headers = {} if created["push_url"] else server.headers
    sent = httpx.post(url, json={"rows": [{"value": 1.5}, {"value": 2}]}, headers=headers)
    assert sent.status_code == 200, sent.text
    bare = httpx.post(url, json=[{"value": 3}], headers=headers)  # the bare array still works
    assert bare.status_code == 200, bare.text
    assert [r["value"] for r in _rows(server, created["id"])] == [1.5, 2, 3]


def test_push_url_refuses_other_objects_and_stores_nothing(
    pbistream_server: RunningServer,
) -> None:
    server = pbistream_server
    url = server.create_dataset(FIELDS, mode="PushStreaming")["push_url"]
    bare_object = _push(url, {"value": 1})
    assert bare_object.status_code == 400
    assert "array" in bare_object.json()["error"]["message"]
    extra = _push(url, {"rows": [{"value": 1}], "table": "RealTimeData"})
    assert extra.status_code == 400
    assert "'table' does not exist" in extra.json()["error"]["details"][0]["message"]
    not_a_list = _push(url, {"rows": {"value": 1}})
    assert not_a_list.status_code == 400
    bad_row = _push(url, {"rows": [{"value": 1}, {"value": "x"}]})
    assert bad_row.status_code == 400
    assert "row 1, column 'value'" in bad_row.json()["error"]["message"].lower()
    assert server.count_rows() == 0


def test_a_pure_streaming_push_url_keeps_the_bare_array(pbistream_server: RunningServer) -> None:
    # The evidence for {"rows": ...} is a hybrid dataset's Push URL; the streaming-only
    # path reads an array ("Did not encounter start array token"), so this stays a 400.
    server = pbistream_server
    url = server.create_dataset(FIELDS, mode="Streaming")["push_url"]
    refused = _push(url, {"rows": [{"value": 1}]})
    assert refused.status_code == 400
    assert "start array token" in refused.json()["error"]["message"]
    assert _push(url, [{"value": 1}]).status_code == 200
    assert server.count_rows() == 1


# --- empty defaults mean "unset" -----------------------------------------------------


def _empty_defaults_column(name: str, data_type: str) -> dict[str, Any]:
    return {
        "name": name,
        "dataType": data_type,
        "dataCategory": "",
        "formatString": "",
        "isHidden": False,
        "sortByColumn": None,
        "summarizeBy": None,
    }


@pytest.mark.parametrize("mode", ["Push", "PushStreaming", "Streaming"])
def test_properties_at_their_empty_defaults_are_unset(
    pbistream_server: RunningServer, mode: str
) -> None:
    body = {
        "name": "defaults",
        "defaultMode": mode,
        "relationships": [],
        "datasources": None,
        "tables": [
            {
                "name": "RealTimeData",
                "columns": [
                    _empty_defaults_column("value", "Double"),
                    _empty_defaults_column("label", "string"),
                ],
                "measures": [],
                "rows": [],
                "isHidden": False,
                "description": "",
                "source": None,
            }
        ],
    }
    with pbistream_server.client() as http:
        created = http.post(
            "/v1.0/myorg/datasets", params={"defaultRetentionPolicy": "None"}, json=body
        )
        assert created.status_code == 201, created.text
        tables = http.get(
            f"/v1.0/myorg/datasets/{created.json()['id']}/tables", params={"$expand": "columns"}
        )
    # Nothing "unset" is kept: the columns read back as if only name and dataType came.
    table = tables.json()["value"][0]
    assert table["columns"] == [
        {"name": "value", "dataType": "Double"},
        {"name": "label", "dataType": "String"},
    ]
    assert "isHidden" not in table and "description" not in table


@pytest.mark.parametrize(
    ("prop", "value"),
    [("formatString", "0.00"), ("isHidden", True), ("summarizeBy", "sum"), ("dataCategory", "x")],
)
def test_a_set_column_property_is_still_refused_on_pushstreaming(
    pbistream_server: RunningServer, prop: str, value: Any
) -> None:
    column = _empty_defaults_column("value", "Double") | {prop: value}
    body = {
        "name": "set",
        "defaultMode": "PushStreaming",
        "tables": [{"name": "T", "columns": [column]}],
    }
    with pbistream_server.client() as http:
        refused = http.post("/v1.0/myorg/datasets", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "InvalidRequest"
    assert prop in refused.json()["error"]["message"]
    assert pbistream_server.storage.list_datasets(all_groups=True) == []


def test_empty_defaults_on_push_columns_are_not_stored_but_real_values_are(
    pbistream_server: RunningServer,
) -> None:
    columns = [
        _empty_defaults_column("a", "Int64"),
        _empty_defaults_column("b", "Double") | {"formatString": "0.0", "summarizeBy": "sum"},
    ]
    body = {"name": "push", "tables": [{"name": "T", "columns": columns}]}
    with pbistream_server.client() as http:
        created = http.post("/v1.0/myorg/datasets", json=body)
        assert created.status_code == 201, created.text
        tables = http.get(
            f"/v1.0/myorg/datasets/{created.json()['id']}/tables", params={"$expand": "columns"}
        )
    assert tables.json()["value"][0]["columns"] == [
        {"name": "a", "dataType": "Int64"},
        {"name": "b", "dataType": "Double", "formatString": "0.0", "summarizeBy": "sum"},
    ]


# --- numbers sent as text ----------------------------------------------------------------

CSV_ROWS = [  # what Import-Csv hands Add-PowerBIRow: every cell is text
    {"value": "21.5", "count": "5", "price": "1.23456", "ok": "true"},
    {"value": "-3", "count": " -7 ", "price": "10", "ok": "False"},
    {"value": "1e3", "count": "0", "price": ".5", "ok": "false"},
]


def test_numbers_sent_as_text_are_converted_on_postrows_and_the_push_url(
    pbistream_server: RunningServer,
) -> None:
    server = pbistream_server
    created = server.create_dataset(FIELDS, mode="PushStreaming")
    with server.client() as http:
        sent = http.post(
            f"/v1.0/myorg/datasets/{created['id']}/tables/RealTimeData/rows",
            json={"rows": CSV_ROWS[:2]},
        )
    assert sent.status_code == 200, sent.text
    assert _push(created["push_url"], CSV_ROWS[2:]).status_code == 200
    assert _rows(server, created["id"]) == [
        {"value": 21.5, "count": 5, "price": 1.2346, "ok": True},
        {"value": -3.0, "count": -7, "price": 10, "ok": False},
        {"value": 1000.0, "count": 0, "price": 0.5, "ok": False},
    ]


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ({"count": "5.5"}, "count"),
        ({"count": "five"}, "count"),
        ({"count": ""}, "count"),
        ({"value": "NaN"}, "value"),
        ({"value": "1,000"}, "value"),
        ({"value": "0x10"}, "value"),
        ({"price": "Infinity"}, "price"),
        ({"ok": "yes"}, "ok"),
    ],
)
def test_text_that_is_no_number_gets_the_row_column_rule_400(
    pbistream_server: RunningServer, row: dict[str, Any], column: str
) -> None:
    server = pbistream_server
    created = server.create_dataset(FIELDS, mode="PushStreaming")
    refused = _push(created["push_url"], [{"value": 1}, row])
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert f"Row 1, column '{column}'" in error["message"]
    assert error["details"][0]["code"] == "type"
    assert server.count_rows(created["id"]) == 0


def test_text_numbers_refuse_keeps_the_strict_400(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(text_numbers="refuse")
    created = server.create_dataset(FIELDS, mode="PushStreaming")
    refused = _push(created["push_url"], [{"count": 5}, {"count": "5"}])
    assert refused.status_code == 400
    assert "Row 1, column 'count'" in refused.json()["error"]["message"]
    with server.client() as http:
        also = http.post(
            f"/v1.0/myorg/datasets/{created['id']}/tables/RealTimeData/rows",
            json={"rows": [{"value": "2.5"}]},
        )
    assert also.status_code == 400
    assert server.count_rows(created["id"]) == 0
    assert _push(created["push_url"], [{"count": 5, "ok": "true"}]).status_code == 200
