"""Alerts in headless Chromium: set from a card tile, badge, Alerts page with history."""

from __future__ import annotations

import httpx
import pytest
from test_dashboard import login, make_dashboard

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__xss=1">'


def test_an_alert_set_from_a_card_fires_and_shows_in_the_badge_and_history(pbistream_server, page):
    with pbistream_server.client(timeout=10) as api:
        body = {
            "name": "Sensors",
            "defaultMode": "PushStreaming",
            "tables": [
                {
                    "name": "RealTimeData",
                    "columns": [
                        {"name": "temperature", "dataType": "Double"},
                        {"name": "device", "dataType": "String"},
                    ],
                }
            ],
        }
        dataset_id = api.post("/v1.0/myorg/datasets", json=body).json()["id"]
        push_url = api.get(f"/api/datasets/{dataset_id}").json()["pushUrl"]
        board = make_dashboard(
            api,
            dataset_id,
            [
                {
                    "id": "c",
                    "type": "card",
                    "fields": ["temperature"],
                    "x": 0,
                    "y": 0,
                    "w": 4,
                    "h": 2,
                    "thresholds": [{"value": 30, "color": "#d13438"}],
                },
                {
                    "id": "g",
                    "type": "gauge",
                    "fields": ["temperature"],
                    "x": 4,
                    "y": 0,
                    "w": 4,
                    "h": 3,
                },
                {
                    "id": "t",
                    "type": "table",
                    "fields": ["temperature"],
                    "x": 8,
                    "y": 0,
                    "w": 4,
                    "h": 3,
                },
            ],
        )
        login(page, pbistream_server, f"#/dashboards/{board}")
        # Cards and gauges have a bell; a table does not.
        page.wait_for_selector('[data-tile-id="c"] [data-testid="tile-alert"]')
        assert page.locator('[data-tile-id="g"] [data-testid="tile-alert"]').count() == 1
        assert page.locator('[data-tile-id="t"] [data-testid="tile-alert"]').count() == 0
        page.click('[data-tile-id="c"] [data-testid="tile-alert"]')
        editor = page.locator('[data-testid="alert-editor"]')
        assert editor.locator("#alert-threshold").input_value() == "30"  # from the tile
        editor.locator("#alert-op").select_option(">")
        editor.locator("#alert-category").select_option("device")
        editor.locator("#alert-name").fill(f"Hot {XSS}")
        editor.locator("button[type=submit]").click()
        page.wait_for_selector('[data-testid="alert-editor"]', state="detached")
        [rule] = api.get("/api/alerts").json()["value"]
        assert (rule["op"], rule["threshold"], rule["category"]) == (">", 30, "device")
        assert httpx.post(push_url, json=[{"temperature": 35.5, "device": XSS}]).status_code == 200
        page.wait_for_function(
            "() => document.querySelector('[data-testid=alert-badge]')?.textContent === '1'",
            timeout=15_000,
        )
        page.goto(f"{pbistream_server.url}/ui/#/alerts")
        page.wait_for_selector('[data-testid="alert-history"] li')
        history = page.locator('[data-testid="alert-history"]').inner_text()
        assert "35.5" in history and XSS in history  # shown as text, never as markup
        assert page.locator('[data-testid="alert-state"]').inner_text() == "Firing"
        page.wait_for_function(
            "() => document.querySelector('[data-testid=alert-badge]').hidden === true"
        )
        assert page.evaluate("window.__xss") is None
        # Edit from the Alerts page: raise the threshold.
        page.click('[data-testid="alert-rules"] button:has-text("Edit")')
        page.locator("#alert-threshold").fill("40")
        page.locator('[data-testid="alert-editor"] button[type=submit]').click()
        page.wait_for_selector('[data-testid="alert-editor"]', state="detached")
        assert api.get(f"/api/alerts/{rule['id']}").json()["threshold"] == 40


def test_editing_a_rule_in_the_ui_keeps_what_the_editor_does_not_show(pbistream_server, page):
    """A rule made over the API with a 2-minute interval, switched off: editing its
    threshold on the Alerts page keeps both (the interval fell back to the first preset,
    and the rule came back on)."""
    with pbistream_server.client(timeout=10) as api:
        body = {
            "name": "Sensors",
            "defaultMode": "PushStreaming",
            "tables": [
                {"name": "RealTimeData", "columns": [{"name": "temperature", "dataType": "Double"}]}
            ],
        }
        dataset_id = api.post("/v1.0/myorg/datasets", json=body).json()["id"]
        rule = api.post(
            "/api/alerts",
            json={
                "dataset": dataset_id,
                "field": "temperature",
                "op": ">",
                "threshold": 30,
                "minIntervalSeconds": 120,
                "enabled": False,
            },
        ).json()
        login(page, pbistream_server, "#/alerts")
        state = page.locator(f'[data-rule-id="{rule["id"]}"] [data-testid="alert-state"]')
        assert state.inner_text() == "Off"  # not "OK": it is not being checked
        page.click(f'[data-rule-id="{rule["id"]}"] button:has-text("Edit")')
        page.locator("#alert-threshold").fill("35")
        page.locator('[data-testid="alert-editor"] button[type=submit]').click()
        page.wait_for_selector('[data-testid="alert-editor"]', state="detached")
        saved = api.get(f"/api/alerts/{rule['id']}").json()
        assert saved["threshold"] == 35
        assert saved["minIntervalSeconds"] == 120
        assert saved["enabled"] is False
        # A silence of 2.5 s (the API takes any number from 1 s up) saves as it is.
        quiet = api.post(
            "/api/alerts",
            json={"dataset": dataset_id, "field": "temperature", "silenceSeconds": 2.5},
        ).json()
        page.reload()
        page.click(f'[data-rule-id="{quiet["id"]}"] button:has-text("Edit")')
        page.locator("#alert-name").fill("Quiet sensor")
        page.locator('[data-testid="alert-editor"] button[type=submit]').click()
        page.wait_for_selector('[data-testid="alert-editor"]', state="detached", timeout=5_000)
        saved = api.get(f"/api/alerts/{quiet['id']}").json()
        assert (saved["name"], saved["silenceSeconds"]) == ("Quiet sensor", 2.5)
