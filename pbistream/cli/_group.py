"""The root click group and the options every command shares."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pbistream.exceptions import PbiStreamError
from pbistream.redact import redact_text

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pbistream")
def main() -> None:
    """Push live data to Power BI streaming datasets, or serve the same API yourself.

    Example: pbistream demo
    """


def json_option(func: F) -> F:
    """Add ``--json``: print machine-readable JSON instead of human text."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for machines instead of text."
    )(func)


def emit(as_json: bool, payload: Any, human: str) -> None:
    """Print ``payload`` as JSON with ``--json``, else the human text."""
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        click.echo(human)


def friendly_errors(func: F) -> F:
    """Turn library errors into one redacted line on stderr and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PbiStreamError as exc:
            click.secho(f"Error: {redact_text(str(exc))}", fg="red", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
