"""What every feed shares: its client and spool, its status lines, and how it stops.

A feed reads a source (MQTT, a file, a command) and hands rows to one
:class:`~pbistream.Client` with a spool. The client does all batching, pacing, retry
and delivery; a feed only decides when a piece of its input is safely in the spool
(``push()`` returned) and may therefore be acknowledged or skipped on a restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pbistream.client import Client, DeadLetter, PacingOptions, RetryOptions
from pbistream.exceptions import ConfigError
from pbistream.redact import redact_text
from pbistream.values import DataType

__all__ = [
    "FeedClientOptions",
    "StatusPrinter",
    "default_spool_path",
    "open_feed_client",
    "parse_duration",
    "state_dir",
    "stop_on_signals",
]


def state_dir() -> Path:
    """Where feeds keep their spools by default.

    ``$PBISTREAM_STATE_DIR``, else ``$XDG_STATE_HOME/pbistream``, else
    ``~/.local/state/pbistream``.
    """
    explicit = os.environ.get("PBISTREAM_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "pbistream"


def default_spool_path(kind: str, key: str) -> Path:
    """A stable spool path for a feed: ``STATE_DIR/<kind>-<readable key>-<hash>.spool``.

    The same feed (same ``key``: a client id, a file's absolute path) gets the same
    spool after a restart, which is what lets it resume.
    """
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[-40:].strip("_") or kind
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return state_dir() / f"{kind}-{readable}-{digest}.spool"


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``10s``, ``500ms``, ``2m``, ``1h`` or plain seconds → seconds.

    Raises:
        ConfigError: Not a positive duration.
    """
    match = _DURATION.fullmatch(text)
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ConfigError(f"{text!r} is not a duration such as 10s, 500ms, 2m or 1h")
    return seconds


class StatusPrinter:
    """One line per event on stdout: human text, or a JSON object with ``--json``.

    Thread-safe: the MQTT network thread and the feed's own thread both report.
    """

    def __init__(self, as_json: bool, stream: Any = None) -> None:
        self.as_json = as_json
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: str, human: str, **fields: Any) -> None:
        """Print one event: ``human`` as text, or ``{"event": ..., **fields}`` as JSON."""
        if self.as_json:
            record = {"event": event, "at": round(time.time(), 3), **fields}
            line = orjson.dumps(record, default=str).decode()
        else:
            line = redact_text(human)
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedClientOptions:
    """How a feed's client reaches its target (the options ``pbistream push`` has)."""

    target: str
    spool: Path | None
    token: str | None = None
    time_scale: float = 1.0
    pacing: bool = True
    auth: Any = None  # an httpx.Auth (Entra ID) for a REST URL, instead of a token
    # Off when several producers share a table: a pbistream server keeps one last
    # number per table and skips a request numbered below it (another producer's).
    sequence_numbers: bool = True


def open_feed_client(
    options: FeedClientOptions,
    on_dead_letter: Callable[[list[DeadLetter]], None] | None = None,
) -> tuple[Client, dict[str, DataType] | None]:
    """The feed's client and, when the target tells, its table's column types.

    Rows stay in the spool until delivered, however long that takes: the client
    never gives a spooled row up (``max_elapsed=None``).

    Returns:
        The client (already owning its spool) and the column types, or ``None``
        when the target does not describe its table (text is then read as JSON-ish).

    Raises:
        SpoolError: The spool is held by another process, or unusable.
    """
    client = Client(
        options.target,
        token=options.token,
        auth=options.auth,
        spool=options.spool,
        sequence_numbers=options.sequence_numbers,
        pacing=PacingOptions(enabled=options.pacing, time_scale=options.time_scale),
        retry=RetryOptions(
            max_elapsed=None if options.spool else 60.0,
            max_backoff=10.0,
            # With a spool the input was acknowledged already (an MQTT ack, a file
            # checkpoint): a refused credential holds the rows until it is fixed.
            retry_auth=bool(options.spool),
        ),
        on_dead_letter=on_dead_letter,
    )
    types: dict[str, DataType] | None = None
    try:
        remote = client.sink.fetch_table()  # type: ignore[attr-defined]
    except Exception:  # an odd answer: values are then read as JSON-ish text
        remote = None
    if remote is not None and remote.table is not None:
        types = {column.name: column.data_type for column in remote.table.columns}
    return client, types


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM or SIGINT (Ctrl-C) while inside, so a feed ends cleanly.

    Only from the main thread (Python's rule for signal handlers); elsewhere a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def client_counts(client: Client) -> Mapping[str, int]:
    """The client's counters a status line shows."""
    stats = client.stats
    return {
        "delivered": stats.sent,
        "pending": client.pending,
        "dead_lettered": stats.dead_lettered,
        "rate_limited": stats.rate_limited,
    }
