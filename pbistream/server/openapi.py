"""``GET /openapi.json``: an OpenAPI 3.1 description of every endpoint the server offers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

__all__ = ["openapi_document", "routes"]


def openapi_document(server_url: str) -> dict[str, Any]:
    """The OpenAPI document, with ``server_url`` as its only server."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "pbistream", "version": "0.1.0"},
        "servers": [{"url": server_url.rstrip("/")}],
        "paths": {},
    }


async def openapi_endpoint(request: Request) -> Response:
    """``GET /openapi.json``: the document."""
    body = orjson.dumps(openapi_document(str(request.base_url)))
    return Response(body, media_type="application/json")


routes: list[BaseRoute] = [Route("/openapi.json", openapi_endpoint, methods=["GET"])]
