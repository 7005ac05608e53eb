"""The browser's way in: ``/login`` (link or form), the ``/ui/`` page shell, static assets.

The UI is one HTML shell plus plain JavaScript modules in ``pbistream/static``; every
page under ``/ui/`` is the same shell (the script routes on the URL fragment). Data
never reaches the HTML from the server: the scripts fetch JSON and build the DOM with
``textContent``, and the Content-Security-Policy refuses inline and foreign scripts, so
a value such as ``<img src=x onerror=...>`` can only ever show as text.
"""

from __future__ import annotations

import html
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

from pbistream.redact import constant_time_equal, new_secret
from pbistream.server.access.gate import Access, Principal
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
<link rel="stylesheet" href="/static/css/app.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml"></head>
<body class="signin"><main class="signin-card">
<h1><span class="brand-mark" aria-hidden="true"></span> pbistream</h1>
<p class="lead">{lead}</p>
<form class="signin-form" method="post" action="/login">
<label for="signin-token">API token</label>
<input id="signin-token" name="token" type="password" autocomplete="current-password"
 required autofocus spellcheck="false" placeholder="Paste the token pbistream serve printed">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<button class="primary" type="submit">Sign in</button>
</form>
<p>Or open the login link the server printed. When <code>pbistream serve</code> first
starts (or <code>pbistream demo</code> starts), it prints a link like
<code>http://127.0.0.1:8765/login?token=&hellip;</code>; open it in this browser and
the session lasts until the browser closes.</p>
<p class="muted">Lost the token? It is kept only as a hash, so it cannot be shown again:
<code>pbistream token rotate --data-dir DIR</code> makes a new one (or ask an admin for a
token of your own).</p>
</main></body></html>
"""
#: The sign-in form's double-submit cookie: a form another site posts cannot read it.
CSRF_COOKIE = "pbistream_signin"
#: A pasted token is short; a larger sign-in body is refused before it is read in full.
_MAX_SIGN_IN_BODY = 4096


def _sign_in(lead: str, status: int, target: str = "/ui/") -> HTMLResponse:
    # `lead` is one of our own fixed sentences; `target` matched _NEXT (no markup in it).
    csrf = new_secret()
    page = _SIGN_IN_PAGE.format(lead=lead, csrf=csrf, next=html.escape(target, quote=True))
    response = HTMLResponse(page, status_code=status, headers=_PAGE_HEADERS)
    response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/login")
    return response


async def _principal(request: Request, token: str) -> Principal | None:
    """Who ``token`` signs in (one check for the link and the form), or None."""
    access: Access = request.app.state.access
    return await access.from_secret(token) if token else None


def _next_page(raw: str | None) -> str:
    # `next` may only name a page of this UI (no open redirect to another site).
    target = raw or "/ui/"
    return target if _NEXT.fullmatch(target) else "/ui/"  # fullmatch: "$" passes a "\n"


async def _signed_in(request: Request, principal: Principal, target: str, kiosk: str) -> Response:
    access: Access = request.app.state.access
    if principal.dashboard is not None:  # a dashboard link lands on its own dashboard
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
    response.delete_cookie(CSRF_COOKIE, path="/login")
    return response


async def login(request: Request) -> Response:
    """``GET /login?token=T[&next=/ui/#/dashboards/ID][&kiosk=1]``: check the token, set the cookie.

    Any working token signs in, with its role; a dashboard link (``pbisl_...``) always
    lands on its own dashboard. ``kiosk=1`` opens the UI in kiosk mode (wall screens).
    Without ``token`` it answers the sign-in page, whose form posts to :func:`login_form`.
    """
    target = _next_page(request.query_params.get("next"))
    if "token" not in request.query_params:
        return _sign_in("Paste your API token to sign in.", 200, target)
    # A link pasted with "?kiosk=1" appended (instead of "&kiosk=1") still works.
    token, _, appended = request.query_params["token"].partition("?")
    kiosk = request.query_params.get("kiosk", "") or parse_qs(appended).get("kiosk", [""])[0]
    principal = await _principal(request, token)
    if principal is None:
        lead = "That login link does not carry a working token of this server."
        return _sign_in(lead, 403, target)
    return await _signed_in(request, principal, target, kiosk)


async def login_form(request: Request) -> Response:
    """``POST /login`` (form: token, csrf, next): the sign-in page's form.

    Login CSRF (another site signing this browser in with *its* token) is refused
    twice over: the browser's ``Origin``/``Sec-Fetch-Site`` must be this server's, and
    the form's ``csrf`` field must equal the ``SameSite=Strict`` cookie the page set.
    """
    if is_cross_site_form(request):
        return _sign_in("Sign in from this server's own page.", 403)
    length = request.headers.get("content-length", "")
    if length and (not length.isdigit() or int(length) > _MAX_SIGN_IN_BODY):
        return _sign_in("That sign-in form was too large.", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_SIGN_IN_BODY:
            return _sign_in("That sign-in form was too large.", 413)
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    field = {name: values[0] for name, values in form.items() if values}
    target = _next_page(field.get("next"))
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not constant_time_equal(field.get("csrf", ""), cookie):
        return _sign_in("The sign-in page expired; paste the token again.", 403, target)
    principal = await _principal(request, field.get("token", "").strip())
    if principal is None:
        return _sign_in("That is not a working token of this server.", 403, target)
    return await _signed_in(request, principal, target, field.get("kiosk", ""))


def is_cross_site_form(request: Request) -> bool:
    """True when a browser says the form came from another site (Origin or Sec-Fetch-Site)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None:
            return fetch_site.lower() not in ("same-origin", "none")
        return origin == "null"
    _, _, origin_host = origin.partition("://")
    hosts = {
        request.headers.get("host", ""),
        request.headers.get("x-forwarded-host", "").split(",")[0].strip(),
    }
    return origin_host.lower() not in {h.lower() for h in hosts if h}


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
    Route("/login", login_form, methods=["POST"]),
    Route("/ui", root, methods=["GET"]),
    Route("/ui/", shell, methods=["GET"]),
    Mount("/static", app=_StaticWithPolicy(StaticFiles(directory=STATIC_DIR)), name="static"),
]
