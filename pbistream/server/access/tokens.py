"""``/api/tokens`` (create, list, revoke scoped API tokens) and ``/api/me`` (who am I).

``POST /api/tokens`` with ``{"role": "viewer"}`` (optional ``"datasets"``, ``"name"``,
``"expiresIn"``: seconds or ``"30d"``) answers 201 with ``{"id", "token", ...}``: the
token is shown this once; storage keeps its SHA-256. ``GET /api/tokens`` lists grants
without their secrets (the server's own token first, as ``server``; dashboard links too,
as kind ``link``, so an admin sees every way in); ``DELETE
/api/tokens/{id}`` revokes one at once, and ends the live feeds it has open.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.grants import (
    KIND_TOKEN,
    SERVER_GRANT_ID,
    mint_secret,
    new_grant_id,
    parse_duration,
    secret_hash,
)
from pbistream.server.access.gate import Access, Principal
from pbistream.server.auth import principal_of
from pbistream.server.errors import BadRequest, EntityNotFound, InvalidRequest
from pbistream.server.roles import Role
from pbistream.server.ui.http import api_endpoint, json_response, read_json_body
from pbistream.storage.base import Grant, Storage

__all__ = [
    "MAX_ACTIVE_GRANTS",
    "MAX_NAME_CHARS",
    "MAX_SCOPE_DATASETS",
    "grant_json",
    "mint_grant",
    "parse_expiry",
    "routes",
]

#: Working tokens and links at most (revoked and expired ones do not count).
MAX_ACTIVE_GRANTS = 1_000
#: A token's or link's name, in characters.
MAX_NAME_CHARS = 200
#: Datasets one token may be limited to.
MAX_SCOPE_DATASETS = 100
_BODY_BYTES = 64 * 1024
_TOKEN_FIELDS = frozenset({"role", "datasets", "name", "expiresIn"})


def _status(grant: Grant, now: float) -> str:
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at is not None and now >= grant.expires_at:
        return "expired"
    return "active"


def grant_json(grant: Grant, now: float) -> dict[str, Any]:
    """The wire form of a grant: never its secret, nor the secret's hash."""
    return {
        "id": grant.id,
        "kind": grant.kind,
        "role": grant.role,
        "name": grant.name,
        "datasets": None if grant.datasets is None else list(grant.datasets),
        "dashboard": grant.dashboard_id,
        "createdAt": grant.created_at,
        "expiresAt": grant.expires_at,
        "lastUsedAt": grant.last_used_at,
        "revokedAt": grant.revoked_at,
        "status": _status(grant, now),
    }


def _server_entry() -> dict[str, Any]:
    return {
        "id": SERVER_GRANT_ID,
        "kind": KIND_TOKEN,
        "role": Role.ADMIN.label,
        "name": "server token (pbistream serve; change it with pbistream token rotate)",
        "datasets": None,
        "dashboard": None,
        "createdAt": None,
        "expiresAt": None,
        "lastUsedAt": None,
        "revokedAt": None,
        "status": "active",
    }


def parse_expiry(value: Any, now: float) -> float | None:
    """``expiresIn`` (seconds, or ``"30d"``) → an epoch time; None when absent."""
    if value is None:
        return None
    try:
        return now + parse_duration(value)
    except ValueError as exc:
        raise BadRequest(f"expiresIn: {exc}.") from None


def _name(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise BadRequest(f"name: must be text of at most {MAX_NAME_CHARS} characters.")
    return value.strip()


def _datasets(value: Any, storage: Storage) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_SCOPE_DATASETS
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise BadRequest(
            f"datasets: must be a list of 1 to {MAX_SCOPE_DATASETS} dataset ids "
            "(leave it out for every dataset)."
        )
    ids = tuple(dict.fromkeys(v.lower() for v in value))
    for dataset_id in ids:
        if storage.get_dataset(dataset_id) is None:
            raise BadRequest(f"datasets: no dataset with id {dataset_id!r}.")
    return ids


def mint_grant(
    storage: Storage,
    *,
    kind: str,
    role: Role,
    name: str,
    datasets: tuple[str, ...] | None = None,
    dashboard_id: str | None = None,
    expires_at: float | None = None,
    now: float,
) -> tuple[Grant, str]:
    """Store a new grant and return it with its secret (blocking; the only time it exists).

    Raises:
        InvalidRequest: The server already holds :data:`MAX_ACTIVE_GRANTS` working grants.
    """
    active = sum(1 for g in storage.list_grants() if _status(g, now) == "active")
    if active >= MAX_ACTIVE_GRANTS:
        raise InvalidRequest(
            f"At most {MAX_ACTIVE_GRANTS:,} working tokens and links; revoke some first.",
            code="TooManyTokens",
        )
    secret = mint_secret(kind)
    grant = Grant(
        id=new_grant_id(),
        kind=kind,
        role=role.label,
        secret_hash=secret_hash(secret),
        name=name,
        datasets=datasets,
        dashboard_id=dashboard_id,
        created_at=now,
        expires_at=expires_at,
    )
    storage.save_grant(grant)
    return grant, secret


def principal_json(principal: Principal) -> dict[str, Any]:
    """What ``/api/me`` says about the caller."""
    return {
        "id": principal.grant_id,
        "kind": principal.kind,
        "role": principal.role.label,
        "name": principal.name,
        "datasets": None if principal.datasets is None else sorted(principal.datasets),
        "dashboard": principal.dashboard,
        "expiresAt": principal.expires_at,
    }


@api_endpoint
async def me(request: Request) -> Response:
    """``GET /api/me``: the caller's role and scope (the UI hides what it may not do)."""
    principal = principal_of(request)
    if principal is None:  # behind no middleware: the server token, given as Bearer
        from pbistream.server.access.gate import SERVER

        principal = SERVER
    return json_response(principal_json(principal))


@api_endpoint
async def collection(request: Request) -> Response:
    """``GET /api/tokens`` lists (``?all=true`` also revoked ones); ``POST`` creates one."""
    storage: Storage = request.app.state.storage
    now = time.time()
    if request.method == "GET":
        every = request.query_params.get("all", "").lower() in ("1", "true", "yes")
        grants = await anyio.to_thread.run_sync(storage.list_grants)
        listed = [grant_json(g, now) for g in grants if every or g.revoked_at is None]
        return json_response({"value": [_server_entry(), *listed]})
    body = await read_json_body(request, _BODY_BYTES)
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object such as {"role": "viewer"}.')
    unknown = sorted(set(body) - _TOKEN_FIELDS)
    if unknown:
        raise BadRequest(
            f"Unknown field {unknown[0]!r}; a token takes role, datasets, name, expiresIn."
        )
    try:
        role = Role.parse(body.get("role", ""))
    except ValueError as exc:
        raise BadRequest(f"role: {exc}.") from None
    name = _name(body.get("name"))
    expires_at = parse_expiry(body.get("expiresIn"), now)

    def create() -> tuple[Grant, str]:
        datasets = _datasets(body.get("datasets"), storage)
        return mint_grant(
            storage,
            kind=KIND_TOKEN,
            role=role,
            name=name,
            datasets=datasets,
            expires_at=expires_at,
            now=now,
        )

    grant, secret = await anyio.to_thread.run_sync(create)
    return json_response({**grant_json(grant, now), "token": secret}, status_code=201)


async def revoke(request: Request, grant_id: str, *, kind: str | None = None) -> None:
    """Revoke a grant (of this kind, if given) now, and end its open live feeds.

    Raises:
        InvalidRequest: It is the server's own token.
        EntityNotFound: No working grant of this kind has this id.
    """
    if grant_id == SERVER_GRANT_ID:
        raise InvalidRequest(
            "The server's own token cannot be revoked here: replace it with "
            "'pbistream token rotate --data-dir DIR' (or change --token / PBISTREAM_TOKEN)."
        )
    storage: Storage = request.app.state.storage
    found = await anyio.to_thread.run_sync(storage.get_grant, grant_id)
    if found is None or kind not in (None, found.kind) or found.revoked_at is not None:
        raise EntityNotFound(f"No working {kind or 'token or link'} with id {grant_id!r}.")
    await anyio.to_thread.run_sync(storage.revoke_grant, grant_id, time.time())
    access: Access = request.app.state.access
    access.forget(grant_id)


@api_endpoint
async def item(request: Request) -> Response:
    """``DELETE /api/tokens/{id}``: revoke a token or link (204); its feeds end within seconds."""
    await revoke(request, request.path_params["token_id"])
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/api/me", me, methods=["GET"]),
    Route("/api/tokens", collection, methods=["GET", "POST"]),
    Route("/api/tokens/{token_id}", item, methods=["DELETE"]),
]
