"""``/metrics``: the Prometheus text format, checked with the reference parser."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pbistream.server.metrics import Metrics, escape_label, render
from pbistream.testing import RunningServer


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_render_parses_with_every_family_typed() -> None:
    metrics = Metrics()
    metrics.request("POST", "/beta/{workspace_id}/datasets/{dataset_id}/rows", 200)
    metrics.request("POST", "/beta/{workspace_id}/datasets/{dataset_id}/rows", 200)
    metrics.request("GET", "/api/datasets", 401)
    metrics.rows_ingested(10_000)
    metrics.rows_ingested(5)
    metrics.throttled("posts_per_minute")
    metrics.observe_duration("/api/datasets", 0.003)
    metrics.observe_duration("/api/datasets", 42.0)  # beyond the last bucket: only +Inf
    text = render(metrics, storage_bytes=12345, live_subscribers=3)

    families = _families(text)
    assert families["pbistream_http_requests"] == "counter"
    assert families["pbistream_rows_ingested"] == "counter"
    assert families["pbistream_throttled"] == "counter"
    assert families["pbistream_storage_bytes"] == "gauge"
    assert families["pbistream_live_subscribers"] == "gauge"
    assert families["pbistream_http_request_duration_seconds"] == "histogram"

    s = _samples(text)
    route = "/beta/{workspace_id}/datasets/{dataset_id}/rows"
    key = (("method", "POST"), ("route", route), ("status", "200"))
    assert s[("pbistream_http_requests_total", key)] == 2
    assert s[("pbistream_rows_ingested_total", ())] == 10_005
    assert s[("pbistream_throttled_total", (("reason", "posts_per_minute"),))] == 1
    assert s[("pbistream_storage_bytes", ())] == 12345
    assert s[("pbistream_live_subscribers", ())] == 3
    bucket = "pbistream_http_request_duration_seconds_bucket"
    assert s[(bucket, (("le", "0.0025"), ("route", "/api/datasets")))] == 0
    assert s[(bucket, (("le", "0.005"), ("route", "/api/datasets")))] == 1
    assert s[(bucket, (("le", "10.0"), ("route", "/api/datasets")))] == 1
    assert s[(bucket, (("le", "+Inf"), ("route", "/api/datasets")))] == 2
    count = ("pbistream_http_request_duration_seconds_count", (("route", "/api/datasets"),))
    assert s[count] == 2
    total = ("pbistream_http_request_duration_seconds_sum", (("route", "/api/datasets"),))
    assert s[total] == pytest.approx(42.003)


def test_label_values_are_escaped() -> None:
    nasty = 'a"b\\c\nd'
    assert escape_label(nasty) == 'a\\"b\\\\c\\nd'
    metrics = Metrics()
    metrics.throttled(nasty)
    s = _samples(render(metrics, storage_bytes=None, live_subscribers=0))
    assert s[("pbistream_throttled_total", (("reason", nasty),))] == 1
    # No storage size is better than a made-up one when the backend cannot say.
    assert not any(name == "pbistream_storage_bytes" for name, _ in s)


def test_counters_are_thread_safe() -> None:
    import threading

    metrics = Metrics()

    def work() -> None:
        for _ in range(2000):
            metrics.rows_ingested(1)
            metrics.request("GET", "/x", 200)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = metrics.snapshot()
    assert snap["rows_ingested"] == 8000
    assert snap["requests"][("GET", "/x", "200")] == 8000


# --- /metrics on a live server ------------------------------------------------------------


def test_metrics_over_http_use_route_templates_and_count_rows(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(posts_per_minute=3)
    created = server.create_dataset({"v": "Number"})
    push_url = created["push_url"]
    key = push_url.split("key=")[1]
    statuses = [
        httpx.post(push_url, json=[{"v": i}, {"v": i}], timeout=10).status_code for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]  # the fourth post in the minute is throttled
    with server.client(timeout=10) as api:
        assert api.get(f"/api/datasets/{created['id']}").status_code == 200
        assert api.get("/no/such/path/" + created["id"]).status_code == 404
        anonymous = httpx.get(f"{server.url}/api/datasets/{created['id']}", timeout=10)
        assert anonymous.status_code == 401
        response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    # No id, key or token anywhere in the exposition.
    for secret in (created["id"], key, server.token):
        assert secret not in text

    s = _samples(text)
    requests = {
        labels: value
        for (name, labels), value in s.items()
        if name == "pbistream_http_requests_total"
    }
    by_route = {
        (dict(k)["method"], dict(k)["route"], dict(k)["status"]): v for k, v in requests.items()
    }
    push_routes = sorted({r for (m, r, _) in by_route if m == "POST" and r.startswith("/beta/")})
    assert len(push_routes) == 1 and "{" in push_routes[0]
    push_route = push_routes[0]
    assert by_route[("POST", push_route, "200")] == 3
    assert by_route[("POST", push_route, "429")] == 1
    assert by_route[("GET", "/api/datasets/{dataset_id}", "200")] == 1
    assert by_route[("GET", "/api/datasets/{dataset_id}", "401")] == 1
    assert by_route[("GET", "<unmatched>", "404")] == 1
    assert s[("pbistream_rows_ingested_total", ())] == 6
    throttled = {
        dict(k)["reason"]: v for (n, k), v in s.items() if n == "pbistream_throttled_total"
    }
    assert sum(throttled.values()) == 1
    assert s[("pbistream_storage_bytes", ())] > 0
    assert s[("pbistream_live_subscribers", ())] == 0
    count = ("pbistream_http_request_duration_seconds_count", (("route", push_route),))
    assert s[count] == 4


def test_metrics_need_the_token(pbistream_server: RunningServer) -> None:
    response = httpx.get(f"{pbistream_server.url}/metrics", timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "PowerBINotAuthorizedException"


def test_middleware_counts_a_crash_as_500_under_its_route_template() -> None:
    import asyncio

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from pbistream.server.metrics import MetricsMiddleware

    async def boom(request: object) -> PlainTextResponse:
        raise RuntimeError("a bug")

    async def fine(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/items/{item_id}", boom), Route("/ok/{n}", fine)],
        middleware=[Middleware(MetricsMiddleware)],
    )
    app.state.metrics = Metrics()

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/items/secret-id")).status_code == 500
            assert (await client.get("/ok/1")).status_code == 200

            for verb in ("BREW", "WHEN", "BREW"):  # made-up methods share one label
                await client.request(verb, "/ok/2")

    asyncio.run(scenario())
    snap = app.state.metrics.snapshot()
    assert snap["requests"] == {
        ("GET", "/items/{item_id}", "500"): 1,
        ("GET", "/ok/{n}", "200"): 1,
        ("other", "/ok/{n}", "405"): 3,
    }
    assert snap["durations"]["/items/{item_id}"][2] == 1
