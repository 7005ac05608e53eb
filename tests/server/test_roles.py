"""The role x route table: every route of the app, called with every role, answers per the table.

Generic on purpose: the routes come from the app itself and the expected role from
THE role table (``pbistream.server.roles``), so a route added later is walked too,
and a route without a rule is expected to need admin (deny by default).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from pbistream.server.roles import RULES, Role, match_rule, required_role, role_name
from pbistream.testing import RunningServer

TABLE = "RealTimeData"


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from pbistream.testing import serve_in_thread

    data = tmp_path_factory.mktemp("roles")
    from pbistream.redact import new_secret
    from pbistream.server import Settings

    settings = Settings(host="127.0.0.1", port=0, data_dir=str(data), token=new_secret())
    with serve_in_thread(settings) as server:
        dataset = server.create_dataset({"v": "Number"}, mode="PushStreaming")["id"]
        with server.client() as api:
            board = api.post(
                "/api/dashboards",
                json={
                    "name": "B",
                    "tiles": [
                        {
                            "id": "t1",
                            "type": "card",
                            "datasetId": dataset,
                            "table": TABLE,
                            "fields": ["v"],
                            "x": 0,
                            "y": 0,
                            "w": 3,
                            "h": 2,
                        }
                    ],
                },
            )
            assert board.status_code == 201, board.text
            tokens = {}
            for role in Role:
                made = api.post("/api/tokens", json={"role": role.label, "name": role.label})
                assert made.status_code == 201, made.text
                tokens[role] = made.json()["token"]
        yield {
            "server": server,
            "dataset": dataset,
            "dashboard": board.json()["id"],
            "tokens": tokens,
        }


def _concrete(template: str, ids: dict[str, str]) -> str:
    def value(found: re.Match[str]) -> str:
        name = found.group(1).lower()
        for key, known in ids.items():
            if key in name:
                return known
        return "x"

    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", value, template)


def _calls(server: RunningServer, ids: dict[str, str]) -> list[tuple[str, str, str]]:
    """(method, concrete path, template) for every route; deletions last."""
    calls = []
    for route in server.app.routes:
        if not isinstance(route, Route):
            continue  # the /static mount: public files
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            calls.append((method, _concrete(route.path, ids), route.path))
    return sorted(calls, key=lambda c: (c[0] == "DELETE", c[1]))


def _status(client: httpx.Client, method: str, path: str, headers: dict[str, str]) -> int:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    sent = {**headers, "Content-Type": "application/json"} if body else headers
    with client.stream(method, path, content=body, headers=sent) as response:
        return response.status_code  # a live feed never ends: do not read its body


def test_every_route_answers_every_role_per_the_table(walked: dict[str, Any]) -> None:
    server: RunningServer = walked["server"]
    ids = {
        "dataset": walked["dataset"],
        "dashboard": walked["dashboard"],
        "table": TABLE,
        "workspace": str(server.app.state.tenant_id),
    }
    calls = _calls(server, ids)
    assert len(calls) > 30
    seen = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path, template in calls:
            needed = required_role(method, path)
            if needed is None:
                continue  # public: no token needed (test_public_routes_need_no_token)
            # Without a token: 401 everywhere that is not public.
            assert _status(client, method, path, {}) == 401, (method, path)
            for role, token in walked["tokens"].items():
                status = _status(client, method, path, {"Authorization": f"Bearer {token}"})
                if role < needed:
                    assert status == 403, (method, template, role.label, status)
                else:
                    assert status not in (401, 403), (method, template, role.label, status)
                seen.append((method, template, role.label, status))
    # Every role was refused somewhere and allowed somewhere (the table is not flat).
    for role in Role:
        statuses = [s for _, _, r, s in seen if r == role.label]
        assert any(s != 403 for s in statuses)
        if role is not Role.ADMIN:
            assert 403 in statuses


def test_public_routes_need_no_token(walked: dict[str, Any]) -> None:
    server: RunningServer = walked["server"]
    for path in ("/healthz", "/login", "/", "/ui/"):
        assert required_role("GET", path) is None
        answer = httpx.get(server.url + path)
        # The middleware's 401 is JSON; these answer themselves (the UI with a sign-in page).
        assert answer.status_code != 401 or "text/html" in answer.headers["content-type"], path


def test_a_route_no_rule_names_needs_admin() -> None:
    assert match_rule("GET", "/api/some-new-thing").rule is None
    assert required_role("GET", "/api/some-new-thing") is Role.ADMIN
    assert required_role("POST", "/api/datasets") is Role.ADMIN  # only GET is named
    assert required_role("HEAD", "/api/datasets") is Role.VIEWER  # HEAD is a GET


def test_the_table_follows_power_bi_workspace_roles() -> None:
    assert required_role("GET", "/v1.0/myorg/groups/g/datasets/d/tables") is Role.VIEWER
    assert required_role("POST", "/v1.0/myorg/datasets/d/executeQueries") is Role.VIEWER
    assert required_role("POST", "/beta/myorg/datasets/d/tables/t/rows") is Role.CONTRIBUTOR
    assert required_role("POST", "/v1.0/myorg/datasets/d/refreshes") is Role.CONTRIBUTOR
    assert required_role("PATCH", "/v1.0/myorg/datasets/d") is Role.MEMBER
    assert required_role("POST", "/v1.0/myorg/dashboards") is Role.MEMBER
    assert required_role("GET", "/v1.0/myorg/dashboards/b/tiles") is Role.VIEWER
    assert required_role("DELETE", "/api/alerts/a") is Role.MEMBER
    assert required_role("POST", "/api/tokens") is Role.ADMIN
    assert required_role("POST", "/beta/tenant/datasets/d/rows") is None  # the Push URL
    assert {r.role for r in RULES} >= {None, *Role}


def test_openapi_states_the_role_of_every_operation(walked: dict[str, Any]) -> None:
    server: RunningServer = walked["server"]
    with server.client() as api:
        document = api.get("/openapi.json").json()
    operations = {}
    for template, ops in document["paths"].items():
        for method, op in ops.items():
            concrete = re.sub(r"\{[^}]+\}", "x", template)
            expected = role_name(required_role(method.upper(), concrete))
            assert op["x-pbistream-role"] == expected, (method, template)
            assert expected in op["description"].lower()
            operations[(method.upper(), re.sub(r"\{[^}]+\}", "{}", template))] = op
    # Every route that needs a token is documented (the REST API under /v1.0 stands for /beta).
    for route in server.app.routes:
        if not isinstance(route, Route):
            continue
        for method in route.methods or ():
            path = re.sub(r"\{[^}]+\}", "{}", route.path).replace("/beta/myorg", "/v1.0/myorg")
            if method == "HEAD" or required_role(method, re.sub(r"\{\}", "x", path)) is None:
                continue
            assert (method, path) in operations, f"{method} {route.path} is not in /openapi.json"
