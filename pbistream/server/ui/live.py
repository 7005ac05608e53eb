"""One live feed for many datasets: ``GET /api/live?dataset=A&dataset=B&cursor=10.20``.

A browser keeps at most six HTTP/1.1 connections to a server, and an EventSource
holds one for good; a dashboard with tiles from six datasets would have none left
for anything else. This endpoint merges the per-dataset feeds of
:func:`pbistream.server.live_feed.event_stream` into one stream. Each event names its
dataset::

    id: 1234.987
    event: rows
    data: {"dataset": "A", "table": "RealTimeData", "rows": [...]}

The ``id`` is the resume cursor of every dataset, in the order of the ``dataset``
parameters, so a reconnect (``Last-Event-ID``) replays exactly what each dataset
missed. A dataset that does not exist, or is deleted while watched, gets
``event: deleted`` with ``{"dataset": id}``; the others carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pbistream.server.api import KEEPALIVE_SECONDS, streaming_floor
from pbistream.server.errors import BadRequest
from pbistream.server.live import LiveHub
from pbistream.server.live_feed import check_feed_room, event_stream
from pbistream.server.settings import Settings
from pbistream.server.ui.http import api_endpoint
from pbistream.storage.base import Storage

__all__ = ["MAX_DATASETS", "merged_stream", "parse_cursor", "routes"]

#: Most datasets one merged feed follows.
MAX_DATASETS = 100
_MAX_ID = 2**63 - 1
_ROWS_EVENT = re.compile(rb"^id: (\d+)\nevent: rows\ndata: \{(.*)\n\n$", re.DOTALL)
# Events waiting for a slow reader; beyond it the per-dataset feeds wait (and the hub
# cuts them off and lets them catch up from storage if that lasts).
_QUEUE = 256


def parse_cursor(text: str, count: int) -> list[int] | None:
    """``"10.0.7"`` → ``[10, 0, 7]``; None unless it holds ``count`` row ids."""
    parts = text.strip().split(".")
    if len(parts) != count or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    values = [int(p) for p in parts]
    return values if all(v <= _MAX_ID for v in values) else None


def _deleted(dataset_id: str) -> bytes:
    return b"event: deleted\ndata: %s\n\n" % orjson.dumps({"dataset": dataset_id})


async def merged_stream(
    streams: list[AsyncIterator[bytes] | None],
    dataset_ids: list[str],
    cursors: list[int],
) -> AsyncIterator[bytes]:
    """Interleave per-dataset SSE streams into one, tagging rows with their dataset.

    Args:
        streams: One ``event_stream`` per dataset, or None for a dataset that is gone.
        dataset_ids: The datasets, in cursor order.
        cursors: The starting cursor of each dataset (updated as rows go out).

    Yields:
        Encoded SSE messages.
    """
    queue: asyncio.Queue[tuple[int, bytes | None]] = asyncio.Queue(maxsize=_QUEUE)

    async def pump(index: int, stream: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in stream:
                await queue.put((index, chunk))
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
            await queue.put((index, None))

    yield b"retry: 1000\n: connected\n\n"
    for index, stream in enumerate(streams):
        if stream is None:
            yield _deleted(dataset_ids[index])
    tasks = [
        asyncio.create_task(pump(i, s), name=f"pbistream-live-{dataset_ids[i]}")
        for i, s in enumerate(streams)
        if s is not None
    ]
    running = len(tasks)
    try:
        while running:
            index, chunk = await queue.get()
            if chunk is None:
                running -= 1
                continue
            match = _ROWS_EVENT.match(chunk)
            if match is not None:
                cursors[index] = max(cursors[index], int(match.group(1)))
                cursor = ".".join(map(str, cursors)).encode()
                tag = orjson.dumps(dataset_ids[index])
                yield b'id: %s\nevent: rows\ndata: {"dataset":%s,%s\n\n' % (
                    cursor,
                    tag,
                    match.group(2),
                )
            elif chunk.startswith(b"event: deleted"):
                yield _deleted(dataset_ids[index])
            elif chunk.startswith(b": keepalive"):
                yield chunk
            # The per-dataset greetings ("retry:", ": connected") were sent once above.
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@api_endpoint
async def live_many(request: Request) -> Response:
    """``GET /api/live?dataset=A&dataset=B&cursor=10.20`` (or ``Last-Event-ID``)."""
    dataset_ids = list(dict.fromkeys(request.query_params.getlist("dataset")))
    if not 1 <= len(dataset_ids) <= MAX_DATASETS:
        raise BadRequest(f"Give 1 to {MAX_DATASETS} 'dataset' parameters.")
    cursors = [0] * len(dataset_ids)
    for name, text in (
        ("cursor", request.query_params.get("cursor")),
        ("Last-Event-ID", request.headers.get("last-event-id")),
    ):
        if not text:
            continue
        parsed = parse_cursor(text, len(dataset_ids))
        if parsed is None:
            raise BadRequest(
                f"'{name}' must be {len(dataset_ids)} row ids joined by '.', one per dataset."
            )
        cursors = [max(a, b) for a, b in zip(cursors, parsed, strict=True)]
    storage: Storage = request.app.state.storage
    settings: Settings = request.app.state.settings
    hub: LiveHub = request.app.state.hub
    check_feed_room(hub, len(dataset_ids))
    streams: list[AsyncIterator[bytes] | None] = []
    for dataset_id, after in zip(dataset_ids, cursors, strict=True):
        dataset = await run_in_threadpool(storage.get_dataset, dataset_id)
        if dataset is None:
            streams.append(None)
            continue
        streams.append(
            event_stream(
                hub,
                storage,
                dataset_id,
                after=after,
                keepalive=settings.scaled(KEEPALIVE_SECONDS),
                oldest=functools.partial(streaming_floor, dataset, settings.time_scale),
            )
        )
    return StreamingResponse(
        merged_stream(streams, dataset_ids, cursors),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


routes: list[BaseRoute] = [Route("/api/live", live_many, methods=["GET"])]
