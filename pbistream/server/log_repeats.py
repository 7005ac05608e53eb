"""Collapse repeated log lines: the first passes, the rest are counted, not written.

A fault that repeats (a full disk, ``accept()`` out of descriptors, a client retrying
a bad request in a loop) would otherwise log the same line, often with a traceback,
thousands of times a second, and fill the disk the server needs. :class:`RepeatFilter`
lets the first record of a kind through, drops the same kind for ``window_seconds``,
and adds to the next one it lets through how many were left out, e.g.
``socket.accept() out of system resource (and 2,047 more like this in the last 10 s)``.

"The same kind" is the logger, the level and the message as written (arguments
filled in): only true repeats collapse. Lines that differ, such as the access log's
(each names its request), all pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

__all__ = ["RepeatFilter", "install_repeat_filter"]

#: Kinds of line remembered at once; the oldest is forgotten past this (bounded memory).
MAX_KINDS = 1000


class RepeatFilter(logging.Filter):
    """Let one record of a kind through per window; count the others.

    Args:
        window_seconds: How long after a line passes its repeats are held back.
        clock: Seconds from an arbitrary start (injectable for tests).
    """

    def __init__(
        self, window_seconds: float = 10.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> [when its window opened, records held back since]
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True to write the record (amended with the count held back), False to drop it."""
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        kind = (record.name, record.levelno, text)
        now = self._clock()
        with self._lock:
            seen = self._seen.get(kind)
            if seen is not None and now - seen[0] < self.window_seconds:
                seen[1] += 1
                return False
            held_back = int(seen[1]) if seen is not None else 0
            self._seen.pop(kind, None)
            self._seen[kind] = [now, 0]
            if len(self._seen) > MAX_KINDS:
                del self._seen[next(iter(self._seen))]
        if held_back:
            # The message is already formatted: keep it as text, args done with.
            record.msg = f"{text} (and {held_back:,} more like this in the last "
            record.msg += f"{self.window_seconds:g} s)"
            record.args = None
        return True


def install_repeat_filter(
    window_seconds: float, logger_names: Iterable[str] = ("", "uvicorn", "uvicorn.access")
) -> RepeatFilter:
    """Put one :class:`RepeatFilter` on every handler of these loggers (root by default).

    On the handlers, not the loggers: a logger's filter does not see records that
    propagate up from its children (``asyncio``, ``pbistream.server``, ...).
    """
    repeat_filter = RepeatFilter(window_seconds)
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RepeatFilter) for f in handler.filters):
                handler.addFilter(repeat_filter)
    return repeat_filter
