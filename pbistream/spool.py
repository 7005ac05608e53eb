"""The client's durable on-disk queue: one SQLite file in WAL mode.

Every row pushed through a spooling client is committed here before ``push()``
returns, and leaves only once the server has acknowledged it. A message moves
through an explicit lifecycle::

    READY ──claim()──▶ LOCKED ──ack()──▶ DONE (deleted unless keep_done=True)
      ▲                  │
      ├──requeue_stale()─┤ (a claim older than the timeout, e.g. after a crash)
      └──unassign()──────┤ (its request was refused as a whole: resent in parts)
                         └──fail()──▶ FAILED ──requeue_failed()──▶ READY

A claimed batch gets its request's sequence number (:meth:`Spool.assign`) before it is
sent, and keeps it when it is requeued: a replay re-sends exactly the same rows under
the same number, so a server that already stored them acknowledges without storing
them twice.

Durability: with ``sync="normal"`` (the default) a committed row survives a crash or
SIGKILL of the process (the WAL is in the OS's cache); ``sync="full"`` also survives
power loss, at the cost of an fsync per ``push()``.

Capacity: ``max_rows`` and ``max_bytes`` (row data) are enforced in :meth:`Spool.put`;
when a put would pass either, it raises :class:`~pbistream.SpoolFullError` and stores
nothing. Rows already spooled are never dropped to make room.

One client at a time: :meth:`Spool.acquire` takes an exclusive advisory lock on
``PATH.lock`` (released by the OS even on SIGKILL), and a client that gets it
requeues the LOCKED rows the previous owner left behind.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbistream.exceptions import SpoolError, SpoolFullError

__all__ = ["MessageStatus", "Spool", "SpoolStats", "SpooledRow"]


class MessageStatus(enum.IntEnum):
    """Where a spooled row is in its lifecycle."""

    READY = 0  # waiting to be claimed for a batch
    LOCKED = 1  # claimed into a batch that is being sent
    DONE = 2  # acknowledged by the server (kept only with keep_done=True)
    FAILED = 3  # refused by the server or given up; see the error column


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id        INTEGER PRIMARY KEY,   -- insertion order is delivery order
    data      BLOB    NOT NULL,      -- the row, as JSON
    status    INTEGER NOT NULL DEFAULT 0,
    locked_at REAL,                  -- when claimed, on the spool's (injectable) clock
    seq       INTEGER,               -- sequence number of the request it was claimed into
    error     TEXT                   -- why it FAILED
);
CREATE INDEX IF NOT EXISTS messages_status ON messages (status, seq, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class SpooledRow:
    """One claimed row: its id, JSON data and the sequence number it was sent under."""

    id: int
    data: bytes
    seq: int | None


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Counts per status, the data size and the last sequence number used."""

    ready: int
    locked: int
    done: int
    failed: int
    data_bytes: int
    file_bytes: int
    last_seq: int

    @property
    def pending(self) -> int:
        """Rows not yet delivered nor failed."""
        return self.ready + self.locked


class Spool:
    """A durable FIFO of JSON rows in one SQLite file.

    Args:
        path: The database file (created with mode 0600: it holds your data).
        max_rows: Cap on rows held (READY, LOCKED and FAILED).
        max_bytes: Cap on the rows' JSON bytes held.
        sync: ``"normal"`` (crash-safe) or ``"full"`` (power-loss-safe) commits.
        keep_done: Keep acknowledged rows as DONE instead of deleting them.
        clock: Wall-clock seconds, for claim times (inject a fake one in tests).

    Raises:
        SpoolError: The file cannot be opened as a spool.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_rows: int = 10_000_000,
        max_bytes: int = 2 * 1024**3,
        sync: str = "normal",
        keep_done: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if sync not in ("normal", "full"):
            raise SpoolError(f"sync must be 'normal' or 'full', got {sync!r}")
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.keep_done = keep_done
        self._clock = clock
        # One connection shared under a lock: the spool is its own single writer, and
        # SQLite never has to arbitrate between our threads (no SQLITE_BUSY among us).
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        try:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # WAL: `pbistream spool status` can read while a client writes, and a commit
            # is one append to the log rather than a rewrite of the pages.
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL: commits survive a crash of the process (not power loss) without an
            # fsync each; FULL adds the fsync.
            conn.execute(f"PRAGMA synchronous={sync.upper()}")
            # Another process (the CLI) may hold the write lock for a moment.
            conn.execute("PRAGMA busy_timeout=10000")
            conn.executescript(_SCHEMA)
            row = conn.execute(
                "SELECT count(*), coalesce(sum(length(data)), 0) FROM messages WHERE status != ?",
                (MessageStatus.DONE,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open the spool {self.path}: {exc}") from None
        self._conn = conn
        self._held_rows, self._held_bytes = int(row[0]), int(row[1])

    # --- ownership -----------------------------------------------------------------

    def acquire(self) -> int:
        """Become the spool's only client and requeue what a dead owner left LOCKED.

        Returns:
            How many rows were requeued.

        Raises:
            SpoolError: Another live process holds the spool.
        """
        import fcntl

        if self._lock_fd is not None:  # already ours
            return self.requeue_stale(older_than=-1.0)
        fd = os.open(f"{self.path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolError(
                f"the spool {self.path} is in use by another client; one client per spool"
            ) from None
        self._lock_fd = fd
        return self.requeue_stale(older_than=-1.0)

    def close(self) -> None:
        """Close the database and release ownership."""
        with self._lock:
            self._conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # --- writing ----------------------------------------------------------------------

    def _check_room(self, rows: int, nbytes: int) -> None:
        if self._held_rows + rows > self.max_rows:
            raise SpoolFullError(
                f"the spool {self.path} holds {self._held_rows:,} rows, its cap is "
                f"{self.max_rows:,}; the new rows were not stored"
            )
        if self._held_bytes + nbytes > self.max_bytes:
            raise SpoolFullError(
                f"the spool {self.path} holds {self._held_bytes:,} bytes of rows, its cap is "
                f"{self.max_bytes:,}; the new rows were not stored"
            )

    def put(self, data: bytes, *, meta: Mapping[str, str] | None = None) -> int:
        """Store one row (committed when this returns) and return its id.

        Args:
            data: The row, as JSON.
            meta: Values to :meth:`set_meta` in the same transaction (a feed's source
                position, so a crash can neither lose nor repeat what it read).

        Raises:
            SpoolFullError: The row would pass ``max_rows`` or ``max_bytes``.
            SpoolError: The write failed (disk full, file removed, ...).
        """
        with self._lock:
            self._check_room(1, len(data))
            try:
                if meta:
                    with self._transaction():
                        cursor = self._conn.execute(
                            "INSERT INTO messages (data) VALUES (?)", (data,)
                        )
                        self._write_meta(meta)
                else:
                    cursor = self._conn.execute("INSERT INTO messages (data) VALUES (?)", (data,))
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot write to the spool {self.path}: {exc}") from None
            self._held_rows += 1
            self._held_bytes += len(data)
            return int(cursor.lastrowid or 0)

    def put_many(self, rows: Sequence[bytes], *, meta: Mapping[str, str] | None = None) -> int:
        """Store many rows in one transaction (all or none).

        ``meta`` is committed with the rows, so a reader of a file can record how far it
        got in the same transaction (``pbistream push --file`` resumes from it).

        Args:
            rows: The rows, as JSON.
            meta: Values to :meth:`set_meta` in the same transaction.

        Returns:
            The id of the first row stored (ids are consecutive), or 0 for no rows.

        Raises:
            SpoolFullError: The rows would pass ``max_rows`` or ``max_bytes``.
            SpoolError: The write failed.
        """
        nbytes = sum(len(r) for r in rows)
        with self._lock:
            self._check_room(len(rows), nbytes)
            try:
                with self._transaction():
                    conn = self._conn
                    first = (
                        int(conn.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0])
                        + 1
                    )
                    conn.executemany(
                        "INSERT INTO messages (id, data) VALUES (?, ?)",
                        ((first + i, r) for i, r in enumerate(rows)),
                    )
                    if meta:
                        self._write_meta(meta)
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot write to the spool {self.path}: {exc}") from None
            self._held_rows += len(rows)
            self._held_bytes += nbytes
            return first if rows else 0

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    # --- the lifecycle ----------------------------------------------------------------

    def claim(self, limit: int) -> list[SpooledRow]:
        """Lock and return the next rows to send, oldest first.

        Rows requeued with a sequence number come back first, as the exact group they
        were sent in (so the re-send carries the same number); otherwise up to
        ``limit`` fresh rows.
        """
        now = self._clock()
        with self._lock, self._transaction():
            conn = self._conn
            row = conn.execute(
                "SELECT min(seq) FROM messages WHERE status = ? AND seq IS NOT NULL",
                (MessageStatus.READY,),
            ).fetchone()
            if row[0] is not None:
                rows = conn.execute(
                    "SELECT id, data, seq FROM messages WHERE status = ? AND seq = ? ORDER BY id",
                    (MessageStatus.READY, row[0]),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT id, data, seq FROM messages WHERE status = ? AND seq IS NULL "
                    "ORDER BY id LIMIT ?",
                    (MessageStatus.READY, limit),
                ).fetchall()
            if rows:
                # Every row in [first, last] with this status and seq was selected above.
                if row[0] is None:
                    conn.execute(
                        "UPDATE messages SET status = ?, locked_at = ? WHERE id BETWEEN ? AND ? "
                        "AND status = ? AND seq IS NULL",
                        (MessageStatus.LOCKED, now, rows[0][0], rows[-1][0], MessageStatus.READY),
                    )
                else:
                    conn.execute(
                        "UPDATE messages SET status = ?, locked_at = ? "
                        "WHERE status = ? AND seq = ?",
                        (MessageStatus.LOCKED, now, MessageStatus.READY, row[0]),
                    )
        return [SpooledRow(int(i), bytes(d), s) for i, d, s in rows]

    def assign(self, ids: Iterable[int], seq: int) -> None:
        """Record the sequence number of the request carrying ``ids``, before it is sent.

        A number past the 64-bit range (the client then sends without one) is kept as
        the largest, which the client also sends without a number.
        """
        seq = min(seq, 2**63 - 1)
        with self._lock, self._transaction():
            for lo, hi in _ranges(list(ids)):  # a batch is usually one range of ids
                self._conn.execute(
                    "UPDATE messages SET seq = ? WHERE id BETWEEN ? AND ? AND status = ?",
                    (seq, lo, hi, MessageStatus.LOCKED),
                )
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES ('last_seq', ?) ON CONFLICT (key) "
                "DO UPDATE SET value = max(CAST(value AS INTEGER), excluded.value)",
                (str(seq),),
            )

    def ack(self, ids: Sequence[int], nbytes: int | None = None) -> None:
        """Mark rows delivered: DONE (deleted unless ``keep_done``).

        ``nbytes``, the rows' total data size when the caller knows it, saves a query.
        """
        self._settle(ids, None, nbytes)

    def fail(self, ids: Sequence[int], error: str) -> None:
        """Mark rows FAILED with the reason; they stay until requeued or purged."""
        self._settle(ids, error)

    def _settle(
        self, ids: Sequence[int], error: str | None, known_bytes: int | None = None
    ) -> None:
        if not ids:
            return
        with self._lock, self._transaction():
            conn = self._conn
            if error is not None:
                conn.executemany(
                    "UPDATE messages SET status = ?, error = ? WHERE id = ?",
                    ((MessageStatus.FAILED, error, i) for i in ids),
                )
                return
            nbytes = 0
            for lo, hi in _ranges(ids):
                if known_bytes is None:
                    nbytes += conn.execute(
                        "SELECT coalesce(sum(length(data)), 0) FROM messages "
                        "WHERE id BETWEEN ? AND ?",
                        (lo, hi),
                    ).fetchone()[0]
                if self.keep_done:
                    conn.execute(
                        "UPDATE messages SET status = ? WHERE id BETWEEN ? AND ?",
                        (MessageStatus.DONE, lo, hi),
                    )
                else:
                    conn.execute("DELETE FROM messages WHERE id BETWEEN ? AND ?", (lo, hi))
            self._held_rows -= len(ids)
            self._held_bytes -= nbytes if known_bytes is None else known_bytes

    def release(self, ids: Sequence[int]) -> None:
        """Return claimed rows to READY, keeping their sequence number.

        Used for rows that did not fit a batch, and by a closing client for the batch
        it could not finish.
        """
        if not ids:
            return
        with self._lock, self._transaction():
            for lo, hi in _ranges(ids):
                self._conn.execute(
                    "UPDATE messages SET status = ?, locked_at = NULL WHERE id BETWEEN ? AND ? "
                    "AND status = ?",
                    (MessageStatus.READY, lo, hi, MessageStatus.LOCKED),
                )

    def unassign(self, ids: Sequence[int]) -> None:
        """Return claimed rows to READY as fresh rows (no sequence number).

        Used when the server refused their request as a whole: they are resent in
        smaller groups, under new numbers, to find the row it refuses.
        """
        if not ids:
            return
        with self._lock, self._transaction():
            for lo, hi in _ranges(ids):
                self._conn.execute(
                    "UPDATE messages SET status = ?, seq = NULL, locked_at = NULL "
                    "WHERE id BETWEEN ? AND ? AND status = ?",
                    (MessageStatus.READY, lo, hi, MessageStatus.LOCKED),
                )

    def requeue_stale(self, older_than: float) -> int:
        """Return claims older than ``older_than`` seconds to READY (keeping their seq).

        Returns:
            How many rows were requeued.
        """
        cutoff = self._clock() - older_than
        with self._lock, self._transaction():
            cursor = self._conn.execute(
                "UPDATE messages SET status = ?, locked_at = NULL WHERE status = ? "
                "AND locked_at < ?",
                (MessageStatus.READY, MessageStatus.LOCKED, cutoff),
            )
        return cursor.rowcount

    def requeue_failed(self) -> int:
        """Make FAILED rows READY again (as fresh rows, with a new sequence number).

        Returns:
            How many rows were requeued.
        """
        with self._lock, self._transaction():
            cursor = self._conn.execute(
                "UPDATE messages SET status = ?, seq = NULL, error = NULL, locked_at = NULL "
                "WHERE status = ?",
                (MessageStatus.READY, MessageStatus.FAILED),
            )
        return cursor.rowcount

    def purge(self, status: MessageStatus | None = None) -> int:
        """Delete rows with ``status`` (every row when ``None``).

        Returns:
            How many rows were deleted.
        """
        with self._lock, self._transaction():
            if status is None:
                cursor = self._conn.execute("DELETE FROM messages")
            else:
                cursor = self._conn.execute("DELETE FROM messages WHERE status = ?", (status,))
            row = self._conn.execute(
                "SELECT count(*), coalesce(sum(length(data)), 0) FROM messages WHERE status != ?",
                (MessageStatus.DONE,),
            ).fetchone()
        self._held_rows, self._held_bytes = int(row[0]), int(row[1])
        return cursor.rowcount

    # --- reading ------------------------------------------------------------------------

    def last_seq(self) -> int:
        """The highest sequence number ever assigned (0 when none)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    def get_meta(self, key: str) -> str | None:
        """A value stored with :meth:`set_meta`."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a small value (the target the spool belongs to, for ``spool replay``)."""
        with self._lock:
            self._write_meta({key: value})

    def _write_meta(self, values: Mapping[str, str]) -> None:
        self._conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value",
            list(values.items()),
        )

    def failed(self, limit: int = 100) -> list[tuple[int, bytes, str]]:
        """The first FAILED rows: id, data and error."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, data, coalesce(error, '') FROM messages WHERE status = ? "
                "ORDER BY id LIMIT ?",
                (MessageStatus.FAILED, limit),
            ).fetchall()
        return [(int(i), bytes(d), str(e)) for i, d, e in rows]

    def stats(self) -> SpoolStats:
        """Counts per status and sizes."""
        with self._lock:
            counts = dict(
                self._conn.execute("SELECT status, count(*) FROM messages GROUP BY status")
            )
            data_bytes = self._conn.execute(
                "SELECT coalesce(sum(length(data)), 0) FROM messages WHERE status != ?",
                (MessageStatus.DONE,),
            ).fetchone()[0]
        file_bytes = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"))
            if p.exists()  # the WAL file may be checkpointed away
        )
        return SpoolStats(
            ready=counts.get(MessageStatus.READY, 0),
            locked=counts.get(MessageStatus.LOCKED, 0),
            done=counts.get(MessageStatus.DONE, 0),
            failed=counts.get(MessageStatus.FAILED, 0),
            data_bytes=int(data_bytes),
            file_bytes=file_bytes,
            last_seq=self.last_seq(),
        )

    @property
    def held_rows(self) -> int:
        """Rows held (READY, LOCKED and FAILED), from the spool's own counter."""
        return self._held_rows


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``.

    The write lock is taken up front, so a claim never fails half-way on a lock upgrade.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _ranges(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Collapse sorted-ish ids into inclusive ranges (a batch is usually one range)."""
    out: list[tuple[int, int]] = []
    for i in sorted(ids):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out
