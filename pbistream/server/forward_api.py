"""``/api/datasets/{id}/forward``: set, read and clear a dataset's forward (the relay).

The server only keeps the configuration in storage and shows the state the
forwarder posts on ``app.state.forward_states``; it never sends a row upstream
itself (that is the client's job, wired in by ``pbistream serve``: see
:mod:`pbistream.feeds.forward`). Changing the forward needs the member role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.forwarding import (
    ForwardConfig,
    ForwardConfigError,
    ForwardStates,
    clear_config,
    load_config,
    save_config,
)
from pbistream.schema import Dataset
from pbistream.server.errors import BadRequest, EntityNotFound, ItemNotFound
from pbistream.server.ui.http import api_endpoint, json_response, read_json_body
from pbistream.storage.base import Storage

__all__ = ["forward_metrics", "forward_view", "routes"]

# A forward body is a URL and a few credentials.
MAX_BODY_BYTES = 64 * 1024


def forward_view(
    states: ForwardStates | None, storage: Storage, dataset_id: str
) -> dict[str, Any] | None:
    """A dataset's forward for the API: its public configuration and state, or None.

    Blocking (reads storage): call from a worker thread.
    """
    config = load_config(storage, dataset_id)
    if config is None:
        return None
    state = states.get(dataset_id) if states is not None else None
    if state is not None and state.generation != config.generation:
        state = None  # the forwarder has not picked up this configuration yet
    return {**config.public(), "state": state.to_api() if state is not None else None}


def _states(request: Request) -> ForwardStates | None:
    return getattr(request.app.state, "forward_states", None)


async def _run(func: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(func)


async def _dataset(request: Request) -> Dataset:
    dataset_id = str(request.path_params["dataset_id"])
    storage: Storage = request.app.state.storage
    dataset: Dataset | None = await _run(lambda: storage.get_dataset(dataset_id))
    if dataset is None:
        raise EntityNotFound(f"Dataset {dataset_id} was not found.")
    return dataset


def _answer(request: Request, dataset: Dataset) -> Any:
    storage: Storage = request.app.state.storage
    states = _states(request)
    return _run(lambda: {"id": dataset.id, "forward": forward_view(states, storage, dataset.id)})


async def get_forward(request: Request) -> Response:
    """``GET /api/datasets/{id}/forward``: the forward's configuration and state (or null)."""
    dataset = await _dataset(request)
    return json_response(await _answer(request, dataset))


async def put_forward(request: Request) -> Response:
    """``PUT /api/datasets/{id}/forward``: forward the dataset's new rows to a target.

    Body: ``{"target": URL, "table"?: NAME, "token"?: T, "tenantId"?, "clientId"?,
    "clientSecret"?, "timeScale"?: N}``. Rows stored after this call are forwarded;
    replacing a forward keeps its position (nothing is skipped or repeated).
    """
    dataset = await _dataset(request)
    body = await read_json_body(request, MAX_BODY_BYTES)
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object, e.g. {"target": "https://..."}.')
    table = body.get("table")
    if table is None:
        if len(dataset.tables) != 1:
            names = ", ".join(t.name for t in dataset.tables)
            raise BadRequest(f"Dataset {dataset.id} has several tables ({names}): give 'table'.")
        table = dataset.tables[0].name
    if not isinstance(table, str) or dataset.table(table) is None:
        raise ItemNotFound(f"Table {table!r} was not found in dataset {dataset.id}.")
    storage: Storage = request.app.state.storage

    def store() -> None:
        previous = load_config(storage, dataset.id)
        if previous is not None and previous.table == table:
            start = previous.start_after  # a changed target goes on from the same place
        else:
            newest = storage.read_rows(dataset.id, table, limit=1, newest_first=True)
            start = newest[0].id if newest else 0
        try:
            config = ForwardConfig.from_request(dataset.id, table, body, start_after=start)
        except ForwardConfigError as exc:
            raise BadRequest(f"Forward of dataset {dataset.id}: {exc}.") from None
        save_config(storage, config)

    await _run(store)
    return json_response(await _answer(request, dataset))


async def delete_forward(request: Request) -> Response:
    """``DELETE /api/datasets/{id}/forward``: stop forwarding (rows pending stay spooled)."""
    dataset = await _dataset(request)
    storage: Storage = request.app.state.storage
    had: bool = await _run(lambda: clear_config(storage, dataset.id))
    return json_response({"id": dataset.id, "forward": None, "stopped": had})


def forward_metrics(states: ForwardStates | None) -> str:
    """The forwards' lines for ``/metrics`` (Prometheus text; "" when there are none)."""
    snapshot = states.snapshot() if states is not None else {}
    families = [
        ("pbistream_forward_running", "gauge", "1 while the dataset's forwarder runs.", "running"),
        (
            "pbistream_forward_pending_rows",
            "gauge",
            "Rows of the dataset not yet acknowledged upstream.",
            "pending",
        ),
        (
            "pbistream_forward_delivered_rows_total",
            "counter",
            "Rows acknowledged upstream since the forward was configured.",
            "delivered",
        ),
        (
            "pbistream_forward_dead_lettered_rows_total",
            "counter",
            "Rows the upstream refused for good.",
            "dead_lettered",
        ),
        (
            "pbistream_forward_upstream_posts_total",
            "counter",
            "POST requests sent upstream by this process.",
            "upstream_posts",
        ),
        (
            "pbistream_forward_rate_limited_total",
            "counter",
            "429 answers from upstream seen by this process.",
            "rate_limited",
        ),
    ]
    lines: list[str] = []
    for name, kind, help_text, attr in families:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for dataset_id, state in sorted(snapshot.items()):
            # Dataset ids are server-made UUIDs: safe as a label, and one per forward.
            lines.append(f'{name}{{dataset="{dataset_id}"}} {int(getattr(state, attr))}')
    return "\n".join(lines) + "\n"


routes: list[BaseRoute] = [
    Route(
        "/api/datasets/{dataset_id}/forward",
        api_endpoint(get_forward),
        methods=["GET"],
    ),
    Route(
        "/api/datasets/{dataset_id}/forward",
        api_endpoint(put_forward),
        methods=["PUT"],
    ),
    Route(
        "/api/datasets/{dataset_id}/forward",
        api_endpoint(delete_forward),
        methods=["DELETE"],
    ),
]
