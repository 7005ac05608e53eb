"""``/metrics``: the Prometheus text format, checked with the reference parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pbistream.server.metrics import Metrics, escape_label, render


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
