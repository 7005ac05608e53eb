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

__all__ = ["FramePart", "Item", "MemoryQueue", "SpoolQueue", "entry_rows", "expand_frames"]

logger = logging.getLogger("pbistream.client")

Item = tuple[int | None, Any, int]


class FramePart:
    """Rows ``start:stop`` of a DataFrame, queued as one entry and converted on the worker.

    ``push_dataframe()`` queues these instead of dicts, so the caller never pays for the
    conversion (about 3 µs a row); the worker turns one part into rows when it takes
    it for a batch, so at most a batch's worth of converted rows exists at a time.
    """

    __slots__ = ("frame", "start", "stop")

    def __init__(self, frame: Any, start: int, stop: int) -> None:
        self.frame = frame
        self.start = start
        self.stop = stop

    def __len__(self) -> int:
        return self.stop - self.start

    def rows(self) -> list[dict[str, Any]]:
        """The part as dicts; NaN, NaT and NA become ``None``."""
        part = self.frame.iloc[self.start : self.stop]
        # astype(object) keeps NaT/NA as themselves rather than floats; the value rules
        # turn every missing value into a null.
        rows: list[dict[str, Any]] = (
            part.astype(object).where(part.notna(), None).to_dict("records")
        )
        return rows


def expand_frames(
    items: list[Item], failed: Callable[[FramePart, int, Exception], None]
) -> list[Item]:
    """Replace each :class:`FramePart` item by one item per row, in order.

    A part that cannot be converted is handed to ``failed(part, index, error)`` (to be
    dead-lettered) instead of raising: its rows were already taken from the queue, and
    an exception here would lose them without a word.
    """
    if not any(type(row) is FramePart for _, row, _ in items):
        return items
    out: list[Item] = []
    for ref, row, index in items:
        if type(row) is FramePart:
            try:
                converted = row.rows()
            except Exception as exc:  # anything pandas raises: the rows must be reported
                failed(row, index, exc)
                continue
            out.extend((None, value, index + i) for i, value in enumerate(converted))
        else:
            out.append((ref, row, index))
    return out


class MemoryQueue:
    """A bounded FIFO of rows in memory, with the configured full policy.

    ``put`` is called on the callers' threads and ``take`` on the worker's; one lock
    guards the deque and the counters, and ``room`` wakes callers blocked on a full
    buffer. An entry is a row, or a :class:`FramePart` standing for many rows; the
    bound and the policy count rows either way.
    """

    def __init__(self, options: BufferOptions, lock: threading.Lock) -> None:
        self.options = options
        self._rows: deque[Any] = deque()
        self._count = 0  # rows held, a FramePart counting as its rows
        self._parts = 0  # FrameParts held: none keeps take() on its fast path
        self._lock = lock
        self._room = threading.Condition(lock)
        self.taken = 0  # rows handed to the worker or dropped: the next row's index
        self.dropped = 0

    def __len__(self) -> int:
        return self._count

    def put_locked(
        self,
        rows: Sequence[Any],
        clock: Callable[[], float],
        *,
        may_block: bool = True,
        count: int | None = None,
    ) -> int:
        """Append rows; the caller holds the lock. Returns how many were dropped.

        ``may_block=False`` (the async client, which must not block its event loop)
        treats a full buffer under the "block" policy as an immediate timeout.
        ``count`` is the number of rows ``rows`` stands for (FrameParts), if not its length.

        Raises:
            BufferFullError: ``when_full="block"`` and no room within the timeout.
        """
        size = len(rows) if count is None else count
        limit = self.options.max_rows
        if self._count + size <= limit:
            self._append(rows, size, count is not None)
            return 0
        if self.options.when_full == "drop_oldest":
            self._append(rows, size, count is not None)
            excess = self._count - limit
            self._drop_oldest(excess)
            self.taken += excess
            self.dropped += excess
            return excess
        if size > limit:
            raise BufferFullError(
                f"{size:,} rows do not fit a buffer of {limit:,} rows; push fewer at once"
            )
        deadline = clock() + (self.options.timeout if may_block else 0.0)
        while self._count + size > limit:
            remaining = deadline - clock()
            if remaining <= 0 or not self._room.wait(remaining):
                if self._count + size <= limit:
                    break
                raise BufferFullError(
                    f"the buffer held {limit:,} rows for {self.options.timeout:g} s; "
                    "the server is slower than the pushes (use a spool, or a larger buffer)"
                )
        self._append(rows, size, count is not None)
        return 0

    def _append(self, rows: Sequence[Any], size: int, parts: bool) -> None:
        self._rows.extend(rows)
        self._count += size
        if parts:
            self._parts += sum(1 for row in rows if type(row) is FramePart)

    def _drop_oldest(self, excess: int) -> None:
        queue = self._rows
        while excess > 0:
            head = queue[0]
            if type(head) is FramePart:
                if len(head) > excess:
                    queue[0] = FramePart(head.frame, head.start + excess, head.stop)
                    self._count -= excess
                    return
                self._parts -= 1
                excess -= len(head)
                self._count -= len(head)
            else:
                excess -= 1
                self._count -= 1
            queue.popleft()

    def take_locked(self, limit: int) -> list[Item]:
        """Pop up to ``limit`` rows; the caller holds the lock.

        A FramePart is split at ``limit`` and handed over unconverted:
        :func:`expand_frames` converts it on the worker, outside the lock.
        """
        queue = self._rows
        start = self.taken
        if not self._parts:
            count = min(limit, len(queue))
            items: list[Item] = [(None, queue.popleft(), start + i) for i in range(count)]
        else:
            items = []
            count = 0
            while count < limit and queue:
                head = queue[0]
                if type(head) is FramePart:
                    size = min(len(head), limit - count)
                    if size < len(head):
                        queue[0] = FramePart(head.frame, head.start + size, head.stop)
                        head = FramePart(head.frame, head.start, head.start + size)
                    else:
                        queue.popleft()
                        self._parts -= 1
                    items.append((None, head, start + count))
                    count += size
                else:
                    items.append((None, queue.popleft(), start + count))
                    count += 1
        self._count -= count
        self.taken += count
        if count:
            self._room.notify_all()
        return items

    def give_back_locked(self, rows: list[Any]) -> None:
        """Put taken (converted) rows back at the front, in order (they did not fit a batch)."""
        self._rows.extendleft(reversed(rows))
        self._count += len(rows)
        self.taken -= len(rows)

    def drain_locked(self) -> list[Any]:
        """Remove and return every entry (the client is closing): rows and FrameParts.

        Convert them with :func:`entry_rows` outside the lock, and only if needed.
        """
        entries = list(self._rows)
        self._rows.clear()
        self._count = self._parts = 0
        return entries


def entry_rows(entries: Iterable[Any]) -> list[Any]:
    """Rows from queue entries, FrameParts converted (what close() reports)."""
    rows: list[Any] = []
    for entry in entries:
        if type(entry) is FramePart:
            rows.extend(entry.rows())
        else:
            rows.append(entry)
    return rows


class SpoolQueue:
    """Rows in a :class:`~pbistream.spool.Spool`; ``put`` commits before it returns."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.sizes: dict[int, int] = {}  # claimed row id -> data bytes, until settled

    def put(self, rows: Iterable[Mapping[str, Any]], meta: Mapping[str, str] | None = None) -> int:
        """Encode (already untyped-normalised) rows and commit them; return how many.

        ``meta`` (a feed's checkpoint) is committed in the same transaction.
        """
        encoded = [orjson.dumps(row) for row in rows]
        if meta:
            self.spool.put_many(encoded, meta=meta)
        elif len(encoded) == 1:
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
