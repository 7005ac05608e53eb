"""A pytest plugin: a real pbistream server on 127.0.0.1 for your Power BI code's tests.

Installed with pbistream (entry point ``pytest11``), it gives every test suite:

* ``pbistream_server``: a server in a background thread on a free loopback port with
  a fresh data directory. It has ``.url``, ``.token``, ``.headers`` (the auth header),
  ``.storage``, ``.settings`` and ``.create_streaming_dataset(...)`` which returns the
  Push URL to hand your code instead of Power BI's.
* ``server_factory``: the same, with your own settings: ``server_factory(time_scale=60)``.
* :class:`ServerProcess`: ``python -m pbistream serve`` as a subprocess (start, stop,
  ``kill -9``, restart), for tests that need a real process.

Example::

    def test_my_pusher(pbistream_server):
        url = pbistream_server.create_streaming_dataset({"temp": "Number"})
        my_pusher.push(url, [{"temp": 21.5}])
        assert pbistream_server.count_rows() == 1

The plugin comes with pbistream itself (a ``pytest11`` entry point), so it loads in
every install; Starlette and uvicorn are imported only inside the fixtures, which
need the ``server`` extra (``pip install 'pbistream[server]'``) and say so in one
line where it is missing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from pbistream.exceptions import ConfigError, require_extra
from pbistream.redact import new_secret

if TYPE_CHECKING:
    from pbistream.server.settings import Settings
    from pbistream.storage.base import Storage

__all__ = ["RunningServer", "ServerProcess", "free_port", "serve_in_thread"]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class RunningServer:
    """A server the tests can talk to over HTTP."""

    url: str
    token: str
    settings: Settings
    storage: Storage
    app: Any = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header for the REST API."""
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` on the server's URL with the auth header set."""
        return httpx.Client(base_url=self.url, headers=self.headers, **kwargs)

    def create_dataset(
        self,
        fields: Mapping[str, str] | None = None,
        *,
        name: str = "test stream",
        mode: str = "Streaming",
        table: str = "RealTimeData",
        retention: str | None = None,
        group_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a dataset over the REST API; return ``{"id", "push_url", "table"}``.

        Args:
            fields: Column names to types (Text, Number, Int64, Boolean, DateTime, Decimal).
            name: The dataset name.
            mode: Push, Streaming or PushStreaming.
            table: The table name (``RealTimeData``, as Power BI's UI names it).
            retention: ``None`` or ``basicFIFO`` (the query parameter).
            group_id: A workspace id, to create it under ``/groups/{group_id}``.
        """
        from pbistream.values import parse_field_type

        fields = fields or {"value": "Number", "ts": "DateTime"}
        columns = [{"name": n, "dataType": parse_field_type(t).value} for n, t in fields.items()]
        body = {"name": name, "defaultMode": mode, "tables": [{"name": table, "columns": columns}]}
        root = "/v1.0/myorg" + (f"/groups/{group_id}" if group_id else "")
        params = {"defaultRetentionPolicy": retention} if retention else None
        with self.client() as client:
            response = client.post(f"{root}/datasets", json=body, params=params)
        if response.status_code != 201:
            raise AssertionError(f"create dataset: {response.status_code} {response.text}")
        dataset_id = response.json()["id"]
        return {"id": dataset_id, "push_url": self.push_url(dataset_id), "table": table}

    def create_streaming_dataset(
        self, fields: Mapping[str, str] | None = None, *, historic: bool = False, **kwargs: Any
    ) -> str:
        """Create a streaming dataset (``historic``: PushStreaming); return its Push URL."""
        mode = "PushStreaming" if historic else "Streaming"
        url = self.create_dataset(fields, mode=mode, **kwargs)["push_url"]
        assert isinstance(url, str)
        return url

    def push_url(self, dataset_id: str) -> str | None:
        """The Push URL of a dataset (None for Push-only datasets)."""
        from pbistream.server import api

        dataset = self.storage.get_dataset(dataset_id)
        if dataset is None:
            raise KeyError(dataset_id)
        return api.push_url(self.url, self.app.state.tenant_id, dataset)

    def count_rows(self, dataset_id: str | None = None, table: str = "RealTimeData") -> int:
        """Rows stored in a table (of the only dataset when ``dataset_id`` is omitted)."""
        if dataset_id is None:
            datasets = self.storage.list_datasets(all_groups=True)
            if len(datasets) != 1:
                raise ValueError(f"{len(datasets)} datasets exist; pass dataset_id")
            dataset_id = datasets[0].id
        return self.storage.count_rows(dataset_id, table)


@contextmanager
def serve_in_thread(
    settings: Settings, *, storage: Storage | None = None, timeout: float = 20.0
) -> Iterator[RunningServer]:
    """Run a server (uvicorn in a daemon thread) on 127.0.0.1, stop it on exit.

    The port is taken by binding a socket first and handing it to uvicorn, so
    there is no window in which another process can take it. ``settings.port`` 0
    picks a free port; a fixed one can be served again right after a stop.

    Args:
        settings: The server's settings.
        storage: A storage to serve (the caller closes it); by default the one
            ``settings.storage_url`` names, closed on exit.
        timeout: Seconds to wait for the server to start and to stop.
    """
    # The plugin is installed with the bare client; the server it runs is an extra.
    require_extra("starlette", "server")
    require_extra("uvicorn", "server")

    from pbistream.cli.serve import feed_closing_server
    from pbistream.feeds.forward import ForwardSupervisor
    from pbistream.server import create_app
    from pbistream.server.connections import guard_listener, server_config
    from pbistream.storage import open_storage

    owned = storage is None
    if storage is None:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        storage = open_storage(settings.storage_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A server restarted on its fixed port takes it back at once (not after TIME_WAIT).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", settings.port))
        port = sock.getsockname()[1]
        settings = settings.replace(port=port)
        app = create_app(settings, storage)
        config = server_config(
            app,
            settings,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        server = feed_closing_server(config)  # open feeds must not hold the teardown
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [guard_listener(sock, config)]},
            name="pbistream-test-server",
        )
        thread.daemon = True
        thread.start()
        _wait_until(lambda: server.started or not thread.is_alive(), timeout, "server start")
        if not server.started:
            raise RuntimeError("the pbistream test server failed to start (see the log)")
        # As `pbistream serve` does: the datasets' forwards (the relay) run beside it.
        forwards = ForwardSupervisor(storage, app.state.forward_states, settings.data_dir)
        if settings.forwards:
            forwards.start()
        try:
            yield RunningServer(
                url=f"http://127.0.0.1:{port}",
                token=app.state.settings.token,
                settings=app.state.settings,
                storage=storage,
                app=app,
            )
        finally:
            server.should_exit = True
            thread.join(timeout)
            forwards.close()
    finally:
        sock.close()
        if owned:
            storage.close()


def _test_settings(data_dir: Path, **overrides: Any) -> Settings:
    from pbistream.server.settings import Settings

    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "token": new_secret()}
    values["data_dir"] = str(data_dir)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def pbistream_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real pbistream server on 127.0.0.1 with a fresh data directory."""
    _require_server_extra("pbistream_server")
    with serve_in_thread(_test_settings(tmp_path_factory.mktemp("pbistream"))) as server:
        yield server


def _require_server_extra(fixture: str) -> None:
    """Fail the test in one line (no traceback) when the ``server`` extra is missing."""
    try:
        require_extra("starlette", "server")
        require_extra("uvicorn", "server")
    except ConfigError as exc:
        pytest.fail(f"the {fixture} fixture runs pbistream's server: {exc}", pytrace=False)


@pytest.fixture
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with custom settings: ``server_factory(time_scale=60, limits=False)``.

    Pass ``storage=`` to serve a storage you opened (and close) yourself.
    """
    _require_server_extra("server_factory")
    stack: list[Any] = []

    def start(*, storage: Storage | None = None, **overrides: Any) -> RunningServer:
        data_dir = overrides.pop("data_dir", None) or tmp_path_factory.mktemp("pbistream")
        manager = serve_in_thread(_test_settings(Path(data_dir), **overrides), storage=storage)
        server = manager.__enter__()
        stack.append(manager)
        return server

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


class ServerProcess:
    """``python -m pbistream serve`` as a subprocess on 127.0.0.1.

    The token is passed in ``PBISTREAM_TOKEN`` (not argv, which ``ps`` shows). The
    server's output goes to ``log_path``; :meth:`log_text` reads it.

    Args:
        data_dir: The data directory (kept across restarts).
        port: The port (a free one when omitted).
        token: The API token (random when omitted).
        args: Extra ``serve`` arguments, e.g. ``["--limits", "off"]``.
        env: Extra environment variables.
        preexec_fn: Run in the child before ``exec`` (e.g. lower its open-file limit
            with ``resource.setrlimit``).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int | None = None,
        token: str | None = None,
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.preexec_fn = preexec_fn
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.token = token or new_secret()
        self.args = list(args or [])
        self.env = dict(env or {})
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header for the REST API."""
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the server and wait until ``/healthz`` answers."""
        command = [sys.executable, "-m", "pbistream", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]
        env = {**os.environ, "PBISTREAM_TOKEN": self.token, **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and args)
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=self.preexec_fn,
            )

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"pbistream serve exited early:\n{self.log_text()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        _wait_until(healthy, timeout, f"pbistream serve on {self.url}")
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop gracefully (SIGTERM); return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        """``kill -9``: no chance to flush or clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(15)
        self.process = None

    def restart(self, timeout: float = 30.0) -> ServerProcess:
        """Stop (if running) and start again on the same port and data dir."""
        self.stop()
        return self.start(timeout)

    def log_text(self) -> str:
        """Everything the server printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
