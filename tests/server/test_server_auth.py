"""Auth: the API token (Bearer or session cookie), push keys, and secrets kept out of logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pbistream.server import Settings, create_app
from pbistream.server.auth import SESSION_COOKIE, session_cookie_value
from pbistream.storage import open_storage
from pbistream.testing import RunningServer, ServerProcess

PBI = "/v1.0/myorg"


def _is_power_bi_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "PowerBINotAuthorizedException"
    assert error["pbi.error"] == {
        "code": "PowerBINotAuthorizedException",
        "parameters": {},
        "details": [],
        "exceptionCulprit": 1,
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{PBI}/datasets"),
        ("POST", f"{PBI}/datasets"),
        ("GET", f"{PBI}/groups/g/datasets/x/tables"),
        ("POST", f"{PBI}/datasets/x/tables/T/rows"),
        ("DELETE", f"{PBI}/datasets/x"),
        ("GET", "/beta/myorg/datasets"),
        ("GET", "/api/datasets"),
        ("GET", "/metrics"),
        ("GET", "/no/such/page"),
    ],
)
def test_15_no_token_is_401(pbistream_server: RunningServer, method: str, path: str) -> None:
    _is_power_bi_401(httpx.request(method, pbistream_server.url + path))


@pytest.mark.parametrize(
    "header", ["Bearer wrong", "Bearer", "Basic dXNlcjpwYXNz", "bearer  x", "Token abc"]
)
def test_wrong_token_or_scheme_is_401(pbistream_server: RunningServer, header: str) -> None:
    response = httpx.get(f"{pbistream_server.url}{PBI}/datasets", headers={"Authorization": header})
    _is_power_bi_401(response)


def test_bearer_scheme_is_case_insensitive(pbistream_server: RunningServer) -> None:
    headers = {"Authorization": f"bearer {pbistream_server.token}"}
    assert httpx.get(f"{pbistream_server.url}{PBI}/datasets", headers=headers).status_code == 200


def test_session_cookie_is_an_hmac_of_the_token(pbistream_server: RunningServer) -> None:
    url = f"{pbistream_server.url}{PBI}/datasets"
    good = session_cookie_value(pbistream_server.settings)
    assert pbistream_server.token not in good
    assert httpx.get(url, cookies={SESSION_COOKIE: good}).status_code == 200
    # The token itself, or another server's cookie, is not a session.
    assert httpx.get(url, cookies={SESSION_COOKIE: pbistream_server.token}).status_code == 401
    other = session_cookie_value(pbistream_server.settings.replace(token="another"))
    assert httpx.get(url, cookies={SESSION_COOKIE: other}).status_code == 401


def _cookie_post(server: RunningServer, **headers: str) -> httpx.Response:
    """POST a new dashboard signed in by the session cookie only, as a browser would."""
    return httpx.post(
        f"{server.url}/api/dashboards",
        content=b'{"name": "Planted", "tiles": []}',
        headers={"Content-Type": "text/plain", **headers},
        cookies={SESSION_COOKIE: session_cookie_value(server.settings)},
    )


@pytest.mark.parametrize(
    "headers",
    [
        # A form on another port of localhost is "same-site": SameSite=Lax still sends the cookie.
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_cross_site_write_riding_on_the_cookie_is_refused(
    pbistream_server: RunningServer, headers: dict[str, str]
) -> None:
    response = _cookie_post(pbistream_server, **headers)
    assert response.status_code == 403, response.text
    assert "Origin" in response.json()["error"]["message"]
    # Nor on the Power BI REST API, which takes the cookie too.
    cookies = {SESSION_COOKIE: session_cookie_value(pbistream_server.settings)}
    refused = httpx.delete(
        f"{pbistream_server.url}{PBI}/datasets/x", headers=headers, cookies=cookies
    )
    assert refused.status_code == 403
    with pbistream_server.client() as api:
        names = [d["name"] for d in api.get("/api/dashboards").json()["value"]]
    assert "Planted" not in names


def test_the_servers_own_pages_and_bearer_callers_may_write(
    pbistream_server: RunningServer,
) -> None:
    assert _cookie_post(pbistream_server, Origin=pbistream_server.url).status_code == 201
    assert _cookie_post(pbistream_server, **{"Sec-Fetch-Site": "same-origin"}).status_code == 201
    # Behind a proxy the browser's Origin names the proxy's host, which it forwards.
    proxied = {"Origin": "https://pbi.example", "X-Forwarded-Host": "pbi.example"}
    assert _cookie_post(pbistream_server, **proxied).status_code == 201
    # A Bearer token is not ambient: a script holding it may call from anywhere.
    response = httpx.post(
        f"{pbistream_server.url}/api/dashboards",
        json={"name": "Scripted", "tiles": []},
        headers={**pbistream_server.headers, "Origin": "https://elsewhere.example"},
    )
    assert response.status_code == 201
    # Reads are never refused: a cross-site GET changes nothing (and CORS hides the answer).
    cookies = {SESSION_COOKIE: session_cookie_value(pbistream_server.settings)}
    read = httpx.get(
        f"{pbistream_server.url}/api/dashboards", headers={"Origin": "http://x"}, cookies=cookies
    )
    assert read.status_code == 200


def test_healthz_needs_no_token(pbistream_server: RunningServer) -> None:
    assert httpx.get(f"{pbistream_server.url}/healthz").json() == {"status": "ok"}


def test_root_redirects_a_browser_to_the_ui_without_a_token(
    pbistream_server: RunningServer,
) -> None:
    response = httpx.get(pbistream_server.url + "/", follow_redirects=False)
    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/ui/"
    # Only "/" itself is public, not every path under it.
    assert httpx.get(pbistream_server.url + "/api/datasets").status_code == 401


def test_token_is_generated_once_and_kept_hashed_in_storage(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    try:
        first = create_app(Settings(data_dir=str(tmp_path)), storage)
        assert first.state.token_generated
        token = first.state.settings.token
        assert token and len(token) >= 32 and token.startswith("pbist_")
        second = create_app(Settings(data_dir=str(tmp_path)), storage)
        assert not second.state.token_generated
        # Only its hash is kept: the restarted server checks the token against it.
        assert second.state.settings.token is None
        assert anyio.run(second.state.access.from_secret, token) is not None
        assert anyio.run(second.state.access.from_secret, token + "x") is None
        given = create_app(Settings(data_dir=str(tmp_path), token="mine"), storage)
        assert given.state.settings.token == "mine"
    finally:
        storage.close()
    assert "mine" not in repr(given.state.settings)
    assert token.encode() not in (tmp_path / "pbistream.db").read_bytes()


def test_a_token_kept_in_clear_by_an_older_version_is_hashed_at_start(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    try:
        storage.set_meta("api_token", "an-old-clear-token-of-32-characters")
        app = create_app(Settings(data_dir=str(tmp_path)), storage)
        assert not app.state.token_generated
        assert storage.get_meta("api_token") == ""
        assert anyio.run(app.state.access.from_secret, "an-old-clear-token-of-32-characters")
    finally:
        storage.close()


def test_serve_prints_a_generated_token_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", env={"PBISTREAM_TOKEN": ""})
    server.start()
    try:
        first_log = server.log_text()
        lines = [line for line in first_log.splitlines() if line.startswith("API token")]
        assert len(lines) == 1
        token = lines[0].rsplit(" ", 1)[1]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.url}{PBI}/datasets", headers=headers).status_code == 200
        server.restart()
        assert httpx.get(f"{server.url}{PBI}/datasets", headers=headers).status_code == 200
    finally:
        server.stop()
    # Printed at first start (the token line and the login link), never again.
    assert first_log.count(token) == 2
    assert server.log_text().count(token) == 2


def test_rotated_key_replaces_the_old_one(pbistream_server: RunningServer) -> None:
    created = pbistream_server.create_dataset({"v": "Number"})
    old_url = created["push_url"]
    assert httpx.post(old_url, json=[{"v": 1}]).status_code == 200
    rotated = httpx.post(
        f"{pbistream_server.url}/api/datasets/{created['id']}/rotate-key",
        headers=pbistream_server.headers,
    )
    assert rotated.status_code == 200
    new_url = rotated.json()["pushUrl"]
    assert new_url != old_url
    assert httpx.post(old_url, json=[{"v": 2}]).status_code == 403
    assert httpx.post(new_url, json=[{"v": 3}]).status_code == 200
    assert pbistream_server.count_rows() == 2


def test_keys_are_random_per_dataset(pbistream_server: RunningServer) -> None:
    keys = {
        pbistream_server.create_streaming_dataset({"v": "Number"}).split("key=")[1]
        for _ in range(3)
    }
    assert len(keys) == 3
    assert all(len(k) >= 32 for k in keys)


def test_keys_and_tokens_never_reach_the_logs(
    pbistream_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = pbistream_server.create_streaming_dataset({"v": "Number"})
    key = url.split("key=")[1]
    token = pbistream_server.token
    bare = url.split("?")[0]
    assert httpx.post(url, json=[{"v": 1}]).status_code == 200
    assert httpx.post(f"{bare}?key={key}x", json=[{"v": 1}]).status_code == 403
    assert httpx.post(f"{bare}?ctid=1&key={key}&x=1", json=[{"v": 1}]).status_code == 200
    assert httpx.post(url, json=[{"nope": 1}]).status_code == 404
    assert httpx.post(bare, json=[{"v": 1}], headers=pbistream_server.headers).status_code == 200
    httpx.get(f"{pbistream_server.url}/login?token={token}")
    httpx.get(f"{pbistream_server.url}/login?token={token}x")
    httpx.get(
        f"{pbistream_server.url}{PBI}/datasets?token={token}", headers={"Authorization": "Bearer x"}
    )
    access = [r for r in caplog.records if r.name == "pbistream.access"]
    assert len(access) >= 8  # the access log is on, and it is ours
    text = caplog.text
    assert key not in text
    assert token not in text
    assert "REDACTED" in text


def test_keys_and_tokens_never_reach_a_real_servers_output(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", args=["--log-level", "debug"]).start()
    try:
        body: dict[str, Any] = {
            "name": "s",
            "defaultMode": "Streaming",
            "tables": [{"name": "RealTimeData", "columns": [{"name": "v", "dataType": "Double"}]}],
        }
        created = httpx.post(f"{server.url}{PBI}/datasets", json=body, headers=server.headers)
        dataset_id = created.json()["id"]
        push_url = httpx.get(
            f"{server.url}/api/datasets/{dataset_id}", headers=server.headers
        ).json()["pushUrl"]
        key = push_url.split("key=")[1]
        assert httpx.post(push_url, json=[{"v": 1}]).status_code == 200
        assert httpx.post(push_url + "x", json=[{"v": 1}]).status_code == 403
        assert httpx.post(push_url, content=b"{oops").status_code == 400
    finally:
        server.stop()
    log = server.log_text()
    assert "pbistream.access" in log
    assert key not in log
    assert server.token not in log


def test_a_short_chosen_token_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pbistream.server.auth import resolve_token

    storage = open_storage(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="pbistream.server"):
            assert resolve_token(Settings(data_dir=str(tmp_path), token="abc123"), storage) == (
                "abc123",
                False,
            )
            resolve_token(Settings(data_dir=str(tmp_path), token="x" * 32), storage)
    finally:
        storage.close()
    warnings = [r.getMessage() for r in caplog.records if "characters" in r.getMessage()]
    assert len(warnings) == 1 and "6 characters" in warnings[0]
    assert "abc123" not in warnings[0]  # the token itself is never logged
