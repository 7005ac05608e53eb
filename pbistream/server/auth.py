"""Who may call the server: the API token (Bearer or session cookie) and push keys.

Every endpoint needs the token, except the ones in :data:`PUBLIC_PREFIXES` and
the streaming Push URL (which checks its own per-dataset key). The token reaches
the server either as ``Authorization: Bearer <token>`` or as the session cookie
``pbistream_session`` whose value is an HMAC of the token, so a stolen cookie is
not the token itself. All comparisons are constant-time.

A cookie rides along with any request the browser makes, including a form another
page posts to this server (a page on another port of localhost is "same-site", so
``SameSite=Lax`` alone does not stop it). So a state-changing request signed in by the
cookie alone must come from this server's own pages: :func:`is_cross_site_write`
refuses it when the browser's ``Origin`` (or ``Sec-Fetch-Site``) says otherwise.
Bearer-token callers are not browsers riding on ambient credentials and are not checked.

With the ``auth = any`` setting (the emulator mode of reference §6.5), the Power BI
REST API (``/v1.0/myorg/...``, ``/beta/myorg/...``) accepts any non-empty Bearer
token, so code that gets an Entra ID token through msal runs unchanged; the token
is not checked or kept. Everything else (``/api``, ``/metrics``, the dashboard)
still needs this server's own token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pbistream.redact import constant_time_equal, new_secret
from pbistream.server.errors import Forbidden, NotAuthorized

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Receive, Scope, Send

    from pbistream.server.settings import Settings
    from pbistream.storage.base import Storage

__all__ = [
    "PUBLIC_PREFIXES",
    "SESSION_COOKIE",
    "AuthMiddleware",
    "bearer_token",
    "is_authorized",
    "is_cross_site_write",
    "is_emulated_rest_call",
    "resolve_token",
    "session_cookie_value",
]

logger = logging.getLogger("pbistream.server")

SESSION_COOKIE = "pbistream_session"
# A fixed label so the cookie is an HMAC "of the token, for sessions", not a bare hash.
_COOKIE_LABEL = b"pbistream-session-v1"
_TOKEN_META_KEY = "api_token"  # noqa: S105 (a storage key name, not a secret)

#: Paths anyone may call (exact paths, or prefixes ending in "/").
PUBLIC_PREFIXES: tuple[str, ...] = ("/healthz", "/login", "/static/", "/favicon.ico")

# The streaming Push URL: /beta/{workspaceId}/datasets/{datasetId}/rows (not /beta/myorg/...).
_PUSH_URL = re.compile(r"^/beta/(?!myorg/)[^/]+/datasets/[^/]+/rows/?$", re.IGNORECASE)
# The Power BI REST API, the only part ``auth = any`` opens to any Bearer token.
_REST_API = ("/v1.0/myorg/", "/beta/myorg/")
# Methods a browser may send cross-site without harm: they must not change state.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of requests made by this server's own pages (or typed by the user).
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def session_cookie_value(settings: Settings) -> str:
    """The value of the ``pbistream_session`` cookie for this server's token (hex HMAC)."""
    token = settings.token or ""
    return hmac.new(token.encode("utf-8"), _COOKIE_LABEL, hashlib.sha256).hexdigest()


def bearer_token(connection: HTTPConnection) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def is_authorized(connection: HTTPConnection) -> bool:
    """True if the request carries this server's token (Bearer header or session cookie)."""
    settings: Settings = connection.app.state.settings
    token = bearer_token(connection)
    if token is not None:
        return constant_time_equal(token, settings.token)
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie:
        return constant_time_equal(cookie, session_cookie_value(settings))
    return False


def is_cross_site_write(connection: HTTPConnection) -> bool:
    """True for a state-changing request, signed in by the cookie, that another site made.

    A request is the server's own when its ``Origin`` names the host it was sent to
    (``Host``, or ``X-Forwarded-Host`` behind a proxy: a cross-site form cannot set
    either). Without ``Origin``, ``Sec-Fetch-Site`` decides; a request with neither is
    not from a modern browser's page and passes. A Bearer token is never checked.
    """
    if connection.scope.get("method", "GET") in _SAFE_METHODS or bearer_token(connection):
        return False
    if not connection.cookies.get(SESSION_COOKIE):
        return False
    origin = connection.headers.get("origin")
    if origin is None:
        fetch_site = connection.headers.get("sec-fetch-site")
        return fetch_site is not None and fetch_site.lower() not in _OWN_FETCH_SITES
    # "null" (a sandboxed frame, a redirect) has no host and matches nothing.
    _, _, origin_host = origin.partition("://")
    hosts = {
        connection.headers.get("host", ""),
        connection.headers.get("x-forwarded-host", "").split(",")[0].strip(),
    }
    return origin_host.lower() not in {h.lower() for h in hosts if h}


def is_emulated_rest_call(connection: HTTPConnection) -> bool:
    """True when ``auth = any`` lets this request in: a REST API path with any Bearer token."""
    settings: Settings = connection.app.state.settings
    if settings.auth != "any" or not connection.url.path.startswith(_REST_API):
        return False
    return bearer_token(connection) is not None


def is_public_path(path: str, extra_public: Iterable[str] = ()) -> bool:
    """True for paths that need no token: the Push URL, /login, static assets, /healthz."""
    if _PUSH_URL.match(path) or path == "/":  # "/" only redirects to /ui/, which signs in
        return True
    for prefix in (*PUBLIC_PREFIXES, *extra_public):
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return True
    return False


#: Shorter chosen tokens draw a warning at start; generated ones have 43 characters.
MIN_TOKEN_CHARS = 16


def resolve_token(settings: Settings, storage: Storage) -> tuple[str, bool]:
    """The API token: ``settings.token``, else the one kept in storage, else a new one.

    Also logs, once at start, when ``auth = any`` opens the REST API to any token.

    Returns:
        The token, and True when it was generated just now (print it once).
    """
    if settings.auth == "any":
        logger.warning(
            "auth=any: the Power BI REST API accepts ANY non-empty Bearer token (emulator "
            "mode, for tests); /api, /metrics and the dashboard still need the server token"
        )
    if settings.token:
        if len(settings.token) < MIN_TOKEN_CHARS:
            # Accepted (it is the user's choice, e.g. a fixed token in CI), but said once.
            logger.warning(
                "the API token given is only %d characters; anyone who can reach the server "
                "could guess it. Use at least %d random characters, or let the server "
                "generate one.",
                len(settings.token),
                MIN_TOKEN_CHARS,
            )
        return settings.token, False
    kept = storage.get_meta(_TOKEN_META_KEY)
    if kept:
        return kept, False
    token = new_secret()
    storage.set_meta(_TOKEN_META_KEY, token)
    return token, True


class AuthMiddleware:
    """Answer 401 (Power BI's PowerBINotAuthorizedException) unless the path is public.

    Args:
        app: The wrapped ASGI app.
        public: Extra public paths/prefixes (e.g. the dashboard's login assets).
    """

    def __init__(self, app: ASGIApp, public: Iterable[str] = ()) -> None:
        self.app = app
        self.public = tuple(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the token, then pass the request on."""
        if scope["type"] not in ("http", "websocket") or is_public_path(scope["path"], self.public):
            await self.app(scope, receive, send)
            return
        from starlette.requests import HTTPConnection

        connection = HTTPConnection(scope)
        if is_cross_site_write(connection):
            response = Forbidden(
                "A request that changes data, signed in by the session cookie, must come "
                "from this server's own pages (its Origin names another site)."
            ).response()
        elif is_authorized(connection) or is_emulated_rest_call(connection):
            await self.app(scope, receive, send)
            return
        else:
            response = NotAuthorized(
                "Send 'Authorization: Bearer <token>' (the token pbistream serve printed)."
            ).response()
        if scope["type"] == "http":
            await response(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})
