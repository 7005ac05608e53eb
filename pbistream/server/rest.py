"""The Power BI REST push-dataset API under ``/v1.0/myorg`` (and ``/groups/{groupId}``).

Each endpoint is also routed under ``/beta/myorg``, which Power BI's 2016 docs and
some scripts still use. "My workspace" (``/myorg``) and each group see only their
own datasets, as in Power BI. Shapes and status codes follow reference §1 and §6.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.redact import new_secret
from pbistream.schema import Dataset, Mode, Retention
from pbistream.server.definitions import check_dataset, check_table, initial_rows
from pbistream.server.errors import (
    BadRequest,
    EntityNotFound,
    FeatureDeprecated,
    InvalidRequest,
    ItemNotFound,
    PayloadTooLarge,
    PbiJSONResponse,
)
from pbistream.server.ingest import ingest, normalize_or_refuse, read_body
from pbistream.server.settings import Settings
from pbistream.server.throttle import Throttle
from pbistream.storage.base import Storage

__all__ = ["dataset_json", "routes"]

T = TypeVar("T")


async def _run(func: Callable[..., T], *args: Any) -> T:
    """Call a blocking storage method in a worker thread."""
    return await anyio.to_thread.run_sync(func, *args)


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _normal_id(text: str) -> str:
    """GUIDs are case-insensitive in Power BI; ours are stored in lower case."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def _group_id(request: Request) -> str | None:
    group = request.path_params.get("group_id")
    return _normal_id(group) if group else None


def _base(request: Request) -> str:
    """The request's API root (``http://host/v1.0/myorg[/groups/G]``) for @odata.context."""
    root = request.url.path.split("/datasets", 1)[0]
    base = _settings(request).public_url or str(request.base_url)
    return f"{base.rstrip('/')}{root}"


async def _json_body(request: Request) -> Any:
    settings = _settings(request)
    limit = settings.max_push_body_bytes
    body = await read_body(request, limit, PayloadTooLarge(f"The body is over {limit:,} bytes."))
    if not body.strip():
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None


async def _dataset(request: Request) -> Dataset:
    """The dataset named in the path, if it is in this request's workspace."""
    dataset_id = _normal_id(request.path_params["dataset_id"])
    dataset = await _run(_storage(request).get_dataset, dataset_id)
    if dataset is None or dataset.group_id != _group_id(request):
        raise EntityNotFound(f"Dataset {dataset_id} was not found in this workspace.")
    return dataset


def dataset_json(dataset: Dataset) -> dict[str, Any]:
    """A dataset as Power BI's GetDatasets lists it."""
    return {
        "id": dataset.id,
        "name": dataset.name,
        "addRowsAPIEnabled": True,
        "configuredBy": "pbistream",
        "isRefreshable": False,
        "isEffectiveIdentityRequired": False,
        "isEffectiveIdentityRolesRequired": False,
        "isOnPremGatewayRequired": False,
        "defaultRetentionPolicy": dataset.retention.value,
        "defaultMode": dataset.mode.value,
        "createdDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(dataset.created_at)),
    }


def _retention(request: Request) -> Retention:
    # Query keys and the value are matched case-insensitively (C10 sent "basicFifo").
    for key, value in request.query_params.items():
        if key.lower() == "defaultretentionpolicy":
            try:
                return Retention.parse(value)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
    return Retention.NONE


async def create_dataset(request: Request) -> Response:
    """PostDataset(InGroup): 201 with @odata.context, id, name, defaultRetentionPolicy."""
    settings = _settings(request)
    retention = _retention(request)
    definition = check_dataset(await _json_body(request), settings)
    if settings.deprecation and definition.mode is not Mode.PUSH:
        deprecated = FeatureDeprecated()
        deprecated.status = settings.deprecation_status  # unknown on Power BI (§7.3)
        raise deprecated
    dataset = Dataset(
        id=str(uuid.uuid4()),
        name=definition.name,
        mode=definition.mode,
        retention=retention,
        tables=definition.tables,
        group_id=_group_id(request),
        push_key=new_secret() if definition.mode.has_push_url else None,
        created_at=time.time(),
        properties=definition.properties,
    )
    # Rows inside table definitions (Table.rows) are checked before anything is created.
    prepared = {
        table.name: await _run(
            functools.partial(
                normalize_or_refuse,
                table,
                definition.rows[table.name],
                settings.rest_unknown_fields,
                text_numbers=settings.text_numbers == "convert",
            )
        )
        for table in definition.tables
        if definition.rows.get(table.name)
    }
    await _run(_storage(request).create_dataset, dataset)
    for table_name, rows in prepared.items():
        await _store_initial_rows(request, dataset, table_name, rows)
    body = {
        "@odata.context": f"{_base(request)}/$metadata#datasets/$entity",
        "id": dataset.id,
        "name": dataset.name,
        "defaultRetentionPolicy": retention.value,
    }
    return PbiJSONResponse(body, status_code=settings.create_status)


async def _store_initial_rows(
    request: Request, dataset: Dataset, table_name: str, rows: list[dict[str, Any]]
) -> None:
    fifo = None
    if dataset.retention is Retention.BASIC_FIFO:
        settings = _settings(request)
        fifo = (settings.fifo_min_rows, settings.fifo_max_rows)
    storage = _storage(request)
    insert = functools.partial(
        storage.insert_rows, dataset.id, table_name, rows, received_at=time.time(), fifo=fifo
    )
    result = await _run(insert)
    throttle: Throttle = request.app.state.throttle
    throttle.set_row_count(dataset.id, table_name, result.row_count)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.rows_ingested(result.stored)


async def list_datasets(request: Request) -> Response:
    """GetDatasets(InGroup): the workspace's datasets."""
    datasets = await _run(_storage(request).list_datasets, _group_id(request))
    return PbiJSONResponse(
        {
            "@odata.context": f"{_base(request)}/$metadata#datasets",
            "value": [dataset_json(d) for d in datasets],
        }
    )


async def get_dataset(request: Request) -> Response:
    """GetDataset(InGroup)."""
    dataset = await _dataset(request)
    body = {"@odata.context": f"{_base(request)}/$metadata#datasets/$entity"}
    return PbiJSONResponse(body | dataset_json(dataset))


async def delete_dataset(request: Request) -> Response:
    """DeleteDataset(InGroup): 200, the dataset and its rows are gone."""
    dataset = await _dataset(request)
    await _run(_storage(request).delete_dataset, dataset.id)
    throttle: Throttle = request.app.state.throttle
    throttle.forget(dataset.id)
    return Response(status_code=200)


async def get_tables(request: Request) -> Response:
    """GetTables(InGroup): the table names (columns too with ``?$expand=columns``)."""
    dataset = await _dataset(request)
    with_columns = "columns" in request.query_params.get("$expand", "").lower()
    return PbiJSONResponse(
        {
            "@odata.context": f"{_base(request)}/$metadata#tables",
            "value": [t.to_json(with_columns=with_columns) for t in dataset.tables],
        }
    )


async def put_table(request: Request) -> Response:
    """PutTable(InGroup): replace a table's schema (200, ``{"name": ...}``); rows are kept."""
    settings = _settings(request)
    dataset = await _dataset(request)
    name = request.path_params["table_name"]
    raw = await _json_body(request)
    table = check_table(raw, settings, dataset.mode, target="table")
    rows = initial_rows(raw, settings)
    if table.name != name:
        raise BadRequest(f"The body's table name {table.name!r} does not match the URL's {name!r}.")
    if dataset.table(name) is None and len(dataset.tables) >= settings.max_tables:
        raise BadRequest(f"The dataset already has {settings.max_tables} tables, the most allowed.")
    good = await _run(
        functools.partial(
            normalize_or_refuse,
            table,
            rows,
            settings.rest_unknown_fields,
            text_numbers=settings.text_numbers == "convert",
        )
    )
    await _run(_storage(request).replace_table, dataset.id, table)
    if good:
        await _store_initial_rows(request, dataset, table.name, good)
    return PbiJSONResponse({"name": table.name})


def _table_of(dataset: Dataset, name: str) -> Any:
    table = dataset.table(name)  # case-sensitive, as Power BI (C9)
    if table is None:
        raise ItemNotFound(f"Table {name!r} was not found in dataset {dataset.id}.")
    return table


async def post_rows(request: Request) -> Response:
    """PostRows(InGroup): ``{"rows": [...]}`` (or a bare array); 200 once committed."""
    dataset = await _dataset(request)
    table = _table_of(dataset, request.path_params["table_name"])
    unknown = _settings(request).rest_unknown_fields
    return await ingest(request, dataset, table, shape="rows", unknown=unknown)


async def delete_rows(request: Request) -> Response:
    """DeleteRows(InGroup): 200, the table is empty. Streaming datasets refuse (S8)."""
    dataset = await _dataset(request)
    table = _table_of(dataset, request.path_params["table_name"])
    if dataset.mode is Mode.STREAMING:
        raise InvalidRequest(
            "Rows of a Streaming dataset cannot be deleted; they leave the streaming "
            "cache after 60 minutes."
        )
    await _run(_storage(request).delete_rows, dataset.id, table.name)
    throttle: Throttle = request.app.state.throttle
    throttle.set_row_count(dataset.id, table.name, 0)
    return Response(status_code=200)


def _routes_under(root: str) -> list[BaseRoute]:
    return [
        Route(f"{root}/datasets", create_dataset, methods=["POST"]),
        Route(f"{root}/datasets", list_datasets, methods=["GET"]),
        Route(f"{root}/datasets/{{dataset_id}}", get_dataset, methods=["GET"]),
        Route(f"{root}/datasets/{{dataset_id}}", delete_dataset, methods=["DELETE"]),
        Route(f"{root}/datasets/{{dataset_id}}/tables", get_tables, methods=["GET"]),
        Route(f"{root}/datasets/{{dataset_id}}/tables/{{table_name}}", put_table, methods=["PUT"]),
        Route(
            f"{root}/datasets/{{dataset_id}}/tables/{{table_name}}/rows",
            post_rows,
            methods=["POST"],
        ),
        Route(
            f"{root}/datasets/{{dataset_id}}/tables/{{table_name}}/rows",
            delete_rows,
            methods=["DELETE"],
        ),
    ]


routes: list[BaseRoute] = [
    route
    for version in ("v1.0", "beta")
    for root in (f"/{version}/myorg", f"/{version}/myorg/groups/{{group_id}}")
    for route in _routes_under(root)
]
