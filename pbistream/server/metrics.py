"""``GET /metrics``: the server's counters in the Prometheus text format (version 0.0.4).

:class:`Metrics` holds the counters (thread-safe: ingest runs partly in worker
threads); :class:`MetricsMiddleware` counts every HTTP request by method, route
*template* and status (never the raw path, so no dataset id or key reaches a
label); :func:`render` writes the exposition text. Written by hand: the format is
small and a dependency would buy nothing.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DURATION_BUCKETS", "Metrics", "MetricsMiddleware", "render", "routes"]

# Seconds. Pushes answer in about a millisecond; a 10,000-row post in tens of ms.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
UNMATCHED_ROUTE = "<unmatched>"
# Any token is a valid HTTP method: a client inventing new ones must not grow the
# label set (and memory) without bound, so the rest are counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The server's counters; every method is cheap and thread-safe."""

    def __init__(self, *, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._buckets = tuple(sorted(buckets))
        self._requests: dict[tuple[str, str, str], int] = {}
        # route -> (per-bucket counts, sum, count); buckets are not cumulative here.
        self._durations: dict[str, tuple[list[int], float, int]] = {}
        self._rows_ingested = 0
        self._throttled: dict[str, int] = {}
        self._rows_ignored: dict[tuple[str, str], int] = {}
        self.started_at = time.time()

    def rows_ingested(self, n: int) -> None:
        """Count rows committed to storage."""
        with self._lock:
            self._rows_ingested += n

    def rows_ignored(self, dataset_id: str, table: str, n: int) -> None:
        """Count rows answered 200 but skipped (a sequence number not above the table's)."""
        with self._lock:
            key = (dataset_id, table)
            self._rows_ignored[key] = self._rows_ignored.get(key, 0) + n

    def throttled(self, reason: str) -> None:
        """Count one request refused by a limit (``reason`` is the limit's short name)."""
        with self._lock:
            self._throttled[reason] = self._throttled.get(reason, 0) + 1

    def request(self, method: str, route: str, status: int) -> None:
        """Count one answered HTTP request."""
        key = (method, route, str(status))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    def observe_duration(self, route: str, seconds: float) -> None:
        """Record how long one request took to answer, in the duration histogram."""
        index = bisect.bisect_left(self._buckets, seconds)  # first bound >= seconds
        with self._lock:
            counts, total, count = self._durations.get(route) or ([0] * len(self._buckets), 0.0, 0)
            if index < len(counts):
                counts[index] += 1
            self._durations[route] = (counts, total + seconds, count + 1)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter (for rendering and tests)."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "durations": {r: (list(c), s, n) for r, (c, s, n) in self._durations.items()},
                "rows_ingested": self._rows_ingested,
                "throttled": dict(self._throttled),
                "rows_ignored": dict(self._rows_ignored),
                "buckets": self._buckets,
            }


def escape_label(value: str) -> str:
    """Escape a label value as the text format requires (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{escape_label(value)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    # HELP text escapes only backslash and newline.
    lines.append(f"# HELP {name} " + help_text.replace("\\", "\\\\").replace("\n", "\\n"))
    lines.append(f"# TYPE {name} {kind}")


def render(metrics: Metrics, *, storage_bytes: int | None, live_subscribers: int) -> str:
    """The Prometheus text exposition of every metric.

    Args:
        metrics: The counters.
        storage_bytes: ``storage.size_bytes()``, or None if it could not be read.
        live_subscribers: Open live-feed streams.

    Returns:
        The exposition text, ending with a newline.
    """
    snap = metrics.snapshot()
    lines: list[str] = []

    _family(
        lines,
        "pbistream_http_requests_total",
        "counter",
        "HTTP requests answered, by method, route template and status.",
    )
    for (method, route, status), count in sorted(snap["requests"].items()):
        labels = _labels((("method", method), ("route", route), ("status", status)))
        lines.append(f"pbistream_http_requests_total{labels} {count}")

    _family(
        lines,
        "pbistream_http_request_duration_seconds",
        "histogram",
        "Time to answer an HTTP request (live feeds excluded), by route template.",
    )
    buckets: tuple[float, ...] = snap["buckets"]
    for route, (counts, total, count) in sorted(snap["durations"].items()):
        cumulative = 0
        for bound, n in zip(buckets, counts, strict=True):
            cumulative += n
            labels = _labels((("route", route), ("le", _number(bound))))
            lines.append(f"pbistream_http_request_duration_seconds_bucket{labels} {cumulative}")
        labels = _labels((("route", route), ("le", "+Inf")))
        lines.append(f"pbistream_http_request_duration_seconds_bucket{labels} {count}")
        route_label = _labels((("route", route),))
        lines.append(f"pbistream_http_request_duration_seconds_sum{route_label} {_number(total)}")
        lines.append(f"pbistream_http_request_duration_seconds_count{route_label} {count}")

    _family(lines, "pbistream_rows_ingested_total", "counter", "Rows committed to storage.")
    lines.append(f"pbistream_rows_ingested_total {snap['rows_ingested']}")

    _family(
        lines,
        "pbistream_throttled_total",
        "counter",
        "Requests refused by a Power BI limit, by the limit's name.",
    )
    for reason, count in sorted(snap["throttled"].items()):
        lines.append(f"pbistream_throttled_total{_labels((('reason', reason),))} {count}")

    _family(
        lines,
        "pbistream_rows_ignored_total",
        "counter",
        "Rows answered 200 but not stored: their sequence number was not above the "
        "table's last one (the answer carried X-PBIStream-Rows-Ignored).",
    )
    for (dataset_id, table), count in sorted(snap["rows_ignored"].items()):
        labels = _labels((("dataset", dataset_id), ("table", table)))
        lines.append(f"pbistream_rows_ignored_total{labels} {count}")

    _family(lines, "pbistream_storage_bytes", "gauge", "Bytes the storage backend uses on disk.")
    if storage_bytes is not None:
        lines.append(f"pbistream_storage_bytes {storage_bytes}")

    _family(lines, "pbistream_live_subscribers", "gauge", "Open live-feed (SSE) streams.")
    lines.append(f"pbistream_live_subscribers {live_subscribers}")

    _family(lines, "pbistream_start_time_seconds", "gauge", "When the server started (epoch).")
    lines.append(f"pbistream_start_time_seconds {_number(metrics.started_at)}")
    return "\n".join(lines) + "\n"


def _template_of(route: object) -> str | None:
    if isinstance(route, Mount):
        return route.path + "/{path}"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/datasets/{dataset_id}``), never the raw path.

    The router records the route it picked in ``scope["route"]``; a request refused
    before routing (401 by the auth middleware) is matched here against the app's
    routes, so its label is the template too. Anything else is ``<unmatched>``.
    """
    found = _template_of(scope.get("route"))
    if found is not None:
        return found
    routes: list[BaseRoute] = getattr(scope.get("app"), "routes", None) or []
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return _template_of(route) or UNMATCHED_ROUTE
        if match is Match.PARTIAL and partial is None:
            partial = _template_of(route)
    return partial or UNMATCHED_ROUTE


class MetricsMiddleware:
    """Pure ASGI middleware counting every HTTP request (finds ``app.state.metrics`` per request).

    The request counter is bumped when the response starts, so a long-lived live
    feed is counted at once; its duration is not observed (it would swamp the
    histogram). An exception before the response starts counts as a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = scope.get("app")
        metrics = getattr(getattr(app, "state", None), "metrics", None)
        if not isinstance(metrics, Metrics):
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        method = str(scope.get("method", "GET"))
        if method not in KNOWN_METHODS:
            method = "other"
        # The template is looked up once, when the response starts (routing is done).
        route = ""
        streaming = False
        done = False

        async def counting_send(message: Message) -> None:
            nonlocal route, streaming, done
            if message["type"] == "http.response.start":
                route = route_template(scope)
                metrics.request(method, route, int(message["status"]))
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        streaming = True
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body")
                and not streaming
                and not done
            ):
                done = True
                metrics.observe_duration(route, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:  # not cancellation: a client that went away is no server error
            if not route:  # failed before answering: the error handler outside says 500
                route = route_template(scope)
                metrics.request(method, route, 500)
                metrics.observe_duration(route, time.perf_counter() - started)
            raise


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the Prometheus exposition (Bearer token or session cookie)."""
    # Imported here: the server modules import this one to build the app.
    from pbistream.server.auth import is_authorized
    from pbistream.server.errors import NotAuthorized

    if not is_authorized(request):
        raise NotAuthorized("Send 'Authorization: Bearer <token>'.")
    state = request.app.state
    metrics: Metrics = state.metrics
    storage = state.storage
    try:
        size: int | None = await anyio.to_thread.run_sync(storage.size_bytes)
    except Exception:  # a backend hiccup must not hide every other metric
        size = None
    hub = getattr(state, "hub", None)
    subscribers = hub.subscriber_count if hub is not None else 0
    body = render(metrics, storage_bytes=size, live_subscribers=subscribers)
    # Other parts of the server (alerts) add their own families without this module
    # importing them.
    for extra in getattr(state, "metrics_extras", ()):
        body += extra()
    return Response(body, media_type=CONTENT_TYPE)


routes: list[BaseRoute] = [Route("/metrics", metrics_endpoint, methods=["GET"])]
