"""Where pushed rows wait for the worker: bounded memory, or the durable spool.

Both queues hand the worker ``(ref, row, index)`` items: ``ref`` settles the row later
(a spool id, or ``None`` in memory), ``row`` is the pushed mapping and ``index`` the
row's number for error messages (its position in the push order, or its spool id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from pbistream.client.options import BufferOptions
from pbistream.exceptions import BufferFullError
from pbistream.spool import Spool

__all__ = ["Item", "MemoryQueue", "SpoolQueue"]

logger = logging.getLogger("pbistream.client")

Item = tuple[int | None, Any, int]


class MemoryQueue:
    """A bounded FIFO of rows in memory, with the configured full policy.

    ``put`` is called on the callers' threads and ``take`` on the worker's; one lock
    guards the deque and the counters, and ``room`` wakes callers blocked on a full
    buffer.
    """

    def __init__(self, options: BufferOptions, lock: threading.Lock) -> None:
        self.options = options
        self._rows: deque[Any] = deque()
        self._lock = lock
        self._room = threading.Condition(lock)
        self.taken = 0  # rows handed to the worker or dropped: the next row's index
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._rows)

    def put_locked(
        self, rows: Sequence[Any], clock: Callable[[], float], *, may_block: bool = True
    ) -> int:
        """Append rows; the caller holds the lock. Returns how many were dropped.

        ``may_block=False`` (the async client, which must not block its event loop)
        treats a full buffer under the "block" policy as an immediate timeout.

        Raises:
            BufferFullError: ``when_full="block"`` and no room within the timeout.
        """
        limit = self.options.max_rows
        queue = self._rows
        if len(queue) + len(rows) <= limit:
            queue.extend(rows)
            return 0
        if self.options.when_full == "drop_oldest":
            queue.extend(rows)
            excess = len(queue) - limit
            for _ in range(excess):
                queue.popleft()
            self.taken += excess
            self.dropped += excess
            return excess
        if len(rows) > limit:
            raise BufferFullError(
                f"{len(rows):,} rows do not fit a buffer of {limit:,} rows; push fewer at once"
            )
        deadline = clock() + (self.options.timeout if may_block else 0.0)
        while len(queue) + len(rows) > limit:
            remaining = deadline - clock()
            if remaining <= 0 or not self._room.wait(remaining):
                if len(queue) + len(rows) <= limit:
                    break
                raise BufferFullError(
                    f"the buffer held {limit:,} rows for {self.options.timeout:g} s; "
                    "the server is slower than the pushes (use a spool, or a larger buffer)"
                )
        queue.extend(rows)
        return 0

    def take_locked(self, limit: int) -> list[Item]:
        """Pop up to ``limit`` rows; the caller holds the lock."""
        queue = self._rows
        count = min(limit, len(queue))
        start = self.taken
        items: list[Item] = [(None, queue.popleft(), start + i) for i in range(count)]
        self.taken += count
        if count:
            self._room.notify_all()
        return items

    def give_back_locked(self, rows: list[Any]) -> None:
        """Put taken rows back at the front, in order (they did not fit a batch)."""
        self._rows.extendleft(reversed(rows))
        self.taken -= len(rows)

    def drain_locked(self) -> list[Any]:
        """Remove and return every row (the client is closing)."""
        rows = list(self._rows)
        self._rows.clear()
        return rows


class SpoolQueue:
    """Rows in a :class:`~pbistream.spool.Spool`; ``put`` commits before it returns."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.sizes: dict[int, int] = {}  # claimed row id -> data bytes, until settled

    def put(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Encode (already untyped-normalised) rows and commit them; return how many."""
        encoded = [orjson.dumps(row) for row in rows]
        if len(encoded) == 1:
            self.spool.put(encoded[0])
        elif encoded:
            self.spool.put_many(encoded)
        return len(encoded)

    def take(self, limit: int) -> tuple[list[Item], int | None]:
        """Claim rows; return the items and the sequence number they were sent under before."""
        claimed = self.spool.claim(limit)
        seq = claimed[0].seq if claimed else None
        for row in claimed:
            self.sizes[row.id] = len(row.data)
        return [(r.id, orjson.loads(r.data), r.id) for r in claimed], seq

    def forget(self, ids: list[int]) -> None:
        """Drop the sizes of rows that were settled otherwise (failed, released)."""
        for i in ids:
            self.sizes.pop(i, None)

    def ack(self, ids: list[int]) -> None:
        """Delete delivered rows (their sizes are known: no query needed)."""
        sizes = self.sizes
        nbytes = sum(sizes.pop(i, 0) for i in ids)
        self.spool.ack(ids, nbytes)


def monotonic() -> float:
    """The default clock of the drivers."""
    return time.monotonic()
