"""Workspaces (the Groups API): list, create, delete, on a real server, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

GROUPS = "/v1.0/myorg/groups"
FIELDS = {"n": "Int64"}


@pytest.fixture(params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, server_factory: Callable[..., RunningServer]
) -> RunningServer:
    """A server on each backend: the names live in one meta key on both."""
    if request.param == "postgres":
        return server_factory(storage=request.getfixturevalue("postgres_storage"))
    return server_factory()


def _call(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with server.client(timeout=10) as client:
        return client.request(method, path, **kwargs)


def _create(server: RunningServer, name: str) -> dict[str, Any]:
    response = _call(server, "POST", GROUPS, params={"workspaceV2": "True"}, json={"name": name})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _names(server: RunningServer, **params: str) -> list[str]:
    response = _call(server, "GET", GROUPS, params=params)
    assert response.status_code == 200, response.text
    return [g["name"] for g in response.json()["value"]]


def test_created_workspaces_are_listed_and_found_by_name(server: RunningServer) -> None:
    created = _create(server, "Sales")
    assert created["@odata.context"].endswith("/v1.0/myorg/$metadata#groups/$entity")
    assert str(uuid.UUID(created["id"])) == created["id"]
    assert created | {"id": "x", "@odata.context": "y"} == {
        "@odata.context": "y",
        "id": "x",
        "name": "Sales",
        "isReadOnly": False,
        "isOnDedicatedCapacity": False,
        "type": "Workspace",
    }
    _create(server, "O'Brien ops")
    listed = _call(server, "GET", GROUPS).json()
    assert listed["@odata.context"] == f"{server.url}/v1.0/myorg/$metadata#groups"
    assert [g["name"] for g in listed["value"]] == ["Sales", "O'Brien ops"]
    assert listed["@odata.count"] == 2

    found = _call(server, "GET", GROUPS, params={"$filter": "name eq 'O''Brien ops'"}).json()
    assert [g["id"] for g in found["value"]] == [listed["value"][1]["id"]]
    assert found["@odata.count"] == 1
    assert _names(server, **{"$filter": "name eq 'nobody'"}) == []
    assert _names(server, **{"$top": "1"}) == ["Sales"]
    assert _names(server, **{"$skip": "1", "$top": "5"}) == ["O'Brien ops"]

    # The workspace's id addresses its datasets, as any group id does.
    dataset = server.create_dataset(FIELDS, mode="Push", group_id=created["id"])
    inside = _call(server, "GET", f"{GROUPS}/{created['id']}/datasets").json()["value"]
    assert [d["id"] for d in inside] == [dataset["id"]]


def test_an_implicit_workspace_holding_datasets_is_listed_by_its_id(
    server: RunningServer,
) -> None:
    group = str(uuid.uuid4())
    assert _names(server) == []
    server.create_dataset(FIELDS, mode="Push", group_id=group)
    server.create_dataset(FIELDS, mode="Push")  # My workspace is not a group
    assert _names(server) == [group]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({"name": ""}, "'name' is required"),
        ({"name": "   "}, "'name' is required"),
        ({"name": 5}, "'name' is required"),
        ({}, "'name' is required"),
        ({"name": "x" * 257}, "at most 256"),
        ({"name": "ok", "owner": "me"}, "Unknown property 'owner'"),
        (["Sales"], "must be a JSON object"),
    ],
)
def test_a_bad_create_body_is_a_400_naming_the_rule(
    pbistream_server: RunningServer, body: Any, rule: str
) -> None:
    response = _call(pbistream_server, "POST", GROUPS, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BadRequest"
    assert rule in response.json()["error"]["message"]
    assert _names(pbistream_server) == []


def test_names_up_to_256_characters_and_a_form_body_are_accepted(
    pbistream_server: RunningServer,
) -> None:
    assert _create(pbistream_server, "x" * 256)["name"] == "x" * 256
    # pbiapi's create_workspace posts a form, not JSON.
    form = _call(pbistream_server, "POST", GROUPS, data={"name": "From a form"})
    assert form.status_code == 200, form.text
    assert _names(pbistream_server)[-1] == "From a form"
    not_json = _call(pbistream_server, "POST", GROUPS, content=b"name=x")
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["error"]["message"]


def test_a_duplicate_name_is_a_409_whatever_its_case(pbistream_server: RunningServer) -> None:
    _create(pbistream_server, "Sales")
    response = _call(pbistream_server, "POST", GROUPS, json={"name": "SALES"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "PowerBIEntityAlreadyExists"
    assert "'SALES' already exists" in error["message"]
    assert _names(pbistream_server) == ["Sales"]


@pytest.mark.parametrize(
    ("params", "rule"),
    [
        ({"$filter": "contains(name,'S')"}, "only \"name eq 'Workspace name'\""),
        ({"$filter": "name eq Sales"}, "is not supported"),
        ({"$top": "-1"}, "$top must be a whole number"),
        ({"$skip": "two"}, "$skip must be a whole number"),
        ({"$top": "²"}, "$top must be a whole number"),
    ],
)
def test_an_unsupported_query_is_a_400(
    pbistream_server: RunningServer, params: dict[str, str], rule: str
) -> None:
    response = _call(pbistream_server, "GET", GROUPS, params=params)
    assert response.status_code == 400, response.text
    assert rule in response.json()["error"]["message"]


def test_deleting_a_workspace_deletes_its_datasets_only(server: RunningServer) -> None:
    kept = _create(server, "Kept")["id"]
    gone = _create(server, "Gone")["id"]
    in_gone = server.create_dataset(FIELDS, mode="Push", group_id=gone)["id"]
    in_kept = server.create_dataset(FIELDS, mode="Push", group_id=kept)["id"]
    mine = server.create_dataset(FIELDS, mode="Push")["id"]

    assert _call(server, "DELETE", f"{GROUPS}/{gone.upper()}").status_code == 200
    assert _names(server) == ["Kept"]
    assert server.storage.get_dataset(in_gone) is None
    remaining = {d.id for d in server.storage.list_datasets(all_groups=True)}
    assert remaining == {in_kept, mine}

    again = _call(server, "DELETE", f"{GROUPS}/{gone}")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "PowerBIEntityNotFound"
    assert _call(server, "DELETE", f"{GROUPS}/not-a-uuid").status_code == 404
    # The name is free again.
    assert _create(server, "Gone")["id"] != gone


def test_deleting_an_implicit_workspace_deletes_its_datasets(
    pbistream_server: RunningServer,
) -> None:
    group = str(uuid.uuid4())
    dataset = pbistream_server.create_dataset(FIELDS, mode="Push", group_id=group)["id"]
    assert _call(pbistream_server, "DELETE", f"{GROUPS}/{group}").status_code == 200
    assert pbistream_server.storage.get_dataset(dataset) is None
    assert _names(pbistream_server) == []


def test_names_survive_a_restart(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    first = server_factory(data_dir=tmp_path)
    created = _create(first, "Durable")
    second = server_factory(data_dir=tmp_path, token=first.token)
    assert _call(second, "GET", GROUPS).json()["value"][0]["id"] == created["id"]


def test_the_groups_api_needs_a_token_except_in_emulator_mode(
    server_factory: Callable[..., RunningServer],
) -> None:
    strict = server_factory()
    for method in ("GET", "POST"):
        response = httpx.request(method, strict.url + GROUPS, json={"name": "x"}, timeout=10)
        assert response.status_code == 401
    emulated = server_factory(auth="any")
    headers = {"Authorization": "Bearer any-entra-token"}
    response = httpx.post(emulated.url + GROUPS, json={"name": "x"}, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    listed = httpx.get(emulated.url + "/beta/myorg/groups", headers=headers, timeout=10)
    assert [g["name"] for g in listed.json()["value"]] == ["x"]


def test_concurrent_creates_of_one_name_make_one_workspace(server: RunningServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(_: int) -> int:
        return _call(server, "POST", GROUPS, json={"name": "Race"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(post, range(8)))
    assert statuses == [200] + [409] * 7
    assert _names(server) == ["Race"]
