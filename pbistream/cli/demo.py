"""``pbistream demo``: a server, a streaming dataset, a live dashboard and simulated sensors.

The first thing a new user runs. It starts ``pbistream serve`` in-process on the
embedded SQLite store (a temporary directory unless ``--data-dir`` is given), creates
a streaming dataset with the seed article's fields plus a few sensor-like ones, and a
dashboard with one tile of each type, then pushes readings several times a second
through pbistream's own :class:`~pbistream.client.Client` using the dataset's Push
URL, exactly as a user's script would. It needs no network beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx

from pbistream.cli._group import friendly_errors, main
from pbistream.cli.serve import (
    checked_create_app,
    close_live_feeds,
    open_data,
    stop_cleanly_on_sigterm,
)
from pbistream.exceptions import ConfigError, PbiStreamError, require_extra
from pbistream.redact import new_secret

__all__ = ["DASHBOARD_NAME", "DATASET_NAME", "demo", "demo_columns", "demo_tiles", "reading"]

DATASET_NAME = "Demo sensors"
DASHBOARD_NAME = "Demo dashboard"
SITES = ("North", "South", "East", "West")

#: The seed article's three fields first, then the simulated sensors'.
_FIELDS = (
    ("string_value", "String"),
    ("number_value", "Double"),
    ("datetime_value", "DateTime"),
    ("temperature", "Double"),
    ("humidity", "Double"),
    ("pressure", "Double"),
    ("online", "Boolean"),
)


def demo_columns() -> list[dict[str, str]]:
    """The demo table's columns, as Power BI column JSON."""
    return [{"name": name, "dataType": kind} for name, kind in _FIELDS]


def demo_tiles(dataset_id: str) -> list[dict[str, Any]]:
    """One tile of each type (and a few more), laid out on the 12-column grid."""
    base = {"datasetId": dataset_id, "table": "RealTimeData"}
    temperature_colours = [
        {"value": -50, "color": "#107c10"},
        {"value": 23, "color": "#c19c00"},
        {"value": 24.5, "color": "#d13438"},
    ]
    tiles: list[dict[str, Any]] = [
        {
            "id": "temp-card",
            "type": "card",
            "title": "Temperature",
            "fields": ["temperature"],
            "unit": "°C",
            "decimals": 1,
            "thresholds": temperature_colours,
            "x": 0,
            "y": 0,
            "w": 3,
            "h": 2,
        },
        {
            "id": "humidity-card",
            "type": "card",
            "title": "Humidity",
            "fields": ["humidity"],
            "unit": "%",
            "decimals": 1,
            "x": 3,
            "y": 0,
            "w": 3,
            "h": 2,
        },
        {
            "id": "site-card",
            "type": "card",
            "title": "Latest site",
            "fields": ["string_value"],
            "x": 6,
            "y": 0,
            "w": 3,
            "h": 2,
        },
        {
            "id": "online-card",
            "type": "card",
            "title": "Sensor online",
            "fields": ["online"],
            "x": 9,
            "y": 0,
            "w": 3,
            "h": 2,
        },
        {
            "id": "trend",
            "type": "line",
            "title": "Temperature and humidity, last minute",
            "fields": ["temperature", "humidity"],
            "windowSeconds": 60,
            "timeField": "datetime_value",
            "x": 0,
            "y": 2,
            "w": 8,
            "h": 4,
        },
        {
            "id": "humidity-gauge",
            "type": "gauge",
            "title": "Humidity",
            "fields": ["humidity"],
            "min": 0,
            "max": 100,
            "target": 60,
            "unit": "%",
            "decimals": 1,
            "thresholds": [{"value": 0, "color": "#118dff"}, {"value": 55, "color": "#e66c37"}],
            "x": 8,
            "y": 2,
            "w": 4,
            "h": 4,
        },
        {
            "id": "by-site",
            "type": "column",
            "title": "Number value by site",
            "fields": ["number_value"],
            "axis": "string_value",
            "x": 0,
            "y": 6,
            "w": 4,
            "h": 4,
        },
        {
            "id": "climate-by-site",
            "type": "bar",
            "title": "Temperature and humidity by site",
            "fields": ["temperature", "humidity"],
            "axis": "string_value",
            "x": 4,
            "y": 6,
            "w": 4,
            "h": 4,
        },
        {
            "id": "latest",
            "type": "table",
            "title": "Latest readings",
            "fields": ["string_value", "temperature", "humidity", "online"],
            "rows": 12,
            "x": 8,
            "y": 6,
            "w": 4,
            "h": 4,
        },
    ]
    return [{**tile, **base} for tile in tiles]


#: The demo's alert: a heater fault at the first site, seconds 15 to 30 of the feed,
#: crosses it, so the rule fires within the first minute (and clears after).
ALERT_RULE = {
    "name": "Temperature too high",
    "table": "RealTimeData",
    "field": "temperature",
    "op": ">",
    "threshold": 28,
    "category": "string_value",
    "minIntervalSeconds": 3600,
}
SPIKE_SECONDS = (15.0, 30.0)
SPIKE_DEGREES = 9.0


def reading(step: int, now: float, rng: random.Random, *, spike: bool = False) -> dict[str, Any]:
    """One simulated row: slow sine waves plus noise, cycling through the sites.

    ``spike`` heats the first site by :data:`SPIKE_DEGREES` (the demo alert's fault).
    """
    site = SITES[step % len(SITES)]
    offset = SITES.index(site)
    heat = SPIKE_DEGREES if spike and offset == 0 else 0.0
    return {
        "string_value": site,
        "number_value": round(50 + 30 * math.sin(now / 20 + offset) + rng.uniform(-5, 5), 2),
        "datetime_value": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "temperature": round(
            22 + heat + 2.5 * math.sin(now / 30) + offset * 0.3 + rng.gauss(0, 0.2), 2
        ),
        "humidity": round(50 + 12 * math.sin(now / 45 + 1) + rng.gauss(0, 0.8), 2),
        "pressure": round(1013 + 3 * math.sin(now / 90) + rng.gauss(0, 0.3), 2),
        "online": rng.random() > 0.05,
    }


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); try another --port"
        ) from None
    return sock


def _demo_server(
    config: Any, stop: threading.Event, fed: threading.Event, stopped_by: list[str]
) -> Any:
    """A uvicorn server whose Ctrl-C first stops the feed, then the server.

    The feed pushes to this very server: stopping the server first would leave the
    client retrying its last rows against a closed port until its close timeout.
    """
    import uvicorn

    class DemoServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if stop.is_set():  # a second Ctrl-C: let uvicorn force its way out
                super().handle_exit(sig, frame)
                return
            stop.set()
            stopped_by.append(signal.Signals(sig).name)

            def after_feed() -> None:
                fed.wait(timeout=10)
                uvicorn.Server.handle_exit(self, sig, frame)
                stop_cleanly_on_sigterm(self, sig)

            # Signal handlers run on the event loop, which the feed's last push needs.
            threading.Thread(target=after_feed, name="pbistream-demo-exit", daemon=True).start()

        async def shutdown(self, sockets: Any = None) -> None:
            # An open dashboard's live feeds would hold the shutdown for its whole timeout.
            close_live_feeds(self.config.app)
            await super().shutdown(sockets)

    return DemoServer(config)


def _find_or_create(http: httpx.Client) -> tuple[str, str, str]:
    """The demo dataset's id and Push URL, and the demo dashboard's id (reused on rerun)."""
    datasets = http.get("/api/datasets").raise_for_status().json()["value"]
    found = next((d for d in datasets if d["name"] == DATASET_NAME), None)
    if found is None:
        body = {
            "name": DATASET_NAME,
            "defaultMode": "PushStreaming",  # "Historic data analysis" on: rows are kept
            "tables": [{"name": "RealTimeData", "columns": demo_columns()}],
        }
        response = http.post("/v1.0/myorg/datasets?defaultRetentionPolicy=basicFIFO", json=body)
        found = response.raise_for_status().json()
    dataset_id = str(found["id"])
    push_url = http.get(f"/api/datasets/{dataset_id}").raise_for_status().json()["pushUrl"]
    dashboards = http.get("/api/dashboards").raise_for_status().json()["value"]
    board = next((d for d in dashboards if d["name"] == DASHBOARD_NAME), None)
    if board is None:
        doc = {"name": DASHBOARD_NAME, "tiles": demo_tiles(dataset_id)}
        board = http.post("/api/dashboards", json=doc).raise_for_status().json()
    rules = http.get("/api/alerts").raise_for_status().json()["value"]
    if not any(r["dataset"] == dataset_id for r in rules):
        http.post("/api/alerts", json={**ALERT_RULE, "dataset": dataset_id}).raise_for_status()
    return dataset_id, str(push_url), str(board["id"])


def _feed(
    base: str, token: str, push_url: str, rate: float, stop: threading.Event, pushed: list[int]
) -> None:
    """Push simulated readings through pbistream's own client until ``stop`` is set."""
    from pbistream import Client  # the same public client a user's script would use

    rng = random.Random()  # noqa: S311 (simulated readings, not secrets)
    step = 0
    # The server outlives the feed (see _DemoServer), so closing delivers what is queued.
    with Client(push_url, close_timeout=5.0) as client:
        started = next_at = time.monotonic()
        while not stop.is_set():
            elapsed = time.monotonic() - started
            spike = SPIKE_SECONDS[0] <= elapsed < SPIKE_SECONDS[1]
            client.push(reading(step, time.time(), rng, spike=spike))
            step += 1
            pushed[0] = step
            next_at += 1.0 / rate
            stop.wait(max(0.0, next_at - time.monotonic()))


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (loopback keeps the demo private).",
)
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Keep the data here (reused on the next run) [default: a temporary directory].",
)
@click.option(
    "--token",
    default=None,
    envvar="PBISTREAM_TOKEN",
    help="The server's API token [default: a new random one]. Prefer PBISTREAM_TOKEN.",
)
@click.option(
    "--rate",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1, 50),
    help="Simulated readings a second.",
)
@friendly_errors
def demo(host: str, port: int, data_dir: str | None, token: str | None, rate: float) -> None:
    """Start a server with a live demo dashboard fed by simulated sensors.

    Prints a login link that opens the dashboard; runs until Ctrl-C.

    Example: pbistream demo --port 8765
    """
    require_extra("uvicorn", "server")
    require_extra("starlette", "server")

    from pbistream.server import Settings, create_app
    from pbistream.server.connections import (
        guard_listener,
        raise_open_file_limit,
        server_config,
    )
    from pbistream.server.log_repeats import install_repeat_filter

    temp = tempfile.TemporaryDirectory(prefix="pbistream-demo-") if data_dir is None else None
    directory = Path(temp.name if temp else str(data_dir))
    token = token or new_secret()
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    settings = Settings.from_sources(
        {"host": host, "port": port, "data_dir": str(directory), "token": token}
    )
    storage = open_data(settings)  # a data dir it may not write: one line, no traceback
    stop = threading.Event()
    fed = threading.Event()
    stopped_by: list[str] = []  # the signal's name, for the goodbye line
    pushed = [0]  # readings the feed pushed
    try:
        app = checked_create_app(create_app, settings, storage)
        raise_open_file_limit()  # as serve does: every connection needs a descriptor
        config = server_config(
            app, settings, log_level="warning", access_log=False, timeout_graceful_shutdown=2
        )
        install_repeat_filter(settings.log_repeat_seconds)
        server = _demo_server(config, stop, fed, stopped_by)
        shown_host = f"[{host}]" if ":" in host else host
        base = f"http://{shown_host}:{port}"
        starter = threading.Thread(
            target=_start_feeding,
            args=(server, base, token, rate, stop, fed, directory, temp is not None, pushed),
            name="pbistream-demo-feeder",
            daemon=True,
        )
        starter.start()
        # uvicorn re-raises the Ctrl-C it handled once it has shut down: expected here.
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[guard_listener(sock, config)])
        stop.set()
        starter.join(timeout=10)
    finally:
        stop.set()
        sock.close()
        storage.close()
        if temp is not None:
            temp.cleanup()
    by = f"by {stopped_by[0]}; " if stopped_by else ""
    kept = f"data kept in {directory}" if temp is None else f"deleted the temporary {directory}"
    click.echo("pbistream demo stopped.")
    click.echo(f"Stopped {by}pushed {pushed[0]:,} readings; {kept}.")


def _start_feeding(
    server: Any,
    base: str,
    token: str,
    rate: float,
    stop: threading.Event,
    fed: threading.Event,
    directory: Path,
    temporary: bool,
    pushed: list[int],
) -> None:
    """Wait for the server, set the demo up, print the link, then feed it."""
    try:
        _set_up_and_feed(server, base, token, rate, stop, directory, temporary, pushed)
    finally:
        fed.set()


def _set_up_and_feed(
    server: Any,
    base: str,
    token: str,
    rate: float,
    stop: threading.Event,
    directory: Path,
    temporary: bool,
    pushed: list[int],
) -> None:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline and not stop.is_set():
        stop.wait(0.05)
    if not server.started:
        return
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10, trust_env=False) as http:
            dataset_id, push_url, dashboard_id = _find_or_create(http)
    except (httpx.HTTPError, KeyError, PbiStreamError) as exc:
        click.secho(f"Error: could not set the demo up: {exc}", fg="red", err=True)
        server.should_exit = True
        return
    where = "a temporary directory, deleted on exit" if temporary else str(directory)
    click.echo(f"pbistream demo on {base}  (data: {where})")
    click.echo(f"Dataset {DATASET_NAME!r}: {dataset_id}; pushing {rate:g} readings a second.")
    click.echo("Push URL (keep it secret):")
    click.echo(f"  {push_url}")
    click.echo("Open the live dashboard (this link signs you in):")
    link = f"{base}/login?token={quote(token, safe='')}&next=/ui/%23/dashboards/{dashboard_id}"
    click.secho(f"  {link}", fg="green", bold=True)
    sample = '[{"string_value": "Hello", "number_value": 42}]'
    click.echo("Push a row of your own (it shows on the dashboard within a second):")
    click.echo(f"  curl -X POST '{push_url}' -H 'Content-Type: application/json' -d '{sample}'")
    click.echo(
        f"Alert {ALERT_RULE['name']!r} on the Temperature card: fires when a site passes "
        f"{ALERT_RULE['threshold']} °C (a simulated heater fault {SPIKE_SECONDS[0]:g} s in); "
        "see Alerts in the dashboard."
    )
    click.echo("Press Ctrl-C to stop.")
    try:
        _feed(base, token, push_url, rate, stop, pushed)
    except Exception as exc:  # the server keeps running; say why the feed stopped
        click.secho(f"Error: the simulated feed stopped: {exc}", fg="red", err=True)
