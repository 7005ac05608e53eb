"""pbistream's own endpoints under ``/api``: dataset details, key rotation, paged rows, live feed.

The Power BI API has no way to read rows back; these endpoints are what the
dashboard and the ``pbistream dataset`` command use. They follow the contracts in
``docs/architecture.md`` and answer errors in the Power BI shape. Every route
needs the Bearer token or the dashboard's session cookie.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pbistream import limits
from pbistream.redact import new_secret
from pbistream.schema import Dataset, Mode
from pbistream.server.auth import is_authorized, principal_of
from pbistream.server.errors import (
    EntityNotFound,
    InvalidRequest,
    ItemNotFound,
    NotAuthorized,
    PbiJSONResponse,
)
from pbistream.server.forward_api import forward_view
from pbistream.server.live import LiveHub
from pbistream.server.live_feed import check_feed_room, event_stream
from pbistream.server.roles import Role
from pbistream.server.settings import Settings
from pbistream.storage.base import Storage, StoredRow

__all__ = [
    "DEFAULT_PAGE_ROWS",
    "MAX_PAGE_ROWS",
    "dataset_summary",
    "push_url",
    "routes",
    "streaming_floor",
    "tenant_id",
]

DEFAULT_PAGE_ROWS = 1000
MAX_PAGE_ROWS = 10_000
# A live feed sends ": keepalive" after this much silence (divided by --time-scale),
# so proxies keep the connection open and the browser notices a dead server.
KEEPALIVE_SECONDS = 15.0
TENANT_META_KEY = "tenant_id"
# Row ids are 64-bit integers in both backends; a larger cursor is a mistake, not a query.
MAX_ROW_ID = 2**63 - 1


def _json(payload: Any, status: int = 200) -> Response:
    # Push URLs carry their key: no browser or proxy cache may keep these answers.
    return PbiJSONResponse(payload, status_code=status, headers={"Cache-Control": "no-store"})


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _base_url(request: Request) -> str:
    """Where clients reach this server: ``--public-url``, else the URL they used."""
    return _settings(request).public_url or str(request.base_url)


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def streaming_floor(dataset: Dataset, settings: Settings | float) -> float | None:
    """The earliest arrival time still readable: Streaming-only rows live 60 minutes.

    The housekeeping task deletes them a little later; this makes the cut exact.

    Args:
        dataset: The dataset; only a Streaming one has a floor.
        settings: The server's settings (their cache length and time scale), or
            just a time scale for the documented 60 minutes.
    """
    if dataset.mode is not Mode.STREAMING:
        return None
    if isinstance(settings, Settings):
        window = settings.scaled(settings.streaming_cache_seconds)
    else:
        window = limits.STREAMING_CACHE_SECONDS.value / float(settings)
    return time.time() - window


def tenant_id(storage: Storage) -> str:
    """The server's tenant id (storage meta ``tenant_id``): the first segment of Push URLs.

    The server creates it at first start; creating it here too keeps this module
    usable on a store that has never been served.
    """
    tenant = storage.get_meta(TENANT_META_KEY)
    if tenant is None:
        tenant = str(uuid.uuid4())
        storage.set_meta(TENANT_META_KEY, tenant)
    return tenant


def push_url(base_url: str, tenant: str, dataset: Dataset) -> str | None:
    """The dataset's streaming Push URL, or None for Push-only datasets.

    Args:
        base_url: The server's base URL as the client sees it (``http://host:port/``).
        tenant: The server's tenant id.
        dataset: The dataset.
    """
    if not dataset.mode.has_push_url or not dataset.push_key:
        return None
    return (
        f"{base_url.rstrip('/')}/beta/{tenant}/datasets/{dataset.id}/rows"
        f"?key={quote(dataset.push_key, safe='')}"
    )


def _last_row_at(storage: Storage, dataset: Dataset, floor: float | None) -> float | None:
    newest = storage.read_rows(dataset.id, limit=1, newest_first=True, since=floor)
    return newest[0].received_at if newest else None


def _identity(dataset: Dataset) -> dict[str, Any]:
    """What the list entry and the detail both say about a dataset."""
    return {
        "id": dataset.id,
        "name": dataset.name,
        "groupId": dataset.group_id,
        "defaultMode": dataset.mode.value,
        "defaultRetentionPolicy": dataset.retention.value,
    }


def dataset_summary(storage: Storage, dataset: Dataset, floor: float | None) -> dict[str, Any]:
    """The list entry of one dataset (blocking: call from a worker thread)."""
    return {
        **_identity(dataset),
        "rowCount": sum(storage.count_rows(dataset.id, t.name) for t in dataset.tables),
        "lastRowAt": _last_row_at(storage, dataset, floor),
    }


def _dataset_detail(
    storage: Storage, dataset: Dataset, base_url: str, floor: float | None
) -> dict[str, Any]:
    tables = [
        {
            "name": t.name,
            "columns": [c.to_json() for c in t.columns],
            "rowCount": storage.count_rows(dataset.id, t.name),
        }
        for t in dataset.tables
    ]
    return {
        **_identity(dataset),
        "pushUrl": push_url(base_url, tenant_id(storage), dataset),
        "tables": tables,
        "rowCount": sum(t["rowCount"] for t in tables),
        "lastRowAt": _last_row_at(storage, dataset, floor),
    }


async def _run(func: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(func)


async def _load_dataset(request: Request) -> Dataset:
    dataset_id = str(request.path_params["dataset_id"])
    storage = _storage(request)
    dataset: Dataset | None = await _run(lambda: storage.get_dataset(dataset_id))
    if dataset is None:
        raise EntityNotFound(f"Dataset {dataset_id} was not found.")
    return dataset


def _endpoint(
    handler: Callable[[Request], Any],
) -> Callable[[Request], Any]:
    """Wrap a handler so it checks the token itself too (defence in depth behind AuthMiddleware)."""

    async def endpoint(request: Request) -> Response:
        if not is_authorized(request):
            raise NotAuthorized("Send 'Authorization: Bearer <token>'.")
        response: Response = await handler(request)
        return response

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def list_datasets(request: Request) -> Response:
    """``GET /api/datasets``: every dataset in every workspace, with row counts."""
    storage = _storage(request)
    settings = _settings(request)

    def build() -> list[dict[str, Any]]:
        return [
            dataset_summary(storage, d, streaming_floor(d, settings))
            for d in storage.list_datasets(all_groups=True)
        ]

    return _json({"value": await _run(build)})


async def get_dataset(request: Request) -> Response:
    """``GET /api/datasets/{id}``: details, tables with row counts, and the Push URL."""
    dataset = await _load_dataset(request)
    storage = _storage(request)
    floor = streaming_floor(dataset, _settings(request))
    base = _base_url(request)
    states = getattr(request.app.state, "forward_states", None)
    caller = principal_of(request)

    def build() -> dict[str, Any]:
        detail = _dataset_detail(storage, dataset, base, floor)
        detail["forward"] = forward_view(states, storage, dataset.id)
        # The Push URL's key pushes rows: only a caller who may push (contributor up) sees it.
        if caller is not None and caller.role < Role.CONTRIBUTOR:
            detail["pushUrl"] = None
        return detail

    return _json(await _run(build))


async def rotate_key(request: Request) -> Response:
    """``POST /api/datasets/{id}/rotate-key``: a new Push URL key; the old one stops at once."""
    dataset = await _load_dataset(request)
    if not dataset.mode.has_push_url:
        raise InvalidRequest(
            f"Dataset {dataset.id} is a Push dataset: it has no Push URL key to rotate.",
        )
    storage = _storage(request)
    key = new_secret()
    await _run(lambda: storage.set_push_key(dataset.id, key))
    dataset.push_key = key
    tenant = await _run(lambda: tenant_id(storage))
    return _json({"id": dataset.id, "pushUrl": push_url(_base_url(request), tenant, dataset)})


def _int_param(request: Request, name: str, *, minimum: int, maximum: int) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequest(
            f"Query parameter '{name}' must be an integer, not {text!r}."
        ) from None
    if not minimum <= value <= maximum:
        raise InvalidRequest(
            f"Query parameter '{name}' must be between {minimum} and {maximum}, not {value}.",
        )
    return value


def _time_param(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest(
            f"Query parameter '{name}' must be epoch seconds (a finite number >= 0), not {text!r}.",
        )
    return value


def _row_json(row: StoredRow) -> dict[str, Any]:
    return {"id": row.id, "received_at": row.received_at, "table": row.table, "data": row.data}


async def read_rows(request: Request) -> Response:
    """``GET /api/datasets/{id}/rows``: a page of stored rows, filtered by cursor and time."""
    dataset = await _load_dataset(request)
    table = request.query_params.get("table") or None
    if table is not None and dataset.table(table) is None:
        raise ItemNotFound(f"Table '{table}' was not found in dataset {dataset.id}.")
    after = _int_param(request, "after", minimum=0, maximum=MAX_ROW_ID)
    limit = _int_param(request, "limit", minimum=1, maximum=MAX_PAGE_ROWS) or DEFAULT_PAGE_ROWS
    since = _time_param(request, "since")
    until = _time_param(request, "until")
    order = request.query_params.get("order", "asc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"Query parameter 'order' must be asc or desc, not {order!r}.")
    floor = streaming_floor(dataset, _settings(request))
    if floor is not None:
        since = floor if since is None else max(since, floor)
    storage = _storage(request)
    rows: list[StoredRow] = await _run(
        lambda: storage.read_rows(
            dataset.id,
            table,
            after_id=after,
            since=since,
            until=until,
            limit=limit,
            newest_first=order == "desc",
        )
    )
    # Paging runs forwards by id; a descending read is "the newest N" and has no next page.
    more = order == "asc" and len(rows) == limit
    return _json({"rows": [_row_json(r) for r in rows], "next": rows[-1].id if more else None})


async def live_feed(request: Request) -> Response:
    """``GET /api/datasets/{id}/live``: Server-Sent Events of new rows (replay, then live)."""
    dataset = await _load_dataset(request)
    after = _int_param(request, "after", minimum=0, maximum=MAX_ROW_ID)
    last_event = request.headers.get("last-event-id", "").strip()
    if last_event:
        try:
            resume = int(last_event)
        except ValueError:
            raise InvalidRequest(f"Last-Event-ID must be a row id, not {last_event!r}.") from None
        if not 0 <= resume <= MAX_ROW_ID:
            raise InvalidRequest("Last-Event-ID is out of range.")
        after = resume if after is None else max(after, resume)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":  # no body: do not subscribe at all
        return Response(media_type="text/event-stream", headers=headers)
    hub: LiveHub = request.app.state.hub
    check_feed_room(hub, 1)
    settings = _settings(request)
    stream = event_stream(
        hub,
        _storage(request),
        dataset.id,
        after=after,
        keepalive=settings.scaled(KEEPALIVE_SECONDS),
        oldest=lambda: streaming_floor(dataset, settings),
    )
    # X-Accel-Buffering: a reverse proxy (nginx) must pass each event on at once.
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


routes: list[BaseRoute] = [
    Route("/api/datasets", _endpoint(list_datasets), methods=["GET"]),
    Route("/api/datasets/{dataset_id}", _endpoint(get_dataset), methods=["GET"]),
    Route("/api/datasets/{dataset_id}/rotate-key", _endpoint(rotate_key), methods=["POST"]),
    Route("/api/datasets/{dataset_id}/rows", _endpoint(read_rows), methods=["GET"]),
    Route("/api/datasets/{dataset_id}/live", _endpoint(live_feed), methods=["GET"]),
]
