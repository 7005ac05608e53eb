"""``pbistream push``: one row for cron, or a whole file, through the same client.

A thin layer over :class:`pbistream.Client`: it reads the table's schema when it can
(a pbistream server with ``--token``, or the REST API), coerces text values by it,
waits as long as delivery takes (``--timeout`` bounds it) and reports in one line.
A file is read into a spool keyed on the file (see :mod:`pbistream.cli._push_file`),
so running the same command again after a failure or Ctrl-C resumes it and stores
each row once. Exit code 0 means every row was delivered (or, with ``--spool``,
committed to the spool).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from pbistream.cli._group import emit, friendly_errors, json_option, main
from pbistream.cli._push_file import (
    DeliveryBar,
    LineMap,
    PushCommandError,
    file_key,
    load_file,
    open_input,
    plural,
    read_rows,
    resume_spool_path,
    types_of,
    without_row_number,
    without_server_row,
)
from pbistream.client import (
    BufferOptions,
    Client,
    DeadLetter,
    DeliveryProgress,
    PacingOptions,
    PushUrlSink,
    RestApiSink,
    RetryOptions,
)
from pbistream.client.engine import is_retryable
from pbistream.client.sinks import SinkBase, parse_rest_url
from pbistream.exceptions import AuthError, PushError, RateLimitedError, UndeliveredRowsError
from pbistream.feeds.payloads import parse_key_values
from pbistream.redact import redact_url
from pbistream.spool import Spool

__all__ = ["push"]

_CHUNK_ROWS = 1_000
# With --spool and no --timeout: how long to try delivering before leaving it to the spool.
_SPOOL_GRACE = 2.0
_PUSH_URL_SHAPE = (
    "a Push URL looks like https://api.powerbi.com/beta/<workspace>/datasets/<dataset id>/"
    "rows?key=<key> (Power BI: the dataset's API info; pbistream: `pbistream dataset "
    "create` prints it), a REST URL like https://api.powerbi.com/v1.0/myorg/datasets/"
    "<dataset id>/tables/<table>/rows"
)


def _make_sink(url: str, token: str | None, timeout: float | None = None) -> SinkBase:
    """The sink for ``url``, or a clear error when it is not a rows URL at all."""
    per_request = 30.0 if timeout is None else max(1.0, min(30.0, timeout))
    rest = parse_rest_url(url)
    if rest is not None:
        base, group, dataset, table = rest
        return RestApiSink(
            dataset, table, auth=token, base_url=base, group_id=group, timeout=per_request
        )
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    is_push_url = (
        parts.scheme in ("http", "https")
        and bool(parts.netloc)
        and len(segments) >= 3
        and segments[-1] == "rows"
        and segments[-3] == "datasets"
    )
    if not is_push_url:
        raise PushCommandError(
            f"{redact_url(url)} is not a URL rows can be pushed to: {_PUSH_URL_SHAPE}"
        )
    return PushUrlSink(url, token=token, timeout=per_request)


class _Refusals:
    """Counts refused rows and keeps the first (for the one-line report), not all of them.

    A file of millions of bad rows must not hold millions of dead letters in memory;
    the full list is the dead-letter file's job. Fed from the worker thread (the
    client's callback) and the reading thread (lines that are not rows).
    """

    def __init__(self) -> None:
        self.count = 0
        self.first: DeadLetter | None = None
        self.first_text: str | None = None
        self._lock = threading.Lock()

    def extend(self, letters: list[DeadLetter]) -> None:
        letters = [d for d in letters if d.rule != "not_delivered"]  # reported apart
        with self._lock:
            if letters and self.first is None and self.first_text is None:
                self.first = letters[0]
            self.count += len(letters)

    def text(self, message: str) -> None:
        """A line that is not a row (its message names the line)."""
        with self._lock:
            if self.first is None and self.first_text is None:
                self.first_text = message
            self.count += 1

    def describe(self, lines: LineMap | None) -> str:
        if self.first_text is not None:
            return self.first_text
        letter = self.first
        assert letter is not None
        line = lines.line_of(letter.index) if lines and letter.index is not None else None
        if line is None:
            return without_server_row(letter.message)
        return f"line {line}: {without_row_number(letter.message)}"


class _Notices:
    """Says at once (and every 10 s while it lasts) why delivery is not progressing."""

    def __init__(self, label: str, until: str) -> None:
        self.label = label
        self.until = until
        self.attempts = 0
        self._said: str | None = None
        self._said_at = 0.0

    def on_error(self, error: PushError) -> None:
        if isinstance(error, AuthError):
            return  # not retried: the end report says it
        status = 429 if isinstance(error, RateLimitedError) else getattr(error, "status", None)
        if not is_retryable(status):
            return  # a refusal, not a retry: reported once, with the row's line, at the end
        self.attempts += 1
        # The label (the redacted URL) leads each message; the reason follows it.
        reason = str(error).removeprefix(f"{self.label}: ")
        key = reason.split(" (")[0]
        now = time.monotonic()
        if key == self._said and now - self._said_at < 10.0:
            return
        prefix = "still: " if key == self._said else ""
        click.echo(
            f"pbistream: {prefix}{redact_url(reason)}; retrying {self.until} "
            f"({plural(self.attempts, 'attempt')} so far)",
            err=True,
        )
        self._said, self._said_at = key, now


@main.command()
@click.argument("url")
@click.argument("fields", nargs=-1)
@click.option(
    "--file",
    "file_path",
    type=click.Path(allow_dash=True, dir_okay=False),
    help="Push every row of a .jsonl or .csv file ('-' reads stdin). Resumable: after a "
    "failure or Ctrl-C the same command sends only what is left.",
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
    help="Commit rows to this on-disk queue, try to deliver them for --timeout (default "
    "2 s), and exit 0: the next client on it (or `pbistream spool replay`) sends the rest.",
)
@click.option(
    "--token",
    envvar="PBISTREAM_TOKEN",
    help="A bearer token for a REST URL; for a Push URL, a pbistream server's token "
    "(only to read the table's columns: the key in a Push URL is its credential).",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds to wait for delivery at most (default: as long as it takes; Power BI's "
    "limits can make that minutes). Rows left are kept: run the command again to resume.",
)
@click.option(
    "--time-scale",
    type=float,
    default=None,
    help="Divide Power BI's rate windows by this (a pbistream server tells its own).",
)
@click.option("--no-pacing", is_flag=True, help="Do not pace requests (server limits off).")
@click.option(
    "--no-resume",
    is_flag=True,
    help="Push every row of the file again, even those an earlier run delivered.",
)
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: on).")
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
    timeout: float | None,
    time_scale: float | None,
    no_pacing: bool,
    no_resume: bool,
    progress: bool | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Push rows to a Push URL (or a REST PostRows URL): FIELD=VALUE pairs, or --file.

    Waits until every row is delivered (Power BI's limits pace a large file: a progress
    bar shows rows delivered, the limit and an ETA), then exits 0; exit 1 says why
    rows were not delivered. Values are coerced by the table's schema when the server
    tells it, else read as JSON numbers, true/false, or text.

    Example: pbistream push "$PUSH_URL" temperature=21.5 ts=2024-05-01T12:00:00Z
    """
    started = time.monotonic()
    _configure_logging(verbose)
    if file_path is None and not fields:
        raise PushCommandError("give FIELD=VALUE pairs or --file PATH")
    if file_path is not None and fields:
        raise PushCommandError("give either FIELD=VALUE pairs or --file, not both")
    sink = _make_sink(url, token, timeout)
    remote = sink.fetch_table()  # type: ignore[attr-defined]
    schema = remote.table if remote is not None else None
    if token and isinstance(sink, PushUrlSink) and schema is None:
        why = (
            f"the server refused this token (HTTP {sink.schema_refused}) when asked for "
            "the table's columns"
            if sink.schema_refused
            else "a token only lets a pbistream server describe the table, and this one did not"
        )
        click.echo(
            f"pbistream: --token is not used: a Push URL's credential is the key in it; {why}",
            err=True,
        )
    types, known = types_of(schema), schema is not None
    refusals = _Refusals()
    if timeout is not None:
        until = "until --timeout"
    elif spool:
        # --spool exits after a short try: the rows wait in the spool, not for the server.
        until = f"for {_SPOOL_GRACE:g} s, then the rows wait in the spool"
    else:
        until = "until it works (Ctrl-C stops)"
    notices = _Notices(sink.label, until)
    show = progress is not False

    def remaining() -> float | None:
        return None if timeout is None else max(0.0, timeout - (time.monotonic() - started))

    pacing = PacingOptions(enabled=not no_pacing, time_scale=time_scale or 1.0)
    options: dict[str, Any] = {
        "schema": schema,
        "pacing": pacing,
        "retry": RetryOptions(max_backoff=5.0),
        "on_dead_letter": refusals.extend,
        "on_error": notices.on_error,
    }
    if file_path is not None and file_path != "-":
        _push_resumable(
            sink,
            url,
            file_path,
            fmt,
            spool,
            no_resume,
            types,
            known,
            refusals,
            options,
            show,
            progress is True,
            as_json,
            remaining,
        )
        return
    lines = LineMap()
    client = Client(
        sink,
        spool=spool,
        buffer=BufferOptions(max_rows=100_000, when_full="block", timeout=86_400.0),
        **options,
    )
    try:
        if file_path is None:
            client.push(parse_key_values(fields, types if known else None))
        else:
            _push_stream(client, fmt, types, known, refusals, lines)
    except BaseException:
        _close_quietly(client)
        raise
    wait = remaining() if not spool else (remaining() if timeout is not None else _SPOOL_GRACE)
    left, interrupted, unsent = _close(client, wait)
    _report(
        client,
        left,
        refusals,
        spool,
        as_json,
        lines if not spool else None,
        interrupted=interrupted,
        unsent=unsent,
        timeout=timeout,
    )


def _push_stream(
    client: Client,
    fmt: str,
    types: dict[str, Any],
    known: bool,
    refusals: _Refusals,
    lines: LineMap,
) -> None:
    """stdin: read and push in chunks (not resumable: there is no file to come back to)."""
    chunk: list[dict[str, Any]] = []
    pushed = 0
    stream = open_input("-")
    for line, item in read_rows(stream, "csv" if fmt == "csv" else "jsonl", types, known):
        if isinstance(item, str):
            refusals.text(item)
            continue
        lines.add(pushed, line)
        pushed += 1
        chunk.append(item)
        if len(chunk) >= _CHUNK_ROWS:
            client.push(chunk)
            chunk = []
    if chunk:
        client.push(chunk)


def _push_resumable(
    sink: SinkBase,
    url: str,
    file_path: str,
    fmt: str,
    spool_arg: str | None,
    no_resume: bool,
    types: dict[str, Any],
    known: bool,
    refusals: _Refusals,
    options: dict[str, Any],
    show: bool,
    progress_forced: bool,
    as_json: bool,
    remaining: Callable[[], float | None],
) -> None:
    """A file: into its spool (skipping what an earlier run read), then delivered."""
    if fmt == "auto":
        fmt = "csv" if file_path.lower().endswith(".csv") else "jsonl"
    key = file_key(file_path, url)
    path = Path(spool_arg) if spool_arg else resume_spool_path(file_path, key)
    if no_resume and not spool_arg:
        for stale in path.parent.glob(path.name + "*"):
            stale.unlink(missing_ok=True)
    store = Spool(path)
    store.acquire()  # a second run of the same command waits for none: it is refused
    if no_resume:
        for name in ("lines_loaded", "complete"):
            store.set_meta(f"{key}:{name}", "0")
    already = store.get_meta(f"{key}:complete") == "1"
    try:
        with open_input(file_path) as stream:
            added, lines = load_file(
                store, key, stream, fmt, types, known, refusals.text, show and sys.stderr.isatty()
            )
    except KeyboardInterrupt:
        # Each chunk read was committed with its last line: a rerun reads on from there.
        store.close()
        click.echo(
            f"pbistream: interrupted while reading {file_path}; nothing read is lost: run "
            "the same command again to go on (each row is stored once)",
            err=True,
        )
        sys.exit(130)
    except BaseException:
        store.close()
        raise
    pending = store.stats().pending
    dead_letters = None if spool_arg else path.with_name(path.name + ".deadletter.jsonl")
    if already and not pending and not added:
        store.close()
        refused = _count_lines(dead_letters)
        text = f"Nothing to do: every row of {file_path} was delivered by an earlier run"
        if refused:
            # Say which rows did not go, not only "delivered (or refused)".
            text = (
                f"Nothing to do: an earlier run sent every row of {file_path}; "
                f"{plural(refused, 'row')} of them {'was' if refused == 1 else 'were'} "
                f"refused (see {dead_letters})"
            )
        emit(
            as_json,
            {
                "sent": 0,
                "pending": 0,
                "refused": refused,
                "resumed": True,
                "spool": str(path),
            },
            f"{text}. --no-resume pushes them all again.",
        )
        return
    holder: list[Client] = []
    # --progress forces the bar (redrawn in place) where stderr is not a terminal.
    bar = DeliveryBar(pending, tty=sys.stderr.isatty() or progress_forced, enabled=show)

    def on_progress(report: DeliveryProgress) -> None:
        if holder:
            stats = holder[0].stats
            bar.update(report, stats.sent + stats.dead_lettered)

    client = Client(
        sink, spool=store, on_progress=on_progress, dead_letter_path=dead_letters, **options
    )
    holder.append(client)
    wait = remaining()
    if spool_arg and wait is None:
        wait = _SPOOL_GRACE
    try:
        left, interrupted, _ = _close(client, wait)
    finally:
        bar.close(client.stats.sent + client.stats.dead_lettered)
    _report(
        client,
        left,
        refusals,
        spool_arg,
        as_json,
        lines,
        interrupted=interrupted,
        unsent=None,
        timeout=remaining(),
        resume_hint=not spool_arg,
        total=pending,
        dead_letters=dead_letters,
    )


def _count_lines(path: Path | None) -> int:
    """Lines in a dead-letter file (one refused row each); 0 when there is none."""
    if path is None:
        return 0
    try:
        with path.open("rb") as stream:
            return sum(1 for _ in stream)
    except OSError:
        return 0


def _close(client: Client, wait: float | None) -> tuple[int, bool, str | None]:
    """Close, waiting up to ``wait``: rows left, interrupted?, the unsent-rows file."""
    try:
        return client.close(wait), False, None
    except UndeliveredRowsError as exc:
        return exc.rows, False, exc.path
    except KeyboardInterrupt:
        return client.pending, True, getattr(client, "_unsent_file", None)


def _close_quietly(client: Client) -> None:
    with contextlib.suppress(UndeliveredRowsError, KeyboardInterrupt):
        client.close(0.1)


def _report(
    client: Client,
    left: int,
    refusals: _Refusals,
    spool: str | None,
    as_json: bool,
    lines: LineMap | None,
    *,
    interrupted: bool,
    unsent: str | None,
    timeout: float | None,
    resume_hint: bool = False,
    total: int | None = None,
    dead_letters: Path | None = None,
) -> None:
    stats = client.stats
    payload: dict[str, Any] = {**stats.as_dict(), "pending": left, "refused": refusals.count}
    if spool:
        payload["spool"] = spool
    if unsent:
        payload["unsent_file"] = unsent
    human = f"{plural(stats.sent, 'row')} delivered"
    if total is not None and left and not spool:
        human = f"{stats.sent:,} of {plural(total, 'row')} delivered"
    if spool and left:
        human += f", {left:,} kept in the spool {spool} for later delivery"
    emit(as_json, payload, human + ".")
    if interrupted:
        where = _where_left(left, spool, unsent, resume_hint)
        click.echo(f"pbistream: interrupted; {where}", err=True)
        sys.exit(130)
    problems: list[str] = []
    if refusals.count:
        more = f" (and {refusals.count - 1:,} more)" if refusals.count > 1 else ""
        if more and dead_letters is not None and dead_letters.exists():
            more = f" (and {refusals.count - 1:,} more: each refused row is in {dead_letters})"
        noun = "row" if refusals.count == 1 else "rows"
        problems.append(
            f"{refusals.count:,} {noun} not delivered: {refusals.describe(lines)}{more}"
        )
    if left and not spool:
        reason = _why_left(client, timeout)
        noun = "row" if left == 1 else "rows"
        where = _where_left(left, spool, unsent, resume_hint)
        problems.append(f"{left:,} {noun} not delivered: {reason}; {where}")
    if problems:
        raise PushCommandError("; ".join(problems))


def _why_left(client: Client, timeout: float | None) -> str:
    error = client.last_error
    if error is not None:
        return str(error).removeprefix(f"{client.sink.label}: ")
    return "--timeout ended the wait first" if timeout is not None else "delivery stopped"


def _where_left(left: int, spool: str | None, unsent: str | None, resume_hint: bool) -> str:
    if resume_hint:
        return (
            f"{plural(left, 'row')} kept: run the same command again to send them "
            "(each row is stored once)"
        )
    if spool:
        return f"{plural(left, 'row')} kept in the spool {spool}"
    if unsent:
        return f"written to {unsent}"
    return "they were lost"


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
