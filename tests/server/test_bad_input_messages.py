"""Bad input gets a clear 400 that names the row, the field and the rule (#8 item 8, NaN).

Against the real server over loopback: values nested 1,000 deep, names megabytes long,
and the ``NaN``/``Infinity`` tokens Python's ``json.dumps`` writes for non-finite floats.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pbistream.limits import MAX_COLUMN_NAME_CHARS, MAX_DATASET_NAME_CHARS
from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"
TYPES = {"n": "Number", "i": "Int64", "t": "Text", "b": "Boolean", "d": "DateTime"}


def _dataset(server: RunningServer, **columns: str) -> dict[str, Any]:
    return server.create_dataset(columns or TYPES, mode="PushStreaming")


@pytest.mark.parametrize("column", sorted(TYPES))
@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_a_value_nested_1000_deep_is_a_clear_400(
    pbistream_server: RunningServer, column: str, opener: str
) -> None:
    url = _dataset(pbistream_server)["push_url"]
    closer = "]" if opener == "[" else "}"
    nested = opener * 1000 + "1" + closer * 1000
    body = '[{"n": 1}, {"' + column + '": ' + nested + "}]"
    response = httpx.post(url, content=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "Recursion" not in response.text and "Traceback" not in response.text
    assert message.startswith(f"Row 1, column '{column}'"), message
    assert ("an array" if opener == "[" else "an object") in message, message
    assert len(response.content) < 2000
    assert pbistream_server.count_rows() == 0


@pytest.mark.parametrize("depth", [1025, 100_000])
def test_a_value_nested_past_the_parsers_depth_names_row_and_column(
    pbistream_server: RunningServer, depth: int
) -> None:
    url = _dataset(pbistream_server)["push_url"]
    body = '[{"n": 1}, {"n": 2, "t": ' + "[" * depth + "]" * depth + "}]"
    response = httpx.post(url, content=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("Row 1, column 't': not valid JSON"), message
    assert "nested deeper than 1,024 levels" in message, message
    assert pbistream_server.count_rows() == 0


def test_a_dataset_name_of_5_mb_is_refused(pbistream_server: RunningServer) -> None:
    body = {
        "name": "x" * 5_000_000,
        "tables": [{"name": "T", "columns": [{"name": "c", "dataType": "string"}]}],
    }
    with pbistream_server.client(timeout=60) as client:
        response = client.post(f"{PBI}/datasets", json=body)
        assert response.status_code == 400, response.text[:300]
        assert "256" in response.json()["error"]["message"]
        assert len(response.content) < 2000  # the name is not echoed back
        assert client.get(f"{PBI}/datasets").json()["value"] == []


@pytest.mark.parametrize("where", ["column", "measure"])
def test_a_column_name_of_1_mb_is_refused(pbistream_server: RunningServer, where: str) -> None:
    long_name = "c" * 1_000_000
    table: dict[str, Any] = {"name": "T", "columns": [{"name": "c", "dataType": "string"}]}
    if where == "column":
        table["columns"].append({"name": long_name, "dataType": "string"})
    else:
        table["measures"] = [{"name": long_name, "expression": "1"}]
    with pbistream_server.client(timeout=60) as client:
        response = client.post(f"{PBI}/datasets", json={"name": "d", "tables": [table]})
        assert response.status_code == 400, response.text[:300]
        message = response.json()["error"]["message"]
        assert "256" in message and "max_column_name_chars" in message, message
        assert len(response.content) < 2000


def test_names_at_the_limits_are_accepted(pbistream_server: RunningServer) -> None:
    body = {
        "name": "d" * MAX_DATASET_NAME_CHARS.value,
        "tables": [
            {
                "name": "T" * 100,
                "columns": [{"name": "c" * MAX_COLUMN_NAME_CHARS.value, "dataType": "Int64"}],
            }
        ],
    }
    with pbistream_server.client() as client:
        assert client.post(f"{PBI}/datasets", json=body).status_code == 201
        table = {"name": "U", "columns": [{"name": "c" * 257, "dataType": "Int64"}]}
        dataset_id = client.get(f"{PBI}/datasets").json()["value"][0]["id"]
        put = client.put(f"{PBI}/datasets/{dataset_id}/tables/U", json=table)
        assert put.status_code == 400 and "max_column_name_chars" in put.text


@pytest.mark.parametrize(
    ("value", "token"),
    [(float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity")],
)
def test_the_seeds_snippet_with_nan_names_row_field_and_rule(
    pbistream_server: RunningServer, value: float, token: str
) -> None:
    url = _dataset(pbistream_server, value="Number", name="Text")["push_url"]
    rows = [{"value": 1.5, "name": "a"}, {"name": "NaN, Infinity", "value": value}]
    body = json.dumps(rows)  # what users write: json.dumps emits NaN / Infinity
    assert token in body
    response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"].startswith("Row 1, column 'value'"), error
    assert f"{token} is not valid JSON" in error["message"], error
    assert "null" in error["message"]  # says what to send instead
    assert error["details"][0]["target"] == "rows[1]"
    assert pbistream_server.count_rows() == 0


def test_nan_in_post_rows_names_row_and_field(pbistream_server: RunningServer) -> None:
    dataset = pbistream_server.create_dataset({"v": "Number"}, mode="Push", table="T")
    body = '{"rows": [{"v": 1}, {"v": 2}, {"v": [1, {"deep": NaN}]}]}'
    with pbistream_server.client() as client:
        response = client.post(f"{PBI}/datasets/{dataset['id']}/tables/T/rows", content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith("Row 2, column 'v': NaN"), response.text


def test_other_invalid_json_still_says_where(pbistream_server: RunningServer) -> None:
    url = _dataset(pbistream_server, value="Number")["push_url"]
    response = httpx.post(url, content='[{"value": nope}]')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


@pytest.mark.parametrize("unknown", ["404", "400"])
def test_a_row_field_named_with_1_mb_is_not_echoed_back(server_factory: Any, unknown: str) -> None:
    """A row's field of 1 MB (not a column) is refused in a short answer naming its length."""
    server = server_factory(unknown_fields=unknown)
    url = _dataset(server)["push_url"]
    response = httpx.post(url, json=[{"n": 1}, {"n": 2, "q" * 1_000_000: 1}], timeout=60)
    assert response.status_code == int(unknown), response.text[:300]
    message = response.json()["error"]["message"]
    assert message.startswith("Row 1, column 'qqq"), message[:300]
    assert "1,000,000 characters" in message and "not a column" in message, message[:300]
    assert len(response.content) < 2000
    assert server.count_rows() == 0
