"""``pbistream serve``: run the Power BI-compatible push API server."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import signal
import socket
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import click

from pbistream.cli._group import friendly_errors, main
from pbistream.exceptions import ConfigError, require_extra
from pbistream.server.settings import SETTINGS

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "bind_listener",
    "checked_create_app",
    "close_live_feeds",
    "display_base",
    "feed_closing_server",
    "open_data",
    "serve",
    "stop_cleanly_on_sigterm",
]

logger = logging.getLogger("pbistream.connections")
_HELP = {s.name: s.help for s in SETTINGS}


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind the listening socket now, so a port in use fails in one line before any work.

    Raises:
        ConfigError: The address cannot be bound (in use, not this machine's, no right).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # A restarted server takes its port back at once (not after TIME_WAIT); on Linux this
    # still refuses a port another process is listening on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = "try another --port" if exc.errno == errno.EADDRINUSE else "check --host/--port"
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); {hint}") from None
    sock.set_inheritable(True)
    return sock


def display_base(settings: Any) -> str:
    """The URL to print: the public URL if set, else host:port (loopback for 0.0.0.0/::)."""
    if settings.public_url:
        return str(settings.public_url).rstrip("/")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104
        settings.host, settings.host
    )
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.port}"


def open_data(settings: Any) -> Any:
    """Open the storage, turning a data dir the server may not write into one clear line.

    Raises:
        ConfigError: The data directory cannot be created or written, or the database
            cannot be opened.
    """
    from pbistream.storage import open_storage

    where = _where(settings.storage, settings.data_dir)
    if not settings.storage:
        directory = Path(settings.data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the data dir {str(directory)!r} ({exc.strerror}); "
                "choose another --data-dir or fix its permissions"
            ) from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(
                f"the data dir {str(directory)!r} is not writable by this user; "
                "choose another --data-dir or fix its permissions"
            )
    try:
        return open_storage(settings.storage_url)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the storage at {where!r}: {exc}") from None


def checked_create_app(create_app: Any, settings: Any, storage: Any) -> Any:
    """``create_app``, with a database it cannot write to said in one line."""
    try:
        return create_app(settings, storage)
    except (OSError, sqlite3.Error) as exc:
        where = _where(settings.storage, settings.data_dir)
        raise ConfigError(
            f"cannot write to the storage at {where!r} ({exc}); fix its permissions"
        ) from None


def _where(settings_storage: str | None, data_dir: str) -> str:
    if not settings_storage:
        return data_dir
    parts = urlsplit(settings_storage)
    # Never print a password from the URL.
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


def close_live_feeds(app: Any) -> None:
    """End every open live feed of an app :func:`create_app` made (server shutdown)."""
    hub = getattr(getattr(app, "state", None), "hub", None)
    if hub is not None:
        hub.close()


def stop_cleanly_on_sigterm(server: uvicorn.Server, sig: int) -> None:
    """Let a SIGTERM end ``server.run()`` like Ctrl-C does, so ``finally`` blocks run.

    uvicorn re-raises the signal it handled once it has shut down; for SIGTERM (what
    systemd, docker and ``kill`` send) the default action ends the process on the
    spot, so storage was never closed and a temporary directory never deleted.
    """
    if sig == signal.SIGTERM:
        captured = getattr(server, "_captured_signals", None)
        if isinstance(captured, list) and sig in captured:
            captured.remove(sig)


def feed_closing_server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that ends the open live feeds as soon as it starts shutting down.

    uvicorn waits for open responses before the app's lifespan shutdown, and a live
    feed (Server-Sent Events) never ends by itself: with a dashboard open, Ctrl-C
    would wait out the graceful timeout and then cancel every feed with a traceback.
    Closing the app's live hub first lets each feed finish cleanly at once.

    Args:
        config: The uvicorn config; its ``app`` is the app :func:`create_app` made.
    """
    import uvicorn

    class FeedClosingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            stop_cleanly_on_sigterm(self, sig)

        async def shutdown(self, sockets: Any = None) -> None:
            close_live_feeds(self.config.app)
            await super().shutdown(sockets)

    return FeedClosingServer(config)


@main.command()
@click.option("--host", default=None, help=_HELP["host"] + " [default: 127.0.0.1]")
@click.option("--port", default=None, type=int, help=_HELP["port"] + " [default: 8765]")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False),
    help=_HELP["data_dir"] + " [default: ./pbistream-data]",
)
@click.option("--storage", default=None, help=_HELP["storage"])
@click.option("--token", default=None, help=_HELP["token"] + " Prefer PBISTREAM_TOKEN.")
@click.option(
    "--auth",
    default=None,
    type=click.Choice(["token", "any"]),
    help=_HELP["auth"] + " [default: token]",
)
@click.option(
    "--limits",
    default=None,
    type=click.Choice(["on", "off"]),
    help=_HELP["limits"] + " [default: on]",
)
@click.option("--time-scale", default=None, type=float, help=_HELP["time_scale"])
@click.option(
    "--unknown-fields",
    default=None,
    type=click.Choice(["404", "400", "ignore"]),
    help=_HELP["unknown_fields"],
)
@click.option("--public-url", default=None, help=_HELP["public_url"])
@click.option(
    "--forwards",
    default=None,
    type=click.Choice(["on", "off"]),
    help=_HELP["forwards"] + " [default: on]",
)
@click.option(
    "--log-level",
    default=None,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="How much to log [default: info].",
)
@click.option(
    "--max-connections", default=None, type=int, help=_HELP["max_connections"] + " [default: 1000]"
)
@click.option(
    "--header-timeout-seconds",
    default=None,
    type=float,
    help=_HELP["header_timeout_seconds"] + " [default: 5]",
)
@click.option(
    "--idle-timeout-seconds",
    default=None,
    type=float,
    help=_HELP["idle_timeout_seconds"] + " [default: 5]",
)
@click.option(
    "--log-repeat-seconds",
    default=None,
    type=float,
    help=_HELP["log_repeat_seconds"] + " [default: 10]",
)
@friendly_errors
def serve(**flags: Any) -> None:
    """Serve the Power BI push API (REST + streaming Push URLs) on this machine.

    Every setting can also come from a PBISTREAM_<NAME> environment variable
    (PBISTREAM_TIME_SCALE=60); a flag wins over the variable.

    Example: pbistream serve --port 8765 --data-dir ./pbistream-data
    """
    require_extra("uvicorn", "server")
    require_extra("starlette", "server")

    from pbistream.feeds.forward import ForwardSupervisor
    from pbistream.server import Settings, create_app

    if flags.get("limits") is not None:
        flags["limits"] = flags["limits"] == "on"
    if flags.get("forwards") is not None:
        flags["forwards"] = flags["forwards"] == "on"
    settings = Settings.from_sources(flags)
    # The port first: a port in use must fail before a data dir or a token is made.
    sock = bind_listener(settings.host, settings.port)
    try:
        settings = settings.replace(port=sock.getsockname()[1])
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        # A forwarder's every upstream request would be a line (redacted, but noise).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        storage = open_data(settings)
        try:
            _serve(settings, storage, sock, create_app, ForwardSupervisor)
        finally:
            storage.close()
    finally:
        sock.close()


def _serve(
    settings: Any, storage: Any, sock: socket.socket, create_app: Any, supervisor: Any
) -> None:
    from pbistream.server.connections import (
        effective_max_connections,
        guard_listener,
        raise_open_file_limit,
        server_config,
    )
    from pbistream.server.log_repeats import install_repeat_filter

    app = checked_create_app(create_app, settings, storage)
    token = app.state.settings.token
    base = display_base(settings)
    click.echo(
        f"pbistream serve on {base}  (storage: {_where(settings.storage, settings.data_dir)})"
    )
    if app.state.token_generated:
        click.echo(f"API token (shown once: only its hash is kept): {token}")
        click.echo("Open the dashboard (this link signs you in):")
        click.secho(f"  {base}/login?token={quote(token, safe='')}", fg="green", bold=True)
    elif settings.token:
        click.echo(f"Sign in at {base}/login with the token you gave (--token/PBISTREAM_TOKEN).")
    else:
        click.echo(f"Sign in at {base}/login with the API token printed at first start.")
    if not settings.token:
        rotate = f"pbistream token rotate --data-dir {shlex.quote(settings.data_dir)}"
        click.echo(f"Lost the token? {rotate} makes a new one.")
    limits = "on" if settings.limits else "off"
    click.echo(f"Power BI limits: {limits}; time scale: {settings.time_scale:g}")
    click.echo(
        f"Create a streaming dataset: pbistream dataset create NAME --field value:Number "
        f"--server {base} --token <token>"
    )
    raised = raise_open_file_limit()
    if raised is not None and raised[0] != raised[1]:
        logger.info("raised the open-file limit from %d to %d", raised[0], raised[1])
    logger.info(
        "at most %d open connections; request headers due within %gs; idle ones closed after %gs",
        effective_max_connections(settings),
        settings.header_timeout_seconds,
        settings.idle_timeout_seconds,
    )
    config = server_config(
        app,
        settings,
        access_log=False,  # ours (pbistream.access) redacts push keys; uvicorn's would not
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
    )
    # After uvicorn.Config: it installs its own log handlers, which need the filter too.
    install_repeat_filter(settings.log_repeat_seconds)
    # The relay: forwarders follow the datasets' stored rows into the client. The
    # server never imports the client; it reads the state they post on this board.
    forwards = supervisor(storage, app.state.forward_states, settings.data_dir)
    if settings.forwards:
        forwards.start()
    # uvicorn re-raises the Ctrl-C it handled once it has shut down (as uvicorn.run does).
    try:
        with contextlib.suppress(KeyboardInterrupt):
            feed_closing_server(config).run(sockets=[guard_listener(sock, config)])
    finally:
        forwards.close()  # pending rows stay in the forward spools for the next start
