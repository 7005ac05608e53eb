"""A full disk: answer every request, log once per incident, recover without a restart.

When the data directory's disk (or PostgreSQL's) fills up, a write fails deep in the
storage backend. Without this, it surfaced as a 500 "unexpected error" with two
tracebacks per request, and uvicorn dropped the connection after it. Here every
such failure becomes a ``507 Insufficient Storage`` whose message says the storage
is full and nothing was stored (a refused write commits nothing: each insert is one
transaction). The first failure of an incident logs one line; the next successful
write logs one more and closes the incident, so a full disk under load costs two
log lines, not two tracebacks per request. Nothing needs restarting: SQLite and
PostgreSQL both take writes again once space returns.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pbistream.server.errors import ApiError

__all__ = ["StorageFull", "StorageFullGuard", "StorageFullMonitor", "is_storage_full"]

logger = logging.getLogger("pbistream.server")

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
_PG_DISK_FULL = "53100"  # SQLSTATE disk_full
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Seconds a client is told to wait: freeing disk space takes a person.
RETRY_AFTER_SECONDS = 30


class StorageFull(ApiError):
    """507 ``InsufficientStorage``: the disk is full; nothing of the request was stored."""

    status = 507
    code = "InsufficientStorage"

    def __init__(self) -> None:
        super().__init__(
            "The server's storage is full, so nothing was stored. Rows are accepted again "
            "as soon as disk space is freed on the server; retry later.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, and any exceptions it groups."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 50:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return seen


def is_storage_full(exc: BaseException) -> bool:
    """True if ``exc`` (or what caused it) says the disk or database is out of space."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno in _FULL_ERRNOS:
            return True
        if isinstance(item, sqlite3.Error):
            if getattr(item, "sqlite_errorcode", None) == _SQLITE_FULL:
                return True
            if "disk is full" in str(item):
                return True
        if getattr(item, "sqlstate", None) == _PG_DISK_FULL:  # psycopg.errors.DiskFull
            return True
    return False


class StorageFullMonitor:
    """Tracks one incident of a full storage, so it is logged once, not per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._refused = 0

    @property
    def active(self) -> bool:
        """True between the first refused write and the next successful one."""
        return self._since is not None

    def refused(self, exc: BaseException) -> None:
        """Count a write refused for lack of space; the first of an incident logs a line."""
        with self._lock:
            self._refused += 1
            if self._since is not None:
                return
            self._since = time.monotonic()
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        logger.error("storage is full (%s): writes are answered 507 until space is freed", reason)

    def wrote(self) -> None:
        """A write succeeded: if an incident was open, close it with one line."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            seconds = time.monotonic() - self._since
            refused, self._refused, self._since = self._refused, 0, None
        logger.warning(
            "storage accepts writes again after %.0f s; %d requests were refused meanwhile",
            seconds,
            refused,
        )


class StorageFullGuard:
    """ASGI middleware: a storage-full failure anywhere below becomes a 507.

    Args:
        app: The wrapped ASGI app.
        monitor: The incident tracker (shared with background tasks).
    """

    def __init__(self, app: ASGIApp, monitor: StorageFullMonitor) -> None:
        self.app = app
        self.monitor = monitor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            if status or not is_storage_full(exc):
                raise
            self.monitor.refused(exc)
            await StorageFull().response()(scope, receive, send)
            return
        if self.monitor.active and status < 300 and scope.get("method") in _WRITE_METHODS:
            self.monitor.wrote()
