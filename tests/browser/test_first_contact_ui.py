"""First contact in the browser (issue #8): what a newcomer sees on the dashboard's pages.

Real headless Chromium against a real server on loopback: type names, the status pill
on the Datasets page, the API-info sample, the table tile, one clock, the card editor,
and the sign-in page's token form.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from test_dashboard import login, make_dashboard, wait_tiles_ready

from pbistream.testing import RunningServer

pytestmark = pytest.mark.browser


def test_type_names_show_both_power_bi_spellings_everywhere(
    pbistream_server: RunningServer, page: Any
) -> None:
    login(page, pbistream_server, "#/datasets/new")
    page.wait_for_selector("[data-testid=value-type] option", state="attached")
    options = page.eval_on_selector_all(
        "[data-testid=value-type] option", "os => os.map(o => o.textContent)"
    )
    assert "Number (Double)" in options and "Text (String)" in options
    dataset = pbistream_server.create_dataset({"temperature": "Number", "site": "Text"})
    page.goto(f"{pbistream_server.url}/ui/#/datasets/{dataset['id']}")
    page.wait_for_selector(".schema-list .pill")
    pills = page.eval_on_selector_all(".schema-list .pill", "ps => ps.map(p => p.textContent)")
    assert pills == ["temperature · Number (Double)", "site · Text (String)"]
    with pbistream_server.client() as api:
        board = make_dashboard(
            api, dataset["id"], [{"id": "c", "type": "card", "fields": ["site"]}]
        )
    page.goto(f"{pbistream_server.url}/ui/#/dashboards/{board}")
    wait_tiles_ready(page, 1)
    page.click('[data-testid="add-tile"]')
    page.wait_for_selector("#tile-field option", state="attached")
    labels = page.eval_on_selector_all("#tile-field option", "os => os.map(o => o.textContent)")
    assert labels == ["temperature · Number (Double)", "site · Text (String)"]


def test_the_datasets_page_follows_rows_as_they_arrive(
    pbistream_server: RunningServer, page: Any
) -> None:
    url = pbistream_server.create_streaming_dataset({"temperature": "Number"}, historic=True)
    assert httpx.post(url, json=[{"temperature": 1}]).status_code == 200
    login(page, pbistream_server, "#/datasets")
    page.wait_for_selector("[data-testid=row-count]")
    assert page.inner_text("[data-testid=row-count]") == "1"
    page.wait_for_function("() => document.getElementById('live-status').dataset.state === 'live'")
    assert page.inner_text("#live-status .label") == "Live"
    assert httpx.post(url, json=[{"temperature": 2}, {"temperature": 3}]).status_code == 200
    page.wait_for_function(
        "() => document.querySelector('[data-testid=row-count]').textContent === '3'"
    )
    # Leaving the page stops following: the pill is honest about it.
    page.goto(f"{pbistream_server.url}/ui/#/datasets/new")
    page.wait_for_function("() => document.getElementById('live-status').dataset.state === 'idle'")


def test_api_info_samples_use_pbistream_words_and_a_value_per_field(
    pbistream_server: RunningServer, page: Any
) -> None:
    fields = {"temperature": "Number", "humidity": "Number", "count": "Int64", "site": "Text"}
    dataset = pbistream_server.create_dataset(fields, name="plant")
    login(page, pbistream_server, f"#/datasets/{dataset['id']}")
    code = page.locator("[data-testid=sample-code]")
    code.wait_for()
    python = code.inner_text()
    assert "Power BI" not in python
    assert "API Info" not in python
    assert "pbistream" in python
    assert "12345" not in python
    page.click(".tabs button:has-text('Raw JSON')")
    row = json.loads(code.inner_text())[0]
    numbers = [row["temperature"], row["humidity"], row["count"]]
    assert len(set(numbers)) == 3, row  # each number field its own plausible value
    assert isinstance(row["count"], int)
    assert isinstance(row["site"], str) and row["site"]
    # The sample is valid for the dataset: pushing it stores the row.
    push_url = pbistream_server.push_url(dataset["id"])
    assert push_url is not None
    assert httpx.post(push_url, json=[row]).status_code == 200


def test_a_table_tile_shows_every_column(pbistream_server: RunningServer, page: Any) -> None:
    # The demo's table: four fields (and Time) in a third of the dashboard's width.
    fields = {"string_value": "Text", "temperature": "Number", "humidity": "Number"}
    fields["online"] = "Boolean"
    url = pbistream_server.create_streaming_dataset(fields, historic=True)
    row = {"string_value": "South", "temperature": 21.02, "humidity": 54.38, "online": True}
    assert httpx.post(url, json=[row]).status_code == 200
    dataset_id = pbistream_server.storage.list_datasets(all_groups=True)[0].id
    tile = {"id": "t", "type": "table", "fields": list(fields), "rows": 5, "w": 4, "h": 4}
    with pbistream_server.client() as api:
        board = make_dashboard(api, dataset_id, [tile])
    login(page, pbistream_server, f"#/dashboards/{board}")
    page.wait_for_selector("[data-tile-id=t] tbody tr")
    fits = page.evaluate(
        "() => { const box = document.querySelector('[data-tile-id=t] .rows-table');"
        " const edge = box.getBoundingClientRect();"
        " const cells = [...box.querySelectorAll('th, tbody tr:first-child td')];"
        " return { scroll: box.scrollWidth - box.clientWidth,"
        " outside: cells.filter(c => c.getBoundingClientRect().right > edge.right + 1)"
        ".map(c => c.textContent) }; }"
    )
    assert fits == {"scroll": 0, "outside": []}, f"columns cut off at the tile's edge: {fits}"
    values = page.eval_on_selector_all(
        "[data-tile-id=t] tbody tr:first-child td", "tds => tds.map(t => t.textContent)"
    )
    assert values[1:] == ["South", "21.02", "54.38", "True"]


def test_cards_tables_and_charts_read_the_same_clock(
    pbistream_server: RunningServer, page: Any
) -> None:
    fields = {"temperature": "Number", "when": "DateTime"}
    url = pbistream_server.create_streaming_dataset(fields, historic=True)
    assert httpx.post(url, json=[{"temperature": 20, "when": "2026-12-01T15:04:05Z"}]).is_success
    dataset_id = pbistream_server.storage.list_datasets(all_groups=True)[0].id
    tiles = [
        {"id": "c", "type": "card", "fields": ["temperature"]},
        {"id": "w", "type": "card", "fields": ["when"], "x": 3},
        {"id": "l", "type": "line", "fields": ["temperature"], "windowSeconds": 300, "y": 2},
        {"id": "t", "type": "table", "fields": ["temperature"], "rows": 5, "y": 6},
    ]
    with pbistream_server.client() as api:
        board = make_dashboard(api, dataset_id, tiles)
    login(page, pbistream_server, f"#/dashboards/{board}")
    page.wait_for_function(
        "() => document.querySelector('[data-tile-id=c] .card-time')"
        "?.textContent.startsWith('as of ')"
    )
    page.wait_for_selector("[data-tile-id=t] tbody tr")
    page.wait_for_function(
        "() => { const el = document.querySelector('[data-tile-id=l] .chart');"
        " const c = el && echarts.getInstanceByDom(el);"
        " const o = c && !c.isDisposed() && c.getOption();"
        " return !!o && !!o.xAxis && !!o.xAxis[0].axisLabel.formatter; }"
    )
    texts = page.evaluate(
        "() => { const el = document.querySelector('[data-tile-id=l] .chart');"
        " const c = echarts.getInstanceByDom(el);"
        " const axis = c.getOption().xAxis[0].axisLabel.formatter(Date.UTC(2026, 11, 1, 15, 4, 5));"
        " return { card: document.querySelector('[data-tile-id=c] .card-time').textContent,"
        " when: document.querySelector('[data-tile-id=w] [data-testid=tile-value]').textContent,"
        " table: document.querySelector('[data-tile-id=t] tbody td').textContent, axis }; }"
    )
    twelve_hour = [bool(re.search(r"\b(AM|PM)\b", t)) for t in texts.values()]
    assert len(set(twelve_hour)) == 1, f"mixed 12- and 24-hour clocks: {texts}"
    # The seconds show everywhere a time of day shows.
    assert all(re.search(r"\d:\d\d:\d\d", t) for t in texts.values()), texts


def test_the_card_editor_offers_units_and_thresholds_only_for_numbers(
    pbistream_server: RunningServer, page: Any
) -> None:
    dataset = pbistream_server.create_dataset({"site": "Text", "temperature": "Number"})
    with pbistream_server.client() as api:
        board = make_dashboard(
            api, dataset["id"], [{"id": "c", "type": "card", "fields": ["site"]}]
        )
        login(page, pbistream_server, f"#/dashboards/{board}")
        wait_tiles_ready(page, 1)
        page.click('[data-testid="add-tile"]')
        page.select_option("#tile-field", "site")
        assert page.locator("#tile-unit").count() == 0
        assert page.locator("dialog :text('Thresholds')").count() == 0
        page.select_option("#tile-field", "temperature")
        assert page.locator("#tile-unit").count() == 1
        page.fill("#tile-unit", "°C")
        page.select_option("#tile-field", "site")  # back to Text: the unit goes too
        assert page.locator("#tile-unit").count() == 0
        page.click("dialog button:has-text('Add tile')")
        wait_tiles_ready(page, 2)
        added = api.get(f"/api/dashboards/{board}").json()["tiles"][1]
        assert added["fields"] == ["site"]
        assert not added.get("unit") and not added.get("thresholds")  # stored as "" and []


def test_the_sign_in_page_takes_a_pasted_token(pbistream_server: RunningServer, page: Any) -> None:
    page.goto(f"{pbistream_server.url}/ui/")
    page.fill("#signin-token", "not-the-token")
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("text=That is not a working token of this server.")
    page.fill("#signin-token", pbistream_server.token)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/ui/**")
    page.wait_for_selector("#live-status")  # the app's shell, signed in
    page.allowed_errors.append("403")
