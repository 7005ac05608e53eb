"""Helpers for the feed tests: a feed as a real process, its status lines, stored rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pbistream.testing import RunningServer


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class Feed:
    """``python -m pbistream ARGS --json`` as a subprocess, its stdout parsed as events."""

    running: list[Feed] = []  # killed by the autouse fixture in conftest.py

    def __init__(
        self,
        args: list[str],
        workdir: Path,
        name: str = "feed",
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = args
        self.out = workdir / f"{name}.{time.monotonic_ns()}.out"
        self.err = workdir / f"{name}.{time.monotonic_ns()}.err"
        env = {**os.environ, "PBISTREAM_STATE_DIR": str(workdir / "state"), **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pbistream", *args],
            stdout=self.out.open("wb"),
            stderr=self.err.open("wb"),
            env=env,
        )
        Feed.running.append(self)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.out.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                found.append(event)
        return found

    def last(self, name: str) -> dict[str, Any] | None:
        events = self.events(name)
        return events[-1] if events else None

    def wait_event(self, name: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.process.poll() is not None and not self.events(name):
                raise AssertionError(f"the feed exited ({self.process.returncode}): {self.log()}")
            for event in reversed(self.events(name)):
                if all(event.get(k) == v for k, v in match.items()):
                    return event
            return None

        return wait_for(found, timeout, f"event {name} {match or ''}")  # type: ignore[no-any-return]

    def log(self) -> str:
        return self.out.read_text()[-3000:] + "\n--- stderr ---\n" + self.err.read_text()[-3000:]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def stored_rows(server: RunningServer, dataset_id: str, table: str = "RealTimeData") -> list[Any]:
    """Every stored row's data, in insertion order."""
    out: list[Any] = []
    after = 0
    with server.client(timeout=30) as client:
        while True:
            page = client.get(
                f"/api/datasets/{dataset_id}/rows",
                params={"table": table, "after": after, "limit": 10_000, "order": "asc"},
            ).json()
            out.extend(r["data"] for r in page["rows"])
            if not page.get("next"):
                return out
            after = page["next"]
