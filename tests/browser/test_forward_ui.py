"""The dataset page's "Forward to Power BI" form, in headless Chromium."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from pbistream.testing import RunningServer

pytestmark = pytest.mark.browser


def test_forward_form_sets_shows_and_stops_the_forward_without_showing_the_token(
    server_factory: Callable[..., RunningServer], page: Any
) -> None:
    # forwards=False: the targets typed here name hosts that must not be contacted.
    pbistream_server = server_factory(forwards=False)
    api = pbistream_server.client(timeout=30.0)
    body = {
        "name": "Site",
        "defaultMode": "PushStreaming",
        "tables": [{"name": "RealTimeData", "columns": [{"name": "v", "dataType": "Double"}]}],
    }
    dataset_id = api.post("/v1.0/myorg/datasets", json=body).json()["id"]
    next_page = quote(f"/ui/#/datasets/{dataset_id}", safe="/#")
    page.goto(f"{pbistream_server.url}/login?token={pbistream_server.token}&next={next_page}")
    page.wait_for_url("**/ui/**")
    page.goto(f"{pbistream_server.url}/ui/#/datasets/{dataset_id}")
    panel = page.locator('[data-testid="forward-panel"]')
    panel.wait_for()
    assert "Not forwarded" in panel.inner_text()

    # A mistake is answered in the form, naming the field (the browser logs the 400).
    page.allowed_errors.append("400 (Bad Request)")
    page.fill('[data-testid="forward-target"]', "ftp://example.invalid/rows")
    page.click('[data-testid="forward-submit"]')
    page.wait_for_function(
        "() => document.querySelector('[data-testid=forward-form] .form-error')"
        ".textContent.includes('target')"
    )
    assert api.get(f"/api/datasets/{dataset_id}/forward").json()["forward"] is None

    target = "https://upstream.example/v1.0/myorg/datasets/d/tables/T/rows"
    secret = "tok-never-shown-9f2c"
    page.fill('[data-testid="forward-target"]', target)
    page.fill('[data-testid="forward-token"]', secret)
    page.click('[data-testid="forward-submit"]')
    summary = page.locator('[data-testid="forward-summary"]')
    summary.wait_for()
    assert target in summary.inner_text() and "auth: token" in summary.inner_text()
    stored = api.get(f"/api/datasets/{dataset_id}/forward").json()["forward"]
    assert stored["target"] == target and stored["auth"] == "token"
    assert secret not in page.content()

    page.click('[data-testid="forward-off"]')
    page.wait_for_function(
        "() => document.querySelector('[data-testid=forward-panel]')"
        ".textContent.includes('Not forwarded')"
    )
    assert api.get(f"/api/datasets/{dataset_id}/forward").json()["forward"] is None

    # Entra ID instead of a token: the secret goes to the server once.
    page.fill('[data-testid="forward-target"]', target)
    page.fill('[data-testid="forward-tenantId"]', "tenant-1")
    page.fill('[data-testid="forward-clientId"]', "client-1")
    page.fill('[data-testid="forward-clientSecret"]', secret)
    page.click('[data-testid="forward-submit"]')
    page.wait_for_function(
        "() => document.querySelector('[data-testid=forward-summary]')?.textContent"
        ".includes('auth: entra')"
    )
    assert secret not in page.content()
    stored = api.get(f"/api/datasets/{dataset_id}/forward").json()["forward"]
    assert (stored["auth"], stored["tenantId"], stored["clientId"]) == (
        "entra",
        "tenant-1",
        "client-1",
    )
