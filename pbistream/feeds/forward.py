"""The relay: a local dataset's stored rows, forwarded to Power BI by the client.

``pbistream serve`` starts one :class:`ForwardSupervisor` next to the server. It
reads each dataset's forward configuration from storage (set through
``PUT /api/datasets/{id}/forward``, the CLI or the UI) about once a second and runs
one :class:`Forwarder` thread per configured dataset:

1. the forwarder follows the table's stored rows by their ``id`` cursor, and pushes
   them into a :class:`~pbistream.Client` as fast as they come;
2. the client's spool (``DATA_DIR/forward/<dataset>.spool``) commits the rows *and*
   the cursor of the last one in one SQLite transaction (:class:`CursorSpool`), so a
   ``kill -9`` at any moment neither loses nor repeats a row: after a restart the
   forwarder reads on from the committed cursor and the client replays the spool;
3. the client batches, paces and retries (its one engine): many devices' small
   POSTs into the local dataset leave as the fewest, largest POSTs the upstream
   limits allow, each with a sequence number the spool keeps, so a batch resent
   after a crash is recognised upstream and stored once.

The forwarder posts its state (pending rows, rows delivered, last error) on the
:class:`~pbistream.forwarding.ForwardStates` board the server shows. The server
never imports this module (nor the client): the CLI wires the two together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from pbistream.client import Client, PacingOptions, RetryOptions
from pbistream.exceptions import SpoolFullError
from pbistream.forwarding import ForwardConfig, ForwardStates, load_config
from pbistream.redact import redact_text, redact_url
from pbistream.spool import Spool
from pbistream.storage.base import Storage

__all__ = ["CursorSpool", "ForwardSupervisor", "Forwarder", "spool_path"]

logger = logging.getLogger("pbistream.forward")

# Spool meta keys: the id of the last local row committed to the spool, the start
# it counts from (a new forward starts afresh), and the rows delivered so far.
CURSOR_KEY = "forward.cursor"
START_KEY = "forward.start_after"
DELIVERED_KEY = "forward.delivered"
# Rows read from storage per step: the client takes them in batches of its own.
READ_ROWS = 5_000
# How long a forwarder waits for new rows before it looks again (a local read).
POLL_SECONDS = 0.05
# Pause before a forwarder that failed (upstream unknown, spool busy, full) tries again.
RESTART_SECONDS = 2.0
MAX_RESTART_SECONDS = 60.0


def spool_path(data_dir: str | Path, dataset_id: str) -> Path:
    """Where a dataset's forward spool lives: ``DATA_DIR/forward/<dataset>.spool``."""
    return Path(data_dir) / "forward" / f"{dataset_id}.spool"


class CursorSpool(Spool):
    """A spool that commits the forwarder's read position with the rows it read.

    :meth:`stage` the cursor, then push the rows: the client's next write to the
    spool carries it in the same transaction.
    """

    def __init__(self, path: str | Path, **options: Any) -> None:
        super().__init__(path, **options)
        self._staged: dict[str, str] | None = None

    def stage(self, cursor: int) -> None:
        """Commit ``cursor`` with the next rows written."""
        self._staged = {CURSOR_KEY: str(cursor)}

    def unstage(self) -> None:
        """Forget the staged cursor (the rows were not stored)."""
        self._staged = None

    def settle(self) -> None:
        """Commit a staged cursor no write carried (every row was dead-lettered)."""
        staged, self._staged = self._staged, None
        if staged is not None:
            self.set_meta(CURSOR_KEY, staged[CURSOR_KEY])

    def cursor(self) -> int | None:
        """The committed cursor, if any."""
        text = self.get_meta(CURSOR_KEY)
        return int(text) if text else None

    def _with_cursor(self, meta: Mapping[str, str] | None) -> Mapping[str, str] | None:
        staged, self._staged = self._staged, None
        if staged is None:
            return meta
        return {**(meta or {}), **staged}

    def put(self, data: bytes, *, meta: Mapping[str, str] | None = None) -> int:
        """Store one row and the staged cursor in one transaction."""
        return super().put(data, meta=self._with_cursor(meta))

    def put_many(self, rows: Sequence[bytes], *, meta: Mapping[str, str] | None = None) -> int:
        """Store rows and the staged cursor in one transaction; the first row's id."""
        return super().put_many(rows, meta=self._with_cursor(meta))


def _auth(config: ForwardConfig) -> httpx.Auth | None:
    if not config.client_secret:
        return None
    from pbistream.client.auth import EntraAuth

    assert config.tenant_id is not None and config.client_id is not None
    return EntraAuth.service_principal(
        config.tenant_id, config.client_id, client_secret=config.client_secret
    )


class Forwarder:
    """Forward one dataset's table to its target until :meth:`stop` (one thread).

    Args:
        storage: The server's storage (rows are read by cursor).
        config: The forward.
        states: Where to post the state.
        data_dir: The server's data directory (the spool lives under it).
        poll_seconds: How often to look for new rows when there are none.
        stop_timeout: Seconds :meth:`stop` lets the client deliver what is pending
            (the rest stays in the spool for the next start).
    """

    def __init__(
        self,
        storage: Storage,
        config: ForwardConfig,
        states: ForwardStates,
        data_dir: str | Path,
        *,
        poll_seconds: float = POLL_SECONDS,
        stop_timeout: float = 2.0,
    ) -> None:
        self.storage = storage
        self.config = config
        self.states = states
        self.path = spool_path(data_dir, config.dataset_id)
        self.poll_seconds = poll_seconds
        self.stop_timeout = stop_timeout
        self._stop = threading.Event()
        self._delivered = 0
        self._spool: CursorSpool | None = None
        self._thread = threading.Thread(
            target=self._supervised, name=f"pbistream-forward-{config.dataset_id}", daemon=True
        )

    @property
    def dataset_id(self) -> str:
        """The forwarded dataset."""
        return self.config.dataset_id

    def start(self) -> None:
        """Start the thread."""
        self._post(running=True, generation=self.config.generation)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Ask the thread to stop; with ``wait``, until it has (client closed, spool safe)."""
        self._stop.set()
        if wait and self._thread.is_alive():
            self._thread.join()

    def _post(self, **changes: Any) -> None:
        self.states.post(self.dataset_id, **changes)

    def _supervised(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._run()
            except Exception as exc:
                # A lasting fault (a target the client refuses, a spool held by another
                # process) is retried ever more slowly, up to once a minute.
                pause = min(MAX_RESTART_SECONDS, RESTART_SECONDS * 2.0**failures)
                failures += 1
                message = redact_text(f"{type(exc).__name__}: {exc}")
                logger.warning(
                    "forward of dataset %s to %s failed (%s); retrying in %.0f s",
                    self.dataset_id,
                    redact_url(self.config.target),
                    message,
                    pause,
                )
                self._post(last_error=message, last_error_at=time.time())
                self._stop.wait(pause)
        self._post(running=False)

    def _on_success(self, rows: int) -> None:
        self._delivered += rows
        spool = self._spool
        if spool is not None:  # a statistic: one short write per upstream POST
            spool.set_meta(DELIVERED_KEY, str(self._delivered))
        self._post(delivered=self._delivered, last_delivered_at=time.time())

    def _on_error(self, error: Any) -> None:
        self._post(last_error=redact_text(str(error)), last_error_at=time.time())

    def _run(self) -> None:
        config = self.config
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        spool = CursorSpool(self.path)
        self._spool = spool
        try:
            cursor = self._start_cursor(spool)
            self._delivered = int(spool.get_meta(DELIVERED_KEY) or 0)
            # The board starts empty after a restart: show what the spool remembers.
            self._post(delivered=self._delivered)
            client = Client(
                config.target,
                spool=spool,
                token=config.token,
                auth=_auth(config),
                pacing=PacingOptions(time_scale=config.time_scale),
                # Never give up: the spool holds the rows until the upstream takes them.
                # A wrong or expired upstream credential holds rows in the spool until it
                # is fixed: the devices' rows were acknowledged here already.
                retry=RetryOptions(
                    max_attempts=None, max_elapsed=None, max_backoff=30.0, retry_auth=True
                ),
                on_success=self._on_success,
                on_error=self._on_error,
                close_timeout=self.stop_timeout,
            )
        except BaseException:
            spool.close()
            raise
        logger.info(
            "forwarding dataset %s table %s to %s from row %d",
            config.dataset_id,
            config.table,
            redact_url(config.target),
            cursor,
        )
        with client:
            self._follow(client, spool, cursor)
        self._spool = None

    def _start_cursor(self, spool: CursorSpool) -> int:
        """Where to read on from: the committed cursor, unless this forward is new."""
        start = str(self.config.start_after)
        cursor = spool.cursor()
        if spool.get_meta(START_KEY) != start or cursor is None:
            # A forward set anew starts at its own start (rows an earlier forward left
            # pending in the spool still go first); its delivered count starts at 0.
            # START last: a crash before it makes the next start reset again.
            spool.set_meta(CURSOR_KEY, start)
            spool.set_meta(DELIVERED_KEY, "0")
            spool.set_meta(START_KEY, start)
            return self.config.start_after
        return cursor

    def _follow(self, client: Client, spool: CursorSpool, cursor: int) -> None:
        config = self.config
        while not self._stop.is_set():
            rows = self.storage.read_rows(
                config.dataset_id, config.table, after_id=cursor, limit=READ_ROWS
            )
            if rows:
                spool.stage(rows[-1].id)
                try:
                    client.push([row.data for row in rows])
                except SpoolFullError as exc:
                    # The rows stay in storage; read them again once the upstream drains.
                    spool.unstage()
                    self._post(last_error=redact_text(str(exc)), last_error_at=time.time())
                    self._stop.wait(RESTART_SECONDS)
                    continue
                spool.settle()
                cursor = rows[-1].id
            self._post(
                running=True,
                generation=config.generation,
                pending=client.pending,
                cursor=cursor,
                upstream_posts=client.stats.requests,
                rate_limited=client.stats.rate_limited,
                dead_lettered=client.stats.dead_lettered,
            )
            if len(rows) < READ_ROWS:
                self._stop.wait(self.poll_seconds)


class ForwardSupervisor:
    """Run a :class:`Forwarder` for every dataset with a forward, following changes.

    Args:
        storage: The server's storage.
        states: The board the server reads (``app.state.forward_states``).
        data_dir: The server's data directory.
        check_seconds: How often the configurations are read again.
    """

    def __init__(
        self,
        storage: Storage,
        states: ForwardStates,
        data_dir: str | Path,
        *,
        check_seconds: float = 1.0,
    ) -> None:
        self.storage = storage
        self.states = states
        self.data_dir = Path(data_dir)
        self.check_seconds = check_seconds
        self.forwarders: dict[str, Forwarder] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="pbistream-forward-supervisor", daemon=True
        )

    def start(self) -> ForwardSupervisor:
        """Start following the configurations (returns self)."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop every forwarder (their spools keep what is pending) and the supervisor."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for forwarder in self.forwarders.values():
            forwarder.stop(wait=False)
        for forwarder in self.forwarders.values():
            forwarder.stop()
        self.forwarders.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:  # a storage hiccup: keep the forwarders, look again soon
                logger.exception("reading the forward configurations failed")
            self._stop.wait(self.check_seconds)

    def reconcile(self) -> None:
        """Start, restart or stop forwarders to match the stored configurations."""
        wanted: dict[str, ForwardConfig] = {}
        for dataset in self.storage.list_datasets(all_groups=True):
            config = load_config(self.storage, dataset.id)
            if config is not None and dataset.table(config.table) is not None:
                wanted[dataset.id] = config
        for dataset_id, forwarder in list(self.forwarders.items()):
            config = wanted.get(dataset_id)
            if config is None or config.generation != forwarder.config.generation:
                logger.info("forward of dataset %s stopped", dataset_id)
                forwarder.stop()
                del self.forwarders[dataset_id]
                self.states.remove(dataset_id)
        for dataset_id, config in wanted.items():
            if dataset_id not in self.forwarders and not self._stop.is_set():
                forwarder = Forwarder(self.storage, config, self.states, self.data_dir)
                self.forwarders[dataset_id] = forwarder
                forwarder.start()
