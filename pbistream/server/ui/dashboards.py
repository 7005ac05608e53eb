"""Dashboards kept on the server: ``/api/dashboards`` create, list, read, replace, delete.

The documents are checked by :mod:`pbistream.server.ui.tiles` and stored through the
Storage protocol, so dashboards survive a restart and are shared by every browser.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.schema import Dataset
from pbistream.server.auth import principal_of
from pbistream.server.errors import BadRequest, EntityNotFound
from pbistream.server.ui.http import api_endpoint, json_response, read_json_body
from pbistream.server.ui.tiles import DashboardError, validate_dashboard
from pbistream.storage.base import Dashboard, Storage

__all__ = ["MAX_BODY_BYTES", "MAX_DASHBOARDS", "routes"]

#: A dashboard document is small; 256 KB is ample for 60 tiles with long titles.
MAX_BODY_BYTES = 256 * 1024
#: More dashboards than anyone can look at; a cap keeps a runaway script in check.
MAX_DASHBOARDS = 200


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """The wire form of a saved dashboard."""
    return {
        "id": dashboard.id,
        "name": dashboard.name,
        "tiles": dashboard.tiles,
        "createdAt": dashboard.created_at,
        "updatedAt": dashboard.updated_at,
    }


async def _checked(request: Request, storage: Storage) -> tuple[str, list[dict[str, Any]]]:
    body = await read_json_body(request, MAX_BODY_BYTES)
    principal = principal_of(request)

    def get_dataset(dataset_id: str) -> Dataset | None:
        # A token limited to some datasets sees no others: a tile on one is refused,
        # or a link on this dashboard would read a dataset the token cannot.
        if principal is not None and not principal.allows_dataset(dataset_id):
            return None
        return storage.get_dataset(dataset_id)

    try:
        return await run_in_threadpool(validate_dashboard, body, get_dataset)
    except DashboardError as exc:
        raise BadRequest(str(exc), code="InvalidDashboard") from None


async def _existing(request: Request, storage: Storage) -> Dashboard:
    dashboard_id = request.path_params["dashboard_id"]
    found = await run_in_threadpool(storage.get_dashboard, dashboard_id)
    if found is None:
        raise EntityNotFound(f"No dashboard with id {dashboard_id!r}.")
    return found


@api_endpoint
async def collection(request: Request) -> Response:
    """``GET /api/dashboards`` lists; ``POST`` creates (201 with the saved document)."""
    storage: Storage = request.app.state.storage
    if request.method == "GET":
        found = await run_in_threadpool(storage.list_dashboards)
        return json_response({"value": [dashboard_json(d) for d in found]})
    name, tiles = await _checked(request, storage)
    if len(await run_in_threadpool(storage.list_dashboards)) >= MAX_DASHBOARDS:
        raise BadRequest(
            f"At most {MAX_DASHBOARDS} dashboards; delete one first.", code="TooManyDashboards"
        )
    now = time.time()
    dashboard = Dashboard(str(uuid.uuid4()), name, tiles, now, now)
    await run_in_threadpool(storage.save_dashboard, dashboard)
    return json_response(dashboard_json(dashboard), status_code=201)


@api_endpoint
async def item(request: Request) -> Response:
    """``GET``, ``PUT`` (replace name and tiles) or ``DELETE`` one dashboard."""
    storage: Storage = request.app.state.storage
    dashboard = await _existing(request, storage)
    if request.method == "GET":
        return json_response(dashboard_json(dashboard))
    if request.method == "DELETE":
        await run_in_threadpool(storage.delete_dashboard, dashboard.id)
        return Response(status_code=204)
    dashboard.name, dashboard.tiles = await _checked(request, storage)
    dashboard.updated_at = time.time()
    await run_in_threadpool(storage.save_dashboard, dashboard)
    return json_response(dashboard_json(dashboard))


routes: list[BaseRoute] = [
    Route("/api/dashboards", collection, methods=["GET", "POST"]),
    Route("/api/dashboards/{dashboard_id}", item, methods=["GET", "PUT", "DELETE"]),
]
