"""``Client``: the engine driven by one background thread, so ``push()`` never waits."""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import sys
import threading
import weakref
from types import TracebackType
from typing import Any

from pbistream.client._base import BaseClient
from pbistream.client._types import ClientState
from pbistream.client.engine import Send, Take, Wait
from pbistream.client.sinks import PushUrlSink, RestApiSink
from pbistream.exceptions import ClientClosedError, UndeliveredRowsError

__all__ = ["Client"]

logger = logging.getLogger("pbistream.client")

# The worker re-polls at least this often, so a lost wake-up costs at most this much.
_MAX_IDLE = 0.5


class Client(BaseClient):
    """Push rows to Power BI (or a pbistream server) from any thread, without waiting.

    ``push()`` queues rows and returns; one worker thread validates them against the
    table's schema, batches them, paces requests within Power BI's limits, retries
    failures and, with a spool, keeps every row on disk until it is acknowledged::

        with pbistream.Client(push_url, spool="readings.spool") as client:
            client.push({"temperature": 21.5, "ts": datetime.now(UTC)})

    Args:
        target: A Push URL (``.../rows?key=...``), a REST PostRows URL
            (``.../datasets/{id}/tables/{name}/rows``, with ``auth``), or a sink.
        schema: A :class:`~pbistream.Schema`/:class:`~pbistream.Table` to check rows
            against; ``"auto"`` asks the server (a pbistream server with ``token``, or
            the REST API's GetTables); ``None`` checks values only.
        spool: Path of a durable on-disk queue (or a :class:`~pbistream.spool.Spool`).
        token: A pbistream server's token (to read the schema; REST auth if no ``auth``).
        auth: REST API credentials: an :class:`httpx.Auth` (``EntraAuth``) or a token.
        batch: :class:`BatchOptions`.
        pacing: :class:`PacingOptions` (``time_scale`` for tests).
        retry: :class:`RetryOptions`.
        buffer: :class:`BufferOptions` (memory bound without a spool).
        unknown: ``"error"`` dead-letters rows with fields not in the schema;
            ``"ignore"`` drops those fields.
        naive: Naive datetimes are ``"utc"`` (default, as Power BI stores them) or ``"local"``.
        sequence_numbers: Send ``X-PowerBI-PushData-SequenceNumber`` (turn off only if
            several producers share one table).
        dead_letter_path: A JSONL file for dead letters (default with a spool: next to it).
        on_success: ``f(count)`` after each delivered batch, with its number of rows
            (on the worker thread).
        on_error: ``f(exc)`` after each failed attempt, with a :class:`~pbistream.PushError`.
        on_dead_letter: ``f(list[DeadLetter])`` for rows that will not be delivered.
        close_timeout: Seconds ``close()`` (and interpreter exit) waits for delivery;
            ``None`` (the default): as long as delivery takes, however long the limits
            make it. Ctrl-C stops the wait.
        on_progress: ``f(DeliveryProgress)`` about twice a second while ``close()``
            waits; by default a line on stderr (and the log) every 5 s: rows left, the
            limit that holds them and when it frees.
        unsent_path: Where rows not delivered are written when there is no spool
            (default: ``pbistream-unsent-<time>-<pid>.jsonl`` in the working directory).
        clock: The monotonic clock (inject one in tests).

    The promise: every pushed row is delivered, dead-lettered with its reason, kept in
    the spool, or (no spool) written to the unsent-rows file and
    :class:`~pbistream.UndeliveredRowsError` raised by ``close()``: never only a log line.
    """

    _push_url_sink = PushUrlSink
    _rest_sink = RestApiSink

    def _init_driver(self) -> None:
        self._cond = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._stop = False
        self._thread: threading.Thread | None = None
        self._atexit: Any = None

    # --- lifecycle -----------------------------------------------------------------

    def _open(self) -> None:
        with self._lock:
            if self.state is not ClientState.UNOPENED:
                return
            self.state = ClientState.OPENED
        self._thread = threading.Thread(
            target=self._run, name=f"pbistream-client {self.sink.label}", daemon=True
        )
        self._thread.start()
        # A weak reference: the hook must not keep a forgotten client alive.
        ref = weakref.ref(self)

        def at_exit() -> None:
            client = ref()
            if client is None or client.state is not ClientState.OPENED:
                return
            try:
                client.close()
            except (UndeliveredRowsError, KeyboardInterrupt) as exc:
                # The script ended without close(); its rows did not all go. Exit non-zero
                # (an exception in an exit hook would not change the exit status).
                # str(KeyboardInterrupt()) is empty: say what happened instead.
                why = str(exc) or "interrupted (Ctrl-C)"
                print(f"pbistream: at exit: {why}", file=sys.stderr, flush=True)
                sys.stdout.flush()
                os._exit(130 if isinstance(exc, KeyboardInterrupt) else 1)

        self._atexit = at_exit
        atexit.register(at_exit)

    def __enter__(self) -> Client:
        if self.state is ClientState.CLOSED:
            raise ClientClosedError("cannot reopen a closed client; create a new one")
        if self.state is ClientState.OPENED and not self._opened_for_replay:
            raise RuntimeError("the client is already open; `with` it only once")
        self._opened_for_replay = False
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C in the block: do not wait for delivery; keep the rows (spool or
            # unsent-rows file) and let the interrupt go on.
            with contextlib.suppress(UndeliveredRowsError):
                self.close(timeout=0)
            return
        self.close()

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every pushed row is delivered or dead-lettered.

        Rows linger no longer while a flush waits; pacing still applies. Rows a spool
        held when the client was created count too (and are being delivered).

        Args:
            timeout: Seconds to wait at most (``None``: as long as it takes).

        Returns:
            Rows still pending when it returned (0: all settled). With a spool they
            are safe on disk.
        """
        if self.state is ClientState.UNOPENED and self._unsettled:
            self._open()
        if self.state is not ClientState.OPENED:
            return self._unsettled
        return self._wait(timeout, report=False)

    def _wait(self, timeout: float | None, *, report: bool) -> int:
        if threading.current_thread() is self._thread:
            raise RuntimeError("flush() or close() from a callback would wait for itself")
        started = self._clock()
        deadline = None if timeout is None else started + timeout
        with self._lock:
            self._flush_waiters += 1
            self._cond.notify()
            try:
                while self._unsettled > 0 and self._thread_alive():
                    now = self._clock()
                    remaining = _MAX_IDLE if deadline is None else deadline - now
                    if remaining <= 0:
                        break
                    if report:
                        self._lock.release()
                        try:
                            self._tick_progress(now - started)
                        finally:
                            self._lock.acquire()
                    self._settled.wait(min(remaining, _MAX_IDLE))
            finally:
                self._flush_waiters -= 1
            return self._unsettled

    def close(self, timeout: float | None = None) -> int:
        """Deliver every row, stop the worker, report; wait as long as delivery takes.

        Args:
            timeout: Seconds to wait at most; default ``close_timeout`` (``None``: no
                limit). While it waits it reports progress (``on_progress``).

        Returns:
            Rows not delivered and kept in the spool (0 without a spool: rows left
            without one raise). Closing twice is harmless.

        Raises:
            UndeliveredRowsError: Rows were left undelivered and there is no spool; they
                were written to the unsent-rows file it names.
            KeyboardInterrupt: Ctrl-C stopped the wait; the rows stay in the spool, or
                were written to the unsent-rows file (its path is printed).
        """
        if self.state is ClientState.CLOSED:
            return 0
        if self.state is ClientState.UNOPENED and self._unsettled:
            self._open()
        if self.state is ClientState.UNOPENED:
            self.state = ClientState.CLOSED
            self._close_sink()
            return self._leftover_report()
        with self._lock:
            self._closing = True
            self._cond.notify()
        interrupted: KeyboardInterrupt | None = None
        try:
            self._wait(self.close_timeout if timeout is None else timeout, report=True)
        except KeyboardInterrupt as exc:
            interrupted = exc
        with self._lock:
            self._stop = True
            self.state = ClientState.CLOSED
            self._cond.notify()
        if self._thread is not None:
            # A request in flight ends within the HTTP timeout; we do not wait that long.
            self._thread.join(timeout=2.0)
        if self._atexit is not None:
            atexit.unregister(self._atexit)
        left = self._leftover_report(interrupted=interrupted is not None)
        self._close_sink()
        if interrupted is not None:
            raise interrupted
        if left and self.spool is None:
            raise self._undelivered(left)
        return left

    def _close_sink(self) -> None:
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()
        if self.spool is not None:
            self.spool.close()

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the worker ------------------------------------------------------------------

    def _wake(self) -> None:
        with self._lock:
            self._cond.notify()

    def _notify_settled(self) -> None:
        with self._lock:
            self._settled.notify_all()

    def _run(self) -> None:
        """The worker thread, supervised.

        An unexpected error (a full disk under the spool, a bug) pauses delivery with a
        capped backoff instead of ending it.
        """
        failures = 0
        try:
            if self.wants_schema:
                try:
                    self._use_remote_table(self.sink.fetch_table())  # type: ignore[attr-defined]
                except Exception:
                    self._schema_failed()
            while not self._stop:
                try:
                    self._loop()
                    return
                except Exception:
                    failures += 1
                    pause = self._worker_failed(failures)
                    with self._lock:
                        if not self._stop:
                            self._cond.wait(pause)
        finally:
            self._notify_settled()

    def _loop(self) -> None:
        sink: Any = self.sink
        while True:
            with self._lock:
                while True:
                    if self._stop:
                        return
                    action = self._poll(self._clock())
                    if not isinstance(action, Wait):
                        break
                    seconds = action.seconds if math.isfinite(action.seconds) else _MAX_IDLE
                    self._cond.wait(min(seconds, _MAX_IDLE))
                items: list[Any] = []
                prior_seq = None
                if isinstance(action, Take) and self.spool is None:
                    items, prior_seq = self._take_locked(action.max_rows)
            if isinstance(action, Take):
                if self.spool is not None:
                    items, prior_seq = self._take_locked(action.max_rows)
                    if not items:
                        self._resync_spool()
                        continue
                batch = self._build(items, prior_seq)
                if batch is not None:
                    self._engine.start(batch)
                continue
            assert isinstance(action, Send)
            batch = action.batch
            outcome = sink.send(batch.body, self._send_seq(batch))
            if self._stop:
                # close() gave up waiting and handed the batch back to the spool (or
                # reported it); its rows are no longer ours to settle.
                return
            verdict, delay = self._engine.on_response(self._clock(), outcome)
            self._settle(batch, outcome, verdict, delay)
