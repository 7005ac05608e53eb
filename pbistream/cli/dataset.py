"""``pbistream dataset``: create, list, show, delete datasets and rotate keys on a server.

A thin HTTP client of a running ``pbistream serve``: datasets are created through
the Power BI REST API (``POST /v1.0/myorg/datasets``), exactly as Power BI code
would, and read back through the server's own ``/api/datasets/{id}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import click
import httpx

from pbistream.cli._group import emit, friendly_errors, json_option, main
from pbistream.exceptions import PbiStreamError
from pbistream.redact import redact_text
from pbistream.values import parse_field_type

__all__ = ["DEFAULT_SERVER", "dataset"]

DEFAULT_SERVER = "http://127.0.0.1:8765"
# The table a streaming dataset (and "historic data analysis") stores rows in.
STREAMING_TABLE = "RealTimeData"
_MODES = {"streaming": "Streaming", "push": "Push", "pushstreaming": "PushStreaming"}
_RETENTIONS = {"none": "None", "basicfifo": "basicFIFO"}
TIMEOUT_SECONDS = 30.0

F = TypeVar("F", bound=Callable[..., Any])


class CommandError(PbiStreamError):
    """A dataset command failed: bad input, an unreachable server, or a refusal."""


def server_options(func: F) -> F:
    """Add ``--server`` and ``--token`` (defaults from PBISTREAM_SERVER / PBISTREAM_TOKEN)."""
    func = click.option(
        "--token",
        envvar="PBISTREAM_TOKEN",
        default=None,
        help="The server's API token (env PBISTREAM_TOKEN; `pbistream serve` prints it).",
    )(func)
    return click.option(
        "--server",
        envvar="PBISTREAM_SERVER",
        default=DEFAULT_SERVER,
        show_default=True,
        help="Base URL of the pbistream server (env PBISTREAM_SERVER).",
    )(func)


class ServerClient:
    """The few HTTP calls the commands make, with errors turned into one-line messages."""

    def __init__(self, server: str, token: str | None) -> None:
        self.server = server.rstrip("/")
        try:
            url = httpx.URL(self.server)
        except httpx.InvalidURL as exc:
            raise CommandError(f"--server {server!r} is not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise CommandError(
                f"--server {server!r} is not an http(s) URL, e.g. http://127.0.0.1:8765"
            )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._has_token = bool(token)
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=TIMEOUT_SECONDS)

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; return its JSON body (None when empty).

        Raises:
            CommandError: The server cannot be reached or did not answer 2xx.
        """
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise CommandError(
                f"cannot reach the server at {self.server}: is `pbistream serve` running?"
            ) from None
        except httpx.HTTPError as exc:
            raise CommandError(f"request to {self.server} failed: {exc}") from None
        if response.status_code == 401 and not self._has_token:
            raise CommandError(
                f"{self.server} needs a token and none was given: pass --token or set "
                "PBISTREAM_TOKEN (`pbistream serve` printed it when it first started)"
            )
        if response.status_code == 401:
            raise CommandError(
                "the server refused the token: check --token or PBISTREAM_TOKEN "
                "(`pbistream serve` printed it when it first started)"
            )
        if response.status_code >= 400:
            raise CommandError(_describe_error(response))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CommandError(
                f"{self.server} answered {response.status_code} with a body that is not JSON: "
                "is it a pbistream server?"
            ) from None


def _describe_error(response: httpx.Response) -> str:
    """One line from any of Power BI's three error shapes (reference §1.8)."""
    try:
        error = response.json()["error"]
        code = str(error.get("code", ""))
        texts = [error.get("message")]
        texts += [d.get("message") for d in error.get("details") or [] if isinstance(d, dict)]
        pbi = error.get("pbi.error") or {}
        texts += [
            (d.get("detail") or {}).get("value")
            for d in pbi.get("details") or []
            if isinstance(d, dict) and d.get("code") != "LearnMoreLink"
        ]
        message = next((t for t in texts if isinstance(t, str) and t), code)
        detail = f"{code}: {message}" if message != code else code
    except (ValueError, KeyError, TypeError, AttributeError):
        detail = response.text[:200] or response.reason_phrase
    return redact_text(f"the server answered {response.status_code} {detail}".strip())


def parse_fields(specs: Sequence[str]) -> list[dict[str, str]]:
    """Turn ``name:Type`` options into Power BI column definitions.

    Raises:
        CommandError: A spec has no type, an unknown type, or repeats a name.
    """
    columns: list[dict[str, str]] = []
    seen: set[str] = set()
    for spec in specs:
        name, sep, type_name = spec.rpartition(":")
        if not sep or not name.strip() or not type_name.strip():
            raise CommandError(f"--field {spec!r}: write it as name:Type, e.g. temperature:Number")
        try:
            data_type = parse_field_type(type_name.strip())
        except ValueError as exc:
            raise CommandError(f"--field {spec!r}: {exc}") from None
        if name in seen:
            raise CommandError(f"--field {spec!r}: the field {name!r} is given twice")
        seen.add(name)
        columns.append({"name": name, "dataType": data_type.value})
    return columns


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain aligned columns for humans."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def describe(detail: dict[str, Any]) -> str:
    """A dataset's details for humans; the Push URL (if any) is the last line."""
    lines = [
        f"Dataset   {detail['name']}",
        f"Id        {detail['id']}",
        f"Mode      {detail['defaultMode']}",
        f"Retention {detail['defaultRetentionPolicy']}",
    ]
    if detail.get("groupId"):
        lines.append(f"Workspace {detail['groupId']}")
    lines.append(f"Last row  {_when(detail.get('lastRowAt'))}")
    for table in detail.get("tables", []):
        fields = ", ".join(f"{c['name']} ({c['dataType']})" for c in table.get("columns", []))
        lines.append(f"Table     {table['name']}: {table['rowCount']} rows; {fields}")
    forward = detail.get("forward")
    if forward:
        state = forward.get("state") or {}
        progress = (
            f"; {state.get('delivered', 0):,} delivered, {state.get('pending', 0):,} pending"
            if state
            else ""
        )
        lines.append(f"Forward   {forward['table']} to {forward['target']}{progress}")
    if detail.get("pushUrl"):
        lines.append("Push URL:")
        lines.append(str(detail["pushUrl"]))
    return "\n".join(lines)


def _segment(text: str) -> str:
    """One URL path segment: an id like ``../x`` must not reach another endpoint."""
    return quote(text, safe="")


def _dataset_path(detail: dict[str, Any]) -> str:
    group = detail.get("groupId")
    prefix = f"/v1.0/myorg/groups/{group}" if group else "/v1.0/myorg"
    return f"{prefix}/datasets/{detail['id']}"


def _command(func: F) -> F:
    """Shared decorators of every dataset command (options, JSON, friendly errors)."""
    return server_options(json_option(friendly_errors(func)))


@main.group()
def dataset() -> None:
    """Create and manage datasets on a pbistream server.

    Example: pbistream dataset create Sensors --field temp:Number --field at:DateTime
    """


@dataset.command()
@click.argument("name")
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME:TYPE",
    help="A field and its type: Text, Number, Int64, Boolean, DateTime or Decimal. Repeatable.",
)
@click.option(
    "--mode",
    type=click.Choice(sorted(_MODES), case_sensitive=False),
    default="streaming",
    show_default=True,
    help="Streaming (Push URL, 60-minute cache), push (REST API only) or pushstreaming (both).",
)
@click.option(
    "--historic",
    is_flag=True,
    help="Historic data analysis: keep the rows (the same as --mode pushstreaming).",
)
@click.option(
    "--retention",
    type=click.Choice(sorted(_RETENTIONS), case_sensitive=False),
    default="none",
    show_default=True,
    help="none keeps up to 5,000,000 rows a table; basicfifo the newest ~200,000.",
)
@click.option(
    "--table",
    default=STREAMING_TABLE,
    show_default=True,
    help="The table's name (streaming datasets always use RealTimeData).",
)
@_command
def create(
    name: str,
    fields: tuple[str, ...],
    mode: str,
    historic: bool,
    retention: str,
    table: str,
    server: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Create a dataset; print its Push URL last (streaming modes) or its id (push).

    Example: pbistream dataset create Sensors --field temp:Number --field at:DateTime --historic
    """
    mode = mode.lower()
    if historic:
        if mode == "push":
            raise CommandError(
                "--historic needs a streaming dataset; it cannot go with --mode push"
            )
        mode = "pushstreaming"
    if not fields:
        raise CommandError("give at least one --field name:Type, e.g. --field temperature:Number")
    columns = parse_fields(fields)
    if mode != "push" and table != STREAMING_TABLE:
        raise CommandError(f"a {_MODES[mode]} dataset's table is always {STREAMING_TABLE}")
    body = {
        "name": name,
        "defaultMode": _MODES[mode],
        "tables": [{"name": table, "columns": columns}],
    }
    with ServerClient(server, token) as client:
        created = client.call(
            "POST",
            "/v1.0/myorg/datasets",
            params={"defaultRetentionPolicy": _RETENTIONS[retention.lower()]},
            json=body,
        )
        detail = client.call("GET", f"/api/datasets/{created['id']}")
    if as_json:
        emit(True, detail, "")
        return
    summary = describe(detail)
    if not detail.get("pushUrl"):
        summary += f"\nDataset id:\n{detail['id']}"
    click.echo(summary)


@dataset.command(name="list")
@_command
def list_(server: str, token: str | None, as_json: bool) -> None:
    """List every dataset with its mode, retention, row count and last row.

    Example: pbistream dataset list --json
    """
    with ServerClient(server, token) as client:
        datasets = client.call("GET", "/api/datasets")["value"]
    rows = [
        (
            d["id"],
            d["name"],
            d["defaultMode"],
            d["defaultRetentionPolicy"],
            d["rowCount"],
            _when(d.get("lastRowAt")),
        )
        for d in datasets
    ]
    human = (
        format_table(("ID", "NAME", "MODE", "RETENTION", "ROWS", "LAST ROW"), rows)
        if rows
        else "No datasets yet: create one with `pbistream dataset create NAME --field name:Type`."
    )
    emit(as_json, datasets, human)


@dataset.command()
@click.argument("dataset_id", metavar="ID")
@_command
def show(dataset_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Show a dataset's tables, row counts and Push URL.

    Example: pbistream dataset show 6f1c...
    """
    with ServerClient(server, token) as client:
        detail = client.call("GET", f"/api/datasets/{_segment(dataset_id)}")
    emit(as_json, detail, describe(detail))


@dataset.command()
@click.argument("dataset_id", metavar="ID")
@_command
def delete(dataset_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Delete a dataset and all its rows.

    Example: pbistream dataset delete 6f1c...
    """
    with ServerClient(server, token) as client:
        detail = client.call("GET", f"/api/datasets/{_segment(dataset_id)}")
        client.call("DELETE", _dataset_path(detail))
    emit(
        as_json,
        {"id": detail["id"], "name": detail["name"], "deleted": True},
        f"Deleted dataset {detail['name']!r} ({detail['id']}).",
    )


@dataset.command(name="rotate-key")
@click.argument("dataset_id", metavar="ID")
@_command
def rotate_key(dataset_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Give a streaming dataset a new Push URL key; the old URL stops working at once.

    Example: pbistream dataset rotate-key 6f1c...
    """
    with ServerClient(server, token) as client:
        rotated = client.call("POST", f"/api/datasets/{_segment(dataset_id)}/rotate-key")
    emit(as_json, rotated, f"New Push URL (the old one no longer works):\n{rotated['pushUrl']}")
