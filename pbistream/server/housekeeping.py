"""Periodic housekeeping: the Streaming-only datasets' 60-minute cache.

Power BI keeps a Streaming dataset's rows only "temporarily ... for one hour to
render visuals" (S8). The server stores them like any rows and this task deletes
those older than ``streaming_cache_seconds`` (divided by ``time_scale``) every
``housekeeping_seconds`` (also scaled). Readers apply the same cut-off, so a row
is never shown past its hour even between two purges.
"""

from __future__ import annotations

import logging
import time

import anyio
import anyio.to_thread

from pbistream.schema import Mode
from pbistream.server.settings import Settings
from pbistream.server.storage_full import StorageFullMonitor, is_storage_full
from pbistream.storage.base import Storage

__all__ = ["purge_streaming_cache", "run_housekeeping"]

logger = logging.getLogger("pbistream.server")


def purge_streaming_cache(storage: Storage, settings: Settings, now: float | None = None) -> int:
    """Delete Streaming-only rows older than the cache window; return how many went."""
    now = time.time() if now is None else now
    cutoff = now - settings.scaled(settings.streaming_cache_seconds)
    removed = 0
    for dataset in storage.list_datasets(all_groups=True):
        if dataset.mode is Mode.STREAMING:
            removed += storage.delete_rows_before(dataset.id, cutoff)
    return removed


async def run_housekeeping(
    storage: Storage, settings: Settings, storage_full: StorageFullMonitor | None = None
) -> None:
    """Purge the streaming cache forever, every ``housekeeping_seconds`` (scaled).

    A purge that fails because the disk is full is reported to ``storage_full`` (one
    line per incident, shared with the requests) instead of logged here.
    """
    interval = max(settings.scaled(settings.housekeeping_seconds), 0.05)
    failing = False
    while True:
        try:
            removed = await anyio.to_thread.run_sync(purge_streaming_cache, storage, settings)
            if removed:
                logger.debug("streaming cache: %d expired rows removed", removed)
            if failing:
                logger.info("streaming cache purge works again")
            failing = False
        except Exception as exc:  # keep purging on the next tick; a failed pass loses nothing
            # While the database is down every tick fails the same way: one traceback,
            # then one short line a tick, not a traceback a tick.
            if storage_full is not None and is_storage_full(exc):
                storage_full.refused(exc)
            elif failing:
                logger.warning("streaming cache purge still failing: %s", exc)
            else:
                logger.exception("streaming cache purge failed")
            failing = True
        await anyio.sleep(interval)
