"""Small HTTP helpers shared by the dashboard's endpoints: JSON bodies, auth, errors.

Errors are the server's own Power BI-shaped :class:`~pbistream.server.errors.ApiError`
family, so the browser reads every failure the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pbistream.server.auth import is_authorized
from pbistream.server.errors import ApiError, BadRequest, NotAuthorized, PayloadTooLarge

__all__ = ["api_endpoint", "json_response", "read_json_body"]

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(payload: Any, status_code: int = 200) -> Response:
    """A JSON response rendered with orjson (fast, and it refuses NaN rather than emit it)."""
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


def api_endpoint(handler: Endpoint) -> Endpoint:
    """Require the token (Bearer or session cookie) and render ``ApiError`` as its body.

    The auth middleware already guards ``/api``; checking again here keeps these
    endpoints safe even if they are mounted on an app without it.
    """

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            if not is_authorized(request):
                raise NotAuthorized(
                    "Sign in with the login link the server printed, "
                    "or send 'Authorization: Bearer <token>'."
                )
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    return wrapper


async def read_json_body(request: Request, max_bytes: int) -> Any:
    """Read and parse a JSON body, refusing more than ``max_bytes`` before reading it all.

    Raises:
        PayloadTooLarge: The body is over the cap.
        BadRequest: The body is not valid JSON.
    """
    too_large = f"The body is larger than {max_bytes:,} bytes."
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(too_large)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        # Content-Length can be absent (chunked) or wrong: count what really arrives.
        if size > max_bytes:
            raise PayloadTooLarge(too_large)
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
