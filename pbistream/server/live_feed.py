"""One live feed's bytes: Server-Sent Events that replay stored rows, then follow the hub.

:func:`event_stream` is the body of ``GET /api/datasets/{id}/live`` and of each
dataset in the merged ``/api/live``; :mod:`pbistream.server.live` fans the rows out.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable

import anyio.to_thread
import orjson

from pbistream.server.errors import TooManyRequests
from pbistream.server.live import REPLAY_PAGE_ROWS, LiveHub, group_by_table
from pbistream.storage.base import Storage, StoredRow

__all__ = [
    "DELETED_EVENT",
    "RETRY_MILLISECONDS",
    "check_feed_room",
    "event_stream",
    "format_event",
]

# Tell EventSource to reconnect quickly after a dropped connection (milliseconds).
RETRY_MILLISECONDS = 1000
# Sent (then the stream ends) when the dataset is deleted while someone watches it.
DELETED_EVENT = b"event: deleted\ndata: {}\n\n"


def check_feed_room(hub: LiveHub, datasets: int) -> None:
    """Refuse a new feed of ``datasets`` datasets when the hub is at its cap.

    Raises:
        TooManyRequests: 429 with ``Retry-After``; close other feeds (tabs) or retry.
    """
    if not hub.has_room_for(datasets):
        raise TooManyRequests(
            f"The server already serves {hub.max_subscriptions:,} live feed subscriptions "
            "(one per dataset of each open feed); close some dashboards or try again.",
            retry_after=5,
            reason="live_feeds",
        )


def format_event(table: str, rows: list[StoredRow]) -> bytes:
    """One SSE ``rows`` event; its ``id`` is the last row's id (the resume cursor).

    Args:
        table: The rows' table.
        rows: Rows of that table, in id order (at least one).

    Returns:
        The encoded event, ending with the blank line that dispatches it.
    """
    payload = {
        "table": table,
        "rows": [{"id": r.id, "received_at": r.received_at, "data": r.data} for r in rows],
    }
    # orjson never emits a raw newline, so the JSON fits one ``data:`` line.
    data = orjson.dumps(payload)
    return b"id: %d\nevent: rows\ndata: %s\n\n" % (rows[-1].id, data)


async def _stored_after(
    storage: Storage, dataset_id: str, after: int, oldest: Callable[[], float | None]
) -> AsyncIterator[list[StoredRow]]:
    """Pages of stored rows with ``id > after``, oldest first, until there are no more."""
    while True:
        page = await anyio.to_thread.run_sync(
            functools.partial(
                storage.read_rows,
                dataset_id,
                after_id=after,
                since=oldest(),
                limit=REPLAY_PAGE_ROWS,
            )
        )
        if page:
            yield page
            after = page[-1].id
        if len(page) < REPLAY_PAGE_ROWS:
            return


async def event_stream(
    hub: LiveHub,
    storage: Storage,
    dataset_id: str,
    *,
    after: int | None,
    keepalive: float,
    oldest: Callable[[], float | None] = lambda: None,
) -> AsyncIterator[bytes]:
    """The bytes of one live feed: replay from storage after ``after``, then live rows.

    The subscription starts *before* the replay, so a row committed meanwhile is
    either replayed or delivered live (live rows at or below the replayed cursor
    are skipped). A subscriber the hub drops for being slow catches up the same way,
    and so does every quiet moment (each keepalive tick), a fallback for rows another
    replica stored if insert notices (:meth:`LiveHub.follow`) were lost. The stream
    opens with ``retry:`` and a ``: connected`` comment once subscribed, and ends
    with an ``event: deleted`` if the dataset goes away.

    Args:
        hub: The live hub.
        storage: Where every published row is also kept.
        dataset_id: The dataset to follow.
        after: Replay rows with a greater id; None means "only rows from now on".
        keepalive: Seconds of silence before a ``: keepalive`` comment.
        oldest: Returns the earliest arrival time still readable (the streaming
            cache), or None for no floor.

    Yields:
        Encoded SSE messages.
    """
    last = after
    greeted = False
    while True:
        async with hub.subscribe(dataset_id, storage=storage) as sub:
            if last is None:
                newest = await anyio.to_thread.run_sync(
                    lambda: storage.read_rows(dataset_id, limit=1, newest_first=True)
                )
                last = newest[0].id if newest else 0
            if not greeted:
                # Sent once subscribed: from here on no new row can be missed.
                yield b"retry: %d\n: connected\n\n" % RETRY_MILLISECONDS
                greeted = True
            async for page in _stored_after(storage, dataset_id, last, oldest):
                for table, run in group_by_table(page):
                    yield format_event(table, run)
                last = page[-1].id
            while True:
                batches = await sub.get(timeout=keepalive)
                if batches is None:
                    if sub.closed:
                        return
                    break  # dropped for being slow: catch up from storage
                if not batches:
                    # A quiet moment: end the stream if the dataset is gone (EventSource
                    # then reconnects, gets a 404 and stops), else catch up and keep alive.
                    exists = await anyio.to_thread.run_sync(storage.get_dataset, dataset_id)
                    if exists is None:
                        yield DELETED_EVENT
                        return
                    async for page in _stored_after(storage, dataset_id, last, oldest):
                        for table, run in group_by_table(page):
                            yield format_event(table, run)
                        last = page[-1].id
                    yield b": keepalive\n\n"
                    continue
                fresh = [row for batch in batches for row in batch.rows if row.id > last]
                for table, run in group_by_table(fresh):
                    yield format_event(table, run)
                if fresh:
                    last = max(row.id for row in fresh)
