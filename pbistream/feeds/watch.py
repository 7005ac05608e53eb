"""Run a command on a schedule and push what it prints: cron and sensor scripts, no cron.

The command's standard output is a JSON object (one row), a JSON array of objects,
or ``key=value`` lines (one row). A run that fails (non-zero exit, timeout, output
that is not a row) is reported, its output (if any) goes to the dead letter, and the
schedule goes on. Runs start on a fixed grid (``start + k·every``); a run that
overruns its slot skips the slots it covered rather than running back to back.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pbistream.client import Client, DeadLetter
from pbistream.exceptions import SpoolError
from pbistream.feeds.payloads import PayloadError, parse_command_output
from pbistream.values import DataType

__all__ = ["WatchCounts", "Watcher"]

_OUTPUT_LIMIT = 1 << 20  # bytes of output read as rows; more is a failure, not a row


@dataclass(slots=True)
class WatchCounts:
    """Runs so far, and how they ended."""

    runs: int = 0
    ok: int = 0
    failed: int = 0
    rows: int = 0
    skipped_slots: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {
            "runs": self.runs,
            "ok": self.ok,
            "failed": self.failed,
            "rows": self.rows,
            "skipped_slots": self.skipped_slots,
        }


class Watcher:
    """Run ``argv`` every ``every`` seconds and push its rows through ``client``.

    Args:
        argv: The command and its arguments (no shell; use ``sh -c '...'`` for one).
        client: The :class:`~pbistream.Client` rows go through.
        report: Status sink ``(event, human, **fields)``.
        every: Seconds between run starts.
        timeout: Seconds a run may take before it is killed (default: ``every``).
        types: Column types to coerce ``key=value`` text by (else JSON-ish).
    """

    def __init__(
        self,
        argv: Sequence[str],
        client: Client,
        report: Any,
        *,
        every: float,
        timeout: float | None = None,
        types: Mapping[str, DataType] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.client = client
        self.report = report
        self.every = every
        self.timeout = timeout if timeout is not None else every
        self.types = types
        self.counts = WatchCounts()
        self._command = " ".join(self.argv)
        self._stop = threading.Event()

    def run(self, stop: threading.Event, *, count: int | None = None) -> WatchCounts:
        """Run on the schedule until ``stop`` is set or ``count`` runs are done."""
        self._stop = stop
        start = time.monotonic()
        slot = 0
        while not stop.is_set():
            self.run_once()
            if count is not None and self.counts.runs >= count:
                break
            slot += 1
            late = int((time.monotonic() - start) / self.every) - slot + 1
            if late > 0:  # the run overran: skip the slots it covered
                self.counts.skipped_slots += late
                slot += late
            stop.wait(max(0.0, start + slot * self.every - time.monotonic()))
        return self.counts

    def run_once(self) -> None:
        """One run: execute, parse, push or report; never raises for the command's faults."""
        self.counts.runs += 1
        number = self.counts.runs
        began = time.monotonic()
        try:
            done = subprocess.run(  # noqa: S603 - the user's own command, no shell
                self.argv, capture_output=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            self._failed(number, f"timed out after {self.timeout:g} s (killed)", None)
            return
        except OSError as exc:
            self._failed(number, f"could not start: {exc.strerror or exc}", None)
            return
        seconds = time.monotonic() - began
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            why = f"exited with status {done.returncode}" + (
                f": {tail[0][:200]}" if tail[0] else ""
            )
            self._failed(number, why, None)
            return
        if len(done.stdout) > _OUTPUT_LIMIT:
            self._failed(number, f"printed more than {_OUTPUT_LIMIT:,} bytes", None)
            return
        text = done.stdout.decode("utf-8", "replace")
        try:
            rows = parse_command_output(text, self.types)
        except PayloadError as exc:
            self._failed(number, str(exc), text)
            return
        while True:
            try:
                self.client.push(rows)
                break
            except SpoolError as exc:
                self.report("spool_error", f"cannot commit to the spool ({exc}); retrying")
                if self._stop.wait(1.0):
                    self._failed(number, f"not stored: {exc}", text)
                    return
        self.counts.ok += 1
        self.counts.rows += len(rows)
        self.report(
            "run",
            f"run {number}: {len(rows)} row{'s' if len(rows) != 1 else ''} in {seconds:.2f} s",
            run=number,
            ok=True,
            rows=len(rows),
            seconds=round(seconds, 3),
        )

    def _failed(self, number: int, why: str, output: str | None) -> None:
        self.counts.failed += 1
        if output is not None:
            letter = DeadLetter(
                {"command": self._command, "output": output[:65_536]},
                None,
                "output",
                None,
                f"run {number} of {self._command}: {why}",
            )
            self.client.reject([letter])
        self.report(
            "run",
            f"run {number} failed: {why}; the schedule goes on",
            run=number,
            ok=False,
            error=why,
        )
