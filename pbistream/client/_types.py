"""The client's value types: its lifecycle states, its counters and its dead letters."""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ClientState", "ClientStats", "DeadLetter"]


class ClientState(enum.Enum):
    """A client's lifecycle; it never goes back."""

    UNOPENED = 1  # created; the worker starts at the first push() or on entering `with`
    OPENED = 2  # the worker runs; push() is accepted
    CLOSED = 3  # close() ran: rows were delivered, spooled or reported; push() raises


@dataclass(slots=True)
class ClientStats:
    """Counters since the client was created (read them at any time).

    Attributes:
        queued: Rows accepted by ``push()``.
        spooled: Rows committed to the spool by ``push()``.
        sent: Rows the server acknowledged.
        requests: POST requests made (attempts, retries included).
        retried: Attempts that failed and were retried.
        rate_limited: 429 answers seen.
        dead_lettered: Rows refused locally or by the server, or given up.
        dropped: Rows discarded by the ``drop_oldest`` buffer policy.
    """

    queued: int = 0
    spooled: int = 0
    sent: int = 0
    requests: int = 0
    retried: int = 0
    rate_limited: int = 0
    dead_lettered: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A row that will not be delivered, and why.

    Attributes:
        row: The row as pushed (or as spooled).
        index: Its number: position in push order, or its spool id.
        rule: The rule it broke (``"type"``, ``"nan"``, ...), or ``"server"``/``"gave_up"``.
        column: The field at fault, when known.
        message: The full reason, with the server's message for server refusals.
        status: The HTTP status of a server refusal.
    """

    row: Any
    index: int | None
    rule: str
    column: str | None
    message: str
    status: int | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready record, as written to the dead-letter file."""
        return {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "index": self.index,
            "rule": self.rule,
            "column": self.column,
            "message": self.message,
            "status": self.status,
            "row": self.row,
        }
