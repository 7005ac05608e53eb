"""`pbistream demo` as a new user runs it: a subprocess, its printed link, a live dashboard."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest

from pbistream.redact import new_secret
from pbistream.testing import free_port

pytestmark = pytest.mark.browser

TILE_TYPES = ["card", "card", "card", "card", "line", "gauge", "column", "bar", "table"]


def _lines(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)


def test_demo_serves_a_live_dashboard_and_stops_cleanly(
    page: Any, tmp_path: Path, artifacts: Path
) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PBISTREAM_TOKEN": new_secret()}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pbistream",
            "demo",
            "--port",
            str(port),
            "--rate",
            "10",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 30
        link = None
        while link is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            output.append(line)
            if "/login?token=" in line:
                link = line.strip()
        assert link, f"the demo printed no login link: {''.join(output)}"
        assert link.startswith(f"http://127.0.0.1:{port}/login?token=")

        page.goto(link)
        page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=tile][data-last-id]').length === n",
            arg=len(TILE_TYPES),
            timeout=15_000,
        )
        types = page.eval_on_selector_all(
            "[data-testid=tile]", "tiles => tiles.map(t => t.dataset.tileType)"
        )
        assert types == TILE_TYPES
        # Let the line chart draw a few seconds of readings before the picture.
        page.wait_for_function(
            "() => { const el = document.querySelector('[data-tile-type=line] .chart');"
            " const c = el && echarts.getInstanceByDom(el);"
            " const o = c && !c.isDisposed() && c.getOption();"
            " const s = o && (o.series || [])[0];"
            " return !!s && (s.data || []).length >= 20; }",
            timeout=15_000,
        )
        first = page.locator('[data-testid="tile-value"]').first.inner_text()
        assert first.endswith("°C")
        page.screenshot(path=str(artifacts / "demo-dashboard.png"), full_page=True)
        # The dashboard stays open, its live feed too: Ctrl-C must still stop at once.
        # The open page then retries its live feed against the stopped server.
        page.allowed_errors.append("ERR_CONNECTION_REFUSED")
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    while not lines.empty():
        output.append(lines.get())
    text = "".join(output)
    assert code == 0, text
    assert "pbistream demo stopped." in text
    assert "Traceback" not in text
    assert "graceful shutdown exceeded" not in text  # the open feed did not hold the stop


def test_demo_on_a_busy_port_says_so_in_one_line() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pbistream", "demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: cannot listen on 127.0.0.1:{port} (Address already in use); try another --port"
    )
    assert "Traceback" not in result.stderr
