"""The client's value types: its lifecycle states, its counters and its dead letters."""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ClientState", "ClientStats", "DeadLetter", "DeliveryProgress", "rows_text"]


def rows_text(count: int) -> str:
    """``1 row``, ``2 rows``, ``10,000 rows``: for every message that counts rows."""
    return f"{count:,} row{'' if count == 1 else 's'}"


class ClientState(enum.Enum):
    """A client's lifecycle; it never goes back."""

    UNOPENED = 1  # created; the worker starts at the first push(), on `with`, or at once
    # when the spool holds rows
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


@dataclass(frozen=True, slots=True)
class DeliveryProgress:
    """Where delivery stands while ``close()`` (or a flush) waits; see ``on_progress``.

    Attributes:
        left: Rows not yet delivered nor dead-lettered.
        delivered: Rows the server acknowledged so far.
        limit: The limit holding the next POST back (``"120 POSTs a minute"``), or ``""``.
        frees_in: Seconds until that limit lets the next POST go.
        eta: Seconds the limits need for the rows left, by the pacer's plan.
        waited: Seconds this wait has lasted.
    """

    left: int
    delivered: int
    limit: str
    frees_in: float
    eta: float
    waited: float

    def line(self) -> str:
        """One human line: rows left, the limit that holds them, when it frees, the ETA."""
        text = f"{rows_text(self.left)} left to deliver"
        if self.limit:
            text += f"; held by {self.limit}, frees in {_duration(self.frees_in)}"
        if self.eta > 0:
            text += f"; about {_duration(self.eta)} to go"
        return text


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 1:
        return f"{secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"
