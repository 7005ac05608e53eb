"""Read-only dashboard links: ``/api/dashboards/{id}/links`` create, list, revoke.

A link is a viewer grant (kind ``link``, secret ``pbisl_...``) limited to one
dashboard and to the datasets its tiles show (as they are when it is used). Its
``url`` signs a browser in through ``/login?token=...`` and lands on the dashboard;
``kioskUrl`` does the same in kiosk mode, for wall screens. Any write with it is 403
(it is a viewer); revoking it ends its open live feeds within seconds.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.grants import KIND_LINK
from pbistream.server.access.tokens import (
    MAX_NAME_CHARS,
    grant_json,
    mint_grant,
    parse_expiry,
    revoke,
)
from pbistream.server.errors import BadRequest, EntityNotFound
from pbistream.server.roles import Role
from pbistream.server.settings import Settings
from pbistream.server.ui.http import api_endpoint, json_response, read_json_body
from pbistream.storage.base import Dashboard, Grant, Storage

__all__ = ["link_urls", "routes"]

_BODY_BYTES = 16 * 1024
_LINK_FIELDS = frozenset({"name", "expiresIn"})


def link_urls(base_url: str, secret: str) -> dict[str, str]:
    """The link's ``url`` and ``kioskUrl`` (the secret rides in ``token=``, redacted in logs)."""
    login = f"{base_url.rstrip('/')}/login?token={quote(secret, safe='')}"
    return {"url": login, "kioskUrl": login + "&kiosk=1"}


async def _dashboard(request: Request) -> Dashboard:
    storage: Storage = request.app.state.storage
    dashboard_id = request.path_params["dashboard_id"]
    found = await anyio.to_thread.run_sync(storage.get_dashboard, dashboard_id)
    if found is None:
        raise EntityNotFound(f"No dashboard with id {dashboard_id!r}.")
    return found


@api_endpoint
async def collection(request: Request) -> Response:
    """``GET`` lists the dashboard's working links; ``POST`` makes one (201, shown once)."""
    storage: Storage = request.app.state.storage
    dashboard = await _dashboard(request)
    now = time.time()
    if request.method == "GET":
        grants: list[Grant] = await anyio.to_thread.run_sync(storage.list_grants)
        mine = [
            grant_json(g, now)
            for g in grants
            if g.kind == KIND_LINK and g.dashboard_id == dashboard.id and g.revoked_at is None
        ]
        return json_response({"value": mine})
    body: Any = {}
    if int(request.headers.get("content-length") or 0) or request.headers.get("transfer-encoding"):
        body = await read_json_body(request, _BODY_BYTES)
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object such as {"name": "Wall screen"}.')
    unknown = sorted(set(body) - _LINK_FIELDS)
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0]!r}; a link takes name and expiresIn.")
    name = body.get("name") or f"Link to {dashboard.name}"
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise BadRequest(f"name: must be text of at most {MAX_NAME_CHARS} characters.")
    expires_at = parse_expiry(body.get("expiresIn"), now)
    grant, secret = await anyio.to_thread.run_sync(
        lambda: mint_grant(
            storage,
            kind=KIND_LINK,
            role=Role.VIEWER,
            name=name.strip(),
            dashboard_id=dashboard.id,
            expires_at=expires_at,
            now=now,
        )
    )
    settings: Settings = request.app.state.settings
    base = settings.public_url or str(request.base_url)
    payload = {**grant_json(grant, now), "token": secret, **link_urls(base, secret)}
    return json_response(payload, status_code=201)


@api_endpoint
async def item(request: Request) -> Response:
    """``DELETE /api/dashboards/{id}/links/{linkId}``: revoke (204); its feeds end in seconds."""
    dashboard = await _dashboard(request)
    link_id = request.path_params["link_id"]
    storage: Storage = request.app.state.storage
    found = await anyio.to_thread.run_sync(storage.get_grant, link_id)
    if found is None or found.dashboard_id != dashboard.id:
        raise EntityNotFound(f"No link {link_id!r} on dashboard {dashboard.id!r}.")
    await revoke(request, link_id, kind=KIND_LINK)
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/api/dashboards/{dashboard_id}/links", collection, methods=["GET", "POST"]),
    Route("/api/dashboards/{dashboard_id}/links/{link_id}", item, methods=["DELETE"]),
]
