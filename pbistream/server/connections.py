"""Connection limits: a cap on open connections and a deadline for request headers.

uvicorn's HTTP protocol (h11) has no header timeout: a client that connects and
sends nothing, or half a request line, holds a socket (a file descriptor) for as
long as it likes, and its keep-alive timer is cancelled by any byte received. A
thousand such clients use up the process's open-file limit; ``accept()`` then fails
with ``EMFILE`` and asyncio retries it in a loop that logs a traceback per attempt,
so the server stops answering anyone and its log grows by megabytes a second.

Two guards close both doors:

* **A cap on open connections** (``max_connections``, kept below the open-file
  limit), counted by :class:`GuardedListener` as each connection is accepted: one
  over the cap is answered ``503`` and closed inside ``accept()``, so ``accept()``
  never runs out of descriptors.
* **A header deadline** (``header_timeout_seconds``), kept by
  :class:`GuardedH11Protocol`: from the moment a connection
  opens, or its previous response ends, the client has that long to finish the next
  request's headers. A client that sent part of a request gets ``408``; one that sent
  nothing is closed silently (as an idle keep-alive connection is). Idle keep-alive
  connections are also closed after ``idle_timeout_seconds`` (uvicorn's own timer).

:func:`server_config` builds the ``uvicorn.Config`` every entry point uses (``serve``,
``demo``, the test fixtures), :func:`guard_listener` wraps the listening socket, and
:func:`raise_open_file_limit` lifts the soft open-file limit to the hard one at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

from pbistream.server.errors import error_body

if TYPE_CHECKING:
    import uvicorn

    from pbistream.server.settings import Settings

__all__ = [
    "FD_RESERVE",
    "ConnectionBudget",
    "GuardedH11Protocol",
    "GuardedListener",
    "effective_max_connections",
    "guard_listener",
    "guarded_protocol",
    "metrics_text",
    "open_file_limit",
    "raise_open_file_limit",
    "server_config",
]

logger = logging.getLogger("pbistream.connections")

#: Descriptors kept free for everything but client sockets: the listening socket, the
#: database and its WAL, log files, worker threads' files, a PostgreSQL pool.
FD_RESERVE = 64


def _raw_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = orjson.dumps(error_body(code, message))
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode("ascii") + b"\r\n" + body


_TOO_MANY = _raw_response(
    503,
    "Service Unavailable",
    "ServiceUnavailable",
    "The server has too many open connections (max_connections); retry in a moment.",
)
_TOO_SLOW = _raw_response(
    408,
    "Request Timeout",
    "RequestTimeout",
    "The request headers did not arrive in time (header_timeout_seconds); "
    "the connection is closed.",
)


def open_file_limit() -> int | None:
    """The process's soft open-file limit, or None where the OS has no such limit."""
    if sys.platform == "win32":
        return None
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft open-file limit to the hard one; return (before, after).

    Many systems start processes with a soft limit of 1,024 and a much higher hard
    limit; every connection needs a descriptor, so the server takes what it may.
    Returns None where the OS has no such limit (Windows).
    """
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):  # e.g. macOS refuses RLIM_INFINITY: keep the soft one
            return soft, soft
    return soft, hard


def effective_max_connections(settings: Settings) -> int:
    """``max_connections``, lowered to fit the open-file limit minus :data:`FD_RESERVE`."""
    limit = open_file_limit()
    if limit is None:
        return settings.max_connections
    return max(1, min(settings.max_connections, limit - FD_RESERVE))


@dataclass
class ConnectionBudget:
    """Open connections against the cap, and what was refused or timed out (/metrics).

    Only the event loop's thread touches it: the listener counts a connection when it
    accepts it, the protocol uncounts it when the connection is lost.
    """

    cap: int
    open: int = 0
    refused: int = 0
    timed_out: int = 0


class GuardedListener(socket.socket):
    """A listening socket that refuses a connection over the cap right in ``accept()``.

    asyncio accepts up to ``backlog`` connections in one go before any protocol sees
    them, so a cap checked when the protocol starts comes too late: the descriptors are
    already gone and ``accept()`` fails with EMFILE. Here each accepted socket is
    counted at once, and one over the cap is answered ``503`` and closed at once, so
    the process never holds more than ``cap`` client sockets.
    """

    budget: ConnectionBudget

    def accept(self) -> tuple[socket.socket, Any]:
        """Accept one connection; refuse it (503, closed) when the cap is reached."""
        conn, address = super().accept()
        budget = self.budget
        if budget.open < budget.cap:
            budget.open += 1
            return conn, address
        budget.refused += 1
        logger.warning(
            "too many open connections (max_connections=%d): answered 503 and closed one",
            budget.cap,
        )
        try:
            conn.setblocking(False)
            # Read what already came: closing with unread bytes sends a reset, which
            # could reach the client before the answer does.
            with contextlib.suppress(BlockingIOError):
                conn.recv(65536)
            conn.send(_TOO_MANY)  # a few hundred bytes: fits any fresh socket buffer
        except OSError:
            pass  # the client left already; nothing to tell it
        finally:
            conn.close()
        # asyncio reads this as "nothing more to accept now" and waits for the next one.
        raise BlockingIOError(errno.EAGAIN, "connection refused over the cap")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-header deadline and the connection budget.

    The limits are class attributes: :func:`guarded_protocol` makes a subclass per
    server (uvicorn builds protocols from a class and its own config only).
    """

    budget: ClassVar[ConnectionBudget] = ConnectionBudget(cap=1000)
    header_timeout: ClassVar[float] = 5.0

    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the connection's header deadline."""
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Give the connection's place back to the budget."""
        self._disarm_header_deadline()
        self.budget.open = max(0, self.budget.open - 1)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """The next request's headers are due within the deadline too (keep-alive)."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        waiting_for = self.cycle  # a new request replaces it once its headers are in
        self._header_deadline = self.loop.call_later(
            self.header_timeout, self._headers_overdue, waiting_for
        )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_overdue(self, waiting_for: Any) -> None:
        self._header_deadline = None
        if self.cycle is not waiting_for or self.transport.is_closing():
            return  # the headers arrived (a new request cycle began) or it is closing
        partial, _closed = self.conn.trailing_data
        self.budget.timed_out += 1
        if partial:
            # Part of a request arrived: say why it is dropped (h11 cannot: no request yet).
            logger.info(
                "closed a connection whose request headers took over %gs", self.header_timeout
            )
            self.transport.write(_TOO_SLOW)
        self.transport.close()


def metrics_text(budget: ConnectionBudget) -> str:
    """The budget's figures in the Prometheus text format (appended to ``/metrics``)."""
    families = (
        ("pbistream_connections_open", "gauge", "Client connections open now.", budget.open),
        (
            "pbistream_connections_max",
            "gauge",
            "The cap on open connections (max_connections, fitted to the open-file limit).",
            budget.cap,
        ),
        (
            "pbistream_connections_refused_total",
            "counter",
            "Connections answered 503 and closed because max_connections were open.",
            budget.refused,
        ),
        (
            "pbistream_connections_timed_out_total",
            "counter",
            "Connections closed because request headers did not arrive in time.",
            budget.timed_out,
        ),
    )
    lines = []
    for name, kind, help_text, value in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def guarded_protocol(budget: ConnectionBudget, header_timeout: float) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass with this budget and header deadline."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"budget": budget, "header_timeout": header_timeout},
    )


def guard_listener(sock: socket.socket, config: uvicorn.Config) -> GuardedListener:
    """The listening socket ``sock`` as a :class:`GuardedListener` of ``config``'s budget.

    ``sock`` is detached (its descriptor now belongs to the returned socket, which the
    server closes when it stops); pass the result to ``uvicorn.Server.run(sockets=...)``.
    """
    protocol = config.http
    if not (isinstance(protocol, type) and issubclass(protocol, GuardedH11Protocol)):
        raise TypeError("guard_listener needs a config made by server_config")
    listener = GuardedListener(sock.family, sock.type, sock.proto, fileno=sock.detach())
    listener.budget = protocol.budget
    return listener


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The ``uvicorn.Config`` for ``app`` with the connection limits of ``settings``.

    Args:
        app: The ASGI app (:func:`~pbistream.server.create_app`).
        settings: Where ``max_connections``, ``header_timeout_seconds`` and
            ``idle_timeout_seconds`` come from.
        **options: Any other ``uvicorn.Config`` argument (host, port, log_level, ...).
    """
    import uvicorn

    budget = ConnectionBudget(cap=effective_max_connections(settings))
    state = getattr(app, "state", None)
    if state is not None:
        state.connections = budget
        extras = getattr(state, "metrics_extras", None)  # /metrics appends these families
        if isinstance(extras, list):
            extras.append(lambda: metrics_text(budget))
    return uvicorn.Config(
        app,
        http=guarded_protocol(budget, settings.header_timeout_seconds),
        # The accept-time cap needs asyncio's accept loop (uvloop accepts in C).
        loop="asyncio",
        # Typed int by uvicorn, but only ever handed to loop.call_later (seconds, float).
        timeout_keep_alive=settings.idle_timeout_seconds,  # type: ignore[arg-type]
        **options,
    )
