"""Bad input gets a clear Power BI-shaped 4xx, never a 5xx, and nothing is stored."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest

from pbistream.server import push, rest
from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"
ODATA_JSON = "application/json; odata.metadata=minimal; odata.streaming=true"
FIELDS = {"n": "Int64", "x": "Number", "s": "Text", "b": "Boolean", "t": "DateTime", "d": "Decimal"}


def assert_error_shape(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"] == ODATA_JSON
    assert uuid.UUID(response.headers["RequestId"])
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error.get("message", ""), str)
    return dict(error)


@pytest.fixture
def push_url(pbistream_server: RunningServer) -> str:
    return pbistream_server.create_streaming_dataset(FIELDS, historic=True)


@pytest.fixture
def rows_url(pbistream_server: RunningServer) -> str:
    created = pbistream_server.create_dataset(FIELDS, mode="Push", table="T")
    return f"{pbistream_server.url}{PBI}/datasets/{created['id']}/tables/T/rows"


BAD_BODIES = [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b"   ", "empty", id="blank"),
    pytest.param(b"[{", "not valid JSON", id="truncated"),
    pytest.param(b"{'a': 1}", "not valid JSON", id="single-quotes"),
    pytest.param(b"[NaN]", "not valid JSON", id="nan-literal"),
    pytest.param(b"[1e400]", "not valid JSON", id="huge-float"),
    pytest.param(b'["\\ud800"]', "not valid JSON", id="lone-surrogate-escape"),
    pytest.param(b'[{"s": "\xff\xfe"}]', "not valid JSON", id="invalid-utf8"),
    pytest.param(b"[" * 5000 + b"]" * 5000, "not valid JSON", id="deeply-nested"),
    pytest.param(b'"rows"', "got str", id="a-string"),
    pytest.param(b"42", "got int", id="a-number"),
    pytest.param(b"null", "got NoneType", id="null"),
    pytest.param(b"[1, 2]", "must be an object", id="array-of-numbers"),
    pytest.param(b"[[{}]]", "must be an object", id="array-of-arrays"),
    pytest.param(b'[{"n": {"a": 1}}]', "expected a number", id="object-value"),
    pytest.param(b'[{"n": [1]}]', "expected a number", id="array-value"),
    pytest.param(b'[{"n": 123456789012345678901234567890}]', "Int64", id="huge-int"),
    pytest.param(b'[{"n": -9223372036854775809}]', "Int64", id="below-int64"),
    pytest.param(b'[{"x": 1.7976931348623157e308}]', "Double", id="double-max"),
    pytest.param(b'[{"d": 1e30}]', "Decimal", id="decimal-range"),
    pytest.param(b'[{"b": "yes"}]', "expected a boolean", id="bool-text"),
    pytest.param(b'[{"t": "2024-13-45"}]', "not a date", id="bad-date"),
    pytest.param(b'[{"t": 1700000000}]', "expected a date", id="epoch-date"),
    pytest.param(b'[{"s": true}]', "expected text", id="bool-as-text"),
    pytest.param(b'[{"": 1}]', "is not a column", id="empty-key"),
]


@pytest.mark.parametrize(("body", "words"), BAD_BODIES)
def test_bad_bodies_on_the_push_url(
    pbistream_server: RunningServer, push_url: str, body: bytes, words: str
) -> None:
    response = httpx.post(push_url, content=body, headers={"Content-Type": "application/json"})
    error = assert_error_shape(response)
    text = error["message"] + json.dumps(error.get("details", []))
    assert words in text
    assert pbistream_server.count_rows() == 0


@pytest.mark.parametrize(("body", "words"), BAD_BODIES)
def test_bad_bodies_on_post_rows(
    pbistream_server: RunningServer, rows_url: str, body: bytes, words: str
) -> None:
    if body.startswith(b"[") and body.endswith(b"]") and b"[" * 10 not in body:
        body = b'{"rows": ' + body + b"}"
    response = httpx.post(rows_url, content=body, headers=pbistream_server.headers)
    error = assert_error_shape(response)
    if words not in ("got str", "got int", "got NoneType"):
        assert words in error["message"] + json.dumps(error.get("details", []))


@pytest.mark.parametrize(
    "body",
    [b'{"rows": {"n": 1}}', b'{"rows": null}', b'{"Rows": []}', b"{}"],
)
def test_wrong_rows_shapes_on_post_rows(
    pbistream_server: RunningServer, rows_url: str, body: bytes
) -> None:
    response = httpx.post(rows_url, content=body, headers=pbistream_server.headers)
    assert_error_shape(response, 400)


def test_odd_but_valid_unicode_is_stored(pbistream_server: RunningServer, push_url: str) -> None:
    texts = [
        "😀 emoji",
        "\u200b zero width",
        "RTL \u202e",
        "\x00 nul",
        "ñ combining n\u0303",
        "\U0001d518",
    ]
    response = httpx.post(push_url, json=[{"s": t} for t in texts])
    assert response.status_code == 200
    stored = [
        r.data["s"]
        for r in pbistream_server.storage.read_rows(
            pbistream_server.storage.list_datasets()[0].id, limit=100
        )
    ]
    assert stored == texts


def test_many_bad_rows_name_the_first_and_count_the_rest(
    pbistream_server: RunningServer, push_url: str
) -> None:
    rows = [{"n": 1}] * 3 + [{"n": "x"}] * 50
    error = assert_error_shape(httpx.post(push_url, json=rows), 400)
    assert error["message"].startswith("Row 3, column 'n':")
    assert "and 49 more" in error["message"]
    assert len(error["details"]) == 20
    assert error["details"][0]["target"] == "rows[3]"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"{not json",
        b'{"name": 5, "tables": []}',
        b'{"name": "x", "tables": {}}',
        b'{"name": "x", "tables": [5]}',
        b'{"name": "x", "tables": [{"name": "T", "columns": [5]}]}',
        b'{"name": "x", "tables": [{"name": "T", "columns": [{"name": "a"}]}]}',
        b'{"name": "x", "tables": [{"name": "T", "columns": [{"name": 1, "dataType": "Int64"}]}]}',
        b'{"name": "x", "tables": [{"name": "T", "columns": [{"name": "a", "dataType": 7}]}]}',
        b'{"name": "x", "tables": [{"name": "T", "columns": '
        b'[{"name": "a\\u0001", "dataType": "Int64"}]}]}',
        b'{"name": "x", "tables": [{"name": "T", "columns": [], "rows": [{"a": 1}]}]}',
        b'{"name": "x", "tables": [{"name": "T", "columns": [], "rows": {"a": 1}}]}',
        b'{"name": "x", "datasources": "none", "tables": []}',
        b'{"name": "x", "tables": [{"name": "T", "columns": []}, {"name": "T", "columns": []}]}',
        b'{"name": "x", "defaultMode": "AsAzure", "tables": []}',
        b'{"name": "x", "defaultMode": 1, "tables": []}',
        b'{"name": "x", "tables": [{"name": "T", "columns": [], "measures": [{"name": "m"}]}]}',
        b'{"name": "x", "tables": [], "relationships": [{"name": "r"}]}',
        b'{"name": "x", "tables": [{"name": "T", "columns": '
        b'[{"name": "a", "dataType": "Int64", "summarizeBy": "median"}]}]}',
    ],
)
def test_bad_dataset_definitions_are_400(api: httpx.Client, body: bytes) -> None:
    assert_error_shape(api.post(f"{PBI}/datasets", content=body), 400)
    assert api.get(f"{PBI}/datasets").json()["value"] == []


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: str(uuid.uuid4()) if "id" in m.group() else "T", path)


def test_every_endpoint_answers_errors_in_one_shape(pbistream_server: RunningServer) -> None:
    routes = [r for r in [*rest.routes, *push.routes] if hasattr(r, "methods")]
    assert len(routes) >= 33
    with pbistream_server.client() as client:
        for route in routes:
            for method in sorted(route.methods - {"HEAD"}):  # type: ignore[attr-defined]
                url = _fill(route.path)  # type: ignore[attr-defined]
                if "{dataset_id}" in route.path or method != "GET":  # type: ignore[attr-defined]
                    # An unknown dataset, or a body that is not a dataset definition.
                    assert_error_shape(client.request(method, url, content=b"[]"))
                anonymous = httpx.request(method, pbistream_server.url + url, content=b"[]")
                assert_error_shape(anonymous, 403 if route in push.routes else 401)


def test_unknown_path_and_wrong_method(api: httpx.Client) -> None:
    error = assert_error_shape(api.get("/v1.0/myorg/nothing-here"), 404)
    assert "No endpoint" in error["message"]
    assert_error_shape(api.patch(f"{PBI}/datasets"), 405)


def test_bad_content_length_is_400(pbistream_server: RunningServer, push_url: str) -> None:
    import socket

    port = int(pbistream_server.url.rsplit(":", 1)[1])
    path = push_url.split(str(port), 1)[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".encode())
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 4")


def test_a_client_vanishing_mid_body_is_not_a_server_error(
    pbistream_server: RunningServer, push_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import socket
    import time

    caplog.set_level(logging.INFO)
    port = int(pbistream_server.url.rsplit(":", 1)[1])
    path = push_url.split(str(port), 1)[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[".encode())
    deadline = time.monotonic() + 5
    while not any(r.name == "pbistream.access" for r in caplog.records):
        assert time.monotonic() < deadline, "the request was never logged"
        time.sleep(0.02)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert pbistream_server.count_rows() == 0
    assert httpx.post(push_url, json=[{"n": 1}]).status_code == 200  # pending was released
