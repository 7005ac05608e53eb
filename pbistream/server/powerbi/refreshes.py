"""Refresh Dataset (``POST .../datasets/{id}/refreshes``) and Get Refresh History (``GET``).

A push dataset has no data source to refresh from: its rows are live the moment they
are pushed, and Power BI lists it with ``isRefreshable: false``. Power BI documents
neither the answer to a refresh of a push dataset nor a refresh history for one;
automation tools (Activepieces, for one) call refresh after each push and ignore the
error they get. So, by default (``push_refresh=refuse``), the refresh is a 400
``InvalidRequest`` that says why, and the history is empty. ``push_refresh=accept``
answers as the documented refresh does (202 Accepted, a ``Location`` and an
``x-ms-request-id``) and records a completed ``ViaApi`` entry that changed nothing, for
code that treats any error as fatal.

Recorded refreshes are kept in one storage meta key per dataset (the newest 60, as
Power BI's history keeps up to 60), so SQLite and PostgreSQL need no schema change.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.schema import Dataset
from pbistream.server.errors import BadRequest, InvalidRequest, PayloadTooLarge, PbiJSONResponse
from pbistream.server.ingest import read_body
from pbistream.server.rest import _base, _dataset, _run, _settings, _storage
from pbistream.storage.base import Storage

__all__ = ["HISTORY_SIZE", "routes_under"]

#: Power BI keeps between 20 and 60 entries; the newest 60 are kept here.
HISTORY_SIZE = 60
_MAX_BODY_BYTES = 64 * 1024
# RefreshRequest's documented properties (Datasets - Refresh Dataset).
_REQUEST_PROPS = {
    "notifyOption",
    "applyRefreshPolicy",
    "commitMode",
    "effectiveDate",
    "maxParallelism",
    "objects",
    "retryCount",
    "type",
    "timeout",
}
_NOTIFY_OPTIONS = {"mailonfailure", "mailoncompletion", "nonotification"}
_TOP = re.compile(r"[0-9]{1,9}")
# Guards the read-modify-write of a history key within this process.
_lock = threading.Lock()


def _key(dataset_id: str) -> str:
    return f"refreshes:{dataset_id}"


def _history(storage: Storage, dataset_id: str) -> list[dict[str, Any]]:
    raw = storage.get_meta(_key(dataset_id))
    if not raw:
        return []
    entries = orjson.loads(raw)
    return entries if isinstance(entries, list) else []


def _record(storage: Storage, dataset_id: str, entry: dict[str, Any]) -> None:
    with _lock:
        entries = [entry, *_history(storage, dataset_id)][:HISTORY_SIZE]
        storage.set_meta(_key(dataset_id), orjson.dumps(entries).decode())


def _iso(moment: float) -> str:
    millis = round(moment * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{millis:03d}Z"


async def _check_request(request: Request) -> None:
    """A RefreshRequest body is optional; when sent it must hold documented properties."""
    body = await read_body(
        request, _MAX_BODY_BYTES, PayloadTooLarge("A refresh request is a small JSON object.")
    )
    if not body.strip():
        return
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest('The refresh request must be a JSON object, e.g. {"notifyOption": ...}.')
    unknown = sorted(set(data) - _REQUEST_PROPS)
    if unknown:
        raise BadRequest(
            "Bad Request",
            details=[
                {
                    "message": f"The property '{unknown[0]}' does not exist on type "
                    "'Microsoft.PowerBI.ServiceContracts.Api.RefreshRequest'. Make sure to "
                    "only use property names that are defined by the type.",
                    "target": "refreshRequest",
                }
            ],
        )
    notify = data.get("notifyOption")
    if notify is not None and (
        not isinstance(notify, str) or notify.lower() not in _NOTIFY_OPTIONS
    ):
        raise BadRequest(
            f"notifyOption {notify!r} is not one of MailOnFailure, MailOnCompletion, "
            "NoNotification."
        )


def _not_refreshable(dataset: Dataset) -> InvalidRequest:
    return InvalidRequest(
        f"Dataset {dataset.id} is a {dataset.mode.value} dataset: it has no data source to "
        "refresh from (isRefreshable is false) and its rows are live as soon as they are "
        "pushed, so there is nothing to refresh. Start the server with "
        "PBISTREAM_PUSH_REFRESH=accept to answer 202 instead."
    )


async def refresh_dataset(request: Request) -> Response:
    """RefreshDataset(InGroup): 400 by default; 202 with ``push_refresh=accept``."""
    dataset = await _dataset(request)
    await _check_request(request)
    if _settings(request).push_refresh != "accept":
        raise _not_refreshable(dataset)
    request_id = str(uuid.uuid4())
    now = time.time()
    entry = {
        "requestId": request_id,
        "id": int(now * 1000),
        "refreshType": "ViaApi",
        "startTime": _iso(now),
        "endTime": _iso(now),
        "status": "Completed",
    }
    await _run(_record, _storage(request), dataset.id, entry)
    location = f"{_base(request)}/datasets/{dataset.id}/refreshes/{request_id}"
    return Response(
        status_code=202,
        # The refresh's own id, as Power BI's sample answer shows it; the server-wide
        # RequestId header (the request's correlation id) is added by the middleware.
        headers={"Location": location, "x-ms-request-id": request_id},
    )


async def refresh_history(request: Request) -> Response:
    """GetRefreshHistory(InGroup): ``{"value": [...]}``, newest first; ``$top`` limits it."""
    dataset = await _dataset(request)
    top = HISTORY_SIZE
    raw_top = request.query_params.get("$top")
    if raw_top is not None:
        if not _TOP.fullmatch(raw_top.strip()) or int(raw_top) < 1:
            raise BadRequest(f"$top must be a whole number of at least 1, got {raw_top[:20]!r}.")
        top = int(raw_top)
    entries = await _run(_history, _storage(request), dataset.id)
    return PbiJSONResponse(
        {
            "@odata.context": f"{_base(request)}/$metadata#refreshes",
            "value": entries[:top],
        }
    )


def routes_under(root: str) -> list[BaseRoute]:
    """The refresh routes under one API root."""
    path = f"{root}/datasets/{{dataset_id}}/refreshes"
    return [
        Route(path, refresh_dataset, methods=["POST"]),
        Route(path, refresh_history, methods=["GET"]),
    ]
