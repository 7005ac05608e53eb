"""Power BI client libraries from PyPI, written by others, run unchanged against pbistream.

Each library gets only what a user would change to point it at pbistream: its base URL
(a constructor argument or a class attribute it exposes) and a token handed to it directly
instead of one fetched from Entra ID. The server runs in emulator auth mode (``auth="any"``),
so any non-empty Bearer token works on the REST API, as an Entra token would on Power BI.
Every test creates a dataset through the library, adds rows through it, reads them back
(through the library where it can, else through our ``/api``) and deletes what the library
can delete, asserting on the rows really stored. docs/compatibility.md lists the versions.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests

from pbistream.testing import RunningServer


def _library(module: str, pin: str) -> Any:
    """Import a library of the dev extra: skip without it, but fail under CI=true."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)  # an ImportError fails the module
    return pytest.importorskip(module, reason=f"pip install '{pin}' (the dev extra pins it)")


pypowerbi_client = _library("pypowerbi.client", "pypowerbi==0.27")
pypowerbi_dataset = _library("pypowerbi.dataset", "pypowerbi==0.27")
pbiapi = _library("pbiapi", "pbiapi==0.2.2")
pbipy_powerbi = _library("pbipy.powerbi", "pbipy==2.13.0")
pbipy_resources = _library("pbipy.resources", "pbipy==2.13.0")

# What Entra ID hands out is a JWT; emulator mode takes any non-empty token.
ENTRA_LIKE_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJwb3dlcmJpIn0.c2ln"


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """A real server on 127.0.0.1 that takes any Bearer token on the REST API."""
    return server_factory(auth="any")


def stored_rows(server: RunningServer, dataset_id: str, table: str) -> list[dict[str, Any]]:
    """The rows really stored in a table, oldest first, read over our own /api."""
    response = httpx.get(
        f"{server.url}/api/datasets/{dataset_id}/rows",
        params={"table": table, "limit": 1000, "order": "asc"},
        headers=server.headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return [row["data"] for row in response.json()["rows"]]


# --- pypowerbi 0.27 ---------------------------------------------------------------------


def pypowerbi_for(server: RunningServer) -> Any:
    """``PowerBIClient(api_url, token)``: api_url is its documented base-URL argument."""
    return pypowerbi_client.PowerBIClient(server.url, {"accessToken": ENTRA_LIKE_TOKEN})


@pytest.mark.parametrize("group_id", [None, str(uuid.uuid4())], ids=["my-workspace", "in-group"])
def test_pypowerbi_creates_pushes_reads_truncates_and_deletes(
    server: RunningServer, group_id: str | None
) -> None:
    # pypowerbi builds ".../v1.0/myorg//datasets" (a double slash) and expects the
    # Power BI status codes exactly (201 on create, 200 on post/delete rows and delete).
    ds = pypowerbi_dataset
    columns = [
        ds.Column("id", "Int64"),
        ds.Column("name", "string"),  # lower-case type names, as its README writes them
        ds.Column("price", "Double", formatstring="0.00"),
        ds.Column("sold", "bool"),
        ds.Column("at", "DateTime"),
    ]
    client = pypowerbi_for(server)
    created = client.datasets.post_dataset(
        ds.Dataset("pypowerbi sales", tables=[ds.Table("Sales", columns)]), group_id=group_id
    )
    assert created.name == "pypowerbi sales"

    listed = client.datasets.get_datasets(group_id=group_id)
    assert [d.id for d in listed] == [created.id]
    assert listed[0].add_rows_api_enabled is True
    assert client.datasets.has_dataset(created.id, group_id=group_id)
    fetched = client.datasets.get_dataset(created.id, group_id=group_id)
    assert fetched.name == "pypowerbi sales"
    assert [t.name for t in client.datasets.get_tables(created.id, group_id=group_id)] == ["Sales"]

    rows = [
        ds.Row(id=1, name="tea", price=2.5, sold=True, at="2026-11-26T05:00:00Z"),
        ds.Row(id=2, name="café ☕", price=3.25, sold=False, at="2026-11-26T06:30:00+01:00"),
    ]
    client.datasets.post_rows(created.id, "Sales", rows, group_id=group_id)
    stored = stored_rows(server, created.id, "Sales")
    assert [(r["id"], r["name"], r["price"], r["sold"]) for r in stored] == [
        (1, "tea", 2.5, True),
        (2, "café ☕", 3.25, False),
    ]
    # Both instants are stored in UTC (the second was 06:30 at +01:00).
    assert [r["at"][:19] for r in stored] == ["2026-11-26T05:00:00", "2026-11-26T05:30:00"]

    client.datasets.delete_rows(created.id, "Sales", group_id=group_id)
    assert server.count_rows(created.id, "Sales") == 0

    client.datasets.delete_dataset(created.id, group_id=group_id)
    assert client.datasets.get_datasets(group_id=group_id) == []
    assert server.storage.get_dataset(created.id) is None


def test_pypowerbi_sees_a_row_error_as_an_http_error(server: RunningServer) -> None:
    ds = pypowerbi_dataset
    client = pypowerbi_for(server)
    table = ds.Table("T", [ds.Column("n", "Int64")])
    created = client.datasets.post_dataset(ds.Dataset("bad rows", tables=[table]))
    with pytest.raises(requests.HTTPError) as caught:
        client.datasets.post_rows(created.id, "T", [ds.Row(n=1), ds.Row(n="not a number")])
    # The library puts the Power BI-shaped error body into its exception text.
    assert "Row 1" in str(caught.value)
    assert "'n'" in str(caught.value)
    assert server.count_rows(created.id, "T") == 0


# --- pbiapi 0.2.2 -----------------------------------------------------------------------

WORKSPACE = "CI workspace"


@pytest.fixture
def pbiapi_client(server: RunningServer) -> Iterator[Any]:
    """A ``PowerBIAPIClient`` pointed at the server, with a token handed to it directly.

    pbiapi has no base-URL argument; ``base_url`` is a plain public attribute. It fetches
    its token from login.microsoftonline.com, so, as for every library here, the test
    hands it one (``token``, its expiry and the ``headers`` it sends). pbiapi addresses
    workspaces by name: its own ``create_workspace`` makes one (GET /groups?$filter=...,
    then a form POST /groups) and every later call finds its id through GET /groups.
    """
    client = pbiapi.PowerBIAPIClient("tenant", "client-id", "not-a-secret")
    client.base_url = f"{server.url}/v1.0/myorg/"
    client.token = ENTRA_LIKE_TOKEN
    client.token_expiration = dt.datetime.utcnow() + dt.timedelta(hours=1)
    client.headers = {
        # update_token() sends this form content type on every GET and DELETE too.
        "Content-Type": "application/x-www-form-urlencoded",
        **client.get_auth_header(),
    }
    client.create_workspace(WORKSPACE)
    client.create_workspace(WORKSPACE)  # already there: pbiapi checks by name and stops
    yield client


def test_pbiapi_creates_pushes_reads_truncates_and_deletes(
    server: RunningServer, pbiapi_client: Any
) -> None:
    schema = {
        "name": "pbiapi readings",
        "defaultMode": "Push",
        "tables": [
            {
                "name": "Readings",
                "columns": [
                    {"name": "sensor", "dataType": "String", "isHidden": False},
                    {"name": "value", "dataType": "Double", "summarizeBy": "sum"},
                    {"name": "at", "dataType": "DateTime", "formatString": "yyyy-mm-dd"},
                ],
                "measures": [{"name": "Total", "expression": "SUM(Readings[value])"}],
            }
        ],
    }
    pbiapi_client.create_dataset(WORKSPACE, schema, retention_policy="basicFIFO")
    datasets = pbiapi_client.get_datasets_in_workspace(WORKSPACE)
    assert [d["name"] for d in datasets] == ["pbiapi readings"]
    dataset_id = datasets[0]["id"]
    tables = pbiapi_client.get_tables(WORKSPACE, dataset_id)
    assert [t["name"] for t in tables["value"]] == ["Readings"]

    # chunk_size=2 makes the library split 5 rows into three POSTs.
    rows = [
        {"sensor": f"s{i}", "value": i * 1.5, "at": f"2026-11-26T05:0{i}:00Z"} for i in range(5)
    ]
    pbiapi_client.post_rows(WORKSPACE, dataset_id, "Readings", rows, chunk_size=2)
    stored = stored_rows(server, dataset_id, "Readings")
    assert [(r["sensor"], r["value"]) for r in stored] == [(r["sensor"], r["value"]) for r in rows]

    pbiapi_client.truncate_table(WORKSPACE, dataset_id, "Readings")
    assert server.count_rows(dataset_id, "Readings") == 0

    pbiapi_client.delete_dataset(WORKSPACE, "pbiapi readings")
    assert pbiapi_client.get_datasets_in_workspace(WORKSPACE) == []

    # The workspace pbiapi made is a real one: listed once, and deletable by name.
    assert [w["name"] for w in pbiapi_client.get_workspaces()] == [WORKSPACE]
    pbiapi_client.delete_workspace(WORKSPACE)
    assert pbiapi_client.get_workspaces() == []


# --- pbipy 2.13.0 (no push operations: it reads and deletes datasets) -------------------


def test_pbipy_lists_reads_and_deletes_a_push_dataset(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pbipy copies settings.BASE_URL into the public class attribute BASE_URL of its
    # client and of every resource at import time; a user sets those attributes.
    base = f"{server.url}/v1.0/myorg"
    monkeypatch.setattr(pbipy_powerbi.PowerBI, "BASE_URL", base)
    monkeypatch.setattr(pbipy_resources.Resource, "BASE_URL", base)
    group_id = str(uuid.uuid4())
    created = server.create_dataset({"n": "Int64"}, name="made elsewhere", mode="Push", table="T")
    with server.client() as http:
        pushed = http.post(
            f"/v1.0/myorg/datasets/{created['id']}/tables/T/rows", json={"rows": [{"n": 7}]}
        )
    assert pushed.status_code == 200, pushed.text
    server.create_dataset({"n": "Int64"}, name="in a group", mode="Push", group_id=group_id)

    pbi = pbipy_powerbi.PowerBI(ENTRA_LIKE_TOKEN)
    assert [d.name for d in pbi.datasets()] == ["made elsewhere"]
    assert [d.name for d in pbi.datasets(group=group_id)] == ["in a group"]
    dataset = pbi.dataset(created["id"])
    assert dataset.name == "made elsewhere"
    assert dataset.add_rows_api_enabled is True
    assert stored_rows(server, created["id"], "T") == [{"n": 7}]

    pbi.delete_dataset(created["id"])
    assert pbi.datasets() == []
    assert server.storage.get_dataset(created["id"]) is None


def test_pypowerbi_datasets_are_push_datasets_as_on_power_bi(server: RunningServer) -> None:
    # pypowerbi sends no defaultMode: Power BI then makes a Push dataset (no Push URL).
    ds = pypowerbi_dataset
    client = pypowerbi_for(server)
    table = ds.Table("T", [ds.Column("n", "Int64")])
    created = client.datasets.post_dataset(ds.Dataset("default mode", tables=[table]))
    shown = httpx.get(f"{server.url}/api/datasets/{created.id}", headers=server.headers, timeout=10)
    assert shown.status_code == 200, shown.text
    assert shown.json()["defaultMode"] == "Push"
    assert shown.json().get("pushUrl") is None


def test_pbiapi_default_chunks_stay_within_the_rows_per_post_limit(
    server: RunningServer, pbiapi_client: Any
) -> None:
    # pbiapi's default chunk_size is 10,000: exactly Power BI's rows-per-POST limit,
    # which pbistream must accept; 10,001 rows go as 10,000 + 1.
    schema = {
        "name": "big",
        "tables": [{"name": "T", "columns": [{"name": "n", "dataType": "Int64"}]}],
    }
    pbiapi_client.create_dataset(WORKSPACE, schema, retention_policy="None")
    dataset_id = pbiapi_client.get_datasets_in_workspace(WORKSPACE)[0]["id"]
    pbiapi_client.post_rows(WORKSPACE, dataset_id, "T", [{"n": i} for i in range(10_001)])
    assert server.count_rows(dataset_id, "T") == 10_001


def test_pbiapi_updates_a_table_schema_and_keeps_its_rows(
    server: RunningServer, pbiapi_client: Any
) -> None:
    columns = [{"name": "n", "dataType": "Int64"}]
    schema = {"name": "evolving", "tables": [{"name": "T", "columns": columns}]}
    pbiapi_client.create_dataset(WORKSPACE, schema, retention_policy="None")
    dataset_id = pbiapi_client.get_datasets_in_workspace(WORKSPACE)[0]["id"]
    pbiapi_client.post_rows(WORKSPACE, dataset_id, "T", [{"n": 1}])

    wider = {"name": "T", "columns": [*columns, {"name": "label", "dataType": "String"}]}
    pbiapi_client.update_table_schema(WORKSPACE, dataset_id, "T", wider)  # logs, never raises
    pbiapi_client.post_rows(WORKSPACE, dataset_id, "T", [{"n": 2, "label": "new column"}])
    assert stored_rows(server, dataset_id, "T") == [{"n": 1}, {"n": 2, "label": "new column"}]


def test_pbipy_gets_a_power_bi_shaped_404_for_an_unknown_dataset(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = f"{server.url}/v1.0/myorg"
    monkeypatch.setattr(pbipy_powerbi.PowerBI, "BASE_URL", base)
    monkeypatch.setattr(pbipy_resources.Resource, "BASE_URL", base)
    pbi = pbipy_powerbi.PowerBI(ENTRA_LIKE_TOKEN)
    with pytest.raises(requests.HTTPError) as caught:
        pbi.dataset(str(uuid.uuid4()))
    assert caught.value.response.status_code == 404
    # pbipy appends the API's JSON error body to its message.
    assert "Additional information from API" in str(caught.value)
    assert "'error'" in str(caught.value)


def test_pypowerbi_with_a_trailing_slash_base_url_and_an_upper_case_group(
    server: RunningServer,
) -> None:
    # A user pasting "http://host:port/" makes pypowerbi request "//v1.0/myorg//datasets".
    ds = pypowerbi_dataset
    client = pypowerbi_client.PowerBIClient(server.url + "/", {"accessToken": ENTRA_LIKE_TOKEN})
    group_id = str(uuid.uuid4())
    table = ds.Table("T", [ds.Column("n", "Int64")])
    created = client.datasets.post_dataset(
        ds.Dataset("slashes", tables=[table]), group_id=group_id.upper()
    )
    client.datasets.post_rows(created.id, "T", [ds.Row(n=5)], group_id=group_id)
    assert [d.id for d in client.datasets.get_datasets(group_id=group_id)] == [created.id]
    assert stored_rows(server, created.id, "T") == [{"n": 5}]


def test_pypowerbi_with_the_servers_own_token_outside_emulator_mode(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory()  # auth is the server's token, as in production
    ds = pypowerbi_dataset
    table = ds.Table("T", [ds.Column("n", "Int64")])
    wrong = pypowerbi_client.PowerBIClient(server.url, {"accessToken": ENTRA_LIKE_TOKEN})
    with pytest.raises(requests.HTTPError) as caught:
        wrong.datasets.post_dataset(ds.Dataset("refused", tables=[table]))
    # pypowerbi raises HTTPError(response, message): the response is its first argument.
    assert caught.value.args[0].status_code == 401
    assert server.storage.list_datasets(all_groups=True) == []

    client = pypowerbi_client.PowerBIClient(server.url, {"accessToken": server.token})
    created = client.datasets.post_dataset(ds.Dataset("accepted", tables=[table]))
    client.datasets.post_rows(created.id, "T", [ds.Row(n=1), ds.Row(n=2)])
    assert stored_rows(server, created.id, "T") == [{"n": 1}, {"n": 2}]


def test_pypowerbi_shows_a_readable_rule_for_a_bad_table_name(server: RunningServer) -> None:
    # Regression: the rule's list of refused characters printed "{{ }}" (an f-string
    # escape in a plain string) where it means the braces "{ }".
    ds = pypowerbi_dataset
    client = pypowerbi_for(server)
    with pytest.raises(requests.HTTPError) as caught:
        client.datasets.post_dataset(
            ds.Dataset("bad name", tables=[ds.Table("a+b", [ds.Column("n", "Int64")])])
        )
    response = caught.value.args[0]
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "table name 'a+b' is not valid" in message
    assert "[ ] { } '" in message
    assert "{{" not in message
    assert server.storage.list_datasets(all_groups=True) == []


def test_pypowerbi_does_not_split_rows_so_10001_are_refused_whole(server: RunningServer) -> None:
    # Unlike pbiapi, pypowerbi sends all rows in one POST; past Power BI's 10,000 rows
    # per POST the whole request is refused with a message that says how to fix it.
    ds = pypowerbi_dataset
    client = pypowerbi_for(server)
    table = ds.Table("T", [ds.Column("n", "Int64")])
    created = client.datasets.post_dataset(ds.Dataset("too many", tables=[table]))
    with pytest.raises(requests.HTTPError) as caught:
        client.datasets.post_rows(created.id, "T", [ds.Row(n=i) for i in range(10_001)])
    response = caught.value.args[0]
    assert response.status_code == 400
    assert "at most 10,000 rows" in response.json()["error"]["message"]
    assert server.count_rows(created.id, "T") == 0
    client.datasets.post_rows(created.id, "T", [ds.Row(n=i) for i in range(10_000)])
    assert server.count_rows(created.id, "T") == 10_000


@pytest.mark.parametrize("table_name", ["Sales Data", "Ventes été"])
def test_pypowerbi_reaches_tables_whose_names_need_url_encoding(
    server: RunningServer, table_name: str
) -> None:
    # pypowerbi puts the name in the path as it is; requests percent-encodes it.
    ds = pypowerbi_dataset
    client = pypowerbi_for(server)
    table = ds.Table(table_name, [ds.Column("n", "Int64")])
    created = client.datasets.post_dataset(ds.Dataset("names", tables=[table]))
    assert [t.name for t in client.datasets.get_tables(created.id)] == [table_name]
    client.datasets.post_rows(created.id, table_name, [ds.Row(n=3)])
    assert stored_rows(server, created.id, table_name) == [{"n": 3}]
    client.datasets.delete_rows(created.id, table_name)
    assert server.count_rows(created.id, table_name) == 0


# --- python-power-bi 0.1.2 --------------------------------------------------------------

ppb_session = _library("powerbi.session", "python-power-bi==0.1.2")
ppb_push = _library("powerbi.push_datasets", "python-power-bi==0.1.2")
ppb_dashboards = _library("powerbi.dashboards", "python-power-bi==0.1.2")
ppb_utils = _library("powerbi.utils", "python-power-bi==0.1.2")
ppb_enums = _library("powerbi.enums", "python-power-bi==0.1.2")


class _SignedIn:
    """What ``PowerBiClient`` hands its session after its msal login: an access token."""

    access_token = ENTRA_LIKE_TOKEN


@pytest.fixture
def ppb(server: RunningServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """python-power-bi's own session, pointed at the server by its public ``resource_url``.

    ``PowerBiClient(...)`` signs in through msal before anything else, so, as for every
    library here, the test hands its session a token directly. The session writes a log
    file under ``./logs`` (hence the temporary working directory). The one change is
    the base URL: ``resource_url`` (``https://api.powerbi.com/`` in the library).
    """
    monkeypatch.chdir(tmp_path)
    session = ppb_session.PowerBiSession(client=_SignedIn())
    session.resource_url = f"{server.url}/"
    return session


def _ppb_dataset(name: str, mode: str) -> Any:
    utils, types = ppb_utils, ppb_enums.ColumnDataTypes
    table = utils.Table(name="Readings")
    for column, data_type in [
        ("sensor", types.String),
        ("value", types.Double),
        ("count", types.Int64),
        ("ok", types.Boolean),
        ("at", types.Datetime),
    ]:
        table.add_column(utils.Column(name=column, data_type=data_type))
    dataset = utils.Dataset(name=name, tables=[])
    dataset.add_table(table)
    dataset.default_mode = mode
    return dataset


@pytest.mark.parametrize("mode", ["PushStreaming", "Push", ""])
@pytest.mark.parametrize("group_id", [None, str(uuid.uuid4())], ids=["my-workspace", "in-group"])
def test_python_power_bi_creates_pushes_reads_and_truncates(
    server: RunningServer, ppb: Any, mode: str, group_id: str | None
) -> None:
    # Every column goes out with "dataCategory": "", "formatString": "", "isHidden":
    # false, "sortByColumn": null, "summarizeBy": null, and the dataset with
    # "defaultMode": "" unless set and "?defaultRetentionPolicy=None": empty defaults,
    # which Power BI reads as "not set" (a PushStreaming create used to get a 400).
    service = ppb_push.PushDatasets(session=ppb)
    dataset = _ppb_dataset(f"python-power-bi {mode or 'default'}", mode)
    if group_id is None:
        created = service.post_dataset(dataset=dataset)
    else:
        created = service.post_group_dataset(group_id=group_id, dataset=dataset)
    assert created["name"] == f"python-power-bi {mode or 'default'}"
    dataset_id = created["id"]
    shown = httpx.get(f"{server.url}/api/datasets/{dataset_id}", headers=server.headers, timeout=10)
    assert shown.json()["defaultMode"] == (mode or "Push")

    rows = [
        {"sensor": "a", "value": 1.5, "count": 3, "ok": True, "at": "2026-11-26T05:00:00Z"},
        {"sensor": "b", "value": -2.0, "count": 4, "ok": False, "at": "2026-11-26T05:00:01Z"},
    ]
    if group_id is None:
        assert service.post_dataset_rows(dataset_id, "Readings", rows) is None
        tables = service.get_tables(dataset_id)
    else:
        service.post_group_dataset_rows(group_id, dataset_id, "Readings", rows)
        tables = service.get_group_tables(group_id, dataset_id)
    assert [t["name"] for t in tables["value"]] == ["Readings"]
    stored = stored_rows(server, dataset_id, "Readings")
    assert [(r["sensor"], r["value"], r["count"], r["ok"]) for r in stored] == [
        ("a", 1.5, 3, True),
        ("b", -2.0, 4, False),
    ]

    if group_id is None:
        service.delete_dataset_rows(dataset_id, "Readings")
    else:
        service.delete_group_dataset_rows(group_id, dataset_id, "Readings")
    assert server.count_rows(dataset_id, "Readings") == 0


def test_python_power_bi_replaces_a_table_schema_and_keeps_its_rows(
    server: RunningServer, ppb: Any
) -> None:
    service = ppb_push.PushDatasets(session=ppb)
    created = service.post_dataset(dataset=_ppb_dataset("evolving", "Push"))
    service.post_dataset_rows(created["id"], "Readings", [{"sensor": "a", "count": "7"}])
    wider = _ppb_dataset("evolving", "Push").get_table(0)
    wider.add_column(ppb_utils.Column(name="note", data_type=ppb_enums.ColumnDataTypes.String))
    assert service.put_dataset(created["id"], "Readings", wider) == {"name": "Readings"}
    service.post_dataset_rows(created["id"], "Readings", [{"sensor": "b", "note": "new"}])
    # "7" arrived as text into an Int64 column and was converted, as Power BI does.
    assert stored_rows(server, created["id"], "Readings") == [
        {"sensor": "a", "count": 7},
        {"sensor": "b", "note": "new"},
    ]


def test_python_power_bi_still_gets_the_400_for_a_set_column_property_on_pushstreaming(
    server: RunningServer, ppb: Any
) -> None:
    # Only empty defaults are "unset": a real formatString on a PushStreaming column is
    # still Power BI's InvalidRequest (C1), raised by the library as an HTTPError.
    dataset = _ppb_dataset("formatted", "PushStreaming")
    dataset.get_table(0).get_column(1).format_string = "0.00"
    with pytest.raises(requests.HTTPError):
        ppb_push.PushDatasets(session=ppb).post_dataset(dataset=dataset)
    assert server.storage.list_datasets(all_groups=True) == []


@pytest.mark.parametrize("group_id", [None, str(uuid.uuid4())], ids=["my-workspace", "in-group"])
def test_python_power_bi_adds_and_lists_dashboards_and_tiles(
    server: RunningServer, ppb: Any, group_id: str | None
) -> None:
    service = ppb_dashboards.Dashboards(session=ppb)
    if group_id is None:
        added = service.add_dashboard(name="Plant floor")
        listed = service.get_dashboards()
        one = service.get_dashboard(dashboard_id=added["id"])
        tiles = service.get_tiles(dashboard_id=added["id"])
    else:
        added = service.add_dashboard_in_group(name="Plant floor", group_id=group_id)
        listed = service.get_group_dashboards(group_id=group_id)
        one = service.get_group_dashboard(group_id=group_id, dashboard_id=added["id"])
        tiles = service.get_group_tiles(group_id=group_id, dashboard_id=added["id"])
    assert added["displayName"] == "Plant floor"
    assert added["isReadOnly"] is False
    assert added["embedUrl"].endswith(f"/ui/#/dashboards/{added['id']}")
    assert [d["id"] for d in listed["value"]] == [added["id"]]
    assert one["displayName"] == "Plant floor"
    assert tiles["value"] == []
    # The dashboard is pbistream's own: the web UI lists it too.
    ours = httpx.get(f"{server.url}/api/dashboards", headers=server.headers, timeout=10)
    assert [d["name"] for d in ours.json()["value"]] == ["Plant floor"]
