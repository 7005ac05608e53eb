"""The streaming Push URL: the seed's five behaviours and reference §6.4."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

SEED_FIELDS = {"string_value": "Text", "number_value": "Number", "datetime_value": "DateTime"}


def rows_of(server: RunningServer, dataset_id: str | None = None) -> list[dict[str, Any]]:
    if dataset_id is None:
        dataset_id = server.storage.list_datasets(all_groups=True)[0].id
    return [r.data for r in server.storage.read_rows(dataset_id, limit=100_000)]


def seed_post(url: str, data: Any) -> httpx.Response:
    # Exactly what the seed's snippet sends: json.dumps body, Content-Type header, no auth.
    return httpx.post(url, content=json.dumps(data), headers={"Content-Type": "application/json"})


@pytest.fixture
def push_url(pbistream_server: RunningServer) -> str:
    return pbistream_server.create_streaming_dataset(SEED_FIELDS)


def test_seed_list_of_one_row_is_200(pbistream_server: RunningServer, push_url: str) -> None:
    now = "2020-06-15T16:32:36"
    response = seed_post(
        push_url,
        [{"string_value": "ABC XYZ", "number_value": 12345, "datetime_value": now}],
    )
    assert response.status_code == 200
    assert response.content == b""
    assert rows_of(pbistream_server) == [
        {
            "string_value": "ABC XYZ",
            "number_value": 12345,
            "datetime_value": "2020-06-15T16:32:36.000Z",
        }
    ]


def test_seed_bare_object_is_400(pbistream_server: RunningServer, push_url: str) -> None:
    response = seed_post(push_url, {"string_value": "ABC XYZ", "number_value": 12345})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert "array" in error["message"]
    assert rows_of(pbistream_server) == []


def test_seed_unknown_field_is_404(pbistream_server: RunningServer, push_url: str) -> None:
    response = seed_post(push_url, [{"string_value": "ABC XYZ", "another_number_value": 789}])
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "row 0" in message.lower() and "another_number_value" in message
    assert rows_of(pbistream_server) == []


def test_seed_omitted_fields_are_null(pbistream_server: RunningServer, push_url: str) -> None:
    assert seed_post(push_url, [{"number_value": 12345}]).status_code == 200
    assert seed_post(push_url, [{"string_value": "ABC XYZ", "number_value": 1}]).status_code == 200
    dataset_id = pbistream_server.storage.list_datasets(all_groups=True)[0].id
    body = httpx.get(
        f"{pbistream_server.url}/api/datasets/{dataset_id}/rows",
        headers=pbistream_server.headers,
    ).json()
    first = body["rows"][0]["data"]
    assert first.get("number_value") == 12345
    assert first.get("string_value") is None and first.get("datetime_value") is None


def test_seed_many_rows_in_one_request(pbistream_server: RunningServer, push_url: str) -> None:
    now = "2020-06-15T16:32:36"
    data = [
        {"string_value": "ABC", "number_value": 12345, "datetime_value": now},
        {"string_value": "XYZ", "number_value": 789, "datetime_value": now},
        {"string_value": "EFG", "number_value": 852, "datetime_value": now},
    ]
    assert seed_post(push_url, data).status_code == 200
    assert [r["string_value"] for r in rows_of(pbistream_server)] == ["ABC", "XYZ", "EFG"]


def test_extra_query_parameters_are_ignored(pbistream_server: RunningServer) -> None:
    url = pbistream_server.create_streaming_dataset({"ts": "DateTime", "value": "Number"})
    tenant = pbistream_server.app.state.tenant_id
    response = httpx.post(
        f"{url}&ctid={tenant}&experience=power-bi",
        json=[{"ts": "2016-08-19T21:24:40Z", "value": 42}],
    )
    assert response.status_code == 200
    assert rows_of(pbistream_server) == [{"ts": "2016-08-19T21:24:40.000Z", "value": 42}]


def test_bearer_token_instead_of_key(pbistream_server: RunningServer) -> None:
    url = pbistream_server.create_streaming_dataset({"value": "Number"})
    keyless = url.split("?")[0]
    response = httpx.post(keyless, json=[{"value": 1}], headers=pbistream_server.headers)
    assert response.status_code == 200
    assert rows_of(pbistream_server) == [{"value": 1}]


@pytest.mark.parametrize("suffix", ["", "?key=", "?key=wrong", "?key=REDACTED"])
def test_missing_or_wrong_key_is_403(pbistream_server: RunningServer, suffix: str) -> None:
    url = pbistream_server.create_streaming_dataset({"value": "Number"})
    response = httpx.post(url.split("?")[0] + suffix, json=[{"value": 1}])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PowerBINotAuthorizedException"
    assert rows_of(pbistream_server) == []


def test_wrong_token_is_403(pbistream_server: RunningServer) -> None:
    url = pbistream_server.create_streaming_dataset({"value": "Number"})
    response = httpx.post(
        url.split("?")[0], json=[{"value": 1}], headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 403


def test_unknown_dataset_looks_like_a_wrong_key(pbistream_server: RunningServer) -> None:
    url = pbistream_server.create_streaming_dataset({"value": "Number"})
    dataset_id = url.split("/datasets/")[1].split("/")[0]
    other = url.replace(dataset_id, "00000000-0000-4000-8000-000000000000")
    assert httpx.post(other, json=[{"value": 1}]).status_code == 403


def test_bad_value_names_row_column_and_rule(pbistream_server: RunningServer) -> None:
    url = pbistream_server.create_streaming_dataset({"value": "Number", "ts": "DateTime"})
    response = httpx.post(url, json=[{"value": 1}, {"value": 2, "ts": "yesterday"}])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("Row 1, column 'ts':")
    assert error["details"][0]["code"] == "datetime"
    assert rows_of(pbistream_server) == []


def test_unknown_fields_setting_400_and_ignore(server_factory: Any) -> None:
    strict = server_factory(unknown_fields="400")
    url = strict.create_streaming_dataset({"value": "Number"})
    response = httpx.post(url, json=[{"value": 1, "extra": 2}])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequest"

    lenient = server_factory(unknown_fields="ignore")
    url = lenient.create_streaming_dataset({"value": "Number"})
    assert httpx.post(url, json=[{"value": 1, "extra": 2}]).status_code == 200
    assert rows_of(lenient) == [{"value": 1}]


def test_push_streaming_stores_rows_and_accepts_20_kb(pbistream_server: RunningServer) -> None:
    url = pbistream_server.create_streaming_dataset({"text": "Text"}, historic=True)
    rows = [{"text": "x" * 1000} for _ in range(20)]
    response = httpx.post(url, json=rows)
    assert response.status_code == 200
    assert len(rows_of(pbistream_server)) == 20


def test_streaming_only_refuses_a_body_over_15_kb(pbistream_server: RunningServer) -> None:
    url = pbistream_server.create_streaming_dataset({"text": "Text"})
    response = httpx.post(url, json=[{"text": "x" * 1000} for _ in range(20)])
    assert response.status_code == 400
    assert "15 KB" in response.json()["error"]["message"]
    assert rows_of(pbistream_server) == []


def test_historic_dataset_has_one_realtimedata_table(pbistream_server: RunningServer) -> None:
    url = pbistream_server.create_streaming_dataset({"value": "Number"}, historic=True)
    dataset_id = url.split("/datasets/")[1].split("/")[0]
    tables = httpx.get(
        f"{pbistream_server.url}/v1.0/myorg/datasets/{dataset_id}/tables",
        headers=pbistream_server.headers,
    ).json()
    assert [t["name"] for t in tables["value"]] == ["RealTimeData"]
