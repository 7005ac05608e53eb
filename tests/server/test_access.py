"""Scoped tokens and read-only dashboard links, on the real server over loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pbistream.server.auth import SESSION_COOKIE
from pbistream.testing import RunningServer

TABLE = "RealTimeData"
PBI = "/v1.0/myorg"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(server: RunningServer, **body: Any) -> dict[str, Any]:
    with server.client() as api:
        made = api.post("/api/tokens", json=body)
    assert made.status_code == 201, made.text
    created: dict[str, Any] = made.json()
    return created


def _dashboard(server: RunningServer, dataset_id: str, name: str = "Wall") -> str:
    tile = {
        "id": "t1",
        "type": "card",
        "datasetId": dataset_id,
        "table": TABLE,
        "fields": ["v"],
        "x": 0,
        "y": 0,
        "w": 3,
        "h": 2,
    }
    with server.client() as api:
        made = api.post("/api/dashboards", json={"name": name, "tiles": [tile]})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _rows_body(value: float) -> dict[str, Any]:
    return {"rows": [{"v": value}]}


def _wait_for(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_token_is_shown_once_prefixed_and_works_within_its_role(
    pbistream_server: RunningServer,
) -> None:
    server = pbistream_server
    dataset = server.create_dataset({"v": "Number"}, mode="Push")["id"]
    rows_url = f"{server.url}{PBI}/datasets/{dataset}/tables/{TABLE}/rows"
    viewer = _token(server, role="viewer", name="reader script")
    assert viewer["token"].startswith("pbist_") and viewer["role"] == "viewer"
    contributor = _token(server, role="contributor")["token"]
    member = _token(server, role="member")["token"]
    # A viewer reads, and writes nothing; it is not even shown the Push URL's key.
    assert httpx.get(f"{server.url}/api/datasets", headers=_bearer(viewer["token"])).is_success
    streaming = server.create_dataset({"v": "Number"})["id"]
    shown = httpx.get(f"{server.url}/api/datasets/{streaming}", headers=_bearer(viewer["token"]))
    assert shown.json()["pushUrl"] is None
    shown = httpx.get(f"{server.url}/api/datasets/{streaming}", headers=_bearer(contributor))
    assert shown.json()["pushUrl"]
    refused = httpx.post(rows_url, json=_rows_body(1), headers=_bearer(viewer["token"]))
    assert refused.status_code == 403
    assert "contributor" in refused.json()["error"]["message"]
    # A contributor pushes rows, but cannot create datasets.
    assert httpx.post(rows_url, json=_rows_body(2), headers=_bearer(contributor)).is_success
    create = {
        "name": "n",
        "tables": [{"name": "T", "columns": [{"name": "a", "dataType": "Int64"}]}],
    }
    assert (
        httpx.post(
            f"{server.url}{PBI}/datasets", json=create, headers=_bearer(contributor)
        ).status_code
        == 403
    )
    # A member creates datasets, but cannot manage tokens.
    assert (
        httpx.post(f"{server.url}{PBI}/datasets", json=create, headers=_bearer(member)).status_code
        == 201
    )
    assert httpx.get(f"{server.url}/api/tokens", headers=_bearer(member)).status_code == 403
    assert server.count_rows(dataset) == 1
    # The list never holds a secret, and shows the server's own token as the first admin.
    with server.client() as api:
        listed = api.get("/api/tokens")
    assert viewer["token"] not in listed.text and server.token not in listed.text
    entries = {e["id"]: e for e in listed.json()["value"]}
    assert entries["server"]["role"] == "admin"
    assert entries[viewer["id"]]["name"] == "reader script"
    assert entries[viewer["id"]]["lastUsedAt"] is not None


def test_a_dataset_scoped_token_sees_only_its_datasets(pbistream_server: RunningServer) -> None:
    server = pbistream_server
    mine = server.create_dataset({"v": "Number"}, name="mine", mode="PushStreaming")
    other = server.create_dataset({"v": "Number"}, name="other", mode="PushStreaming")
    token = _token(server, role="contributor", datasets=[mine["id"]])["token"]
    headers = _bearer(token)
    with httpx.Client(base_url=server.url, headers=headers) as api:
        assert [d["id"] for d in api.get("/api/datasets").json()["value"]] == [mine["id"]]
        assert [d["id"] for d in api.get(f"{PBI}/datasets").json()["value"]] == [mine["id"]]
        assert api.get(f"/api/datasets/{other['id']}").status_code == 404
        assert (
            api.post(
                f"{PBI}/datasets/{other['id']}/tables/{TABLE}/rows", json=_rows_body(1)
            ).status_code
            == 404
        )
        assert api.post(
            f"{PBI}/datasets/{mine['id']}/tables/{TABLE}/rows", json=_rows_body(1)
        ).is_success
        assert (
            api.get("/api/live", params={"dataset": [mine["id"], other["id"]]}).status_code == 404
        )
        # It cannot widen itself by creating a dataset.
        assert api.post(f"{PBI}/groups", json={"name": "w"}).status_code == 403
    # The Push URL takes it as a Bearer token for its own dataset only.
    push = mine["push_url"].split("?")[0]
    assert httpx.post(push, json=[{"v": 2}], headers=headers).is_success
    other_push = other["push_url"].split("?")[0]
    assert httpx.post(other_push, json=[{"v": 3}], headers=headers).status_code == 403
    assert server.count_rows(mine["id"]) == 2 and server.count_rows(other["id"]) == 0


def test_revoked_and_expired_tokens_stop_working(pbistream_server: RunningServer) -> None:
    server = pbistream_server
    made = _token(server, role="viewer")
    headers = _bearer(made["token"])
    url = f"{server.url}/api/datasets"
    assert httpx.get(url, headers=headers).status_code == 200
    with server.client() as api:
        assert api.delete(f"/api/tokens/{made['id']}").status_code == 204
        assert api.delete(f"/api/tokens/{made['id']}").status_code == 404
        assert made["id"] not in api.get("/api/tokens").text
        assert made["id"] in api.get("/api/tokens", params={"all": "true"}).text
        assert api.delete("/api/tokens/server").status_code == 400
    assert httpx.get(url, headers=headers).status_code == 401
    short = _token(server, role="viewer", expiresIn=1)
    assert short["expiresAt"] is not None
    assert httpx.get(url, headers=_bearer(short["token"])).status_code == 200
    _wait_for(lambda: httpx.get(url, headers=_bearer(short["token"])).status_code == 401, "expiry")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"role": "owner"}, "role"),
        ({}, "role"),
        ({"role": "viewer", "expiresIn": "soon"}, "expiresIn"),
        ({"role": "viewer", "expiresIn": -5}, "expiresIn"),
        ({"role": "viewer", "datasets": ["nope"]}, "nope"),
        ({"role": "viewer", "datasets": []}, "datasets"),
        ({"role": "viewer", "scope": "x"}, "scope"),
        ({"role": "viewer", "name": "n" * 201}, "name"),
        ([], "object"),
    ],
)
def test_a_bad_token_request_is_a_400_naming_the_field(
    pbistream_server: RunningServer, body: Any, words: str
) -> None:
    with pbistream_server.client() as api:
        answer = api.post("/api/tokens", json=body)
    assert answer.status_code == 400
    assert words in answer.json()["error"]["message"]


def test_tokens_are_kept_hashed(tmp_path: Path, server_factory: Any) -> None:
    server = server_factory(data_dir=str(tmp_path))
    made = _token(server, role="admin", name="ops")
    link_dataset = server.create_dataset({"v": "Number"})["id"]
    with server.client() as api:
        link = api.post(f"/api/dashboards/{_dashboard(server, link_dataset)}/links").json()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("pbistream.db*"))
    assert made["token"].encode() not in stored
    assert made["token"].split("_", 1)[1].encode() not in stored
    assert link["token"].encode() not in stored
    assert b"ops" in stored  # the grant itself is there
    assert httpx.get(f"{server.url}/api/tokens", headers=_bearer(made["token"])).is_success


def test_a_login_carries_the_tokens_role_and_dies_with_it(pbistream_server: RunningServer) -> None:
    server = pbistream_server
    made = _token(server, role="viewer")
    with httpx.Client(base_url=server.url) as browser:
        login = browser.get("/login", params={"token": made["token"]})
        assert login.status_code == 303
        cookie = browser.cookies[SESSION_COOKIE]
        assert made["token"] not in cookie and made["id"] in cookie
        assert browser.get("/api/me").json()["role"] == "viewer"
        assert browser.get("/api/dashboards").status_code == 200
        write = browser.post("/api/dashboards", json={"name": "x", "tiles": []})
        assert write.status_code == 403
        # A cookie edited to claim another role fails its signature.
        forged = cookie.replace(".viewer.", ".admin.")
        assert (
            httpx.get(f"{server.url}/api/me", cookies={SESSION_COOKIE: forged}).status_code == 401
        )
        with server.client() as api:
            assert api.delete(f"/api/tokens/{made['id']}").status_code == 204
        assert browser.get("/api/me").status_code == 401


def test_a_dashboard_link_is_a_read_only_grant_on_that_dashboard(
    pbistream_server: RunningServer,
) -> None:
    server = pbistream_server
    shown = server.create_dataset({"v": "Number"}, mode="PushStreaming")["id"]
    hidden = server.create_dataset({"v": "Number"}, mode="PushStreaming")["id"]
    board = _dashboard(server, shown)
    other_board = _dashboard(server, hidden, name="Other")
    with server.client() as api:
        made = api.post(f"/api/dashboards/{board}/links", json={"name": "Floor TV"})
        assert made.status_code == 201, made.text
        link = made.json()
        assert link["token"].startswith("pbisl_") and link["role"] == "viewer"
        assert link["url"].startswith(server.url + "/login?token=")
        assert [x["id"] for x in api.get(f"/api/dashboards/{board}/links").json()["value"]] == [
            link["id"]
        ]
        assert api.post("/api/dashboards/nope/links").status_code == 404
    headers = _bearer(link["token"])
    with httpx.Client(base_url=server.url, headers=headers) as viewer:
        assert viewer.get(f"/api/dashboards/{board}").status_code == 200
        assert [d["id"] for d in viewer.get("/api/dashboards").json()["value"]] == [board]
        assert viewer.get(f"/api/dashboards/{other_board}").status_code == 404
        assert viewer.get(f"/api/datasets/{shown}/rows").status_code == 200
        assert viewer.get(f"/api/datasets/{hidden}/rows").status_code == 404
        assert (
            viewer.put(f"/api/dashboards/{board}", json={"name": "x", "tiles": []}).status_code
            == 403
        )
        post = viewer.post(f"{PBI}/datasets/{shown}/tables/{TABLE}/rows", json=_rows_body(1))
        assert post.status_code == 403
    # Opening the link lands on its dashboard (kiosk mode when asked).
    with httpx.Client() as browser:
        landed = browser.get(link["kioskUrl"])
        assert landed.status_code == 303
        assert landed.headers["location"] == f"/ui/?kiosk=1#/dashboards/{board}"
        # Also when "?kiosk=1" is appended to the link as if it had no query yet.
        landed = browser.get(link["url"] + "?kiosk=1")
        assert landed.headers["location"] == f"/ui/?kiosk=1#/dashboards/{board}"
        assert browser.get(link["url"]).headers["location"] == f"/ui/#/dashboards/{board}"


def _read_until(lines: Any, wanted: bytes, deadline: float) -> bool:
    for chunk in lines:
        if wanted in chunk:
            return True
        if time.monotonic() > deadline:
            return False
    return False


def test_revoking_a_link_ends_its_open_live_feed_within_seconds(
    pbistream_server: RunningServer,
) -> None:
    server = pbistream_server
    dataset = server.create_dataset({"v": "Number"}, mode="PushStreaming")
    board = _dashboard(server, dataset["id"])
    with server.client() as api:
        link = api.post(f"/api/dashboards/{board}/links").json()
    headers = _bearer(link["token"])
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as viewer,
        viewer.stream("GET", "/api/live", params={"dataset": dataset["id"]}) as feed,
    ):
        assert feed.status_code == 200
        chunks = feed.iter_bytes()
        assert _read_until(chunks, b": connected", time.monotonic() + 10)
        httpx.post(dataset["push_url"], json=[{"v": 7}])
        assert _read_until(chunks, b'"v":7', time.monotonic() + 10)
        _wait_for(lambda: server.app.state.access.open_feeds(link["id"]) == 1, "feed registered")
        started = time.monotonic()
        with server.client() as api:
            assert api.delete(f"/api/dashboards/{board}/links/{link['id']}").status_code == 204
        assert _read_until(chunks, b"event: revoked", time.monotonic() + 10)
        for _ in chunks:  # the stream ends (the server closes it)
            pass
        assert time.monotonic() - started < 10
    assert httpx.get(f"{server.url}/api/dashboards/{board}", headers=headers).status_code == 401


def test_an_admin_revokes_a_link_through_the_tokens_api_too(
    pbistream_server: RunningServer,
) -> None:
    server = pbistream_server
    dataset = server.create_dataset({"v": "Number"})["id"]
    board = _dashboard(server, dataset)
    with server.client() as api:
        link = api.post(f"/api/dashboards/{board}/links").json()
        listed = {g["id"]: g for g in api.get("/api/tokens").json()["value"]}
        assert listed[link["id"]]["kind"] == "link" and listed[link["id"]]["dashboard"] == board
        assert api.delete(f"/api/tokens/{link['id']}").status_code == 204
    headers = _bearer(link["token"])
    assert httpx.get(f"{server.url}/api/dashboards/{board}", headers=headers).status_code == 401


def test_an_expiring_link_ends_its_live_feed(pbistream_server: RunningServer) -> None:
    server = pbistream_server
    dataset = server.create_dataset({"v": "Number"}, mode="PushStreaming")
    board = _dashboard(server, dataset["id"])
    with server.client() as api:
        link = api.post(f"/api/dashboards/{board}/links", json={"expiresIn": 2}).json()
    viewer = httpx.Client(base_url=server.url, headers=_bearer(link["token"]), timeout=30)
    with viewer, viewer.stream("GET", f"/api/datasets/{dataset['id']}/live") as feed:
        assert feed.status_code == 200
        assert _read_until(feed.iter_bytes(), b"event: revoked", time.monotonic() + 15)


def test_a_scoped_member_cannot_put_another_datasets_tile_on_a_dashboard(
    pbistream_server: RunningServer,
) -> None:
    """Otherwise it reads that dataset through a link on the dashboard: a way out of scope."""
    server = pbistream_server
    mine = server.create_dataset({"v": "Number"}, mode="PushStreaming")["id"]
    secret = server.create_dataset({"v": "Number"}, mode="PushStreaming")["id"]
    with server.client() as api:
        assert api.post(
            f"{PBI}/datasets/{secret}/tables/{TABLE}/rows", json=_rows_body(42)
        ).is_success
    board = _dashboard(server, mine)
    member = _token(server, role="member", datasets=[mine])["token"]
    with httpx.Client(base_url=server.url, headers=_bearer(member)) as api:
        link = api.post(f"/api/dashboards/{board}/links", json={"name": "tv"})
        assert link.status_code == 201, link.text
        tiles = api.get(f"/api/dashboards/{board}").json()["tiles"]
        widened = {**tiles[0], "id": "t2", "x": 4, "datasetId": secret}
        answer = api.put(
            f"/api/dashboards/{board}", json={"name": "Wall", "tiles": [*tiles, widened]}
        )
        assert answer.status_code == 400, answer.text
        assert "tiles[1]" in answer.json()["error"]["message"]
        renamed = api.put(f"/api/dashboards/{board}", json={"name": "Wall 2", "tiles": tiles})
        assert renamed.status_code == 200, renamed.text
    with httpx.Client(base_url=server.url, headers=_bearer(link.json()["token"])) as viewer:
        assert viewer.get(f"/api/datasets/{secret}/rows").status_code == 404
