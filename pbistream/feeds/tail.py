"""Follow a growing JSON Lines or CSV file, through rotation, without skipping or repeating.

The read position (the file's device and inode, the byte offset after the last whole
line read, the CSV header) is the *checkpoint*. It is committed in the same spool
transaction as the rows read up to it (``Client.push(rows, checkpoint=...)``), so
after a crash or SIGKILL the feed restarts exactly after the last stored line.

Rotation:

* **rename** (``app.log`` → ``app.log.1``, a new ``app.log``): the open file is read to
  its end, then the new file from its start. If the feed was stopped across a
  rotation, the checkpointed inode is looked for among the file's neighbours and
  finished first.
* **truncate** (``copytruncate``, ``> app.log``): the file is shorter than the
  position, so reading starts again at 0. Lines written and truncated between two
  polls cannot be seen by any follower; ``--poll`` bounds that window.

A line is read only once it ends with a newline (a writer's half-written line waits),
except the last line of a file that was rotated away, which is complete.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from pbistream.client import Client, DeadLetter
from pbistream.exceptions import ConfigError, SpoolError
from pbistream.feeds.payloads import coerce
from pbistream.values import DataType

__all__ = ["FileTail", "TailCounts"]

_READ_BYTES = 1 << 20  # per commit: many lines, one transaction


@dataclass(slots=True)
class TailCounts:
    """What the tail has done since it started."""

    lines: int = 0
    rows: int = 0
    rejected: int = 0
    rotations: int = 0
    truncations: int = 0
    commits: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {
            "lines": self.lines,
            "rows": self.rows,
            "rejected": self.rejected,
            "rotations": self.rotations,
            "truncations": self.truncations,
            "commits": self.commits,
        }


class _Open:
    """The file being read: its handle, identity, position and CSV header."""

    def __init__(self, handle: IO[bytes], stat: os.stat_result, offset: int, line: int) -> None:
        self.handle = handle
        self.dev, self.ino = stat.st_dev, stat.st_ino
        self.offset = offset  # bytes consumed: the start of the first unread line
        self.line = line  # lines consumed
        self.header: list[str] | None = None
        self.pending = b""  # a line still being written (no newline yet)

    def same_file(self, stat: os.stat_result) -> bool:
        return (stat.st_dev, stat.st_ino) == (self.dev, self.ino)


class FileTail:
    """Follow ``path`` and push its rows through ``client`` (which must have a spool).

    Args:
        path: The file to follow (it may not exist yet).
        client: A :class:`~pbistream.Client` with a spool (it holds the checkpoint).
        report: Status sink ``(event, human, **fields)``.
        fmt: ``"jsonl"``, ``"csv"`` or ``"auto"`` (by the file name).
        types: Column types to coerce CSV text by (else JSON-ish).
        poll: Seconds between looks at a file that has not grown.

    Raises:
        ConfigError: The client has no spool.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        client: Client,
        report: Any,
        *,
        fmt: str = "auto",
        types: Mapping[str, DataType] | None = None,
        poll: float = 0.2,
    ) -> None:
        if client.spool is None:
            raise ConfigError("pbistream tail needs a client with a spool (it holds the position)")
        self.path = Path(path).absolute()
        self.client = client
        self.report = report
        self.csv = fmt == "csv" or (fmt == "auto" and self.path.suffix.lower() == ".csv")
        self.types = types
        self.poll = poll
        self.counts = TailCounts()
        self.key = f"tail:{self.path}"
        self._file: _Open | None = None
        self._stop = threading.Event()

    # --- the checkpoint ------------------------------------------------------------------

    def _checkpoint(self, current: _Open) -> dict[str, str]:
        value = {
            "dev": current.dev,
            "ino": current.ino,
            "offset": current.offset,
            "line": current.line,
            "header": current.header,
        }
        return {self.key: orjson.dumps(value).decode()}

    def _resume(self) -> _Open | None:
        """Open the file the checkpoint names, at its position (or PATH from 0)."""
        assert self.client.spool is not None
        saved = self.client.spool.get_meta(self.key)
        if saved is None:
            first = self._open(self.path, 0, 0)
            if first is not None:  # record which file this is before reading any of it
                self._commit(first, [], [])
            return first
        point = orjson.loads(saved)
        for candidate in [self.path, *sorted(self.path.parent.glob(self.path.name + "*"))]:
            try:
                stat = candidate.stat()
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) != (point["dev"], point["ino"]):
                continue
            if stat.st_size < point["offset"]:  # truncated while we were away
                self.counts.truncations += 1
                return self._open(candidate, 0, 0)
            current = self._open(candidate, point["offset"], point["line"])
            if current is not None:
                current.header = point.get("header")
                if candidate != self.path:
                    self.report(
                        "resume_rotated",
                        f"{self.path} was rotated while stopped; finishing {candidate} first",
                        path=str(candidate),
                    )
            return current
        self.report(
            "checkpoint_lost",
            f"the file checkpointed for {self.path} is gone; reading {self.path} from the start",
            path=str(self.path),
        )
        return self._open(self.path, 0, 0)

    def _open(self, path: Path, offset: int, line: int) -> _Open | None:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        handle.seek(offset)
        return _Open(handle, os.fstat(handle.fileno()), offset, line)

    # --- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, status_every: float = 10.0) -> TailCounts:
        """Follow the file until ``stop`` is set; a status line every ``status_every`` s."""
        self._stop = stop
        next_status = time.monotonic() + status_every
        self._file = self._resume()
        if self._file is not None:
            self.report(
                "following",
                f"following {self.path} from byte {self._file.offset:,} (line {self._file.line:,})",
                path=str(self.path),
                offset=self._file.offset,
                line=self._file.line,
            )
        try:
            while not stop.is_set():
                if self._file is None:
                    self._file = self._open(self.path, 0, 0)
                    if self._file is None:
                        stop.wait(self.poll)
                        continue
                    self._commit(self._file, [], [])
                if not self._read_some(self._file, final=False):
                    self._check_rotation(self._file, stop)
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + status_every
                    self._status()
        finally:
            if self._file is not None:
                self._file.handle.close()
        return self.counts

    def _status(self) -> None:
        counts, stats = self.counts, self.client.stats
        self.report(
            "status",
            f"{counts.lines:,} lines read, {counts.rows:,} rows spooled, {stats.sent:,} "
            f"delivered, {self.client.pending:,} pending, {counts.rejected:,} dead-lettered",
            **counts.as_dict(),
            delivered=stats.sent,
            pending=self.client.pending,
            dead_lettered=stats.dead_lettered,
        )

    def _check_rotation(self, current: _Open, stop: threading.Event) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            stat = None
        if stat is not None and current.same_file(stat):
            if stat.st_size < current.offset + len(current.pending):  # truncated in place
                self.counts.truncations += 1
                self.report("truncated", f"{self.path} was truncated; reading from its start")
                current.handle.seek(0)
                current.offset, current.line, current.header, current.pending = 0, 0, None, b""
                self._commit(current, [], [])
                return
            stop.wait(self.poll)
            return
        if stat is None:  # renamed away and not recreated yet: keep reading the old one
            stop.wait(self.poll)
            return
        # A new file has the name: finish the old one (its writer may add a last line).
        while self._read_some(current, final=False):
            pass
        self._read_some(current, final=True)
        current.handle.close()
        self.counts.rotations += 1
        self.report(
            "rotated", f"{self.path} was rotated; following the new file", path=str(self.path)
        )
        self._file = self._open(self.path, 0, 0)
        if self._file is not None:
            self._commit(self._file, [], [])

    def _read_some(self, current: _Open, *, final: bool) -> bool:
        """Read what is there, commit its rows with the new position; False at the end."""
        data = current.handle.read(_READ_BYTES)
        if not data and not (final and current.pending):
            return False
        data = current.pending + data
        cut = len(data) if final else data.rfind(b"\n") + 1
        current.pending = data[cut:]
        rows: list[dict[str, Any]] = []
        letters: list[DeadLetter] = []
        for raw in data[:cut].splitlines():
            current.line += 1
            self._parse(current, raw, rows, letters)
        current.offset += cut
        self._commit(current, rows, letters)
        return bool(data)

    def _parse(
        self,
        current: _Open,
        raw: bytes,
        rows: list[dict[str, Any]],
        letters: list[DeadLetter],
    ) -> None:
        where = f"{self.path.name} line {current.line}"
        self.counts.lines += 1
        if not raw.strip():
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            letters.append(_letter(raw.hex(), f"{where}: not UTF-8 ({exc.reason})"))
            return
        if not self.csv:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                letters.append(_letter(text, f"{where}: not JSON ({exc})"))
                return
            if not isinstance(value, dict):
                letters.append(_letter(text, f"{where}: a row must be a JSON object"))
                return
            rows.append(value)
            return
        try:
            values = next(csv.reader([text]))
        except (csv.Error, StopIteration) as exc:
            letters.append(_letter(text, f"{where}: not CSV ({exc})"))
            return
        if current.header is None:
            current.header = [name.strip() for name in values]
            return
        header = current.header
        if len(values) != len(header):
            letters.append(
                _letter(text, f"{where}: {len(values)} values for {len(header)} header columns")
            )
            return
        types = self.types or {}
        known = self.types is not None
        rows.append(
            {
                name: coerce(value, types.get(name) if known else None)
                for name, value in zip(header, values, strict=True)
            }
        )

    def _commit(
        self, current: _Open, rows: list[dict[str, Any]], letters: list[DeadLetter]
    ) -> None:
        # Dead letters first: a crash before the commit writes them again on the re-read,
        # it never loses one.
        if letters:
            self.client.reject(letters)
        while True:
            try:
                self.client.push(rows, checkpoint=self._checkpoint(current))
                break
            except SpoolError as exc:
                self.report("spool_error", f"cannot commit to the spool ({exc}); retrying")
                if self._stop.wait(1.0):
                    return  # the checkpoint did not move: these lines are read again
        self.counts.rows += len(rows)
        self.counts.rejected += len(letters)
        self.counts.commits += 1


def _letter(line: str, reason: str) -> DeadLetter:
    return DeadLetter({"line": line[:65_536]}, None, "line", None, reason)
