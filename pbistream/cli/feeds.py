"""``pbistream tail`` and ``pbistream watch``: a growing file, or a command, into a table."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import click

from pbistream.cli._feed_options import (
    close_timeout_option,
    feed_client_options,
    status_every_option,
    target_options,
)
from pbistream.cli._group import friendly_errors, main
from pbistream.exceptions import ConfigError
from pbistream.feeds.runner import (
    StatusPrinter,
    open_feed_client,
    parse_duration,
    stop_on_signals,
)

__all__ = ["tail", "watch"]


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@target_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "csv"]),
    default="auto",
    show_default=True,
    help="File format; auto goes by the file name (.csv, else JSON Lines).",
)
@click.option("--poll", type=float, default=0.2, show_default=True, help="Seconds between looks.")
@status_every_option
@close_timeout_option
@friendly_errors
def tail(
    file: str,
    target: str,
    token: str | None,
    spool: str | None,
    time_scale: float,
    no_pacing: bool,
    sequence_numbers: bool | None,
    tenant_id: str | None,
    app_id: str | None,
    client_secret: str | None,
    authority_host: str,
    as_json: bool,
    fmt: str,
    poll: float,
    status_every: float,
    close_timeout: float,
) -> None:
    """Follow a JSON Lines or CSV file as it grows and push each line's row to --to.

    Survives rotation (rename, or truncate in place) and restarts: the position is
    committed with the rows in the spool, so a restart neither skips nor repeats a
    line. A line that is not a row goes to the dead-letter file with its line
    number. A CSV file's first line is its header. Stops on SIGTERM or Ctrl-C.

    Example: pbistream tail /var/log/meter.jsonl --to "$PUSH_URL"
    """
    from pbistream.feeds.tail import FileTail

    path = Path(file).absolute()
    report = StatusPrinter(as_json)
    options = feed_client_options(
        kind="tail",
        key=str(path),
        target=target,
        token=token,
        spool=spool,
        time_scale=time_scale,
        no_pacing=no_pacing,
        tenant_id=tenant_id,
        app_id=app_id,
        client_secret=client_secret,
        authority_host=authority_host,
        sequence_numbers=True if sequence_numbers is None else sequence_numbers,
    )
    client, types = open_feed_client(options)
    if not spool:
        report(
            "spool", f"spool: {options.spool} (the default for {path})", spool=str(options.spool)
        )
    stop = threading.Event()
    try:
        follower = FileTail(path, client, report, fmt=fmt, types=types, poll=poll)
        with stop_on_signals(stop):
            counts = follower.run(stop, status_every=status_every)
    finally:
        left = client.close(close_timeout)
    report(
        "stopped",
        f"stopped: {counts.rows:,} rows spooled from {counts.lines:,} lines, "
        f"{client.stats.sent:,} delivered, {left:,} left in the spool, "
        f"{counts.rejected:,} dead-lettered",
        **counts.as_dict(),
        delivered=client.stats.sent,
        pending=left,
    )


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--every", required=True, help="Time between runs: 10s, 500ms, 5m, 1h (or seconds).")
@target_options
@click.option("--timeout", help="Kill a run after this long (default: --every).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after COUNT runs.")
@close_timeout_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@friendly_errors
def watch(
    every: str,
    target: str,
    token: str | None,
    spool: str | None,
    time_scale: float,
    no_pacing: bool,
    sequence_numbers: bool | None,
    tenant_id: str | None,
    app_id: str | None,
    client_secret: str | None,
    authority_host: str,
    as_json: bool,
    timeout: str | None,
    count: int | None,
    close_timeout: float,
    command: tuple[str, ...],
) -> None:
    """Run a command on a schedule and push the row(s) it prints to --to.

    The command prints a JSON object, a JSON array of objects, or key=value lines.
    A run that fails (non-zero exit, timeout, output that is not a row) is reported
    and the schedule goes on; bad output goes to the dead-letter file. Put the
    command after `--`. Stops on SIGTERM or Ctrl-C.

    Example: pbistream watch --every 10s --to "$PUSH_URL" -- ./read-sensor.sh --json
    """
    from pbistream.feeds.watch import Watcher

    seconds = parse_duration(every)
    limit = parse_duration(timeout) if timeout else None
    program = command[0]
    if "/" not in program and shutil.which(program) is None:
        raise ConfigError(f"command not found: {program}")
    report = StatusPrinter(as_json)
    options = feed_client_options(
        kind="watch",
        key=" ".join(command),
        target=target,
        token=token,
        spool=spool,
        time_scale=time_scale,
        no_pacing=no_pacing,
        tenant_id=tenant_id,
        app_id=app_id,
        client_secret=client_secret,
        authority_host=authority_host,
        sequence_numbers=True if sequence_numbers is None else sequence_numbers,
    )
    client, types = open_feed_client(options)
    stop = threading.Event()
    try:
        watcher = Watcher(command, client, report, every=seconds, timeout=limit, types=types)
        with stop_on_signals(stop):
            counts = watcher.run(stop, count=count)
    finally:
        left = client.close(close_timeout)
    report(
        "stopped",
        f"stopped: {counts.runs:,} runs ({counts.failed:,} failed), {counts.rows:,} rows, "
        f"{client.stats.sent:,} delivered, {left:,} left in the spool {options.spool}",
        **counts.as_dict(),
        delivered=client.stats.sent,
        pending=left,
        spool=str(options.spool),
    )
