"""The rest of the Power BI surface clients call, on a real server (SQLite and PostgreSQL).

Refresh Dataset and Get Refresh History, Update Dataset (PATCH), Get Datasources and
the Dashboards API, each under My workspace and a workspace, with Power BI's shapes
and status codes (docs/compatibility.md, "Fidelity table").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

FIELDS = {"value": "Number", "n": "Int64"}


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The storage each server of a test uses: both keep state in meta keys."""
    return str(request.param)


@pytest.fixture
def start(
    request: pytest.FixtureRequest, backend: str, server_factory: Callable[..., RunningServer]
) -> Callable[..., RunningServer]:
    """Start a server on this test's backend with some settings."""

    def starter(**overrides: Any) -> RunningServer:
        if backend == "postgres":
            overrides["storage"] = request.getfixturevalue("postgres_storage")
        return server_factory(**overrides)

    return starter


def _root(group_id: str | None) -> str:
    return "/v1.0/myorg" + (f"/groups/{group_id}" if group_id else "")


def _call(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with server.client(timeout=10) as client:
        return client.request(method, path, **kwargs)


GROUPS = [None, str(uuid.uuid4())]
GROUP_IDS = ["my-workspace", "in-group"]


# --- refreshes --------------------------------------------------------------------------


@pytest.mark.parametrize("group_id", GROUPS, ids=GROUP_IDS)
def test_a_push_dataset_refresh_is_refused_and_its_history_is_empty(
    start: Callable[..., RunningServer], group_id: str | None
) -> None:
    server = start()
    dataset_id = server.create_dataset(FIELDS, mode="Push", group_id=group_id)["id"]
    url = f"{_root(group_id)}/datasets/{dataset_id}/refreshes"
    for body in (None, {"notifyOption": "NoNotification"}):
        refused = _call(server, "POST", url, json=body)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "InvalidRequest"
        assert "isRefreshable is false" in error["message"]
    history = _call(server, "GET", url)
    assert history.status_code == 200
    assert history.json()["value"] == []
    assert history.json()["@odata.context"].endswith("$metadata#refreshes")
    listed = _call(server, "GET", f"{_root(group_id)}/datasets/{dataset_id}")
    assert listed.json()["isRefreshable"] is False  # what the refusal is consistent with


@pytest.mark.parametrize("group_id", GROUPS, ids=GROUP_IDS)
def test_push_refresh_accept_answers_202_and_records_the_history(
    start: Callable[..., RunningServer], group_id: str | None
) -> None:
    server = start(push_refresh="accept")
    dataset_id = server.create_dataset(FIELDS, mode="PushStreaming", group_id=group_id)["id"]
    url = f"{_root(group_id)}/datasets/{dataset_id}/refreshes"
    first = _call(server, "POST", url, json={"notifyOption": "MailOnFailure", "retryCount": 3})
    assert first.status_code == 202, first.text
    assert first.content == b""
    assert first.headers["Location"].endswith(f"/refreshes/{first.headers['x-ms-request-id']}")
    second = _call(server, "POST", url)  # a bodyless POST, as several clients send
    assert second.status_code == 202
    history = _call(server, "GET", url).json()["value"]
    assert [h["requestId"] for h in history] == [
        second.headers["x-ms-request-id"],
        first.headers["x-ms-request-id"],
    ]
    entry = history[0]
    assert (entry["refreshType"], entry["status"]) == ("ViaApi", "Completed")
    assert entry["startTime"].endswith("Z") and entry["endTime"].endswith("Z")
    top = _call(server, "GET", url, params={"$top": "1"}).json()["value"]
    assert [h["requestId"] for h in top] == [second.headers["x-ms-request-id"]]
    assert _call(server, "GET", url, params={"$top": "0"}).status_code == 400


def test_refresh_requests_power_bi_would_refuse_are_400_and_unknown_datasets_404(
    pbistream_server: RunningServer,
) -> None:
    server = pbistream_server
    dataset_id = server.create_dataset(FIELDS, mode="Push")["id"]
    url = f"/v1.0/myorg/datasets/{dataset_id}/refreshes"
    unknown = _call(server, "POST", url, json={"notify": "x"})
    assert unknown.status_code == 400
    assert "'notify' does not exist" in unknown.json()["error"]["details"][0]["message"]
    assert _call(server, "POST", url, json={"notifyOption": "Sometimes"}).status_code == 400
    assert _call(server, "POST", url, content=b"[1]").status_code == 400
    missing = f"/v1.0/myorg/datasets/{uuid.uuid4()}/refreshes"
    assert _call(server, "POST", missing).status_code == 404
    assert _call(server, "GET", missing).json()["error"]["code"] == "PowerBIEntityNotFound"
    # A dataset of another workspace is not found from My workspace.
    other = server.create_dataset(FIELDS, mode="Push", group_id=str(uuid.uuid4()))["id"]
    assert _call(server, "GET", f"/v1.0/myorg/datasets/{other}/refreshes").status_code == 404


# --- PATCH dataset, datasources ---------------------------------------------------------


@pytest.mark.parametrize("group_id", GROUPS, ids=GROUP_IDS)
def test_update_dataset_takes_the_documented_body_and_changes_nothing(
    pbistream_server: RunningServer, group_id: str | None
) -> None:
    server = pbistream_server
    dataset_id = server.create_dataset(FIELDS, mode="Push", group_id=group_id)["id"]
    url = f"{_root(group_id)}/datasets/{dataset_id}"
    before = _call(server, "GET", url).json()
    for body in (
        {"targetStorageMode": "PremiumFiles"},
        {"targetStorageMode": "Abf"},
        {"queryScaleOutSettings": {"autoSyncReadOnlyReplicas": False, "maxReadOnlyReplicas": -1}},
    ):
        patched = _call(server, "PATCH", url, json=body)
        assert patched.status_code == 200, patched.text
        assert patched.content == b""
    assert _call(server, "GET", url).json() == before


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "renamed"}, "'name' does not exist"),
        ({"targetStorageMode": "Large"}, "Abf, PremiumFiles"),
        ({"queryScaleOutSettings": {"maxReadOnlyReplicas": 65}}, "-1 to 64"),
        ({"queryScaleOutSettings": {"replicas": 1}}, "'replicas' does not exist"),
        ([], "JSON object"),
    ],
)
def test_update_dataset_refuses_what_power_bi_refuses(
    pbistream_server: RunningServer, body: Any, words: str
) -> None:
    dataset_id = pbistream_server.create_dataset(FIELDS, mode="Push")["id"]
    refused = _call(pbistream_server, "PATCH", f"/v1.0/myorg/datasets/{dataset_id}", json=body)
    assert refused.status_code == 400
    assert words in refused.text
    missing = _call(pbistream_server, "PATCH", f"/v1.0/myorg/datasets/{uuid.uuid4()}", json={})
    assert missing.status_code == 404


@pytest.mark.parametrize("group_id", GROUPS, ids=GROUP_IDS)
def test_a_push_dataset_has_no_datasources(
    pbistream_server: RunningServer, group_id: str | None
) -> None:
    server = pbistream_server
    dataset_id = server.create_dataset(FIELDS, mode="Push", group_id=group_id)["id"]
    listed = _call(server, "GET", f"{_root(group_id)}/datasets/{dataset_id}/datasources")
    assert listed.status_code == 200
    assert listed.json()["value"] == []
    assert listed.json()["@odata.context"].endswith("$metadata#datasources")
    missing = _call(server, "GET", f"{_root(group_id)}/datasets/{uuid.uuid4()}/datasources")
    assert missing.status_code == 404


# --- dashboards ----------------------------------------------------------------------------


def _tile_doc(dataset_id: str) -> dict[str, Any]:
    return {
        "name": "Made in the UI",
        "tiles": [
            {
                "id": "t1",
                "type": "card",
                "title": "Now",
                "datasetId": dataset_id,
                "table": "RealTimeData",
                "fields": ["value"],
                "x": 0,
                "y": 0,
                "w": 3,
                "h": 2,
            },
            {
                "id": "t2",
                "type": "line",
                "datasetId": dataset_id,
                "table": "RealTimeData",
                "fields": ["value", "n"],
                "x": 3,
                "y": 0,
                "w": 6,
                "h": 4,
            },
        ],
    }


def test_dashboards_made_in_the_ui_are_my_workspace_dashboards_with_power_bi_tiles(
    start: Callable[..., RunningServer],
) -> None:
    server = start()
    dataset_id = server.create_dataset(FIELDS, mode="PushStreaming")["id"]
    made = _call(server, "POST", "/api/dashboards", json=_tile_doc(dataset_id))
    assert made.status_code == 201, made.text
    board_id = made.json()["id"]

    listed = _call(server, "GET", "/v1.0/myorg/dashboards").json()
    assert listed["@odata.context"].endswith("$metadata#dashboards")
    assert listed["value"] == [
        {
            "id": board_id,
            "displayName": "Made in the UI",
            "isReadOnly": False,
            "webUrl": f"{server.url}/ui/#/dashboards/{board_id}",
            "embedUrl": f"{server.url}/ui/#/dashboards/{board_id}",
        }
    ]
    tiles = _call(server, "GET", f"/v1.0/myorg/dashboards/{board_id}/tiles").json()["value"]
    assert [(t["id"], t["title"], t["rowSpan"], t["colSpan"], t["datasetId"]) for t in tiles] == [
        ("t1", "Now", 2, 3, dataset_id),
        ("t2", "", 4, 6, dataset_id),
    ]
    one = _call(server, "GET", f"/v1.0/myorg/dashboards/{board_id}/tiles/t2")
    assert one.status_code == 200 and one.json()["colSpan"] == 6
    assert _call(server, "GET", f"/v1.0/myorg/dashboards/{board_id}/tiles/nope").status_code == 404
    # A workspace does not see My workspace's dashboards.
    group = str(uuid.uuid4())
    assert _call(server, "GET", f"/v1.0/myorg/groups/{group}/dashboards").json()["value"] == []
    hidden = _call(server, "GET", f"/v1.0/myorg/groups/{group}/dashboards/{board_id}")
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "PowerBIEntityNotFound"


@pytest.mark.parametrize("group_id", GROUPS, ids=GROUP_IDS)
def test_add_dashboard_makes_an_empty_dashboard_in_its_workspace(
    start: Callable[..., RunningServer], group_id: str | None
) -> None:
    server = start()
    root = _root(group_id)
    added = _call(server, "POST", f"{root}/dashboards", json={"name": "SalesMarketing"})
    assert added.status_code == 200, added.text  # AddDashboard documents 200 OK
    body = added.json()
    assert body["displayName"] == "SalesMarketing"
    assert body["isReadOnly"] is False
    uuid.UUID(body["id"])
    got = _call(server, "GET", f"{root}/dashboards/{body['id']}")
    assert got.status_code == 200
    assert got.json()["displayName"] == "SalesMarketing"
    assert [d["id"] for d in _call(server, "GET", f"{root}/dashboards").json()["value"]] == [
        body["id"]
    ]
    assert _call(server, "GET", f"{root}/dashboards/{body['id']}/tiles").json()["value"] == []
    # It is one of pbistream's dashboards: the UI API reads and edits it.
    ours = _call(server, "GET", f"/api/dashboards/{body['id']}")
    assert ours.status_code == 200 and ours.json()["tiles"] == []
    # Seen from the other workspace, it does not exist.
    other = _root(None if group_id else str(uuid.uuid4()))
    assert _call(server, "GET", f"{other}/dashboards").json()["value"] == []
    assert _call(server, "GET", f"{other}/dashboards/{body['id']}/tiles").status_code == 404


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "'name' must be text"),
        ({"name": ""}, "'name' must be text"),
        ({"name": "x" * 101}, "'name' must be text"),
        ({"name": "ok", "tiles": []}, "'tiles' does not exist"),
        (["x"], "JSON object"),
    ],
)
def test_add_dashboard_refuses_bad_bodies_and_stores_nothing(
    pbistream_server: RunningServer, body: Any, words: str
) -> None:
    refused = _call(pbistream_server, "POST", "/v1.0/myorg/dashboards", json=body)
    assert refused.status_code == 400
    assert words in refused.text
    assert pbistream_server.storage.list_dashboards() == []


def test_the_power_bi_surface_needs_a_token_and_is_routed_under_beta_too(
    pbistream_server: RunningServer,
) -> None:
    server = pbistream_server
    dataset_id = server.create_dataset(FIELDS, mode="Push")["id"]
    for method, path in [
        ("GET", "/v1.0/myorg/dashboards"),
        ("POST", f"/v1.0/myorg/datasets/{dataset_id}/refreshes"),
        ("GET", f"/v1.0/myorg/datasets/{dataset_id}/datasources"),
        ("PATCH", f"/v1.0/myorg/datasets/{dataset_id}"),
    ]:
        response = httpx.request(method, f"{server.url}{path}", json={}, timeout=10)
        assert response.status_code == 401, (method, path)
    beta = _call(server, "GET", f"/beta/myorg/datasets/{dataset_id}/refreshes")
    assert beta.status_code == 200
    assert _call(server, "GET", "/beta/myorg/dashboards").status_code == 200
