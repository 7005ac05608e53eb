"""Read-only dashboard links, kiosk mode and the Tokens page, in headless Chromium."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from test_dashboard import card_includes, login, make_dashboard

from pbistream.testing import RunningServer

pytestmark = pytest.mark.browser


def _wait(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_kiosk_link_shows_live_tiles_read_only_and_revoking_it_cuts_the_feed(
    pbistream_server: RunningServer, page: Any
) -> None:
    server = pbistream_server
    created = server.create_dataset({"temperature": "Number"}, mode="PushStreaming")
    tile = {"id": "c", "type": "card", "fields": ["temperature"], "title": "Boiler"}
    with server.client() as api:
        board = make_dashboard(api, created["id"], [tile], name="Floor")
        link = api.post(f"/api/dashboards/{board}/links", json={"name": "TV"}).json()
    assert httpx.post(created["push_url"], json=[{"temperature": 20.5}]).is_success

    page.allowed_errors.append("403")  # the write below is refused, as it must be
    page.goto(link["kioskUrl"])
    page.wait_for_url(f"**/ui/?kiosk=1#/dashboards/{board}")
    page.wait_for_function(card_includes("20.5"))
    # Kiosk: no bar, no sidebar, no editing controls; the wake lock was asked for.
    assert page.evaluate("document.body.classList.contains('kiosk')")
    assert not page.locator(".topbar").is_visible()
    assert not page.locator(".sidebar").is_visible()
    assert page.locator("button:visible").count() == 0
    assert page.evaluate("document.body.dataset.wakeLock") in ("on", "refused", "unsupported")
    # Live: a pushed row shows without a reload.
    assert httpx.post(created["push_url"], json=[{"temperature": 77.25}]).is_success
    page.wait_for_function(card_includes("77.25"), timeout=5000)
    # A write with the link's session is refused.
    status = page.evaluate(
        """id => fetch(`/api/dashboards/${id}`, {method: "PUT", credentials: "same-origin",
              headers: {"Content-Type": "application/json"},
              body: JSON.stringify({name: "mine now", tiles: []})}).then(r => r.status)""",
        board,
    )
    assert status == 403
    access = server.app.state.access
    _wait(lambda: access.open_feeds(link["id"]) >= 1, "the link's live feed")
    with server.client() as api:
        assert api.delete(f"/api/dashboards/{board}/links/{link['id']}").status_code == 204
    # Within seconds the server has ended every feed the link held open, and its
    # reconnects are refused.
    _wait(lambda: access.open_feeds(link["id"]) == 0, "the feed to end", timeout=10)
    time.sleep(1.5)  # a reconnect attempt would show up as an open feed again
    assert access.open_feeds(link["id"]) == 0
    page.allowed_errors.append("401")


def test_a_link_without_kiosk_shows_only_its_dashboard(
    pbistream_server: RunningServer, page: Any
) -> None:
    server = pbistream_server
    created = server.create_dataset({"temperature": "Number"}, mode="PushStreaming")
    tile = {"id": "c", "type": "card", "fields": ["temperature"]}
    with server.client() as api:
        board = make_dashboard(api, created["id"], [tile], name="Shared")
        make_dashboard(api, created["id"], [dict(tile)], name="Private")
        link = api.post(f"/api/dashboards/{board}/links").json()
    page.goto(link["url"])
    page.wait_for_url(f"**/ui/#/dashboards/{board}")
    page.locator("h2:has-text('Shared')").wait_for()
    assert not page.locator(".sidebar").is_visible()
    assert page.locator("[data-testid=share]").count() == 0
    # Another dashboard's address shows the shared one anyway.
    page.goto(f"{server.url}/ui/#/dashboards/other")
    page.locator("h2:has-text('Shared')").wait_for()


def test_an_admin_makes_and_revokes_a_token_on_the_tokens_page(
    pbistream_server: RunningServer, page: Any
) -> None:
    server = pbistream_server
    login(page, server, "#/tokens")
    page.click("[data-testid=new-token]")
    page.select_option("#token-role", "viewer")
    page.fill("#token-name", "wall script")
    page.fill("#token-expires", "30d")
    page.click("dialog button:has-text('Create')")
    secret = page.locator("[data-testid=new-token-secret]").input_value()
    assert secret.startswith("pbist_")
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{server.url}/api/datasets", headers=headers).is_success
    page.click("dialog button:has-text('Done')")
    row = page.locator("tr", has_text="wall script")
    row.wait_for()
    assert "viewer" in row.inner_text()
    row.locator("[data-testid=revoke-token]").click()
    row.wait_for(state="detached")
    assert httpx.get(f"{server.url}/api/datasets", headers=headers).status_code == 401


def test_a_viewer_session_hides_editing(pbistream_server: RunningServer, page: Any) -> None:
    server = pbistream_server
    created = server.create_dataset({"temperature": "Number"}, mode="PushStreaming")
    with server.client() as api:
        board = make_dashboard(
            api, created["id"], [{"id": "c", "type": "card", "fields": ["temperature"]}]
        )
        viewer = api.post("/api/tokens", json={"role": "viewer"}).json()["token"]
    page.goto(f"{server.url}/login?token={viewer}&next=/ui/%23/dashboards/{board}")
    page.locator("[data-testid=tile]").wait_for()
    assert page.locator("[data-testid=add-tile]").count() == 0
    assert page.locator("text=+ New dashboard").count() == 0
    assert page.locator("a[data-nav=tokens]").count() == 0
    page.goto(f"{server.url}/ui/#/datasets")
    page.locator("[data-testid=datasets]").wait_for()
    assert not page.locator("[data-testid=new-dataset]").is_visible()
