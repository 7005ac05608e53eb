"""``pbistream serve``: run the Power BI-compatible push API server."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from pbistream.cli._group import friendly_errors, main
from pbistream.exceptions import require_extra
from pbistream.server.settings import SETTINGS

if TYPE_CHECKING:
    import uvicorn

__all__ = ["close_live_feeds", "feed_closing_server", "serve"]

_HELP = {s.name: s.help for s in SETTINGS}


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
@friendly_errors
def serve(**flags: Any) -> None:
    """Serve the Power BI push API (REST + streaming Push URLs) on this machine.

    Every setting can also come from a PBISTREAM_<NAME> environment variable
    (PBISTREAM_TIME_SCALE=60); a flag wins over the variable.

    Example: pbistream serve --port 8765 --data-dir ./pbistream-data
    """
    require_extra("uvicorn", "server")
    require_extra("starlette", "server")
    import uvicorn

    from pbistream.feeds.forward import ForwardSupervisor
    from pbistream.server import Settings, create_app
    from pbistream.storage import open_storage

    if flags.get("limits") is not None:
        flags["limits"] = flags["limits"] == "on"
    if flags.get("forwards") is not None:
        flags["forwards"] = flags["forwards"] == "on"
    settings = Settings.from_sources(flags)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # A forwarder's every upstream request would be a line (redacted, but noise).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    storage = open_storage(settings.storage_url)
    try:
        app = create_app(settings, storage)
        token = app.state.settings.token
        base = f"http://{settings.host}:{settings.port}"
        click.echo(
            f"pbistream serve on {base}  (storage: {_where(settings.storage, settings.data_dir)})"
        )
        if app.state.token_generated:
            click.echo(
                "API token (shown once: only its hash is kept; "
                f"`pbistream token rotate` makes a new one): {token}"
            )
        limits = "on" if settings.limits else "off"
        click.echo(f"Power BI limits: {limits}; time scale: {settings.time_scale:g}")
        click.echo(
            f"Create a streaming dataset: pbistream dataset create NAME --field value:Number "
            f"--server {base} --token <token>"
        )
        # The relay: forwarders follow the datasets' stored rows into the client. The
        # server never imports the client; it reads the state they post on this board.
        forwards = ForwardSupervisor(storage, app.state.forward_states, settings.data_dir)
        if settings.forwards:
            forwards.start()
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            access_log=False,  # ours (pbistream.access) redacts push keys; uvicorn's would not
            log_level=settings.log_level,
            timeout_graceful_shutdown=5,
        )
        # uvicorn re-raises the Ctrl-C it handled once it has shut down (as uvicorn.run does).
        try:
            with contextlib.suppress(KeyboardInterrupt):
                feed_closing_server(config).run()
        finally:
            forwards.close()  # pending rows stay in the forward spools for the next start
    finally:
        storage.close()
