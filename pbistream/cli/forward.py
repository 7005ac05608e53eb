"""``pbistream dataset forward``: relay a local dataset's rows to Power BI (or another server).

A thin client of ``PUT/GET/DELETE /api/datasets/{id}/forward``; the forwarding itself
runs inside ``pbistream serve`` (see :mod:`pbistream.feeds.forward`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from pbistream.cli._group import emit, friendly_errors, json_option
from pbistream.cli.dataset import DEFAULT_SERVER, CommandError, ServerClient, dataset

__all__ = ["describe_forward", "forward"]


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_forward(answer: dict[str, Any]) -> str:
    """A forward's configuration and state for humans."""
    forward = answer.get("forward")
    if not forward:
        return f"Dataset {answer['id']} is not forwarded."
    lines = [
        f"Forwarding dataset {answer['id']} (table {forward['table']})",
        f"To          {forward['target']}",
        f"Auth        {forward['auth']}",
    ]
    if forward.get("timeScale", 1) != 1:
        lines.append(f"Time scale  {forward['timeScale']:g}")
    state = forward.get("state")
    if state is None:
        lines.append("State       starting (the server's forwarder has not reported yet)")
        return "\n".join(lines)
    lines += [
        f"State       {'running' if state['running'] else 'stopped'}",
        f"Pending     {state['pending']:,} rows",
        f"Delivered   {state['delivered']:,} rows (last {_when(state.get('lastDeliveredAt'))})",
        f"Upstream    {state['upstreamPosts']:,} POSTs, {state['rateLimited']:,} answered 429",
    ]
    if state.get("deadLettered"):
        lines.append(f"Refused     {state['deadLettered']:,} rows (dead-lettered)")
    if state.get("lastError"):
        lines.append(f"Last error  {state['lastError']} ({_when(state.get('lastErrorAt'))})")
    return "\n".join(lines)


@dataset.command()
@click.argument("dataset_id", metavar="ID")
@click.option("--to", "target", metavar="URL", help="Where to: a Push URL or a REST table URL.")
@click.option("--off", is_flag=True, help="Stop forwarding this dataset.")
@click.option("--table", help="The local table to forward (needed when the dataset has several).")
@click.option(
    "--token",
    "target_token",
    envvar="PBISTREAM_FORWARD_TOKEN",
    help="Bearer token for a REST target, e.g. the upstream pbistream server's "
    "(env PBISTREAM_FORWARD_TOKEN).",
)
@click.option("--tenant-id", help="Entra ID tenant (with --client-id and --client-secret).")
@click.option("--client-id", help="Entra ID application (client) id.")
@click.option(
    "--client-secret",
    envvar="PBISTREAM_CLIENT_SECRET",
    help="Entra ID client secret (env PBISTREAM_CLIENT_SECRET).",
)
@click.option(
    "--time-scale",
    type=float,
    default=None,
    help="Divide Power BI's rate windows by this (an upstream `serve --time-scale`).",
)
@click.option(
    "--server",
    envvar="PBISTREAM_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    help="Base URL of the local pbistream server (env PBISTREAM_SERVER).",
)
@click.option(
    "--server-token",
    envvar="PBISTREAM_TOKEN",
    default=None,
    help="The local server's API token (env PBISTREAM_TOKEN; `pbistream serve` prints it).",
)
@json_option
@friendly_errors
def forward(
    dataset_id: str,
    target: str | None,
    off: bool,
    table: str | None,
    target_token: str | None,
    tenant_id: str | None,
    client_id: str | None,
    client_secret: str | None,
    time_scale: float | None,
    server: str,
    server_token: str | None,
    as_json: bool,
) -> None:
    """Forward the rows a dataset stores to Power BI (or another server), or show the forward.

    The server delivers every row stored from now on through its own spool
    (DATA_DIR/forward/ID.spool): paced within the target's limits, batched into the
    fewest POSTs, resent after a crash under the same sequence number. --to sets or
    replaces the forward (a replaced one goes on from the same row); --off stops
    it; with neither, it shows the forward's state. Credentials are kept with the
    server's data and never shown again.

    Example: pbistream dataset forward 6f1c... --to "$POWER_BI_PUSH_URL"
    """
    from urllib.parse import quote

    if off and target:
        raise CommandError("give either --to URL or --off, not both")
    path = f"/api/datasets/{quote(dataset_id, safe='')}/forward"
    with ServerClient(server, server_token) as client:
        if off:
            answer = client.call("DELETE", path)
            human = (
                f"Stopped forwarding dataset {answer['id']}."
                if answer.get("stopped")
                else f"Dataset {answer['id']} was not forwarded."
            )
            emit(as_json, answer, human)
            return
        if target:
            body: dict[str, Any] = {"target": target}
            extras = {
                "table": table,
                "token": target_token,
                "tenantId": tenant_id,
                "clientId": client_id,
                "clientSecret": client_secret,
                "timeScale": time_scale,
            }
            body.update({k: v for k, v in extras.items() if v is not None})
            client.call("PUT", path, json=body)
        answer = client.call("GET", path)
    emit(as_json, answer, describe_forward(answer))
