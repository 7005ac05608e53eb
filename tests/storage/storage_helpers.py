"""Concurrency harness shared by the storage contract and the PostgreSQL replica tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pbistream.storage.base import StoredRow


def follow_while_writing(
    write: Callable[[int], None],
    read_after: Callable[[int], list[StoredRow]],
    value: Callable[[StoredRow], Any],
    writers: int,
) -> dict[int, Any]:
    """Run ``writers`` threads of ``write(worker)`` while one reader follows the id cursor.

    The reader is the live feed's pattern: it only ever asks for ids above the last one
    it saw, so a row that committed with an id below one already seen would be missed.
    Returns ``{row id: value(row)}`` of everything the reader saw; re-raises the first
    error a writer hit.
    """
    errors: list[BaseException] = []
    seen: dict[int, Any] = {}
    done = threading.Event()

    def guarded_write(worker: int) -> None:
        try:
            write(worker)
        except BaseException as exc:
            errors.append(exc)

    def follow() -> None:
        cursor = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            finished = done.is_set()
            batch = read_after(cursor)
            for row in batch:
                seen[row.id] = value(row)
                cursor = row.id
            if finished and not batch:
                return

    reader = threading.Thread(target=follow)
    reader.start()
    pool = [threading.Thread(target=guarded_write, args=(w,)) for w in range(writers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    done.set()
    reader.join(timeout=60)
    if errors:
        raise errors[0]
    return seen
