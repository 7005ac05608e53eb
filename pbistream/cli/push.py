"""``pbistream push``: one row for cron, or a whole file, through the same client.

A thin layer over :class:`pbistream.Client`: it reads the table's schema when it can
(a pbistream server with ``--token``, or the REST API), coerces text values by it,
and reports in one line. Exit code 0 means every row was delivered (or, with
``--spool``, committed to the spool).
"""

from __future__ import annotations

import bisect
import csv
import io
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import orjson

from pbistream.cli._group import emit, friendly_errors, json_option, main
from pbistream.client import (
    BufferOptions,
    Client,
    DeadLetter,
    PacingOptions,
    PushUrlSink,
    RestApiSink,
    RetryOptions,
)
from pbistream.client.sinks import SinkBase, parse_rest_url
from pbistream.exceptions import PbiStreamError
from pbistream.feeds.payloads import coerce, parse_key_values
from pbistream.schema import Table
from pbistream.values import DataType

__all__ = ["push"]

_CHUNK_ROWS = 1_000
_COUNTER_EVERY = 10_000


class PushCommandError(PbiStreamError):
    """The command's input is unusable, or its rows were not delivered."""


def _make_sink(url: str, token: str | None) -> SinkBase:
    rest = parse_rest_url(url)
    if rest is not None:
        base, group, dataset, table = rest
        return RestApiSink(dataset, table, auth=token, base_url=base, group_id=group)
    return PushUrlSink(url, token=token)


def _types(table: Table | None) -> dict[str, DataType]:
    return {c.name: c.data_type for c in table.columns} if table else {}


def _coerce_row(row: dict[str, str], types: dict[str, DataType], known: bool) -> dict[str, Any]:
    return {k: coerce(v, types.get(k)) if known else coerce(v, None) for k, v in row.items()}


def _read_rows(
    stream: IO[str], fmt: str, types: dict[str, DataType], known: bool
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line number, row)`` from JSON Lines or CSV; an unusable line yields its error."""
    if fmt == "csv":
        reader = csv.DictReader(stream)
        for record in reader:
            line = reader.line_num
            width = len(reader.fieldnames or ())
            if None in record:  # more values than header columns: DictReader's restkey
                extra = record.pop(None)
                yield line, f"line {line}: {width + len(extra)} values for {width} header columns"
                continue
            if any(value is None for value in record.values()):  # fewer: its restval
                given = sum(value is not None for value in record.values())
                yield line, f"line {line}: {given} values for {width} header columns"
                continue
            yield line, _coerce_row({str(k): v for k, v in record.items()}, types, known)
        return
    for number, line_text in enumerate(stream, 1):
        if not line_text.strip():
            continue
        try:
            value = orjson.loads(line_text)
        except orjson.JSONDecodeError as exc:
            yield number, f"line {number}: not JSON ({exc})"
            continue
        if not isinstance(value, dict):
            yield number, f"line {number}: a row must be a JSON object"
            continue
        yield number, value


class _LineMap:
    """Which file line each pushed row came from, to name it in error messages.

    Rows are pushed in file order, so a line is the row's push index plus an offset
    that only grows (blank lines, refused lines, multi-line CSV records); the map keeps
    one entry per change of offset, not one per row.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._offsets: list[int] = []

    def add(self, index: int, line: int) -> None:
        offset = line - index
        if not self._offsets or self._offsets[-1] != offset:
            self._starts.append(index)
            self._offsets.append(offset)

    def line_of(self, index: int) -> int | None:
        position = bisect.bisect_right(self._starts, index) - 1
        return index + self._offsets[position] if position >= 0 else None


class _Refusals:
    """Counts refused rows and keeps the first (for the one-line report), not all of them.

    A file of millions of bad rows must not hold millions of dead letters in memory;
    the full list is the dead-letter file's job. Fed from the worker thread (the
    client's callback) and the reading thread (lines that are not rows).
    """

    def __init__(self) -> None:
        self.count = 0
        self.first: DeadLetter | None = None
        self._lock = threading.Lock()

    def extend(self, letters: list[DeadLetter]) -> None:
        with self._lock:
            if letters and self.first is None:
                self.first = letters[0]
            self.count += len(letters)

    def append(self, letter: DeadLetter) -> None:
        self.extend([letter])


class _Progress:
    """tqdm when the ``progress`` extra is installed, else a counter on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.count = 0
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                self._bar = None
            else:
                self._bar = tqdm(unit=" rows", file=sys.stderr, mininterval=0.5)

    def update(self, rows: int) -> None:
        self.count += rows
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(rows)
        elif self.count // _COUNTER_EVERY != (self.count - rows) // _COUNTER_EVERY:
            click.echo(f"\r{self.count:,} rows read", err=True, nl=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.count >= _COUNTER_EVERY:
            click.echo(f"\r{self.count:,} rows read", err=True)


@main.command()
@click.argument("url")
@click.argument("fields", nargs=-1)
@click.option(
    "--file",
    "file_path",
    type=click.Path(allow_dash=True, dir_okay=False),
    help="Push every row of a .jsonl or .csv file ('-' reads stdin).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "csv"]),
    default="auto",
    show_default=True,
    help="File format; auto goes by the file name (stdin: jsonl).",
)
@click.option(
    "--spool",
    type=click.Path(dir_okay=False),
    help="Keep rows in this on-disk queue until delivered; exit 0 once they are in it.",
)
@click.option(
    "--token",
    envvar="PBISTREAM_TOKEN",
    help="A pbistream server's token (reads the schema), or a bearer token for a REST URL.",
)
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to keep retrying; then a row is given up (or, with --spool, left in it).",
)
@click.option(
    "--time-scale",
    type=float,
    default=1.0,
    help="Divide Power BI's rate windows by this (match `serve --time-scale`).",
)
@click.option("--no-pacing", is_flag=True, help="Do not pace requests (server limits off).")
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: tty).")
@click.option("-v", "--verbose", is_flag=True, help="Log retries and refusals on stderr.")
@json_option
@friendly_errors
def push(
    url: str,
    fields: tuple[str, ...],
    file_path: str | None,
    fmt: str,
    spool: str | None,
    token: str | None,
    timeout: float,
    time_scale: float,
    no_pacing: bool,
    progress: bool | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Push rows to a Push URL (or a REST PostRows URL): FIELD=VALUE pairs, or --file.

    One row from the command line exits 0 only when the row is delivered (or spooled
    with --spool); otherwise one line on stderr and exit 1. Values are coerced by the
    table's schema when the server tells it, else read as JSON numbers, true/false,
    or text.

    Example: pbistream push "$PUSH_URL" temperature=21.5 ts=2024-05-01T12:00:00Z
    """
    _configure_logging(verbose)
    if file_path is None and not fields:
        raise PushCommandError("give FIELD=VALUE pairs or --file PATH")
    if file_path is not None and fields:
        raise PushCommandError("give either FIELD=VALUE pairs or --file, not both")
    sink = _make_sink(url, token)
    table = sink.fetch_table()  # type: ignore[attr-defined]
    schema = table.table if table is not None else None
    types, known = _types(schema), schema is not None
    letters = _Refusals()
    lines = _LineMap()
    client = Client(
        sink,
        schema=schema,
        spool=spool,
        pacing=PacingOptions(enabled=not no_pacing, time_scale=time_scale),
        retry=RetryOptions(max_elapsed=None if spool else timeout, max_backoff=5.0),
        buffer=BufferOptions(max_rows=100_000, when_full="block", timeout=86_400.0),
        on_dead_letter=letters.extend,
        close_timeout=timeout if spool else timeout + 10.0,
    )
    try:
        if file_path is None:
            client.push(parse_key_values(fields, types if known else None))
        else:
            _push_file(client, file_path, fmt, types, known, progress, letters, lines)
        left = client.close(None if not spool else timeout)
    except BaseException:
        client.close(0.1)
        raise
    # Without a spool a dead letter's index is its push position, which maps to a line.
    _report(client, left, letters, spool, as_json, lines if file_path and not spool else None)


def _push_file(
    client: Client,
    file_path: str,
    fmt: str,
    types: dict[str, DataType],
    known: bool,
    progress: bool | None,
    letters: _Refusals,
    lines: _LineMap,
) -> None:
    if fmt == "auto":
        fmt = "csv" if file_path.lower().endswith(".csv") else "jsonl"
    stream: IO[str]
    if file_path == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
    else:
        try:
            stream = Path(file_path).open(encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise PushCommandError(f"cannot read {file_path}: {exc.strerror}") from None
    bar = _Progress(sys.stderr.isatty() if progress is None else progress)
    chunk: list[dict[str, Any]] = []
    pushed = 0
    try:
        for line, item in _read_rows(stream, fmt, types, known):
            if isinstance(item, str):
                letters.append(DeadLetter(None, None, "shape", None, item))
                continue
            lines.add(pushed, line)
            pushed += 1
            chunk.append(item)
            if len(chunk) >= _CHUNK_ROWS:
                client.push(chunk)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            client.push(chunk)
            bar.update(len(chunk))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PushCommandError(f"cannot read {file_path}: {exc}") from None
    finally:
        bar.close()
        if file_path != "-":
            stream.close()


def _report(
    client: Client,
    left: int,
    letters: _Refusals,
    spool: str | None,
    as_json: bool,
    lines: _LineMap | None,
) -> None:
    stats = client.stats
    payload: dict[str, Any] = {**stats.as_dict(), "pending": left, "refused": letters.count}
    if spool:
        payload["spool"] = spool
    human = f"{stats.sent:,} row{'s' if stats.sent != 1 else ''} delivered"
    if spool and left:
        human += f", {left:,} kept in the spool {spool} for later delivery"
    emit(as_json, payload, human + ".")
    if letters.first is not None:
        letter = letters.first
        first = letter.message
        line = lines.line_of(letter.index) if lines and letter.index is not None else None
        if line is not None:
            first = f"line {line}: {first}"
        more = f" (and {letters.count - 1:,} more)" if letters.count > 1 else ""
        raise PushCommandError(f"{letters.count:,} row(s) not delivered: {first}{more}")
    if left and not spool:
        reason = client.last_error or "no answer from the server"
        raise PushCommandError(f"{left:,} row(s) not delivered: {reason}")


def _configure_logging(verbose: bool) -> None:
    logger = logging.getLogger("pbistream")
    if verbose:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.setLevel(logging.INFO)
    else:
        # The command reports in one line itself; keep the library's log off stderr.
        handler = logging.NullHandler()
    # Replace the handler of an earlier call in the same process (tests, notebooks).
    for old in [h for h in logger.handlers if getattr(h, "pbistream_cli", False)]:
        logger.removeHandler(old)
    handler.pbistream_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
