"""``pbistream spool status|replay|purge PATH``: look after a client's on-disk queue.

The spool is the SQLite file a ``Client(..., spool=PATH)`` (or ``pbistream push
--spool``) keeps undelivered rows in. ``replay`` sends what it holds; it takes the
spool's lock, so it refuses to run while a client is using the same file.
"""

from __future__ import annotations

from pathlib import Path

import click

from pbistream.cli._group import emit, friendly_errors, json_option, main
from pbistream.cli.push import _configure_logging, _make_sink
from pbistream.client import Client, PacingOptions, RetryOptions
from pbistream.exceptions import SpoolError
from pbistream.spool import MessageStatus, Spool

__all__ = ["spool"]


def _open(path: str) -> Spool:
    if not Path(path).is_file():
        raise SpoolError(f"no spool at {path}")
    return Spool(path)


@main.group()
def spool() -> None:
    """Inspect, replay or empty a client's on-disk spool.

    Example: pbistream spool status readings.spool
    """


@spool.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--show-failed", default=3, show_default=True, help="Failed rows to list.")
@json_option
@friendly_errors
def status(path: str, show_failed: int, as_json: bool) -> None:
    """Count the rows a spool holds, by state, and show why rows failed.

    Example: pbistream spool status readings.spool --json
    """
    store = _open(path)
    try:
        stats = store.stats()
        failed = store.failed(show_failed)
        target = store.get_meta("target")
    finally:
        store.close()
    payload = {
        "path": path,
        "target": target,
        "ready": stats.ready,
        "locked": stats.locked,
        "failed": stats.failed,
        "done": stats.done,
        "data_bytes": stats.data_bytes,
        "file_bytes": stats.file_bytes,
        "last_sequence_number": stats.last_seq,
        "failed_examples": [{"id": i, "error": e} for i, _, e in failed],
    }
    lines = [
        f"{path}: {stats.ready:,} ready, {stats.locked:,} in flight, {stats.failed:,} failed "
        f"({stats.file_bytes:,} bytes on disk)",
        f"target: {target or 'unknown'}",
    ]
    lines += [f"failed row {i}: {e}" for i, _, e in failed]
    emit(as_json, payload, "\n".join(lines))


@spool.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("url")
@click.option("--token", envvar="PBISTREAM_TOKEN", help="Server token / bearer token.")
@click.option("--failed", "include_failed", is_flag=True, help="Also resend FAILED rows.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to try.")
@click.option("--time-scale", type=float, default=1.0, help="Match `serve --time-scale`.")
@click.option("--no-pacing", is_flag=True, help="Do not pace requests (server limits off).")
@click.option("-v", "--verbose", is_flag=True, help="Log retries and refusals on stderr.")
@json_option
@friendly_errors
def replay(
    path: str,
    url: str,
    token: str | None,
    include_failed: bool,
    timeout: float,
    time_scale: float,
    no_pacing: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Send the rows a spool holds to URL (the spool keeps no keys, so give the URL).

    Example: pbistream spool replay readings.spool "$PUSH_URL"
    """
    _configure_logging(verbose)
    store = _open(path)
    store.acquire()  # before touching FAILED rows: never under a running client's feet
    if include_failed:
        store.requeue_failed()
    client = Client(
        _make_sink(url, token),
        spool=store,
        pacing=PacingOptions(enabled=not no_pacing, time_scale=time_scale),
        retry=RetryOptions(max_backoff=5.0),
    )
    before = client.pending
    with client:
        left = client.flush(timeout)
        # Now, not on leaving `with`: that would flush for close_timeout (30 s) more.
        client.close(timeout=0)
    payload = {"replayed": client.stats.sent, "left": left, "before": before}
    sent = client.stats.sent
    emit(
        as_json,
        payload,
        f"{sent:,} row{'' if sent == 1 else 's'} delivered, {left:,} left in {path}.",
    )
    if left:
        are = "row is" if left == 1 else "rows are"
        raise SpoolError(f"{left:,} {are} still in {path}: {client.last_error or 'timed out'}")


@spool.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--failed-only", is_flag=True, help="Delete only FAILED rows.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@friendly_errors
def purge(path: str, failed_only: bool, yes: bool, as_json: bool) -> None:
    """Delete rows from a spool for good (all of them, or only the failed ones).

    Example: pbistream spool purge readings.spool --failed-only --yes
    """
    store = _open(path)
    try:
        store.acquire()  # never under a running client's feet
        what = "failed rows" if failed_only else "ALL rows"
        if not yes and not click.confirm(f"Delete {what} from {path}?", err=True):
            raise SpoolError("nothing deleted")
        deleted = store.purge(MessageStatus.FAILED if failed_only else None)
    finally:
        store.close()
    emit(
        as_json,
        {"deleted": deleted},
        f"{deleted:,} row{'' if deleted == 1 else 's'} deleted from {path}.",
    )
