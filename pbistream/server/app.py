"""``create_app(settings, storage)``: the Starlette app, its routes, middleware and lifespan.

Nothing happens at import time: tests and the pytest plugin build as many isolated
apps as they like. The middleware, outermost first:

1. :class:`LiberalRequests`: collapses duplicate slashes and drops a trailing one
   on API paths (Power BI accepts both),
   stamps a ``RequestId`` header on every response, and writes our own access-log
   line with every URL redacted (uvicorn's access log is off: it would print keys).
2. ``metrics.MetricsMiddleware``: counts requests per method, route template, status.
3. :class:`~pbistream.server.access.enforce.AuthMiddleware`: the caller's token and
   role (THE role table, :mod:`pbistream.server.roles`), except on public paths.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pbistream.forwarding import ForwardStates
from pbistream.redact import mask_known, redact_url
from pbistream.server import (
    api,
    auth,
    execute_queries,
    forward_api,
    groups,
    live,
    metrics,
    openapi,
    powerbi,
    push,
    rest,
)
from pbistream.server.access import enforce, gate, links, tokens
from pbistream.server.alerts import routes as alert_routes
from pbistream.server.alerts.exposition import render_alerts
from pbistream.server.alerts.service import AlertService
from pbistream.server.errors import PbiJSONResponse, exception_handlers
from pbistream.server.housekeeping import run_housekeeping
from pbistream.server.log_secrets import request_secrets
from pbistream.server.settings import Settings
from pbistream.server.storage_full import StorageFullGuard, StorageFullMonitor
from pbistream.server.throttle import Throttle
from pbistream.server.ui import routes as dashboard
from pbistream.storage.base import Storage

__all__ = ["LiberalRequests", "create_app"]

access_logger = logging.getLogger("pbistream.access")
_DUPLICATE_SLASHES = re.compile(r"/{2,}")
_DUPLICATE_SLASHES_BYTES = re.compile(rb"/{2,}")
_API_PREFIXES = ("/v1.0/", "/beta/")


class LiberalRequests:
    """Collapse ``//`` (and a trailing ``/`` on API paths), add ``RequestId``, log one line.

    Args:
        app: The wrapped ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        # A trailing slash on a Power BI API path would otherwise be a 307 redirect,
        # which most HTTP clients do not follow for POST.
        trailing = path.endswith("/") and path.startswith(_API_PREFIXES) and len(path) > 1
        if "//" in path or trailing:
            scope = dict(scope)
            path = _DUPLICATE_SLASHES.sub("/", path)
            scope["path"] = path.rstrip("/") if trailing else path
            raw = scope.get("raw_path")
            if isinstance(raw, bytes):
                raw = _DUPLICATE_SLASHES_BYTES.sub(b"/", raw)
                scope["raw_path"] = raw.rstrip(b"/") if trailing else raw
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        # Shared with every layer below, so a handler can note secrets to mask here.
        scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"requestid", request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_logger.isEnabledFor(logging.INFO):
                query = scope.get("query_string", b"").decode("latin-1")
                target = scope["path"] + (f"?{query}" if query else "")
                client = scope.get("client") or ("-", 0)
                access_logger.info(
                    '%s "%s %s" %d %.1fms %s',
                    client[0],
                    scope.get("method", "-"),
                    mask_known(redact_url(target), request_secrets(scope)),
                    status,
                    (time.perf_counter() - started) * 1000,
                    request_id,
                )


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 once the server answers (no token needed)."""
    return PbiJSONResponse({"status": "ok"})


def create_app(settings: Settings, storage: Storage) -> Starlette:
    """Build the server app on ``storage``.

    Without ``settings.token`` the token kept (hashed) in storage is used, generated at
    first start; ``app.state.settings.token`` holds the token when it is known (given,
    or generated just now: ``app.state.token_generated``, print it once), else None.
    ``app.state.access`` resolves every token and link (:mod:`pbistream.server.access`).

    Args:
        settings: The server's settings.
        storage: Where datasets and rows live; the app does not close it.
    """
    token, generated = auth.resolve_token(settings, storage)
    settings = settings.replace(token=token)
    hub = live.LiveHub()
    app_metrics = metrics.Metrics()
    alerts = AlertService(storage)
    storage_full = StorageFullMonitor()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run_housekeeping, storage, settings, storage_full)
            await anyio.to_thread.run_sync(alerts.start)
            tasks.start_soon(alerts.deliver_forever)
            try:
                yield
            finally:
                hub.close()
                await anyio.to_thread.run_sync(alerts.close)
                tasks.cancel_scope.cancel()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        *rest.routes,
        *groups.routes,
        *push.routes,
        *api.routes,
        *openapi.routes,
        *metrics.routes,
        *dashboard.routes,
        *tokens.routes,
        *links.routes,
        *alert_routes.routes,
        *powerbi.routes,
        *execute_queries.routes,
        *forward_api.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(LiberalRequests),
            Middleware(metrics.MetricsMiddleware),
            Middleware(enforce.AuthMiddleware, public=dashboard.PUBLIC_PATHS),
            Middleware(StorageFullGuard, monitor=storage_full),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.storage = storage
    app.state.hub = hub
    app.state.metrics = app_metrics
    app.state.alerts = alerts
    app.state.metrics_extras = [lambda: render_alerts(alerts)]
    app.state.storage_full = storage_full
    app.state.throttle = Throttle(settings, on_throttled=app_metrics.throttled, storage=storage)
    app.state.tenant_id = api.tenant_id(storage)
    app.state.token_generated = generated
    app.state.query_rate = execute_queries.QueryRate()
    # A generated token is checked through its hash in storage, like a kept one, so
    # `pbistream token rotate` on the data dir takes effect without a restart.
    app.state.access = gate.Access(storage, None if generated else token)
    # Forwarders (started by `pbistream serve`, outside the server) post their state here.
    app.state.forward_states = forward_states = ForwardStates()
    app.state.metrics_extras.append(lambda: forward_api.forward_metrics(forward_states))
    return app
