"""Options every feed command shares: where rows go, the spool, the output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pbistream.feeds.runner import FeedClientOptions, default_spool_path

F = TypeVar("F", bound=Callable[..., Any])


def target_options(func: F) -> F:
    """``--to``, ``--token``, ``--spool``, ``--time-scale``, ``--no-pacing``."""
    decorators = [
        click.option(
            "--to",
            "target",
            required=True,
            help="A Push URL, a REST PostRows URL, or a pbistream server's Push URL.",
        ),
        click.option(
            "--token",
            envvar="PBISTREAM_TOKEN",
            help="A pbistream server's token (reads the schema), or a bearer token for a "
            "REST URL. [env: PBISTREAM_TOKEN]",
        ),
        click.option(
            "--spool",
            type=click.Path(dir_okay=False),
            help="The on-disk queue rows wait in until delivered (default: one per feed "
            "in $PBISTREAM_STATE_DIR, else ~/.local/state/pbistream).",
        ),
        click.option(
            "--time-scale",
            type=float,
            default=1.0,
            help="Divide Power BI's rate windows by this (match `serve --time-scale`).",
        ),
        click.option("--no-pacing", is_flag=True, help="Do not pace requests (server limits off)."),
        click.option(
            "--json", "as_json", is_flag=True, help="Status lines as JSON objects on stdout."
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def feed_client_options(
    *,
    kind: str,
    key: str,
    target: str,
    token: str | None,
    spool: str | None,
    time_scale: float,
    no_pacing: bool,
) -> FeedClientOptions:
    """The client options, with the feed's default spool when ``--spool`` is not given."""
    return FeedClientOptions(
        target=target,
        token=token,
        spool=Path(spool) if spool else default_spool_path(kind, key),
        time_scale=time_scale,
        pacing=not no_pacing,
    )
