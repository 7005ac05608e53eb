"""``pbistream push --file``: a file read once into a spool, so a rerun resumes.

Each file (its path, size and modification time) and target get their own spool in
the state directory (``$PBISTREAM_STATE_DIR``, else ``$XDG_STATE_HOME/pbistream``, else
``~/.local/state/pbistream``). Rows are committed to it in chunks together with the
number of the last file line read, in one transaction, so after a failure, a timeout
or Ctrl-C the same command skips what it read and the spool delivers the rest: each
row is stored once (a request in flight keeps its sequence number, so a server that
stored it drops the resend).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import orjson

from pbistream.client import DeliveryProgress
from pbistream.exceptions import PbiStreamError
from pbistream.feeds.payloads import coerce
from pbistream.schema import Table
from pbistream.spool import Spool
from pbistream.values import DataType, RowErrorException, UntypedRules

__all__ = [
    "DeliveryBar",
    "LineMap",
    "PushCommandError",
    "file_key",
    "load_file",
    "open_input",
    "plural",
    "read_rows",
    "resume_spool_path",
    "types_of",
    "without_row_number",
]

_CHUNK_ROWS = 1_000


class PushCommandError(PbiStreamError):
    """The command's input is unusable, or its rows were not delivered."""


_ROW_PREFIX = re.compile(r"^row \d+(, |: )")
_SERVER_ROW = re.compile(r"(HTTP 400 \w+: )Row \d+, ")


def without_row_number(message: str) -> str:
    """A dead letter's reason without the row numbers a file user cannot use.

    ``row 7: refused by the server: HTTP 400 InvalidRequest: Row 0, column 'n': ...``
    becomes ``refused by the server: HTTP 400 InvalidRequest: column 'n': ...``: the
    client's number is a spool id or a push position, the server's a position in a
    one-row request; the caller puts the file's line in front instead.
    """
    return _SERVER_ROW.sub(r"\1", _ROW_PREFIX.sub("", message, count=1), count=1)


def without_server_row(message: str) -> str:
    """A dead letter's reason with the server's ``Row 0, `` (its one-row request) dropped.

    For a row that has no file line the client's ``row N: `` is kept: the row is named
    once, not twice with two different numbers.
    """
    return _SERVER_ROW.sub(r"\1", message, count=1)


def plural(count: int, noun: str) -> str:
    """``1 row``, ``2 rows``, ``25,000 rows``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def types_of(table: Table | None) -> dict[str, DataType]:
    """Column name -> data type, for coercing text."""
    return {c.name: c.data_type for c in table.columns} if table else {}


def _coerce_row(row: dict[str, str], types: dict[str, DataType], known: bool) -> dict[str, Any]:
    return {k: coerce(v, types.get(k)) if known else coerce(v, None) for k, v in row.items()}


def read_rows(
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


class LineMap:
    """Which file line each row came from (by its index or spool id), to name it in errors.

    Rows are numbered in file order, so a line is the row's number plus an offset that
    only grows (blank lines, refused lines, multi-line CSV records); the map keeps one
    entry per change of offset, not one per row. It is saved in the spool's meta table.
    """

    def __init__(self, entries: list[list[int]] | None = None) -> None:
        self._starts: list[int] = [e[0] for e in entries or []]
        self._offsets: list[int] = [e[1] for e in entries or []]

    def add(self, index: int, line: int) -> None:
        """Row ``index`` is on file line ``line``."""
        cut = bisect.bisect_left(self._starts, index)
        if cut < len(self._starts):  # ids reused after the spool emptied: newer wins
            del self._starts[cut:], self._offsets[cut:]
        offset = line - index
        if not self._offsets or self._offsets[-1] != offset:
            self._starts.append(index)
            self._offsets.append(offset)

    def line_of(self, index: int) -> int | None:
        """The file line of row ``index``, if known."""
        position = bisect.bisect_right(self._starts, index) - 1
        return index + self._offsets[position] if position >= 0 else None

    def dumps(self) -> str:
        """The map as JSON, for the spool's meta table."""
        return json.dumps([list(pair) for pair in zip(self._starts, self._offsets, strict=True)])


def state_dir() -> Path:
    """Where ``push --file`` keeps its resumable spools."""
    explicit = os.environ.get("PBISTREAM_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pbistream"


def file_key(file_path: str, url: str) -> str:
    """This file (path, size, modification time) and this target, as a short digest."""
    path = Path(file_path).resolve()
    try:
        info = path.stat()
    except OSError as exc:
        raise PushCommandError(f"cannot read {file_path}: {exc.strerror}") from None
    key = f"{path}\0{info.st_size}\0{info.st_mtime_ns}\0{url}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def resume_spool_path(file_path: str, key: str) -> Path:
    """The spool ``push --file`` keeps for this file and target (see :func:`file_key`)."""
    return state_dir() / "push" / f"{Path(file_path).name[:40]}-{key}.spool"


def load_file(
    spool: Spool,
    key: str,
    stream: IO[str],
    fmt: str,
    types: dict[str, DataType],
    known: bool,
    on_refused: Any,
    show: bool,
) -> tuple[int, LineMap]:
    """Read the rows of ``stream`` past those already in ``spool`` into it.

    Its progress is kept in the spool's meta under ``key`` (one per file), so one
    ``--spool`` can take several files.

    Returns:
        Rows added now, and the line map of the spool's rows.

    Raises:
        PushCommandError: The file cannot be read (encoding, CSV syntax).
    """
    done_through = int(spool.get_meta(f"{key}:lines_loaded") or 0)
    saved = spool.get_meta("line_map")
    lines = LineMap(json.loads(saved) if saved else None)
    if spool.get_meta(f"{key}:complete") == "1":
        return 0, lines
    rules = UntypedRules()
    chunk: list[bytes] = []
    chunk_lines: list[int] = []
    added = 0
    last_line = done_through
    shown_at = time.monotonic()

    def commit(final: bool) -> None:
        nonlocal chunk, chunk_lines, added
        meta = {f"{key}:lines_loaded": str(last_line)}
        if final:
            meta[f"{key}:complete"] = "1"
        if chunk:
            # The first id comes back only after the insert: map with a provisional
            # first id, then save the map with the next chunk (or the final commit).
            first = spool.put_many(chunk, meta=meta)
            for offset, line in enumerate(chunk_lines):
                lines.add(first + offset, line)
            spool.set_meta("line_map", lines.dumps())
        else:
            for name, value in meta.items():
                spool.set_meta(name, value)
        added += len(chunk)
        chunk, chunk_lines = [], []

    try:
        for line, item in read_rows(stream, fmt, types, known):
            if line <= done_through:
                continue  # an earlier run read it
            last_line = line
            if isinstance(item, str):
                on_refused(item)
                continue
            try:
                normalized = rules.normalize_row(item, line)
            except RowErrorException as exc:
                on_refused(f"line {line}: {without_row_number(str(exc.error))}")
                continue
            chunk.append(orjson.dumps(normalized))
            chunk_lines.append(line)
            if len(chunk) >= _CHUNK_ROWS:
                commit(False)
                if show and time.monotonic() - shown_at > 0.5:
                    shown_at = time.monotonic()
                    click.echo(f"\r{plural(added, 'row')} read", err=True, nl=False)
        commit(True)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PushCommandError(f"cannot read the file: {exc}") from None
    if show and added >= _CHUNK_ROWS:
        click.echo(f"\r{plural(added, 'row')} read", err=True)
    return added, lines


class DeliveryBar:
    """Rows *delivered* of the total, the limit that paces them and an ETA, on stderr.

    A bar redrawn in place on a terminal; elsewhere (a log, CI) a line every 5 s.
    """

    def __init__(self, total: int, *, tty: bool, enabled: bool) -> None:
        self.total = total
        self.tty = tty
        self.enabled = enabled
        self._last_line = 0.0
        self._drawn = False

    def update(self, progress: DeliveryProgress, settled: int) -> None:
        """Redraw from a client's progress report (``settled``: delivered or refused)."""
        if not self.enabled:
            return
        done = min(self.total, settled)
        share = done / self.total if self.total else 1.0
        text = f"{done:,}/{self.total:,} rows delivered ({share:.0%})"
        if progress.limit:
            text += f" · paced by {progress.limit}"
        if progress.eta > 0:
            text += f" · ETA {_eta(progress.eta)}"
        if self.tty:
            width = 20
            filled = int(share * width)
            bar = "#" * filled + "-" * (width - filled)
            click.echo(f"\r[{bar}] {text}\x1b[K", err=True, nl=False)
            self._drawn = True
        elif progress.waited >= 3.0 and time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            click.echo(text, err=True)

    def close(self, settled: int | None = None) -> None:
        """Draw the final count (on a terminal) and end the bar's line."""
        if self.enabled and self.tty and settled is not None:
            done = min(self.total, settled)
            share = done / self.total if self.total else 1.0
            text = f"{done:,}/{self.total:,} rows delivered ({share:.0%})"
            click.echo(f"\r[{'#' * int(share * 20):-<20}] {text}\x1b[K", err=True)
            self._drawn = False
        if self._drawn:
            click.echo("", err=True)
            self._drawn = False


def _eta(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def open_input(file_path: str) -> IO[str]:
    """The file (or stdin for ``-``) as text, newline-preserving for CSV."""
    if file_path == "-":
        import io

        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
    try:
        return Path(file_path).open(encoding="utf-8", newline="")
    except OSError as exc:
        raise PushCommandError(f"cannot read {file_path}: {exc.strerror}") from None
