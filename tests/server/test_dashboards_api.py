"""The dashboard's server side over real HTTP: login, /ui/, /api/dashboards, /series."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbistream.server.ui.series import downsample_minmax
from pbistream.testing import RunningServer

FIELDS = {"name": "Text", "temperature": "Number", "count": "Int64", "ok": "Boolean"}


@pytest.fixture
def dataset_id(pbistream_server: RunningServer) -> str:
    created = pbistream_server.create_dataset(FIELDS, mode="PushStreaming", name="sensors")
    return str(created["id"])


def card(dataset_id: str, **extra: Any) -> dict[str, Any]:
    tile = {
        "id": "c1",
        "type": "card",
        "datasetId": dataset_id,
        "table": "RealTimeData",
        "fields": ["temperature"],
    }
    return tile | extra


# --- login and pages ------------------------------------------------------------------


def test_login_sets_an_httponly_cookie_that_opens_the_ui(pbistream_server: RunningServer) -> None:
    with httpx.Client(base_url=pbistream_server.url) as browser:
        page = browser.get("/ui/")
        assert page.status_code == 401
        assert "login link" in page.text  # a friendly page, not a bare 401
        assert "default-src 'self'" in page.headers["content-security-policy"]

        login = browser.get("/login", params={"token": pbistream_server.token})
        assert login.status_code == 303
        assert login.headers["location"] == "/ui/"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert pbistream_server.token not in login.headers["set-cookie"]

        page = browser.get("/ui/")
        assert page.status_code == 200
        assert "/static/js/main.js" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        # The cookie also opens the JSON API the page uses.
        assert browser.get("/api/dashboards").status_code == 200


def test_wrong_token_gets_no_cookie(pbistream_server: RunningServer) -> None:
    with httpx.Client(base_url=pbistream_server.url) as browser:
        login = browser.get("/login", params={"token": pbistream_server.token + "x"})
        assert login.status_code == 403
        # Only the sign-in form's CSRF cookie (path /login), never a session.
        assert "pbistream_session" not in login.headers.get("set-cookie", "")
        assert browser.get("/api/dashboards").status_code == 401


def test_login_next_only_goes_to_ui_pages(pbistream_server: RunningServer) -> None:
    with httpx.Client(base_url=pbistream_server.url) as browser:
        token = pbistream_server.token
        good = browser.get("/login", params={"token": token, "next": "/ui/#/dashboards/abc-1"})
        assert good.headers["location"] == "/ui/#/dashboards/abc-1"
        for evil in ("https://evil.example/", "//evil.example/ui/", "/ui/../api", "/ui/\n"):
            bad = browser.get("/login", params={"token": token, "next": evil})
            assert bad.headers["location"] == "/ui/"


def test_static_assets_are_served_with_the_vendored_chart_library(
    pbistream_server: RunningServer,
) -> None:
    with httpx.Client(base_url=pbistream_server.url) as anonymous:
        script = anonymous.get("/static/vendor/echarts-6.1.0.min.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert anonymous.get("/static/vendor/echarts-6.1.0.LICENSE").status_code == 200
        assert anonymous.get("/static/js/main.js").status_code == 200
        # The shell opened as a static file keeps the policy (and may not be framed).
        shell = anonymous.get("/static/index.html")
        assert "script-src 'self'" in shell.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in shell.headers["content-security-policy"]
        assert shell.headers["x-frame-options"] == "DENY"
        assert shell.headers["x-content-type-options"] == "nosniff"


# --- /api/dashboards --------------------------------------------------------------------


def test_dashboard_crud_round_trip(api: httpx.Client, dataset_id: str) -> None:
    tiles = [
        card(dataset_id, thresholds=[{"value": 30, "color": "#d13438"}], unit="°C"),
        {
            "id": "l1",
            "type": "line",
            "datasetId": dataset_id,
            "table": "RealTimeData",
            "fields": ["temperature", "count"],
            "windowSeconds": 600,
            "x": 4,
            "w": 8,
        },
        {
            "id": "g1",
            "type": "gauge",
            "datasetId": dataset_id,
            "table": "RealTimeData",
            "fields": ["temperature"],
            "min": 0,
            "max": 50,
            "target": 25,
        },
        {
            "id": "b1",
            "type": "bar",
            "datasetId": dataset_id,
            "table": "RealTimeData",
            "fields": ["temperature"],
            "axis": "name",
        },
        {
            "id": "t1",
            "type": "table",
            "datasetId": dataset_id,
            "table": "RealTimeData",
            "fields": ["name", "ok"],
            "rows": 5,
        },
    ]
    created = api.post("/api/dashboards", json={"name": "Plant", "tiles": tiles})
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["name"] == "Plant"
    assert [t["type"] for t in doc["tiles"]] == ["card", "line", "gauge", "bar", "table"]
    assert doc["tiles"][0]["w"] == 4  # defaults filled in

    listed = api.get("/api/dashboards").json()["value"]
    assert [d["id"] for d in listed] == [doc["id"]]

    doc["name"] = "Plant 2"
    doc["tiles"] = doc["tiles"][:1]
    replaced = api.put(f"/api/dashboards/{doc['id']}", json=doc)
    assert replaced.status_code == 200, replaced.text
    assert api.get(f"/api/dashboards/{doc['id']}").json()["name"] == "Plant 2"

    assert api.delete(f"/api/dashboards/{doc['id']}").status_code == 204
    missing = api.get(f"/api/dashboards/{doc['id']}")
    assert missing.status_code == 404
    assert "No dashboard" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "pie"}, "tiles[0].type"),
        ({"fields": ["nope"]}, "tiles[0].fields[0]: 'nope' is not a column"),
        ({"fields": ["temperature", "count"]}, "exactly 1 field"),
        ({"table": "Other"}, "tiles[0].table"),
        ({"datasetId": "no-such-dataset"}, "tiles[0].datasetId"),
        ({"x": 10, "w": 4}, "tiles[0].x"),
        ({"thresholds": [{"value": 1, "color": "red; x:url(evil)"}]}, "thresholds[0].color"),
        ({"thresholds": [{"value": math.inf, "color": "#ffffff"}]}, None),
        ({"colour": "#fff"}, "unknown property 'colour'"),
        ({"id": "<img>"}, "tiles[0].id"),
    ],
)
def test_bad_tiles_get_a_400_naming_tile_and_property(
    api: httpx.Client, dataset_id: str, change: dict[str, Any], message: str | None
) -> None:
    tile = card(dataset_id) | change
    if message is None:  # orjson cannot even send Infinity: send the JSON text by hand
        body = (
            b'{"name": "x", "tiles": [{"id": "c1", "type": "card", "datasetId": "'
            + dataset_id.encode()
            + b'", "table": "RealTimeData", "fields": ["temperature"], '
            b'"thresholds": [{"value": 1e999, "color": "#ffffff"}]}]}'
        )
        response = api.post(
            "/api/dashboards", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        return
    response = api.post("/api/dashboards", json={"name": "x", "tiles": [tile]})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


def test_line_tiles_plot_numbers_only(api: httpx.Client, dataset_id: str) -> None:
    tile = card(dataset_id, type="line", fields=["name"])
    response = api.post("/api/dashboards", json={"name": "x", "tiles": [tile]})
    assert response.status_code == 400
    assert "plots numbers; 'name' is String" in response.json()["error"]["message"]


def test_malformed_and_oversized_bodies(api: httpx.Client) -> None:
    bad = api.post(
        "/api/dashboards", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]["message"]
    assert api.post("/api/dashboards", json=[]).status_code == 400
    assert api.post("/api/dashboards", json={"name": ""}).status_code == 400
    huge = api.post("/api/dashboards", json={"name": "x", "tiles": [], "pad": "x" * 300_000})
    assert huge.status_code == 413


def test_dashboards_need_the_token(pbistream_server: RunningServer) -> None:
    with httpx.Client(base_url=pbistream_server.url) as anonymous:
        assert anonymous.get("/api/dashboards").status_code == 401
        assert anonymous.post("/api/dashboards", json={"name": "x"}).status_code == 401


# --- /series ----------------------------------------------------------------------------


def test_series_returns_raw_points_when_they_fit(
    pbistream_server: RunningServer, api: httpx.Client, dataset_id: str
) -> None:
    url = pbistream_server.push_url(dataset_id)
    assert url is not None
    rows = [{"temperature": float(i), "count": i, "ok": i % 2 == 0} for i in range(20)]
    assert httpx.post(url, json=rows).status_code == 200
    series = api.get(
        f"/api/datasets/{dataset_id}/series",
        params={"field": ["temperature", "ok"], "since": time.time() - 60, "points": 100},
    ).json()
    assert series["downsampled"] is False
    assert [v for _, v in series["series"]["temperature"]] == [float(i) for i in range(20)]
    assert [v for _, v in series["series"]["ok"]][:3] == [1.0, 0.0, 1.0]
    assert series["lastId"] is not None


def test_series_downsamples_on_the_server_keeping_extremes(
    pbistream_server: RunningServer, api: httpx.Client, dataset_id: str
) -> None:
    url = pbistream_server.push_url(dataset_id)
    assert url is not None
    values = [math.sin(i / 50) for i in range(3000)]
    values[1234] = 99.0  # one spike the downsampled line must still show
    with httpx.Client() as pusher:
        for start in range(0, 3000, 1000):
            chunk = [{"temperature": v} for v in values[start : start + 1000]]
            assert pusher.post(url, json=chunk).status_code == 200
    series = api.get(
        f"/api/datasets/{dataset_id}/series",
        params={"field": "temperature", "since": time.time() - 60, "points": 200},
    ).json()
    points = series["series"]["temperature"]
    assert series["downsampled"] is True
    assert series["rawCount"]["temperature"] == 3000
    assert len(points) <= 200
    assert max(v for _, v in points) == 99.0
    assert min(v for _, v in points) == pytest.approx(min(values))


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"field": "name"}, 400, "not a number or boolean column"),
        ({}, 400, "'field'"),
        ({"field": "temperature", "points": "1"}, 400, "'points'"),
        ({"field": "temperature", "points": "\u00b2"}, 400, "'points'"),
        ({"field": "temperature", "since": "soon"}, 400, "'since'"),
        ({"field": "temperature", "since": "10", "until": "5"}, 400, "'since' must not"),
        ({"field": "temperature", "table": "Nope"}, 400, "no table 'Nope'"),
    ],
)
def test_series_rejects_bad_parameters(
    api: httpx.Client, dataset_id: str, params: dict[str, str], status: int, message: str
) -> None:
    response = api.get(f"/api/datasets/{dataset_id}/series", params=params)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_series_of_unknown_dataset_is_404(api: httpx.Client) -> None:
    response = api.get("/api/datasets/nope/series", params={"field": "x"})
    assert response.status_code == 404


# --- the downsampler itself ---------------------------------------------------------------


def test_downsample_keeps_order_bounds_and_every_bucket_extreme() -> None:
    rng = random.Random(7)
    points = [(float(i), rng.uniform(-10, 10)) for i in range(10_000)]
    out = downsample_minmax(points, 500)
    assert len(out) <= 500
    assert [t for t, _ in out] == sorted(t for t, _ in out)
    assert max(v for _, v in out) == max(v for _, v in points)
    assert min(v for _, v in out) == min(v for _, v in points)
    assert set(out) <= set(points)


def test_downsample_leaves_small_series_alone() -> None:
    points = [(1.0, 2.0), (2.0, 3.0)]
    assert downsample_minmax(points, 10) == points


# --- fuzz: no body or query makes the dashboard endpoints fail with a 5xx -----------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
_tile_keys = st.sampled_from(
    [
        "id",
        "type",
        "title",
        "datasetId",
        "table",
        "fields",
        "x",
        "y",
        "w",
        "h",
        "min",
        "max",
        "target",
        "thresholds",
        "rows",
        "axis",
        "windowSeconds",
        "unit",
        "decimals",
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tile=st.dictionaries(_tile_keys, _json, max_size=12),
    kind=st.sampled_from(["card", "line", "bar", "column", "gauge", "table", "x"]),
    body=_json,
)
def test_fuzzed_dashboards_never_get_a_5xx(
    api: httpx.Client, dataset_id: str, tile: dict[str, Any], kind: str, body: Any
) -> None:
    tile = {
        "id": "f",
        "type": kind,
        "datasetId": dataset_id,
        "table": "RealTimeData",
        "fields": ["temperature"],
    } | tile
    for payload in ({"name": "fuzz", "tiles": [tile]}, body):
        response = api.post("/api/dashboards", json=payload)
        assert response.status_code in (201, 400, 413), response.text
        if response.status_code == 201:
            api.delete(f"/api/dashboards/{response.json()['id']}")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.dictionaries(
        st.sampled_from(["table", "field", "since", "until", "points"]), st.text(max_size=12)
    )
)
def test_fuzzed_series_queries_never_get_a_5xx(
    api: httpx.Client, dataset_id: str, params: dict[str, str]
) -> None:
    response = api.get(f"/api/datasets/{dataset_id}/series", params=params)
    assert response.status_code in (200, 400), response.text


# --- /api/live: one feed for many datasets ----------------------------------------------


def read_events(lines: Any, count: int) -> list[tuple[str, str, Any]]:
    """The next ``count`` events (id, event, data) from an SSE line iterator."""
    events: list[tuple[str, str, Any]] = []
    event_id, event, data = "", "", ""
    for line in lines:
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            events.append((event_id, event, orjson.loads(data)))
            event_id, event, data = "", "", ""
            if len(events) == count:
                return events
    raise AssertionError(f"the stream ended after {events}")


def test_one_live_feed_follows_several_datasets_and_resumes(
    pbistream_server: RunningServer,
) -> None:
    a = pbistream_server.create_dataset({"v": "Number"}, name="a")
    b = pbistream_server.create_dataset({"w": "Number"}, name="b")
    assert httpx.post(a["push_url"], json=[{"v": 1}, {"v": 2}]).status_code == 200
    assert httpx.post(b["push_url"], json=[{"w": 3}]).status_code == 200
    params = [("dataset", a["id"]), ("dataset", "no-such-dataset"), ("dataset", b["id"])]
    with pbistream_server.client(timeout=httpx.Timeout(10.0)) as api:
        with api.stream("GET", "/api/live", params=[*params, ("cursor", "0.0.0")]) as live:
            assert live.status_code == 200
            lines = live.iter_lines()
            events = read_events(lines, 3)
            # The datasets replay concurrently: their events may come in either order.
            gone = next(e for e in events if e[1] == "deleted")
            assert gone[2] == {"dataset": "no-such-dataset"}
            replayed = {e[2]["dataset"]: e for e in events if e[1] == "rows"}
            assert [r["data"] for r in replayed[a["id"]][2]["rows"]] == [{"v": 1}, {"v": 2}]
            assert [r["data"] for r in replayed[b["id"]][2]["rows"]] == [{"w": 3}]
            a_id = replayed[a["id"]][2]["rows"][-1]["id"]
            b_id = replayed[b["id"]][2]["rows"][-1]["id"]
            # The last event's id holds every dataset's cursor, in the order they were asked.
            assert events[-1][0] == f"{a_id}.0.{b_id}"
            assert httpx.post(b["push_url"], json=[{"w": 4}]).status_code == 200
            (live_event,) = read_events(lines, 1)
            assert live_event[2]["rows"][0]["data"] == {"w": 4}
            resume = live_event[0]
        # Reconnecting with Last-Event-ID replays nothing already seen.
        assert httpx.post(a["push_url"], json=[{"v": 5}]).status_code == 200
        headers = {"Last-Event-ID": resume}
        with api.stream("GET", "/api/live", params=params, headers=headers) as live:
            gone, replayed = read_events(live.iter_lines(), 2)
            assert [r["data"] for r in replayed[2]["rows"]] == [{"v": 5}]


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "'dataset'"), ("dataset=x&cursor=1.2", "'cursor'"), ("dataset=x&cursor=a", "'cursor'")],
)
def test_live_many_rejects_bad_queries(api: httpx.Client, query: str, message: str) -> None:
    response = api.get(f"/api/live?{query}")
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_series_can_plot_against_a_datetime_field(
    pbistream_server: RunningServer, api: httpx.Client
) -> None:
    fields = {"ts": "DateTime", "v": "Number", "label": "Text"}
    dataset = pbistream_server.create_dataset(fields, mode="PushStreaming", name="timed")
    # One request, three readings taken a second apart (and one out of order).
    rows = [
        {"ts": "2026-01-01T00:00:02Z", "v": 2},
        {"ts": "2026-01-01T00:00:00Z", "v": 0},
        {"ts": "2026-01-01T00:00:01Z", "v": 1},
        {"v": 9},  # no timestamp: not plotted
    ]
    assert httpx.post(dataset["push_url"], json=rows).status_code == 200
    query = {"field": "v", "time": "ts", "since": time.time() - 60}
    series = api.get(f"/api/datasets/{dataset['id']}/series", params=query).json()
    assert series["time"] == "ts"
    start = 1767225600.0  # 2026-01-01T00:00:00Z
    assert series["series"]["v"] == [[start, 0.0], [start + 1, 1.0], [start + 2, 2.0]]

    bad = api.get(f"/api/datasets/{dataset['id']}/series", params=query | {"time": "label"})
    assert bad.status_code == 400
    assert "'time': 'label' is not a DateTime column" in bad.json()["error"]["message"]
    line = {"id": "l", "type": "line", "datasetId": dataset["id"], "table": "RealTimeData"}
    ok = api.post(
        "/api/dashboards",
        json={"name": "t", "tiles": [line | {"fields": ["v"], "timeField": "ts"}]},
    )
    assert ok.status_code == 201 and ok.json()["tiles"][0]["timeField"] == "ts"
    wrong = api.post(
        "/api/dashboards", json={"name": "t", "tiles": [line | {"fields": ["v"], "timeField": "v"}]}
    )
    assert wrong.status_code == 400
    assert "tiles[0].timeField" in wrong.json()["error"]["message"]


def test_overlapping_tiles_are_moved_down_not_refused(api: httpx.Client, dataset_id: str) -> None:
    tiles = [
        card(dataset_id, id="a", x=0, y=0, w=6, h=2),
        card(dataset_id, id="b", x=4, y=1, w=4, h=2),  # overlaps a: moves below it
        card(dataset_id, id="c", x=8, y=0, w=4, h=2),  # beside a: stays
    ]
    saved = api.post("/api/dashboards", json={"name": "grid", "tiles": tiles}).json()["tiles"]
    assert [(t["id"], t["x"], t["y"]) for t in saved] == [("a", 0, 0), ("b", 4, 2), ("c", 8, 0)]


def test_a_window_past_the_scan_budget_draws_its_newest_rows(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pbistream.schema import Dataset, Mode, Retention, Table
    from pbistream.server.ui import series as ui_series
    from pbistream.storage import open_storage

    monkeypatch.setattr(ui_series, "MAX_SCAN_ROWS", 1000)
    storage = open_storage(str(tmp_path / "data"))
    try:
        table = Table.from_json({"name": "T", "columns": [{"name": "v", "dataType": "Double"}]})
        storage.create_dataset(Dataset("d", "d", Mode.PUSH, Retention.NONE, [table]))
        for second in range(30):  # 100 rows a second for 30 seconds
            rows = [{"v": float(second)}] * 100
            storage.insert_rows("d", "T", rows, received_at=1000.0 + second)
        body = ui_series._read_series(storage, "d", "T", ["v"], 1000.0, 1030.0, 50)
    finally:
        storage.close()
    values = [v for _, v in body["series"]["v"]]
    assert body["truncated"] is True
    assert max(values) == 29.0  # the newest second is drawn, not only the oldest ten
    assert body["rawCount"]["v"] <= 1000


def test_many_fields_share_one_scan_budget(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten fields of a million rows each would keep over a gigabyte of points."""
    from pbistream.schema import Dataset, Mode, Retention, Table
    from pbistream.server.ui import series as ui_series
    from pbistream.storage import open_storage

    monkeypatch.setattr(ui_series, "MAX_SCAN_VALUES", 1000)
    names = ["a", "b", "c", "d"]
    storage = open_storage(str(tmp_path / "data"))
    try:
        columns = [{"name": n, "dataType": "Double"} for n in names]
        table = Table.from_json({"name": "T", "columns": columns})
        storage.create_dataset(Dataset("d", "d", Mode.PUSH, Retention.NONE, [table]))
        for second in range(9):  # 900 rows: within one field's budget, not four's
            rows = [dict.fromkeys(names, float(second))] * 100
            storage.insert_rows("d", "T", rows, received_at=1000.0 + second)
        one = ui_series._read_series(storage, "d", "T", ["a"], 1000.0, 1010.0, 50)
        four = ui_series._read_series(storage, "d", "T", names, 1000.0, 1010.0, 50)
    finally:
        storage.close()
    assert one["truncated"] is False and one["rawCount"]["a"] == 900
    assert four["truncated"] is True
    assert sum(four["rawCount"].values()) <= 1000  # 250 rows of four fields
    assert max(v for _, v in four["series"]["d"]) == 8.0  # still the newest rows


def test_series_scans_take_turns(server_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """However many charts ask at once, at most MAX_CONCURRENT_SCANS scans hold memory."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from pbistream.server.ui import series as ui_series

    server = server_factory()
    dataset_id = server.create_dataset({"v": "Number"}, mode="Push")["id"]
    active, peak = 0, 0
    lock = threading.Lock()
    overlap = threading.Event()
    real_scan = ui_series._scan

    def counting_scan(*args: Any) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active > ui_series.MAX_CONCURRENT_SCANS:
                overlap.set()
        try:
            overlap.wait(0.3)  # hold the slot a moment so that scans would overlap
            return real_scan(*args)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(ui_series, "_scan", counting_scan)
    url = f"/api/datasets/{dataset_id}/series?field=v&since=0"
    with (
        httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as api,
        ThreadPoolExecutor(6) as pool,
    ):
        answers = list(pool.map(lambda _: api.get(url), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert 1 <= peak <= ui_series.MAX_CONCURRENT_SCANS
