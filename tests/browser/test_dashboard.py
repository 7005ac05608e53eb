"""The dashboard in headless Chromium against a real server on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from pbistream.testing import RunningServer, free_port

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__xss=1">'
FIRST_CARD = "document.querySelector('[data-testid=tile-value]')?.textContent"
TABLE_HAS_5_ROWS = "() => document.querySelectorAll('[data-tile-id=t] tbody tr').length === 5"
LINE_POINTS = (
    "n => { const el = document.querySelector('[data-tile-id=l] .chart');"
    " const chart = el && echarts.getInstanceByDom(el);"
    # A re-rendered tile leaves a disposed chart behind (getOption() is undefined), and a
    # new chart has no series until its first setOption: both mean "not yet", not a TypeError.
    " const option = chart && !chart.isDisposed() && chart.getOption();"
    " const series = option && (option.series || [])[0];"
    " return !!series && (series.data || []).length === n; }"
)


def card_shows(text: str) -> str:
    """A predicate: the first card's value reads ``text``."""
    return f"() => {FIRST_CARD}.trim() === {text!r}"


def card_includes(text: str) -> str:
    """A predicate: the first card's value contains ``text``."""
    return f"() => !!{FIRST_CARD}?.includes({text!r})"


def login(page: Any, server: RunningServer, target: str = "") -> None:
    """Open the login link (as the server prints it), landing on ``/ui/{target}``."""
    next_page = quote(f"/ui/{target}", safe="/")
    page.goto(f"{server.url}/login?token={server.token}&next={next_page}")
    page.wait_for_url("**/ui/**")


def make_dashboard(
    api: httpx.Client, dataset_id: str, tiles: list[dict[str, Any]], name: str = "Test board"
) -> str:
    for tile in tiles:
        tile.setdefault("datasetId", dataset_id)
        tile.setdefault("table", "RealTimeData")
    response = api.post("/api/dashboards", json={"name": name, "tiles": tiles})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def card_text(page: Any, tile_id: str) -> str:
    return str(page.locator(f'[data-tile-id="{tile_id}"] [data-testid="tile-value"]').inner_text())


def wait_tiles_ready(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=tile]').length === n", arg=count
    )


def test_create_dataset_in_the_ui_then_a_pushed_row_shows_within_a_second(
    pbistream_server: RunningServer, page: Any
) -> None:
    login(page, pbistream_server, "#/datasets/new")
    page.fill("#dataset-name", "Boiler room")
    page.locator('[data-testid="value-name"]').nth(0).fill("temperature")
    page.locator('[data-testid="value-type"]').nth(0).select_option("Number")
    page.click('[data-testid="add-value"]')
    page.locator('[data-testid="value-name"]').nth(1).fill("label")
    page.locator('[data-testid="value-type"]').nth(1).select_option("Text")
    # A plausible value for the field's name (issue #8: not 12345 in every number).
    assert '"temperature": 21.7' in page.inner_text('[data-testid="sample-json"]')
    page.check("#historic")
    page.click("button:has-text('Create')")

    push_input = page.locator('[data-testid="push-url"]')
    push_input.wait_for()
    push_url = push_input.input_value()
    assert "/rows?key=" in push_url
    assert push_url in page.inner_text('[data-testid="sample-code"]')  # the seed's snippet

    # A dashboard with one card, made in the UI too.
    page.click("text=+ New dashboard")
    page.fill("#dashboard-name", "Boiler")
    page.click("dialog button:has-text('Save')")
    page.click('[data-testid="add-tile"]')
    page.select_option("#tile-field", "temperature")
    page.fill("#tile-title", "Boiler temperature")
    page.click("dialog button:has-text('Add tile')")
    value = page.locator('[data-testid="tile"][data-tile-type="card"] [data-testid="tile-value"]')
    value.wait_for()

    with httpx.Client() as pusher:
        assert pusher.post(push_url, json=[{"temperature": 1.5}]).status_code == 200
        page.wait_for_function(
            card_includes("1.5"),
            timeout=5000,
        )
        sent = time.monotonic()
        assert pusher.post(push_url, json=[{"temperature": 42.25}]).status_code == 200
        page.wait_for_function(
            card_includes("42.25"),
            timeout=5000,
        )
        shown_after = time.monotonic() - sent
    assert shown_after < 1.0, f"the card changed {shown_after:.3f} s after the push"

    # The dataset list shows the mode, retention, row count and last-row time.
    page.goto(f"{pbistream_server.url}/ui/#/datasets")
    row = page.locator('[data-testid="datasets"] tbody tr').first
    row.wait_for()
    cells = [c.strip() for c in row.inner_text().split("\t")]
    assert cells[:5] == ["Boiler room", "Streaming + historic", "None", "2", "just now"]

    # Rotate the key: the old Push URL stops working, the new one works.
    row.locator("text=API info").click()
    page.click("button:has-text('Rotate key')")
    page.click("dialog button:has-text('Rotate key')")
    page.wait_for_function(
        "old => document.querySelector('[data-testid=push-url]')?.value !== old", arg=push_url
    )
    new_url = page.locator('[data-testid="push-url"]').input_value()
    assert httpx.post(push_url, json=[{"temperature": 1}]).status_code == 403
    assert httpx.post(new_url, json=[{"temperature": 1}]).status_code == 200

    # Delete it: the list is empty again and the dashboard's tile says so.
    page.click("button:has-text('Delete dataset')")
    page.click("dialog button:has-text('Delete')")
    page.locator("text=No datasets yet").wait_for()
    page.click("text=Boiler")
    page.locator("text=This tile's dataset was deleted").wait_for()


def test_reload_restart_and_reconnect_fill_tiles_from_history(
    page: Any, tmp_path: Path, artifacts: Path, serve_on_port: Any
) -> None:
    from pbistream.server.settings import Settings

    # The live feed is cut while the server restarts; the page reconnects by itself.
    page.allowed_errors += ["ERR_CONNECTION_REFUSED", "ERR_INCOMPLETE_CHUNKED_ENCODING"]
    settings = Settings(
        host="127.0.0.1", port=free_port(), data_dir=str(tmp_path / "data"), token="t-" * 16
    )
    fields = {"temperature": "Number", "label": "Text"}
    with serve_on_port(settings) as server:
        dataset = server.create_dataset(fields, mode="PushStreaming", name="history")
        with server.client() as api:
            board = make_dashboard(
                api,
                dataset["id"],
                [
                    {
                        "id": "c",
                        "type": "card",
                        "fields": ["temperature"],
                        "w": 3,
                        "h": 2,
                        "thresholds": [
                            {"value": 0, "color": "#107c10"},
                            {"value": 50, "color": "#d13438"},
                        ],
                    },
                    {"id": "l", "type": "line", "fields": ["temperature"], "x": 3, "w": 9},
                    {"id": "t", "type": "table", "fields": ["temperature", "label"], "rows": 5},
                ],
            )
        rows = [{"temperature": float(i), "label": f"r{i}"} for i in range(30)]
        assert httpx.post(dataset["push_url"], json=rows).status_code == 200
        login(page, server, f"#/dashboards/{board}")
        page.wait_for_function(card_shows("29"))
        colour = "document.querySelector('[data-testid=tile-value]').style.color"
        assert page.evaluate(f"() => {colour}") == "rgb(16, 124, 16)"  # 29: from 0 up, green
        page.reload()
        page.wait_for_function(card_shows("29"))
        page.wait_for_function(TABLE_HAS_5_ROWS)
        page.wait_for_function(LINE_POINTS, arg=30)

    # The page stays open while the server restarts on the same port and data; a row
    # pushed before the page reconnects arrives through the feed's replay.
    with serve_on_port(settings):
        assert httpx.post(dataset["push_url"], json=[{"temperature": 100}]).status_code == 200
        page.wait_for_function(card_shows("100"), timeout=15_000)
        assert page.evaluate(f"() => {colour}") == "rgb(209, 52, 56)"  # 100: from 50 up, red
        page.wait_for_function(LINE_POINTS, arg=31)
        table = page.locator('[data-tile-id="t"] tbody tr')
        assert table.first.inner_text().split("\t")[1].strip() == "100"
        # A fresh load after the restart shows the full history too.
        page.reload()
        page.wait_for_function(card_shows("100"))
        page.wait_for_function(LINE_POINTS, arg=31)
        page.screenshot(path=str(artifacts / "history-after-restart.png"))
        page.goto("about:blank")  # close the live feed before the server stops


def _hover_until_tooltip_names(page: Any, tile_id: str, text: str) -> None:
    """Move the mouse over a chart until its tooltip (a DOM element) shows ``text``."""
    box = page.locator(f'[data-tile-id="{tile_id}"] .chart').bounding_box()
    tip = (
        f"s => [...document.querySelectorAll('[data-tile-id={tile_id}] .chart div')]"
        ".some(d => d.textContent.includes(s))"
    )
    deadline = time.monotonic() + 10
    for step in range(200):
        # Sweep across the plot: the tooltip opens where a point or a bar is.
        fraction = 0.2 + 0.6 * ((step % 10) / 9)
        page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] * 0.7)
        if page.evaluate(tip, text) or time.monotonic() > deadline:
            break
    assert page.evaluate(tip, text), f"no tooltip naming the field on tile {tile_id}"


def test_strings_from_data_render_as_text_and_run_no_script(
    pbistream_server: RunningServer, page: Any
) -> None:
    # The dataset's name, a column's name and a string value all hold markup.
    fields = {"label": "Text", XSS: "Number"}
    dataset = pbistream_server.create_dataset(fields, mode="PushStreaming", name=XSS)
    with pbistream_server.client() as api:
        board = make_dashboard(
            api,
            dataset["id"],
            [
                {"id": "card", "type": "card", "fields": ["label"], "title": XSS},
                {"id": "bars", "type": "column", "fields": [XSS], "axis": "label", "x": 4},
                {"id": "rows", "type": "table", "fields": ["label", XSS], "x": 8},
                {"id": "line", "type": "line", "fields": [XSS], "y": 4, "title": XSS},
                {"id": "hbar", "type": "bar", "fields": [XSS], "x": 4, "y": 4},
                {"id": "gauge", "type": "gauge", "fields": [XSS], "x": 8, "y": 4},
            ],
            name=XSS,
        )
    login(page, pbistream_server, f"#/dashboards/{board}")
    wait_tiles_ready(page, 6)
    for value in (7, 9):
        row = [{"label": XSS, XSS: value}]
        assert httpx.post(dataset["push_url"], json=row).status_code == 200
    page.wait_for_function(
        "s => document.querySelector('[data-tile-id=card] [data-testid=tile-value]')"
        ".textContent === s",
        arg=XSS,
    )
    assert page.locator('[data-tile-id="rows"] tbody td').nth(1).inner_text() == XSS
    assert XSS in page.locator('[data-tile-id="rows"] thead').inner_text()
    assert page.locator('[data-tile-id="card"] .tile-title').inner_text() == XSS
    assert page.locator('[data-tile-id="line"] .tile-title').inner_text() == XSS
    assert page.locator(".view-head h2").first.inner_text() == XSS  # the dashboard's name
    page.wait_for_function(LINE_POINTS.replace("=l]", "=line]"), arg=2)
    # Chart tooltips name the category and the series (the column): text, not markup.
    for tile_id in ("bars", "line", "hbar"):
        _hover_until_tooltip_names(page, tile_id, XSS)
    assert page.locator("img").count() == 0
    # The dataset's name is data too: the datasets list and API info show it as text,
    # and the sample code carries the column name as text.
    page.goto(f"{pbistream_server.url}/ui/#/datasets")
    page.locator('[data-testid="datasets"] tbody tr').first.wait_for()
    assert XSS in page.locator('[data-testid="datasets"]').inner_text()
    page.goto(f"{pbistream_server.url}/ui/#/datasets/{dataset['id']}")
    page.locator('[data-testid="sample-code"]').wait_for()
    assert page.locator("h2").first.inner_text() == XSS
    for tab in ("Python", "cURL", "PowerShell", "Raw JSON"):
        page.get_by_role("tab", name=tab).click()
        assert "onerror" in page.locator('[data-testid="sample-code"]').inner_text()
    assert page.locator("img").count() == 0
    assert page.evaluate("() => window.__xss") is None


def test_tiles_can_be_added_edited_moved_resized_and_removed(
    pbistream_server: RunningServer, page: Any
) -> None:
    fields = {"temperature": "Number", "humidity": "Number", "site": "Text"}
    dataset = pbistream_server.create_dataset(fields, mode="PushStreaming", name="plant")
    with pbistream_server.client() as api:
        board = make_dashboard(
            api, dataset["id"], [{"id": "c", "type": "card", "fields": ["temperature"], "w": 3}]
        )
        login(page, pbistream_server, f"#/dashboards/{board}")
        wait_tiles_ready(page, 1)

        # Add a line chart of two values through the dialog.
        page.click('[data-testid="add-tile"]')
        page.select_option("#tile-type", "line")
        page.check("#tile-fields input[value=humidity]")
        page.select_option("#tile-window", "60")
        page.fill("#tile-title", "Trend")
        page.click("dialog button:has-text('Add tile')")
        wait_tiles_ready(page, 2)
        saved = api.get(f"/api/dashboards/{board}").json()["tiles"]
        line = saved[1]
        assert (line["type"], line["fields"], line["windowSeconds"]) == (
            "line",
            ["temperature", "humidity"],
            60,
        )
        assert line["y"] == 3  # placed below the card

        # Move the card three columns right and resize it, by dragging in edit mode.
        page.click("button:has-text('Edit')")
        board_box = page.locator('[data-testid="board"]').bounding_box()
        column = (board_box["width"] + 12) / 12
        head = page.locator('[data-tile-id="c"] .tile-head').bounding_box()
        x, y = head["x"] + 40, head["y"] + head["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + column * 1.5, y, steps=5)
        page.mouse.move(x + column * 3, y, steps=5)
        page.mouse.up()
        page.wait_for_function(
            "id => fetch('/api/dashboards/' + id).then(r => r.json())"
            ".then(d => d.tiles[0].x === 3)",
            arg=board,
        )
        grip = page.locator('[data-tile-id="c"] .tile-resize').bounding_box()
        gx, gy = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
        page.mouse.move(gx, gy)
        page.mouse.down()
        page.mouse.move(gx + column * 2, gy + 96, steps=8)
        page.mouse.up()
        page.wait_for_function(
            "id => fetch('/api/dashboards/' + id).then(r => r.json())"
            ".then(d => d.tiles[0].w === 5 && d.tiles[0].h === 4)",
            arg=board,
        )

        # The keyboard moves a focused tile too.
        page.focus('[data-tile-id="c"] .tile-head')
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "id => fetch('/api/dashboards/' + id).then(r => r.json())"
            ".then(d => d.tiles[0].x === 4)",
            arg=board,
        )

        # Edit the card: a title and a threshold; then remove the line chart.
        page.locator('[data-tile-id="c"] button:has-text("Edit")').click()
        page.fill("#tile-title", "Boiler")
        page.click("dialog button:has-text('+ Add threshold')")
        page.click("dialog button:has-text('Save tile')")
        page.wait_for_function(
            "() => document.querySelector('[data-tile-id=c] .tile-title').textContent === 'Boiler'"
        )
        card = api.get(f"/api/dashboards/{board}").json()["tiles"][0]
        assert (card["title"], card["x"], card["w"], len(card["thresholds"])) == ("Boiler", 4, 5, 1)
        page.locator(f'[data-tile-id="{line["id"]}"] button[title="Remove tile"]').click()
        wait_tiles_ready(page, 1)
        assert [t["id"] for t in api.get(f"/api/dashboards/{board}").json()["tiles"]] == ["c"]


def test_many_tabs_share_one_live_connection(pbistream_server: RunningServer, page: Any) -> None:
    # A browser keeps at most six HTTP/1.1 connections to a host; one EventSource per
    # tab would hang the seventh tab. The tabs share one feed through a SharedWorker.
    dataset = pbistream_server.create_dataset({"temperature": "Number"}, name="tabs")
    with pbistream_server.client() as api:
        board = make_dashboard(
            api, dataset["id"], [{"id": "c", "type": "card", "fields": ["temperature"]}]
        )
    login(page, pbistream_server, f"#/dashboards/{board}")
    wait_tiles_ready(page, 1)
    tabs = [page]
    for _ in range(8):
        tab = page.context.new_page()
        tab.goto(f"{pbistream_server.url}/ui/#/dashboards/{board}", timeout=15_000)
        tab.wait_for_selector('[data-testid="tile"]', timeout=15_000)
        tabs.append(tab)
    for value in (7, 8):  # the second row also reaches tabs that joined a running feed
        assert httpx.post(dataset["push_url"], json=[{"temperature": value}]).status_code == 200
        for tab in tabs:
            tab.wait_for_function(card_shows(str(value)), timeout=15_000)
    for tab in tabs[1:]:
        tab.close()


@pytest.mark.parametrize("shared_worker", [True, False], ids=["shared-worker", "no-shared-worker"])
def test_a_dashboard_of_seven_datasets_uses_one_connection(
    pbistream_server: RunningServer, page: Any, shared_worker: bool
) -> None:
    # Seven datasets, one EventSource each, would take all six connections a browser
    # allows to a server (the page's own requests would hang); /api/live merges them.
    if not shared_worker:
        page.add_init_script("delete window.SharedWorker")
    datasets = [
        pbistream_server.create_dataset({"v": "Number"}, name=f"sensor {n}") for n in range(7)
    ]
    tiles = [
        {
            "id": f"c{n}",
            "type": "card",
            "datasetId": d["id"],
            "fields": ["v"],
            "x": (n % 4) * 3,
            "w": 3,
        }
        for n, d in enumerate(datasets)
    ]
    with pbistream_server.client() as api:
        board = make_dashboard(api, datasets[0]["id"], tiles)
    login(page, pbistream_server, f"#/dashboards/{board}")
    wait_tiles_ready(page, 7)
    page.wait_for_function("() => document.getElementById('live-status').dataset.state === 'live'")
    for n, dataset in enumerate(datasets):
        assert httpx.post(dataset["push_url"], json=[{"v": 100 + n}]).status_code == 200
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=tile-value]')]"
        ".map(e => e.textContent).join(',') === '100,101,102,103,104,105,106'"
    )
    # The page can still talk to the server (no connection is left hanging).
    page.click("text=Streaming datasets")
    page.locator('[data-testid="datasets"] tbody tr').nth(6).wait_for()


def test_a_dataset_deleted_while_on_screen_says_so(server_factory: Any, page: Any) -> None:
    server = server_factory(time_scale=15)  # the feed notices within a 1 s keepalive
    dataset = server.create_dataset({"v": "Number"}, name="short-lived")
    with server.client() as api:
        board = make_dashboard(api, dataset["id"], [{"id": "c", "type": "card", "fields": ["v"]}])
        login(page, server, f"#/dashboards/{board}")
        wait_tiles_ready(page, 1)
        assert httpx.post(dataset["push_url"], json=[{"v": 5}]).status_code == 200
        page.wait_for_function(card_shows("5"))
        assert api.delete(f"/v1.0/myorg/datasets/{dataset['id']}").status_code == 200
    page.locator("text=This tile's dataset was deleted").wait_for()
    assert page.locator('[data-testid="tile-value"]').count() == 0


def test_sample_code_quotes_a_hostile_column_name(
    pbistream_server: RunningServer, page: Any
) -> None:
    # PowerShell ends a "..." string at a typographic quote too; the name must stay inside.
    name = "a\u201d; Start-Process calc; \u201c$(whoami)'; touch /tmp/x; '"
    login(page, pbistream_server)
    snippets = page.evaluate(
        """async name => {
            const m = await import('/static/js/samples.js');
            const columns = [{name, dataType: 'String'}];
            const url = 'http://h/x';
            return [m.powershellSnippet(url, columns), m.curlSnippet(url, columns)];
        }""",
        name,
    )
    powershell, curl = snippets
    escaped = name.replace("$", "`$").replace("\u201d", "`\u201d").replace("\u201c", "`\u201c")
    assert f'"{escaped}" = "example 1"' in powershell
    assert "'\\''; touch /tmp/x; '\\''" in curl
