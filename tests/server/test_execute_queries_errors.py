"""executeQueries' refusals and limits: 400s that name the token and position, 200s
with an error beside the rows that fit, 429 past 120 queries a minute."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"


def _dataset(server: RunningServer, rows: int = 10, group_id: str | None = None) -> str:
    made = server.create_dataset(
        {"Name": "Text", "N": "Int64", "X": "Number", "Y": "Number"},
        mode="Push",
        table="T",
        group_id=group_id,
    )
    root = PBI + (f"/groups/{group_id}" if group_id else "")
    with server.client() as client:
        body = {"rows": [{"Name": f"n{i}", "N": i, "X": i / 2, "Y": -i} for i in range(rows)]}
        assert (
            client.post(f"{root}/datasets/{made['id']}/tables/T/rows", json=body).status_code == 200
        )
    return str(made["id"])


def _post(server: RunningServer, dataset_id: str, body: Any, root: str = PBI) -> httpx.Response:
    with server.client() as client:
        return client.post(f"{root}/datasets/{dataset_id}/executeQueries", json=body)


def _dax(server: RunningServer, dataset_id: str, query: str) -> httpx.Response:
    return _post(server, dataset_id, {"queries": [{"query": query}]})


@pytest.mark.parametrize(
    ("query", "names", "position"),
    [
        ("EVALUATE SUMMARIZE(T, T[Name])", "function SUMMARIZE is not supported", "(1, 10)"),
        ("EVALUATE\n  FILTER(T, T[N] >> 2)", "'>'", "(2, 19)"),
        ("EVALUATE T ORDER BY T[Missing]", "Missing", "(1, 21)"),
        ("EVALUATE 'Nope'", "Nope", "(1, 10)"),
        ("EVALUATE FILTER(T, T[Name] > 3)", "String", "(1, 28)"),
        ('EVALUATE ROW("a", SUM(T[N]) + T[N])', "single value", "(1, 31)"),
        ("EVALUATE 'T", "never closed", "(1, 10)"),
        ('EVALUATE FILTER(T, T[Name] & "x" = "n1x")', "'&'", "(1, 28)"),
        ("SELECT * FROM T", "SELECT", "(1, 1)"),
        ("EVALUATE " + "(" * 300 + "1" + ")" * 300, "nest", "(1, "),
        ("EVALUATE FILTER(T, T[N] IN {" + "1," * 30_000 + "1})", "20,000 tokens", "(1, "),
        (
            "EVALUATE ROW(" + ", ".join(f'"c{i}", {i}' for i in range(1_500)) + ")",
            "1,000",
            "(1, 10)",
        ),
    ],
)
def test_unsupported_or_wrong_dax_is_400_naming_token_and_position(
    pbistream_server: RunningServer, query: str, names: str, position: str
) -> None:
    dataset_id = _dataset(pbistream_server)
    response = _dax(pbistream_server, dataset_id, query)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "DatasetExecuteQueriesError"
    details = error["pbi.error"]["details"]
    assert details[0]["code"] == "DetailsMessage"
    message = details[0]["detail"]["value"]
    assert message == error["message"]
    assert message.startswith(f"Query {position}"), message
    assert names in message, message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([{"query": "EVALUATE T"}], "JSON object"),
        ({}, "'queries'"),
        ({"queries": []}, "'queries'"),
        ({"queries": [{"query": "EVALUATE T"}, {"query": "EVALUATE T"}]}, "one query per call"),
        ({"queries": [{"q": "EVALUATE T"}]}, "'query' string"),
        ({"queries": [{"query": "  "}]}, "empty"),
        (
            {"queries": [{"query": "EVALUATE T"}], "serializerSettings": {"includeNulls": "yes"}},
            "includeNulls",
        ),
        ({"queries": [{"query": "EVALUATE T"}], "serializerSettings": 3}, "serializerSettings"),
        ({"queries": [{"query": "EVALUATE T"}], "impersonatedUserName": 5}, "impersonatedUserName"),
    ],
)
def test_wrong_request_shapes_are_400(
    pbistream_server: RunningServer, body: Any, fragment: str
) -> None:
    dataset_id = _dataset(pbistream_server)
    response = _post(pbistream_server, dataset_id, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert fragment in response.json()["error"]["message"]


def test_impersonated_user_is_accepted_and_group_route_answers(
    pbistream_server: RunningServer,
) -> None:
    with pbistream_server.client() as client:
        group = client.post(f"{PBI}/groups", json={"name": "dax-ws"}).json()["id"]
    dataset_id = _dataset(pbistream_server, group_id=group)
    body = {
        "queries": [{"query": 'EVALUATE ROW("n", COUNTROWS(T))'}],
        "impersonatedUserName": "a@b.c",
    }
    response = _post(pbistream_server, dataset_id, body, root=f"{PBI}/groups/{group}")
    assert response.status_code == 200
    assert response.json() == {"results": [{"tables": [{"rows": [{"[n]": 10}]}]}]}
    beta = _post(pbistream_server, dataset_id, body, root=f"/beta/myorg/groups/{group}")
    assert beta.status_code == 200 and beta.json() == response.json()
    # The dataset is not in My workspace.
    assert _post(pbistream_server, dataset_id, body).status_code == 404
    assert _post(pbistream_server, "0" * 8, body).status_code == 404


def test_row_and_value_limits_answer_200_with_the_rows_that_fit(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(query_max_rows=5, query_max_values=12)
    dataset_id = _dataset(server, rows=10)
    one_column = _dax(server, dataset_id, 'EVALUATE SELECTCOLUMNS(T, "N", T[N]) ORDER BY [N]')
    assert one_column.status_code == 200
    table = one_column.json()["results"][0]["tables"][0]
    assert table["rows"] == [{"[N]": i} for i in range(5)]
    assert table["error"]["message"] == "More than 5 rows in a query result"
    # Four columns: 12 values are three rows.
    wide = _dax(server, dataset_id, "EVALUATE T ORDER BY T[N]").json()["results"][0]["tables"][0]
    assert [r["T[N]"] for r in wide["rows"]] == [0, 1, 2]
    assert wide["error"]["message"] == "More than 3 rows in a query result"
    fits = _dax(server, dataset_id, "EVALUATE TOPN(2, T, T[N])").json()["results"][0]["tables"][0]
    assert "error" not in fits and len(fits["rows"]) == 2


def test_more_than_one_evaluate_answers_the_first_with_an_error(
    pbistream_server: RunningServer,
) -> None:
    dataset_id = _dataset(pbistream_server)
    response = _dax(pbistream_server, dataset_id, 'EVALUATE ROW("a", 1) EVALUATE ROW("b", 2)')
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["tables"] == [{"rows": [{"[a]": 1}]}]
    assert result["error"]["message"] == "More than one result table in a query"


def test_byte_limit_finishes_the_row_that_crosses_it(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(query_max_bytes=100)
    dataset_id = _dataset(server, rows=10)
    table = _dax(server, dataset_id, "EVALUATE T ORDER BY T[N]").json()["results"][0]["tables"][0]
    assert 1 <= len(table["rows"]) < 10
    assert "100 bytes" in table["error"]["message"]


def test_queries_per_minute_per_user_is_429_with_retry_after(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(queries_per_minute=3)
    dataset_id = _dataset(server)
    for _ in range(3):
        assert _dax(server, dataset_id, "EVALUATE T").status_code == 200
    refused = _dax(server, dataset_id, "EVALUATE T")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "TooManyRequests"


def test_executequeries_is_in_openapi(pbistream_server: RunningServer) -> None:
    with pbistream_server.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    for root in ("/v1.0/myorg", "/v1.0/myorg/groups/{groupId}"):
        assert "post" in paths[f"{root}/datasets/{{datasetId}}/executeQueries"]


def test_a_viewer_token_runs_queries_on_its_datasets_only(pbistream_server: RunningServer) -> None:
    mine = _dataset(pbistream_server)
    other = _dataset(pbistream_server)
    with pbistream_server.client() as api:
        made = api.post("/api/tokens", json={"role": "viewer", "datasets": [mine]})
    assert made.status_code == 201, made.text
    headers = {"Authorization": f"Bearer {made.json()['token']}"}
    body = {"queries": [{"query": 'EVALUATE ROW("n", COUNTROWS(T))'}]}
    url = f"{pbistream_server.url}{PBI}/datasets/{{}}/executeQueries"
    allowed = httpx.post(url.format(mine), json=body, headers=headers)
    assert allowed.status_code == 200 and allowed.json()["results"][0]["tables"][0]["rows"] == [
        {"[n]": 10}
    ]
    refused = httpx.post(url.format(other), json=body, headers=headers)
    assert refused.status_code in (403, 404)
    anonymous = httpx.post(url.format(mine), json=body)
    assert anonymous.status_code == 401
