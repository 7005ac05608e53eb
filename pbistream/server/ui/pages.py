"""The browser's way in: ``/login?token=``, the ``/ui/`` page shell and the static assets.

The UI is one HTML shell plus plain JavaScript modules in ``pbistream/static``; every
page under ``/ui/`` is the same shell (the script routes on the URL fragment). Data
never reaches the HTML from the server: the scripts fetch JSON and build the DOM with
``textContent``, and the Content-Security-Policy refuses inline and foreign scripts, so
a value such as ``<img src=x onerror=...>`` can only ever show as text.
"""

from __future__ import annotations

import mimetypes
import re
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pbistream.server.access.gate import Access
from pbistream.server.auth import SESSION_COOKIE, is_authorized

__all__ = ["CONTENT_SECURITY_POLICY", "PUBLIC_PATHS", "STATIC_DIR", "routes"]

STATIC_DIR = Path(str(resources.files("pbistream") / "static"))
# Module scripts load only with a JavaScript MIME type; some systems' tables (the Windows
# registry, old /etc/mime.types) map .js to text/plain, which would blank the UI.
mimetypes.add_type("text/javascript", ".js")

#: Scripts and data only from this server. ``style-src 'unsafe-inline'`` is needed by
#: ECharts, which positions its tooltip and canvas with inline style attributes;
#: styles cannot run code, and data still only ever lands in textContent.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors says it for current browsers; this for older ones (clickjacking).
    "X-Frame-Options": "DENY",
    # The login URL carries the token; never pass any URL on to another site.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: Paths the auth middleware must let through: these handlers answer a friendly
#: page themselves instead of a bare 401. (Not "/": a prefix ending in "/" is matched
#: as a prefix, and "/" would open every path.)
PUBLIC_PATHS = ("/ui", "/ui/")
_NEXT = re.compile(r"^/ui/(?:#/[A-Za-z0-9/_-]*)?$")

_SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pbistream: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/css/app.css"></head>
<body class="signin"><main class="signin-card">
<h1><span class="brand-mark" aria-hidden="true"></span> pbistream</h1>
<p class="lead">{lead}</p>
<p>Open the login link the server printed. When <code>pbistream serve</code> or
<code>pbistream demo</code> starts, it prints a link like
<code>http://127.0.0.1:8765/login?token=&hellip;</code>; open it in this browser and
the session lasts until the browser closes.</p>
<p class="muted">Lost the token? It is kept only as a hash, so it cannot be shown again:
<code>pbistream token rotate --data-dir DIR</code> makes a new one (or ask an admin for a
token of your own).</p>
</main></body></html>
"""


def _sign_in(lead: str, status: int) -> HTMLResponse:
    # `lead` is one of our own fixed sentences, never request data.
    return HTMLResponse(_SIGN_IN_PAGE.format(lead=lead), status_code=status, headers=_PAGE_HEADERS)


async def login(request: Request) -> Response:
    """``GET /login?token=T[&next=/ui/#/dashboards/ID][&kiosk=1]``: check the token, set the cookie.

    Any working token signs in, with its role; a dashboard link (``pbisl_...``) always
    lands on its own dashboard. ``kiosk=1`` opens the UI in kiosk mode (wall screens).
    """
    access: Access = request.app.state.access
    token = request.query_params.get("token", "")
    # A link pasted with "?kiosk=1" appended (instead of "&kiosk=1") still works.
    token, _, appended = token.partition("?")
    kiosk = request.query_params.get("kiosk", "") or parse_qs(appended).get("kiosk", [""])[0]
    principal = await access.from_secret(token) if token else None
    if principal is None:
        return _sign_in("That login link does not carry a working token of this server.", 403)
    # `next` may only name a page of this UI (no open redirect to another site).
    target = request.query_params.get("next", "/ui/")
    if not _NEXT.fullmatch(target):  # fullmatch: "$" alone would pass a trailing newline
        target = "/ui/"
    if principal.dashboard is not None:
        target = "/ui/#/dashboards/" + quote(principal.dashboard, safe="")
    if kiosk in ("1", "true", "on"):
        target = target.replace("/ui/", "/ui/?kiosk=1", 1)
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE,
        await access.session_cookie(principal),
        httponly=True,
        samesite="lax",
        path="/",
        secure=request.url.scheme == "https",
    )
    return response


async def root(request: Request) -> Response:
    """``GET /``: the dashboards live under ``/ui/``."""
    return RedirectResponse("/ui/", status_code=307)


async def shell(request: Request) -> Response:
    """Every ``/ui/`` page: the HTML shell, or a sign-in hint without a session."""
    if not is_authorized(request):
        return _sign_in("Sign in to see your datasets and dashboards.", 401)
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers=_PAGE_HEADERS)


class _StaticWithPolicy:
    """The static files, each answered with the page headers but ``Cache-Control``.

    ``/static/index.html`` is the UI's shell too: opened directly, without the
    Content-Security-Policy, its scripts would run without that second line of defence.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in _PAGE_HEADERS.items()
            if name != "Cache-Control"  # assets may be cached (they carry an ETag)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_policy)


routes: list[BaseRoute] = [
    Route("/", root, methods=["GET"]),
    Route("/login", login, methods=["GET"]),
    Route("/ui", root, methods=["GET"]),
    Route("/ui/", shell, methods=["GET"]),
    Mount("/static", app=_StaticWithPolicy(StaticFiles(directory=STATIC_DIR)), name="static"),
]
