"""Power BI workspaces (groups): list, create and delete them under ``/v1.0/myorg/groups``.

A workspace still exists implicitly: any ``/groups/{groupId}/...`` with a UUID works,
as before. This module adds the names scripts look workspaces up by (pbiapi, for
one, finds a workspace's id through ``GET /groups``). The named workspaces are kept
in one storage meta key as JSON (``{"id": "name"}``), so SQLite and PostgreSQL need
no schema change. ``GET /groups`` lists them plus every implicit workspace that
holds datasets (its name is its id).

Shapes follow Power BI's Groups API (GetGroups, CreateGroup, DeleteGroup). A second
workspace with the same name (compared case-insensitively) is refused with 409
``PowerBIEntityAlreadyExists``: Power BI answers 400 or 409 depending on the
workspace type, and 409 says what is wrong.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.server.errors import (
    ApiError,
    BadRequest,
    EntityNotFound,
    PayloadTooLarge,
    PbiJSONResponse,
)
from pbistream.server.ingest import read_body
from pbistream.server.settings import Settings
from pbistream.server.throttle import Throttle
from pbistream.storage.base import Storage

__all__ = ["MAX_NAME_LENGTH", "WorkspaceExists", "parse_name_filter", "routes"]

#: The longest workspace name accepted (Power BI's limit is 256 characters).
MAX_NAME_LENGTH = 256
# A CreateGroup body is one short name; anything much bigger is not one.
_MAX_BODY_BYTES = 16 * 1024
_META_KEY = "workspaces"
# OData: name eq 'text', a quote inside the text doubled ('O''Brien').
_NAME_FILTER = re.compile(r"^\s*name\s+eq\s+'((?:[^']|'')*)'\s*$")

# Guards the read-modify-write of the meta key within this process. Two replicas on
# one PostgreSQL could still race: creating two workspaces at the same instant can
# lose one name (last write wins). Creating a workspace is a rare, manual act, and
# nothing is lost but the name: datasets made in the lost workspace still list it as
# an implicit workspace (named by its id), and it can be created again.
_lock = threading.Lock()
# ASCII digits only, and few enough that int() is cheap ("²".isdigit() is True).
_COUNT = re.compile(r"[0-9]{1,9}")


class WorkspaceExists(ApiError):
    """409 ``PowerBIEntityAlreadyExists``: a workspace with that name exists."""

    status = 409
    code = "PowerBIEntityAlreadyExists"


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def _named(storage: Storage) -> dict[str, str]:
    """The named workspaces, ``{id: name}`` in creation order."""
    raw = storage.get_meta(_META_KEY)
    if not raw:
        return {}
    data = orjson.loads(raw)
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save(storage: Storage, named: dict[str, str]) -> None:
    storage.set_meta(_META_KEY, orjson.dumps(named).decode("utf-8"))


def _all_workspaces(storage: Storage) -> dict[str, str]:
    """Named workspaces, then implicit ones holding datasets (named by their id)."""
    workspaces = _named(storage)
    for dataset in storage.list_datasets(all_groups=True):
        if dataset.group_id is not None and dataset.group_id not in workspaces:
            workspaces[dataset.group_id] = dataset.group_id
    return workspaces


def _group_json(group_id: str, name: str) -> dict[str, Any]:
    return {
        "id": group_id,
        "name": name,
        "isReadOnly": False,
        "isOnDedicatedCapacity": False,
        "type": "Workspace",
    }


def _base(request: Request) -> str:
    settings: Settings = request.app.state.settings
    base = settings.public_url or str(request.base_url)
    root = request.url.path.split("/groups", 1)[0]
    return f"{base.rstrip('/')}{root}"


def parse_name_filter(text: str) -> str:
    """The name in an OData ``$filter`` of the form ``name eq 'X'``.

    Args:
        text: The ``$filter`` value.

    Raises:
        BadRequest: For any other filter (only this form is supported).
    """
    match = _NAME_FILTER.match(text)
    if match is None:
        raise BadRequest(
            f"$filter {text!r} is not supported: pbistream understands only "
            "\"name eq 'Workspace name'\"."
        )
    return match.group(1).replace("''", "'")


def _count_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not _COUNT.fullmatch(value.strip()):
        raise BadRequest(f"{name} must be a whole number from 0 to 999999999, not {value!r}.")
    return int(value)


async def list_groups(request: Request) -> Response:
    """GetGroups: the workspaces, with ``$filter=name eq 'X'``, ``$top`` and ``$skip``."""
    wanted = request.query_params.get("$filter")
    name = parse_name_filter(wanted) if wanted is not None else None
    top = _count_param(request, "$top")
    skip = _count_param(request, "$skip") or 0
    workspaces = await anyio.to_thread.run_sync(_all_workspaces, _storage(request))
    groups = [_group_json(i, n) for i, n in workspaces.items() if name is None or n == name]
    groups = groups[skip:] if top is None else groups[skip : skip + top]
    body = {
        "@odata.context": f"{_base(request)}/$metadata#groups",
        "@odata.count": len(groups),
        "value": groups,
    }
    return PbiJSONResponse(body)


def _body_name(body: bytes, content_type: str) -> str:
    """The ``name`` of a CreateGroup body: JSON, or a form (pbiapi posts a form)."""
    if not body.strip():
        raise BadRequest('The request body is empty; send {"name": "Workspace name"}.')
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise BadRequest(f"The request body is not valid JSON: {exc}") from None
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("The form body is not valid (name=...).") from None
        data = {key: values[-1] for key, values in form.items()}
    if not isinstance(data, dict):
        raise BadRequest('The request body must be a JSON object: {"name": "Workspace name"}.')
    unknown = sorted(set(data) - {"name"})
    if unknown:
        raise BadRequest(f"Unknown property {unknown[0]!r}: a workspace has only 'name'.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("Field 'name' is required: a non-empty string.")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(
            f"Field 'name' is {len(name)} characters; at most {MAX_NAME_LENGTH} are allowed."
        )
    return name


def _create(storage: Storage, name: str) -> str:
    with _lock:
        taken = {n.casefold() for n in _all_workspaces(storage).values()}
        if name.casefold() in taken:
            raise WorkspaceExists(f"A workspace named {name!r} already exists.")
        named = _named(storage)
        group_id = str(uuid.uuid4())
        named[group_id] = name
        _save(storage, named)
        return group_id


async def create_group(request: Request) -> Response:
    """CreateGroup: 200 with the new workspace; ``workspaceV2`` is accepted and ignored."""
    too_large = PayloadTooLarge(f"The body is over {_MAX_BODY_BYTES:,} bytes.")
    body = await read_body(request, _MAX_BODY_BYTES, too_large)
    name = _body_name(body, request.headers.get("content-type", "").lower())
    group_id = await anyio.to_thread.run_sync(_create, _storage(request), name)
    entity = {"@odata.context": f"{_base(request)}/$metadata#groups/$entity"}
    return PbiJSONResponse(entity | _group_json(group_id, name))


def _delete(storage: Storage, group_id: str) -> list[str]:
    """Forget the workspace and delete its datasets; return their ids."""
    with _lock:
        named = _named(storage)
        datasets = storage.list_datasets(group_id)
        if group_id not in named and not datasets:
            raise EntityNotFound(f"Workspace {group_id} was not found.")
        for dataset in datasets:
            storage.delete_dataset(dataset.id)
        if named.pop(group_id, None) is not None:
            _save(storage, named)
        return [d.id for d in datasets]


async def delete_group(request: Request) -> Response:
    """DeleteGroup: 200; the workspace and its datasets are gone."""
    text = request.path_params["group_id"]
    try:
        group_id = str(uuid.UUID(text))
    except ValueError:
        raise EntityNotFound(f"Workspace {text} was not found.") from None
    deleted = await anyio.to_thread.run_sync(_delete, _storage(request), group_id)
    throttle: Throttle = request.app.state.throttle
    for dataset_id in deleted:
        throttle.forget(dataset_id)
    return Response(status_code=200)


routes: list[BaseRoute] = [
    route
    for version in ("v1.0", "beta")
    for route in (
        Route(f"/{version}/myorg/groups", list_groups, methods=["GET"]),
        Route(f"/{version}/myorg/groups", create_group, methods=["POST"]),
        Route(f"/{version}/myorg/groups/{{group_id}}", delete_group, methods=["DELETE"]),
    )
]
