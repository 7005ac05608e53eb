"""The streaming dataset's Push URL: ``POST /beta/{workspaceId}/datasets/{datasetId}/rows?key=K``.

This is the URL Power BI's UI shows under "API Info" and the seed's snippet posts
to: a bare JSON array of rows (a push or hybrid dataset's URL also takes
``{"rows": [...]}``), no Authorization header, the per-dataset key in the
query string (a Bearer token works too, §6 #41). Other query parameters (``ctid``,
``experience``) are ignored. The workspace segment is not checked: the key is the
credential, and Power BI itself treats it as the tenant id.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.redact import constant_time_equal
from pbistream.schema import Dataset, Mode, Table
from pbistream.server.auth import principal_of
from pbistream.server.errors import EntityNotFound, Forbidden, ItemNotFound
from pbistream.server.ingest import Shape, ingest
from pbistream.server.log_secrets import remember_secret
from pbistream.server.roles import Role
from pbistream.server.settings import Settings

__all__ = ["routes", "streaming_table"]

STREAMING_TABLE = "RealTimeData"


def streaming_table(dataset: Dataset) -> Table | None:
    """The table a Push URL feeds: ``RealTimeData`` if present, else the first table."""
    return dataset.table(STREAMING_TABLE) or (dataset.tables[0] if dataset.tables else None)


async def push_rows(request: Request) -> Response:
    """Store the rows of one Push URL request (200 once committed)."""
    settings: Settings = request.app.state.settings
    dataset_id = request.path_params["dataset_id"].lower()
    dataset: Dataset | None = await anyio.to_thread.run_sync(
        request.app.state.storage.get_dataset, dataset_id
    )
    if dataset is not None and dataset.push_key:
        # The request's log lines mask this key wherever a malformed URL put it.
        remember_secret(request.scope, dataset.push_key)
    # A Bearer token instead of the key: the auth middleware resolved it; it must be
    # allowed to push rows (contributor or above) to this dataset.
    principal = principal_of(request)
    token_ok = (
        principal is not None
        and principal.role >= Role.CONTRIBUTOR
        and principal.allows_dataset(dataset_id)
    )
    key = request.query_params.get("key")
    key_ok = (
        dataset is not None
        and bool(key)
        and dataset.push_key is not None
        and constant_time_equal(key, dataset.push_key)
    )
    if not (key_ok or token_ok):
        # The same answer for an unknown dataset and a wrong key: a key probe learns nothing.
        refused = Forbidden(
            "The push key is missing or wrong. Copy the dataset's Push URL again "
            "(keys change when rotated)."
        )
        refused.status = settings.push_key_status  # 403, or 401 (reference §7.2)
        raise refused
    if dataset is None:
        raise EntityNotFound(f"Dataset {dataset_id} was not found.")
    table = streaming_table(dataset)
    if table is None:
        raise ItemNotFound(f"Dataset {dataset.id} has no table to push to.")
    # {"rows": [...]} is evidenced only where the push path exists (push and hybrid);
    # a pure Streaming dataset keeps the bare array (docs/compatibility.md).
    shape: Shape = "array" if dataset.mode is Mode.STREAMING else "push"
    return await ingest(request, dataset, table, shape=shape, unknown=settings.unknown_fields)


routes: list[BaseRoute] = [
    Route("/beta/{workspace_id}/datasets/{dataset_id}/rows", push_rows, methods=["POST"]),
]
