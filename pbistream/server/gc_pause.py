"""Pause Python's cyclic garbage collector while a big request builds millions of objects.

A 1,000,000-row POST builds a few million dicts. Each time the heap grows by a
quarter, CPython runs a full (generation 2) collection over every tracked object:
half a second each on a loaded machine, holding the GIL, so the event loop (every
other request and live feed) stalls. Rows hold no reference cycles, so nothing is
lost by not looking for cycles meanwhile: reference counting frees them as usual,
and the collector runs again when the last big request ends.

The pause is process-wide and counted, so overlapping big requests nest safely.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]

_lock = threading.Lock()
_holders = 0
_was_enabled = True


@contextmanager
def gc_paused(active: bool = True) -> Iterator[None]:
    """Disable automatic garbage collection inside the block (when ``active``)."""
    global _holders, _was_enabled
    if not active:
        yield
        return
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
