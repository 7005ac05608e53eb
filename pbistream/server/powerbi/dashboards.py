"""Power BI's Dashboards API over pbistream's own dashboards (the ones the web UI draws).

``GET .../dashboards`` (GetDashboards), ``GET .../dashboards/{id}`` (GetDashboard),
``POST .../dashboards`` (AddDashboard: a new empty dashboard, 200 with the dashboard),
``GET .../dashboards/{id}/tiles`` (GetTiles) and ``.../tiles/{tileId}`` (GetTile), under
``/v1.0/myorg`` (My workspace) and ``/groups/{groupId}``. They answer with Power BI's
shapes (``id``, ``displayName``, ``isReadOnly``, ``webUrl``, ``embedUrl``; a tile's
``id``, ``title``, ``rowSpan``, ``colSpan``, ``datasetId``, ``embedUrl``) and read and
write the same dashboards as ``/api/dashboards``: one added here opens in the web UI.

pbistream's dashboards have no workspace of their own; the workspace a dashboard was
added to through ``/groups/{groupId}`` is kept in one storage meta key
(``{"dashboard id": "group id"}``), so SQLite and PostgreSQL need no schema change.
Every other dashboard is in My workspace.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.server.errors import BadRequest, EntityNotFound, PbiJSONResponse
from pbistream.server.rest import _group_id, _json_body, _run, _settings, _storage
from pbistream.server.ui.dashboards import MAX_DASHBOARDS
from pbistream.server.ui.tiles import MAX_NAME_CHARS
from pbistream.storage.base import Dashboard, Storage

__all__ = ["dashboard_json", "routes_under", "tile_json"]

_META_KEY = "dashboard_workspaces"
# Guards the read-modify-write of the workspace map within this process.
_lock = threading.Lock()


def _workspaces(storage: Storage) -> dict[str, str]:
    raw = storage.get_meta(_META_KEY)
    found = orjson.loads(raw) if raw else {}
    return found if isinstance(found, dict) else {}


def _place(storage: Storage, dashboard_id: str, group_id: str) -> None:
    with _lock:
        workspaces = _workspaces(storage)
        workspaces[dashboard_id] = group_id
        storage.set_meta(_META_KEY, orjson.dumps(workspaces).decode())


def _site(request: Request) -> str:
    return (_settings(request).public_url or str(request.base_url)).rstrip("/")


def _api_root(request: Request) -> str:
    root = request.url.path.split("/dashboards", 1)[0]
    return f"{_site(request)}{root}"


def dashboard_json(dashboard: Dashboard, site: str) -> dict[str, Any]:
    """A dashboard as Power BI's Dashboards API shows it."""
    url = f"{site}/ui/#/dashboards/{dashboard.id}"
    return {
        "id": dashboard.id,
        "displayName": dashboard.name,
        "isReadOnly": False,
        "webUrl": url,
        "embedUrl": url,
    }


def tile_json(dashboard: Dashboard, tile: dict[str, Any], site: str) -> dict[str, Any]:
    """A tile as Power BI's GetTiles shows it (grid cells for rowSpan and colSpan)."""
    return {
        "id": tile["id"],
        "title": tile.get("title", ""),
        "embedUrl": f"{site}/ui/#/dashboards/{dashboard.id}",
        "embedData": "",
        "rowSpan": tile.get("h", 1),
        "colSpan": tile.get("w", 1),
        "datasetId": tile.get("datasetId", ""),
    }


def _in_workspace(dashboard: Dashboard, workspaces: dict[str, str], group: str | None) -> bool:
    return workspaces.get(dashboard.id) == group


async def _find(request: Request) -> Dashboard:
    storage = _storage(request)
    dashboard_id = request.path_params["dashboard_id"]
    found = await _run(storage.get_dashboard, dashboard_id)
    if found is None and dashboard_id.lower() != dashboard_id:
        found = await _run(storage.get_dashboard, dashboard_id.lower())  # GUIDs ignore case
    workspaces = await _run(_workspaces, storage)
    if found is None or not _in_workspace(found, workspaces, _group_id(request)):
        raise EntityNotFound(f"Dashboard {dashboard_id} was not found in this workspace.")
    return found


async def get_dashboards(request: Request) -> Response:
    """GetDashboards(InGroup): the workspace's dashboards, oldest first."""
    storage = _storage(request)
    found = await _run(storage.list_dashboards)
    workspaces = await _run(_workspaces, storage)
    group, site = _group_id(request), _site(request)
    mine = [dashboard_json(d, site) for d in found if _in_workspace(d, workspaces, group)]
    return PbiJSONResponse(
        {"@odata.context": f"{_api_root(request)}/$metadata#dashboards", "value": mine}
    )


async def get_dashboard(request: Request) -> Response:
    """GetDashboard(InGroup)."""
    dashboard = await _find(request)
    body = {"@odata.context": f"{_api_root(request)}/$metadata#dashboards/$entity"}
    return PbiJSONResponse(body | dashboard_json(dashboard, _site(request)))


async def add_dashboard(request: Request) -> Response:
    """AddDashboard(InGroup): ``{"name": ...}`` makes an empty dashboard; 200 with it."""
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object: {"name": "..."}.')
    for name in sorted(set(body) - {"name"}):
        raise BadRequest(
            "Bad Request",
            details=[
                {
                    "message": f"The property '{name}' does not exist on type "
                    "'Microsoft.PowerBI.ServiceContracts.Api.AddDashboardRequest'. Make sure "
                    "to only use property names that are defined by the type.",
                    "target": "requestMessage",
                }
            ],
        )
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise BadRequest(f"'name' must be text of 1 to {MAX_NAME_CHARS} characters.")
    storage = _storage(request)
    if len(await _run(storage.list_dashboards)) >= MAX_DASHBOARDS:
        raise BadRequest(
            f"At most {MAX_DASHBOARDS} dashboards; delete one first.", code="TooManyDashboards"
        )
    now = time.time()
    dashboard = Dashboard(str(uuid.uuid4()), name.strip(), [], now, now)
    group = _group_id(request)
    if group is not None:  # placed first: a crash between the two leaves no stray dashboard
        await _run(_place, storage, dashboard.id, group)
    await _run(storage.save_dashboard, dashboard)
    body = {"@odata.context": f"{_api_root(request)}/$metadata#dashboards/$entity"}
    return PbiJSONResponse(body | dashboard_json(dashboard, _site(request)))


async def get_tiles(request: Request) -> Response:
    """GetTiles(InGroup): the dashboard's tiles, in its order."""
    dashboard = await _find(request)
    site = _site(request)
    return PbiJSONResponse(
        {
            "@odata.context": f"{_api_root(request)}/$metadata#tiles",
            "value": [tile_json(dashboard, t, site) for t in dashboard.tiles],
        }
    )


async def get_tile(request: Request) -> Response:
    """GetTile(InGroup): one tile, or 404."""
    dashboard = await _find(request)
    tile_id = request.path_params["tile_id"]
    tile = next((t for t in dashboard.tiles if t.get("id") == tile_id), None)
    if tile is None:
        raise EntityNotFound(f"Tile {tile_id} was not found on dashboard {dashboard.id}.")
    body = {"@odata.context": f"{_api_root(request)}/$metadata#tiles/$entity"}
    return PbiJSONResponse(body | tile_json(dashboard, tile, _site(request)))


def routes_under(root: str) -> list[BaseRoute]:
    """The Dashboards routes under one API root."""
    one = f"{root}/dashboards/{{dashboard_id}}"
    return [
        Route(f"{root}/dashboards", get_dashboards, methods=["GET"]),
        Route(f"{root}/dashboards", add_dashboard, methods=["POST"]),
        Route(one, get_dashboard, methods=["GET"]),
        Route(f"{one}/tiles", get_tiles, methods=["GET"]),
        Route(f"{one}/tiles/{{tile_id}}", get_tile, methods=["GET"]),
    ]
