"""The auth middleware's work, step by step: resolve, check the role, the scope, then serve.

Kept apart from :mod:`pbistream.server.auth` (which holds the small helpers the
handlers share) so the order of the checks reads top to bottom in one function,
:func:`enforce`. Live feeds (rules with ``stream=True``) of a revocable grant are
served under a watch that ends them within seconds of the grant being revoked or
expiring: the stream gets a last ``event: revoked`` and closes, and the browser's
reconnect is refused.
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pbistream.server.access.gate import CACHE_SECONDS, EMULATED, SERVER, Access, Principal
from pbistream.server.access.scope import Keep, check_scope, filter_listing
from pbistream.server.auth import (
    PRINCIPAL_SCOPE_KEY,
    SESSION_COOKIE,
    bearer_token,
    is_cross_site_write,
    is_emulated_rest_call,
    is_public_path,
)
from pbistream.server.errors import ApiError, Forbidden, NotAuthorized
from pbistream.server.roles import match_rule, role_name

__all__ = ["REVOKED_EVENT", "AuthMiddleware", "enforce", "resolve"]

#: The last event of a live feed whose grant was revoked or expired.
REVOKED_EVENT = b"event: revoked\ndata: {}\n\n"


async def resolve(connection: HTTPConnection) -> Principal | None:
    """The caller: a Bearer token, else the session cookie, else None."""
    access: Access = connection.app.state.access
    token = bearer_token(connection)
    if token is not None:
        principal = await access.from_secret(token)
        if principal is None and is_emulated_rest_call(connection):
            return EMULATED
        return principal
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie:
        return await access.from_cookie(cookie)
    return None


async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await error.response()(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": 1008})


async def enforce(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, public: Iterable[str]
) -> None:
    """Serve the request if the caller may make it; else answer 401, 403 or 404."""
    connection = HTTPConnection(scope)
    principal = await resolve(connection)
    scope[PRINCIPAL_SCOPE_KEY] = principal
    if is_public_path(scope["path"], public):
        await app(scope, receive, send)
        return
    if is_cross_site_write(connection):
        await _refuse(
            Forbidden(
                "A request that changes data, signed in by the session cookie, must come "
                "from this server's own pages (its Origin names another site)."
            ),
            scope,
            receive,
            send,
        )
        return
    if principal is None:
        await _refuse(
            NotAuthorized(
                "Send 'Authorization: Bearer <token>' (the token pbistream serve printed, "
                "or one made by pbistream token create)."
            ),
            scope,
            receive,
            send,
        )
        return
    method = scope.get("method", "GET")
    match = match_rule(method, scope["path"])
    needed = match.role
    if needed is not None and principal.role < needed:
        await _refuse(
            Forbidden(
                f"{method} {scope['path']} needs the {role_name(needed)} role; this token "
                f"is a {principal.role.label}."
            ),
            scope,
            receive,
            send,
        )
        return
    try:
        keep = await check_scope(principal, match, connection, connection.app.state.storage)
    except ApiError as exc:
        await _refuse(exc, scope, receive, send)
        return
    if keep is not None:
        await _serve_filtered(app, scope, receive, send, keep)
    elif match.rule is not None and match.rule.stream and principal not in (SERVER, EMULATED):
        await _serve_watched(app, scope, receive, send, principal)
    else:
        await app(scope, receive, send)


async def _serve_filtered(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, keep: Keep
) -> None:
    """Serve a listing, then cut its ``value`` down to what ``keep`` accepts."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        assert start is not None
        body = b"".join(chunks)
        if start["status"] == 200:
            body = filter_listing(body, keep)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    await app(scope, receive, capture)


async def _serve_watched(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, principal: Principal
) -> None:
    """Serve a live feed until it ends by itself, or its grant is revoked or expires."""
    access: Access = scope["app"].state.access
    started = finished = False

    async def tracked(message: Message) -> None:
        nonlocal started, finished
        if message["type"] == "http.response.start":
            started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            finished = True
        await send(message)

    cut = False
    with access.watch(principal.grant_id) as revoked_here:
        async with anyio.create_task_group() as tasks:

            async def watch() -> None:
                nonlocal cut
                while True:
                    with anyio.move_on_after(CACHE_SECONDS / 2):
                        await revoked_here.wait()
                    if revoked_here.is_set() or await access.by_id(principal.grant_id) is None:
                        cut = True
                        tasks.cancel_scope.cancel()
                        return

            tasks.start_soon(watch)
            await app(scope, receive, tracked)
            tasks.cancel_scope.cancel()
    if not cut or finished:
        return
    # Shielded: the connection is about to go; say why first if the response is open.
    with anyio.CancelScope(shield=True):
        if started:
            await send({"type": "http.response.body", "body": REVOKED_EVENT, "more_body": False})
        else:
            await _refuse(
                NotAuthorized("This token or link was revoked or has expired."),
                scope,
                receive,
                send,
            )


class AuthMiddleware:
    """Resolve the caller, then apply the role table; 401 without a token, 403 below the role.

    Public paths pass (with the caller resolved when they carry a credential, so the
    Push URL and the UI shell can use it). Everything else: a cross-site write signed in
    by the cookie is 403; no working token is 401 (Power BI's
    PowerBINotAuthorizedException); a role below the route's least role
    (:func:`pbistream.server.roles.match_rule`) is 403; a limited token is held to its
    datasets (:mod:`pbistream.server.access.scope`); a live feed is cut when its
    grant is revoked or expires.

    Args:
        app: The wrapped ASGI app.
        public: Extra public paths/prefixes (e.g. the dashboard's login assets).
    """

    def __init__(self, app: ASGIApp, public: Iterable[str] = ()) -> None:
        self.app = app
        self.public = tuple(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Resolve, check, then pass the request on."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        await enforce(self.app, scope, receive, send, self.public)
