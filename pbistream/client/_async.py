"""``AsyncClient``: the same engine driven by one asyncio task.

``push()`` is a plain method (it never awaits: it only queues), to be called from the
event loop's thread. ``aflush()``/``aclose()`` and ``async with`` follow httpx naming.
The spool's SQLite calls are short and run on the loop; the HTTP requests are awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from types import TracebackType
from typing import Any

from pbistream.client._base import BaseClient
from pbistream.client._types import ClientState
from pbistream.client.engine import Send, Take, Wait
from pbistream.client.sinks import AsyncPushUrlSink, AsyncRestApiSink
from pbistream.exceptions import ClientClosedError, UndeliveredRowsError

__all__ = ["AsyncClient"]

logger = logging.getLogger("pbistream.client")

_MAX_IDLE = 0.5


class AsyncClient(BaseClient):
    """The asyncio twin of :class:`~pbistream.Client`, with the same arguments.

    Example::

        async with pbistream.AsyncClient(push_url, spool="readings.spool") as client:
            client.push({"temperature": 21.5})
            await client.aflush()

    Differences: ``push()`` must be called on the event loop's thread, and with
    ``BufferOptions(when_full="block")`` a full buffer raises
    :class:`~pbistream.BufferFullError` at once (blocking would stall the loop); use a
    spool or ``"drop_oldest"`` for unbounded bursts. At interpreter exit an unclosed
    AsyncClient cannot run its loop any more: its rows are kept by the spool, or
    reported as lost.
    """

    _push_url_sink = AsyncPushUrlSink
    _rest_sink = AsyncRestApiSink
    _may_block = False

    def _init_driver(self) -> None:
        self._wakeup: asyncio.Event | None = None
        self._settled_event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    # --- lifecycle -------------------------------------------------------------------

    def _open_for_replay(self) -> None:
        # Created outside a loop: the spool's rows start at the first aflush/aclose/push.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._open()
        self._opened_for_replay = True

    def _open(self) -> None:
        if self.state is not ClientState.UNOPENED:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "AsyncClient must be used inside a running event loop "
                "(async with AsyncClient(...)); use Client from synchronous code"
            ) from None
        self.state = ClientState.OPENED
        self._wakeup = asyncio.Event()
        self._settled_event = asyncio.Event()
        self._task = loop.create_task(self._run(), name=f"pbistream-client {self.sink.label}")

    async def __aenter__(self) -> AsyncClient:
        if self.state is ClientState.CLOSED:
            raise ClientClosedError("cannot reopen a closed client; create a new one")
        if self.state is ClientState.OPENED and not self._opened_for_replay:
            raise RuntimeError("the client is already open; `async with` it only once")
        self._opened_for_replay = False
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(
            exc_type, (KeyboardInterrupt, asyncio.CancelledError)
        ):
            # Ctrl-C (asyncio.run cancels the main task) or a cancellation in the block:
            # do not wait for delivery; keep the rows (spool or unsent-rows file) and let
            # the interrupt go on, as Client's `with` does.
            with contextlib.suppress(UndeliveredRowsError):
                await self.aclose(timeout=0)
            return
        await self.aclose()

    async def aflush(self, timeout: float | None = None) -> int:
        """Wait until every pushed row is delivered or dead-lettered.

        Returns:
            Rows still pending (0: all settled); with a spool they are safe on disk.
        """
        if self.state is ClientState.UNOPENED and self._unsettled:
            self._open()
        if self.state is not ClientState.OPENED:
            return self._unsettled
        return await self._await_settled(timeout, report=False)

    async def _await_settled(self, timeout: float | None, *, report: bool) -> int:
        assert self._settled_event is not None
        started = self._clock()
        deadline = None if timeout is None else started + timeout
        self._flush_waiters += 1
        self._wake()
        try:
            while self._unsettled > 0 and self._task is not None and not self._task.done():
                now = self._clock()
                remaining = _MAX_IDLE if deadline is None else deadline - now
                if remaining <= 0:
                    break
                if report:
                    self._tick_progress(now - started)
                self._settled_event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._settled_event.wait(), min(remaining, _MAX_IDLE))
        finally:
            self._flush_waiters -= 1
        return self._unsettled

    async def aclose(self, timeout: float | None = None) -> int:
        """Deliver every row (up to ``timeout``, default ``close_timeout``: no limit), stop.

        Returns:
            Rows kept in the spool (without a spool, rows left raise).

        Raises:
            UndeliveredRowsError: Rows were left and there is no spool; they were
                written to the unsent-rows file it names.
        """
        if self.state is ClientState.CLOSED:
            return 0
        if self.state is ClientState.UNOPENED and self._unsettled:
            self._open()
        interrupted: BaseException | None = None
        if self.state is ClientState.OPENED:
            self._closing = True
            try:
                await self._await_settled(
                    self.close_timeout if timeout is None else timeout, report=True
                )
            except (KeyboardInterrupt, asyncio.CancelledError) as exc:
                interrupted = exc
            self._stop = True
            self._wake()
            if self._task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._task), 2.0)
                except (TimeoutError, asyncio.CancelledError):
                    self._task.cancel()
        self.state = ClientState.CLOSED
        left = self._leftover_report(interrupted=interrupted is not None)
        await self.sink.aclose()  # type: ignore[attr-defined]
        if self.spool is not None:
            self.spool.close()
        if interrupted is not None:
            raise interrupted
        if left and self.spool is None:
            raise self._undelivered(left)
        return left

    # --- the worker task ---------------------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _notify_settled(self) -> None:
        if self._settled_event is not None:
            self._settled_event.set()

    async def _run(self) -> None:
        """The worker task, supervised like the sync client's thread."""
        failures = 0
        try:
            if self.wants_schema:
                try:
                    self._use_remote_table(await self.sink.fetch_table())  # type: ignore[attr-defined]
                except Exception:
                    self._schema_failed()
            while not self._stop:
                try:
                    await self._loop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    await asyncio.sleep(self._worker_failed(failures))
        finally:
            self._notify_settled()

    async def _loop(self) -> None:
        assert self._wakeup is not None
        sink: Any = self.sink
        while not self._stop:
            action = self._poll(self._clock())
            if isinstance(action, Wait):
                seconds = action.seconds if math.isfinite(action.seconds) else _MAX_IDLE
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), min(seconds, _MAX_IDLE))
                continue
            if isinstance(action, Take):
                with self._lock:
                    items, prior_seq = self._take_locked(action.max_rows)
                if not items:
                    self._resync_spool()
                    await asyncio.sleep(0)
                    continue
                batch = self._build(items, prior_seq)
                if batch is not None:
                    self._engine.start(batch)
                continue
            assert isinstance(action, Send)
            batch = action.batch
            outcome = await sink.send(batch.body, self._send_seq(batch))
            if self._stop:
                return  # aclose() handed the batch back to the spool (or reported it)
            verdict, delay = self._engine.on_response(self._clock(), outcome)
            self._settle(batch, outcome, verdict, delay)
