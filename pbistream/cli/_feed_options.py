"""Options every feed command shares: where rows go, the spool, the output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pbistream.client.auth import AUTHORITY_HOST
from pbistream.exceptions import ConfigError
from pbistream.feeds.runner import FeedClientOptions, default_spool_path

F = TypeVar("F", bound=Callable[..., Any])


#: ``--status-every``: shared by the feeds that print periodic status lines.
status_every_option = click.option(
    "--status-every",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds between status lines.",
)
#: ``--close-timeout``: shared by every feed.
close_timeout_option = click.option(
    "--close-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="On stop, seconds to keep delivering; what is left stays in the spool.",
)


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
            "--sequence-numbers/--no-sequence-numbers",
            default=None,
            help="Number each request so a server that honours it stores a replay once "
            "(default: on, off with --group). Turn off when another producer pushes into "
            "the same table: the server keeps one last number per table.",
        ),
        click.option(
            "--tenant-id",
            envvar="PBISTREAM_TENANT_ID",
            help="Entra ID sign-in for a REST URL: the directory (tenant) id.",
        ),
        click.option(
            "--app-id",
            envvar="PBISTREAM_APP_ID",
            help="Entra ID: the app registration's (client) id; signs in as that app.",
        ),
        click.option(
            "--client-secret",
            envvar="PBISTREAM_CLIENT_SECRET",
            help="Entra ID: the app's client secret. [env: PBISTREAM_CLIENT_SECRET]",
        ),
        click.option(
            "--authority-host",
            default=AUTHORITY_HOST,
            show_default=True,
            help="Entra ID's sign-in host (another for sovereign clouds).",
        ),
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
    tenant_id: str | None = None,
    app_id: str | None = None,
    client_secret: str | None = None,
    authority_host: str = AUTHORITY_HOST,
    sequence_numbers: bool = True,
) -> FeedClientOptions:
    """The client options, with the feed's default spool when ``--spool`` is not given.

    Raises:
        ConfigError: Entra ID options without their companions, or with ``--token``.
    """
    return FeedClientOptions(
        target=target,
        token=token,
        spool=Path(spool) if spool else default_spool_path(kind, key),
        time_scale=time_scale,
        pacing=not no_pacing,
        auth=_entra_auth(token, tenant_id, app_id, client_secret, authority_host),
        sequence_numbers=sequence_numbers,
    )


def _entra_auth(
    token: str | None,
    tenant_id: str | None,
    app_id: str | None,
    client_secret: str | None,
    authority_host: str,
) -> Any:
    if not (tenant_id or app_id or client_secret):
        return None
    if not (tenant_id and app_id and client_secret):
        raise ConfigError("Entra ID sign-in needs --tenant-id, --app-id and --client-secret")
    if token:
        raise ConfigError("give either --token or the Entra ID options, not both")
    from pbistream.client.auth import EntraAuth

    # A host other than Microsoft's own is not in msal's list of known authorities.
    extra = {} if authority_host == AUTHORITY_HOST else {"instance_discovery": False}
    return EntraAuth.service_principal(
        tenant_id,
        app_id,
        client_secret=client_secret,
        authority_host=authority_host,
        msal_options=extra,
    )
