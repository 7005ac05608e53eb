"""Who may call the server: tokens and their roles (Bearer or session cookie), and push keys.

Every endpoint needs a token, except the ones in :data:`PUBLIC_PREFIXES` and
the streaming Push URL (which checks its own per-dataset key). A token reaches
the server either as ``Authorization: Bearer <token>`` or as the session cookie
``pbistream_session``, which names the token's grant and role, signed (so a stolen
cookie is not the token itself, and it dies with the token). The server's own token
is the first admin token; ``pbistream token create`` and ``POST /api/tokens`` make
more, each with a role and optionally limited to some datasets
(:mod:`pbistream.server.access`). The auth middleware
(:class:`pbistream.server.access.enforce.AuthMiddleware`) resolves the caller, then
applies THE role table (:mod:`pbistream.server.roles`): a role below the route's
answers 403, and so does a route no rule names, unless the caller is an admin.
All comparisons are constant-time.

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

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pbistream.grants import KIND_TOKEN, SERVER_TOKEN_HASH_KEY, mint_secret, secret_hash
from pbistream.redact import constant_time_equal

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from pbistream.server.access.gate import Principal
    from pbistream.server.settings import Settings
    from pbistream.storage.base import Storage

__all__ = [
    "PRINCIPAL_SCOPE_KEY",
    "PUBLIC_PREFIXES",
    "SESSION_COOKIE",
    "bearer_token",
    "is_authorized",
    "is_cross_site_write",
    "is_emulated_rest_call",
    "principal_of",
    "resolve_token",
    "session_cookie_value",
]

logger = logging.getLogger("pbistream.server")

SESSION_COOKIE = "pbistream_session"
# Where versions before hashed storage kept the generated token in clear (migrated away).
_LEGACY_TOKEN_META_KEY = "api_token"  # noqa: S105 (a storage key name, not a secret)
#: Where the auth middleware leaves the resolved caller, for handlers to read.
PRINCIPAL_SCOPE_KEY = "pbistream.principal"

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
    """The ``pbistream_session`` cookie that signs the server's own token in (as admin)."""
    from pbistream.server.access.gate import SERVER, signed_session

    return signed_session(secret_hash(settings.token or ""), SERVER.grant_id, SERVER.role)


def bearer_token(connection: HTTPConnection) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def principal_of(connection: HTTPConnection) -> Principal | None:
    """The caller the auth middleware resolved for this request, if any."""
    principal: Principal | None = connection.scope.get(PRINCIPAL_SCOPE_KEY)
    return principal


def is_authorized(connection: HTTPConnection) -> bool:
    """True if the request carries a working token (Bearer header or session cookie).

    The middleware resolved it; without the middleware (an app mounted bare) only the
    server's own token, given as Bearer, is accepted.
    """
    if principal_of(connection) is not None:
        return True
    settings: Settings = connection.app.state.settings
    token = bearer_token(connection)
    return token is not None and constant_time_equal(token, settings.token)


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


def resolve_token(settings: Settings, storage: Storage) -> tuple[str | None, bool]:
    """The server token: ``settings.token``, else the one kept (hashed) in storage, else a new one.

    Storage keeps only the token's SHA-256 (``api_token_sha256`` in meta); a token kept
    in clear by an older version is hashed and the clear copy erased. Also logs, once at
    start, when ``auth = any`` opens the REST API to any token.

    Returns:
        The token when it is known here (given, or generated just now), else None (the
        hash in storage is in force), and True when it was generated just now (print it
        once: it cannot be shown again; ``pbistream token rotate`` makes a new one).
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
    legacy = storage.get_meta(_LEGACY_TOKEN_META_KEY)
    if legacy:
        storage.set_meta(SERVER_TOKEN_HASH_KEY, secret_hash(legacy))
        storage.set_meta(_LEGACY_TOKEN_META_KEY, "")
    if storage.get_meta(SERVER_TOKEN_HASH_KEY):
        return None, False
    token = mint_secret(KIND_TOKEN)
    storage.set_meta(SERVER_TOKEN_HASH_KEY, secret_hash(token))
    return token, True
