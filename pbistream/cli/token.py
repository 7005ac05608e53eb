"""``pbistream token``: create, list and revoke scoped API tokens; rotate the server's own.

``create``, ``list`` and ``revoke`` talk to a running server over HTTP (``/api/tokens``,
with an admin token in PBISTREAM_TOKEN), like ``pbistream dataset``. ``rotate`` works
offline on the data dir (or ``--storage`` URL), because it is what you run when the
server's token is lost: it keeps the new token's hash in place of the old one and
prints the new token once. There is no ``token show``: tokens are stored hashed, so
no one (not even the server) can show one again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import click

from pbistream.cli._group import emit, friendly_errors, json_option, main
from pbistream.cli.dataset import CommandError, ServerClient, format_table, server_options
from pbistream.grants import (
    KIND_TOKEN,
    SERVER_GRANT_ID,
    SERVER_TOKEN_HASH_KEY,
    mint_secret,
    parse_duration,
    secret_hash,
)

__all__ = ["token"]

_ROLES = ("admin", "member", "contributor", "viewer")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _reach(grant: dict[str, Any]) -> str:
    """What a grant may reach, in a few words."""
    if grant.get("dashboard"):
        return "dashboard " + str(grant["dashboard"])
    return ",".join(grant.get("datasets") or []) or "all"


@main.group()
def token() -> None:
    """Manage API tokens: each has a role, and may be limited to some datasets.

    Roles follow Power BI's workspace roles: a viewer reads datasets, rows, live feeds
    and dashboards; a contributor also pushes rows; a member also creates and changes
    datasets and dashboards; an admin also manages tokens. Tokens are shown once and
    kept hashed, so there is no `token show`: make a new one (`create`, or `rotate`
    for the server's own token).

    Example: pbistream token create --role viewer --name "wall screen" --expires 30d
    """


@token.command("create")
@click.option(
    "--role", required=True, type=click.Choice(_ROLES, case_sensitive=False), help="Its role."
)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    help="Limit it to this dataset id (repeatable); without it, every dataset.",
)
@click.option("--name", default=None, help="What it is for (shown by `token list`).")
@click.option("--expires", default=None, help="Expire after this long: 3600, 90m, 12h, 30d, 8w.")
@server_options
@json_option
@friendly_errors
def create(
    role: str,
    datasets: tuple[str, ...],
    name: str | None,
    expires: str | None,
    server: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Create a token on a running server; it is printed once.

    Example: pbistream token create --role contributor --dataset 7d3c... --name sensor-12
    """
    body: dict[str, Any] = {"role": role.lower()}
    if datasets:
        body["datasets"] = list(datasets)
    if name:
        body["name"] = name
    if expires:
        try:
            body["expiresIn"] = parse_duration(expires)
        except ValueError as exc:
            raise CommandError(f"--expires: {exc}") from None
    with ServerClient(server, token) as client:
        made = client.call("POST", "/api/tokens", json=body)
    scope = ", ".join(made.get("datasets") or []) or "every dataset"
    expiry = _when(made["expiresAt"])
    human = (
        f"Created {made['role']} token {made['id']} ({scope}; expires {expiry}).\n"
        "Copy it now: it is shown only this once.\n"
        f"{made['token']}"
    )
    emit(as_json, made, human)


@token.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also list revoked ones.")
@server_options
@json_option
@friendly_errors
def list_tokens(show_all: bool, server: str, token: str | None, as_json: bool) -> None:
    """List the tokens (and dashboard links) of a running server; never their secrets.

    Example: pbistream token list
    """
    with ServerClient(server, token) as client:
        found = client.call("GET", "/api/tokens", params={"all": "true"} if show_all else {})
    grants = found.get("value", [])
    rows = [
        (
            g["id"],
            g["kind"],
            g["role"],
            g["status"],
            _reach(g),
            _when(g.get("expiresAt")),
            _when(g.get("lastUsedAt")),
            g.get("name") or "",
        )
        for g in grants
    ]
    headers = ("ID", "KIND", "ROLE", "STATUS", "DATASETS", "EXPIRES", "LAST USED", "NAME")
    emit(as_json, grants, format_table(headers, rows))


@token.command("revoke")
@click.argument("token_id")
@server_options
@json_option
@friendly_errors
def revoke(token_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Revoke a token now; its open live feeds end within seconds.

    Example: pbistream token revoke 3f9a1c2b7d4e
    """
    with ServerClient(server, token) as client:
        client.call("DELETE", f"/api/tokens/{quote(token_id, safe='')}")
    emit(as_json, {"id": token_id, "revoked": True}, f"Revoked token {token_id}.")


@token.command("rotate")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="The server's data dir [default: ./pbistream-data, or PBISTREAM_DATA_DIR].",
)
@click.option("--storage", default=None, help="A storage URL instead (postgresql://...).")
@json_option
@friendly_errors
def rotate(data_dir: str | None, storage: str | None, as_json: bool) -> None:
    """Replace the server's own admin token (offline, on its data); the old one stops.

    Use it when the token `pbistream serve` printed is lost. A running server on the
    same data takes the new token within seconds; a server started with --token or
    PBISTREAM_TOKEN keeps using that one (change it there instead).

    Example: pbistream token rotate --data-dir ./pbistream-data
    """
    import os
    from pathlib import Path

    from pbistream.storage import open_storage

    target = (
        storage
        or data_dir
        or os.environ.get("PBISTREAM_STORAGE")
        or os.environ.get("PBISTREAM_DATA_DIR", "./pbistream-data")
    )
    if "://" not in target and not (Path(target) / "pbistream.db").exists():
        raise CommandError(
            f"no pbistream data in {target!r}: give the --data-dir `pbistream serve` uses"
        )
    store = open_storage(target)
    try:
        secret = mint_secret(KIND_TOKEN)
        store.set_meta(SERVER_TOKEN_HASH_KEY, secret_hash(secret))
        store.set_meta("api_token", "")  # a clear copy an older version may have kept
    finally:
        store.close()
    human = (
        "The server's admin token was replaced; the old one no longer works.\n"
        "Copy the new one now: it is shown only this once.\n"
        f"{secret}"
    )
    emit(as_json, {"id": SERVER_GRANT_ID, "role": "admin", "token": secret}, human)
