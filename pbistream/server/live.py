"""The live feed hub: fans newly stored rows out to every open live feed of a dataset.

Ingest calls :meth:`LiveHub.publish` right after a commit; each subscriber (one
open ``/api/datasets/{id}/live`` stream) owns a small bounded queue. ``publish``
never blocks and never grows memory without bound: when a subscriber's queue is
full the subscriber is cut off and marked *lagged*, and its stream catches up
from storage (which holds every row the hub ever published) before subscribing
again. So a slow browser costs a few reads, not the server's memory. The bytes of
one feed (replay, then live rows) are :mod:`pbistream.server.live_feed`'s part.

With a storage shared by several server replicas (PostgreSQL, which has the
:class:`~pbistream.storage.base.NotifiesInserts` capability), rows stored through
another replica must reach this one's subscribers too. The hub then *follows* the
storage: every insert, by any replica, sends a notice (dataset id and id range);
one pump thread reads each watched dataset's new rows by cursor and fans them out
in id order, its own replica's rows included, so rows of two replicas can never
overtake each other. A notice at or below the dataset's cursor (rows this hub has
already fanned out, e.g. its own) costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio.to_thread

from pbistream.redact import redact_text
from pbistream.storage.base import (
    InsertNotice,
    InsertSubscription,
    NotifiesInserts,
    Storage,
    StoredRow,
)

__all__ = [
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_QUEUE_ROWS",
    "DEFAULT_QUEUE_SIZE",
    "REPLAY_PAGE_ROWS",
    "LiveBatch",
    "LiveHub",
    "Subscription",
    "group_by_table",
]

# A subscriber this far behind is better served by reading storage. Counted in
# batches (one per publish call) and in rows, so a few 10,000-row posts cannot pin
# much memory either (the rows themselves are shared by every subscriber).
DEFAULT_QUEUE_SIZE = 256
DEFAULT_QUEUE_ROWS = 20_000
# Open subscriptions (one per dataset of each open feed) the hub serves at most. Each
# holds a task, a socket and a queue; 20 dashboards of 7 datasets use 140. Past the cap
# a new feed is refused (429) rather than letting connections pile up without bound.
DEFAULT_MAX_SUBSCRIPTIONS = 2_000

logger = logging.getLogger("pbistream.server")


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """Rows of one table that were stored together (one ingest request)."""

    table: str
    rows: list[StoredRow]


class Subscription:
    """One subscriber's view of a dataset's new rows.

    Iterate with :meth:`get`; when :attr:`lagged` becomes True the hub has dropped
    this subscriber because it fell behind, and the reader must catch up from
    storage and subscribe again.
    """

    __slots__ = (
        "_loop",
        "_max_rows",
        "_queue",
        "_queued_rows",
        "_size",
        "closed",
        "dataset_id",
        "lagged",
    )

    def __init__(
        self,
        dataset_id: str,
        loop: asyncio.AbstractEventLoop,
        size: int,
        max_rows: int = DEFAULT_QUEUE_ROWS,
    ) -> None:
        self.dataset_id = dataset_id
        self.lagged = False
        self.closed = False
        self._loop = loop
        # One extra slot so the "you are dropped" wake-up always fits.
        self._queue: asyncio.Queue[LiveBatch | None] = asyncio.Queue(maxsize=size + 1)
        self._size = size
        self._max_rows = max_rows
        self._queued_rows = 0

    def _offer(self, batch: LiveBatch) -> bool:
        """Queue a batch (event-loop thread only); False when the subscriber is too slow.

        One batch always fits an empty queue, however many rows it holds.
        """
        too_many_rows = self._queued_rows + len(batch.rows) > self._max_rows
        if self._queue.qsize() >= self._size or (too_many_rows and not self._queue.empty()):
            self.lagged = True
            self._queue.put_nowait(None)  # the spare slot: wakes the reader
            return False
        self._queue.put_nowait(batch)
        self._queued_rows += len(batch.rows)
        return True

    def _wake(self) -> None:
        """Tell the reader to stop (the hub is closing)."""
        self.closed = True
        if not self._queue.full():
            self._queue.put_nowait(None)

    async def get(self, timeout: float | None = None) -> list[LiveBatch] | None:
        """Wait for new rows; return every batch queued so far, in order.

        Args:
            timeout: Seconds to wait; on timeout an empty list is returned.

        Returns:
            The queued batches (several when they arrived together), an empty list on
            timeout, or ``None`` when the subscription ended (lagged or hub closed).
        """
        if self.lagged or self.closed:
            return None
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return []
        batches: list[LiveBatch] = []
        item: LiveBatch | None = first
        while True:
            if item is None:
                return batches or None
            batches.append(item)
            self._queued_rows -= len(item.rows)
            if self._queue.empty():
                return batches
            item = self._queue.get_nowait()


class LiveHub:
    """Per-dataset fan-out of new rows to subscribers (asyncio queues, bounded)."""

    def __init__(
        self,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        queue_rows: int = DEFAULT_QUEUE_ROWS,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
    ) -> None:
        self._queue_size = queue_size
        self._queue_rows = queue_rows
        self.max_subscriptions = max_subscriptions
        self._subscribers: dict[str, set[Subscription]] = {}
        self._closed = False
        # publish() may come from a worker thread; the queues must only be touched
        # on their own loop, so such calls are handed over with call_soon_threadsafe.
        self._lock = threading.Lock()
        # Following a shared storage (see the module docstring); all under _lock.
        self._storage: Storage | None = None
        self._listener: InsertSubscription | None = None
        self._pump: threading.Thread | None = None
        self._wake = threading.Event()
        self._cursors: dict[str, int] = {}  # dataset -> last id fanned out
        self._dirty: set[str] = set()  # datasets with rows newer than their cursor

    def follow(self, storage: Storage) -> None:
        """Hear about every replica's inserts, if ``storage`` can tell (else do nothing).

        Called by :func:`event_stream` for each feed; only the first call starts the
        listener and the pump thread.
        """
        if not isinstance(storage, NotifiesInserts):
            return
        with self._lock:
            if self._storage is not None or self._closed:
                return
            self._storage = storage
            self._pump = threading.Thread(target=self._pump_rows, name="pbistream-live-pump")
            self._pump.daemon = True
        self._pump.start()
        listener = storage.subscribe_inserts(self._on_notice)
        self._listener = listener
        if self._closed:  # close() ran meanwhile and could not see the listener yet
            listener.close()

    def _on_notice(self, notice: InsertNotice | None) -> None:
        """An insert was committed somewhere (listener thread); None: maybe several."""
        with self._lock:
            if notice is None:
                self._dirty.update(self._cursors)
            else:
                cursor = self._cursors.get(notice.dataset_id)
                if cursor is None or notice.last_id <= cursor:
                    return  # nobody watches, or rows this hub already fanned out
                self._dirty.add(notice.dataset_id)
        self._wake.set()

    def _pump_rows(self) -> None:
        """The pump thread: read each dirty dataset's new rows and fan them out."""
        while not self._closed:
            # The timeout also retries a dataset whose read failed.
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                todo, self._dirty = self._dirty, set()
            for dataset_id in todo:
                try:
                    self._catch_up(dataset_id)
                except Exception as exc:  # the database hiccupped: retry on the next turn
                    if self._closed:
                        return  # the storage may be closing with the server
                    logger.warning(
                        "live feed could not read new rows of %s (%s); retrying",
                        dataset_id,
                        redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0]),
                    )
                    with self._lock:
                        self._dirty.add(dataset_id)

    def _catch_up(self, dataset_id: str) -> None:
        storage = self._storage
        assert storage is not None
        while not self._closed:
            with self._lock:
                cursor = self._cursors.get(dataset_id)
            if cursor is None:
                return  # its last subscriber left
            page = storage.read_rows(dataset_id, after_id=cursor, limit=REPLAY_PAGE_ROWS)
            if not page:
                return
            with self._lock:
                if self._cursors.get(dataset_id) != cursor:
                    return  # unsubscribed meanwhile
                self._cursors[dataset_id] = page[-1].id
            for table, run in group_by_table(page):
                self._fan_out(dataset_id, LiveBatch(table, run))
            if len(page) < REPLAY_PAGE_ROWS:
                return

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions across all datasets (for ``/metrics``)."""
        with self._lock:
            return sum(len(subs) for subs in self._subscribers.values())

    def has_room_for(self, count: int) -> bool:
        """True if ``count`` more subscriptions stay within :attr:`max_subscriptions`.

        Checked when a feed is requested, before its response starts; feeds opening at
        the same moment may pass together, so the cap can be exceeded by at most those.
        """
        return self.subscriber_count + count <= self.max_subscriptions

    def publish(self, dataset_id: str, table: str, rows: list[StoredRow]) -> None:
        """Hand newly committed rows to the dataset's subscribers. Never blocks.

        Args:
            dataset_id: The dataset the rows were stored in.
            table: Their table.
            rows: The stored rows, in id order.
        """
        if not rows:
            return
        if self._storage is not None:
            # Following a shared storage: the pump reads these rows by cursor, in id
            # order with the other replicas' rows (see the module docstring).
            self._on_notice(InsertNotice(dataset_id, rows[0].id, rows[-1].id))
            return
        self._fan_out(dataset_id, LiveBatch(table, rows))

    def _fan_out(self, dataset_id: str, batch: LiveBatch) -> None:
        """Offer a batch to every subscriber of the dataset, on each one's loop."""
        with self._lock:
            subs = self._subscribers.get(dataset_id)
            if not subs:
                return
            targets = list(subs)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for sub in targets:
            if sub._loop is running:
                self._deliver(sub, batch)
            elif not sub._loop.is_closed():
                sub._loop.call_soon_threadsafe(self._deliver, sub, batch)

    def _deliver(self, sub: Subscription, batch: LiveBatch) -> None:
        if sub.lagged or sub.closed:
            return
        if not sub._offer(batch):
            self._remove(sub)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subscribers.get(sub.dataset_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[sub.dataset_id]
                    self._cursors.pop(sub.dataset_id, None)

    @asynccontextmanager
    async def subscribe(
        self, dataset_id: str, *, storage: Storage | None = None
    ) -> AsyncIterator[Subscription]:
        """Receive the dataset's new rows for the duration of the ``async with`` block.

        Args:
            dataset_id: The dataset to follow.
            storage: Where the rows are kept; a storage shared by several replicas
                makes the hub follow it (see :meth:`follow`).

        Yields:
            The subscription; it is removed from the hub when the block exits.
        """
        if storage is not None:
            self.follow(storage)
        sub = Subscription(
            dataset_id, asyncio.get_running_loop(), self._queue_size, self._queue_rows
        )
        if self._closed:
            sub._wake()
        else:
            with self._lock:
                self._subscribers.setdefault(dataset_id, set()).add(sub)
                start = dataset_id not in self._cursors
        try:
            if self._storage is not None and not self._closed and start:
                await self._start_cursor(dataset_id)
            yield sub
        finally:
            self._remove(sub)

    async def _start_cursor(self, dataset_id: str) -> None:
        """Start the pump's cursor of a newly watched dataset at its newest committed row.

        Runs after the subscriber is registered and before its replay reads storage:
        a dataset's uncommitted rows all have larger ids than its committed ones, so
        every row committed from here on is above the cursor and gets pumped, and
        every row at or below it is in the replay.
        """
        storage = self._storage
        assert storage is not None
        newest = await anyio.to_thread.run_sync(
            lambda: storage.read_rows(dataset_id, limit=1, newest_first=True)
        )
        with self._lock:
            if dataset_id in self._subscribers:
                self._cursors.setdefault(dataset_id, newest[0].id if newest else 0)

    def close(self) -> None:
        """End every subscription (server shutdown), so open streams finish."""
        self._closed = True
        self._wake.set()  # lets the pump thread end
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            subs = [s for group in self._subscribers.values() for s in group]
            self._subscribers.clear()
            self._cursors.clear()
        for sub in subs:
            if not sub._loop.is_closed():
                sub._loop.call_soon_threadsafe(sub._wake)


# Rows read from storage per page (catching up, replaying): bounded memory per read.
REPLAY_PAGE_ROWS = 500


def group_by_table(rows: list[StoredRow]) -> list[tuple[str, list[StoredRow]]]:
    """Split id-ordered rows into runs of one table each (one event per run)."""
    runs: list[tuple[str, list[StoredRow]]] = []
    for row in rows:
        if runs and runs[-1][0] == row.table:
            runs[-1][1].append(row)
        else:
            runs.append((row.table, [row]))
    return runs
