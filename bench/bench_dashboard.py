"""Push-to-screen latency of the live dashboards, and the server's memory while they watch.

One command: ``python bench/bench_dashboard.py [--rate 100] [--seconds 10] [--clients 20]``.

1. Starts ``python -m pbistream serve --limits off`` on a temporary data dir (100 pushes
   a second is above Power BI's 120-a-minute limit, which the server enforces by default)
   and creates a streaming dataset and 20 dashboards on it.
2. Opens 20 live feeds (``GET /api/live?dataset=ID``), as 20 open dashboards do, each
   parsing the Server-Sent Events exactly as the browser's EventSource would.
3. A separate process pushes one row per request to the Push URL at a steady rate; each
   row carries the wall-clock time it was sent. Each feed records, for every row, the
   time from "about to POST" to "event parsed": push-to-screen latency minus the
   browser's one frame of drawing (at most ~16 ms).
4. Samples the server's resident memory (VmRSS) before the feeds connect, with them
   idle, and during the pushes.

With ``--browser-pages N`` it also opens N dashboards (a card on ``sent_at``) in headless
Chromium and times, in each page, when the card's DOM shows a row: the whole way from
push to screen, including the page's draw.

Prints a table and writes ``bench/results/dashboard.json``. Target: p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from pbistream.testing import ServerProcess

RESULTS = Path(__file__).parent / "results" / "dashboard.json"
COLUMNS = [
    {"name": "sent_at", "dataType": "Double"},
    {"name": "seq", "dataType": "Int64"},
    {"name": "temperature", "dataType": "Double"},
    {"name": "site", "dataType": "String"},
]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def push_steadily(push_url: str, rate: float, seconds: float, ready: Any) -> None:
    """Runs in its own process: one row per POST on a fixed schedule (open loop)."""
    with httpx.Client(timeout=10.0) as client:
        ready.wait()
        start = time.monotonic()
        total = int(rate * seconds)
        for seq in range(total):
            due = start + seq / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            row = {"sent_at": time.time(), "seq": seq, "temperature": 20 + seq % 7, "site": "a"}
            response = client.post(push_url, content=orjson.dumps([row]))
            if response.status_code != 200:
                raise SystemExit(f"push {seq} failed: {response.status_code} {response.text}")


async def watch(
    base: str, token: str, dataset_id: str, after: int, expected: int, deadline: float
) -> tuple[list[float], int]:
    """One open dashboard: parse the SSE stream, record each row's latency in ms."""
    latencies: list[float] = []
    seen = 0
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    # What the dashboard page subscribes to: the merged feed of its datasets.
    url = f"{base}/api/live?dataset={dataset_id}&cursor={after}"
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        response.raise_for_status()
        event, data = "", []
        lines = response.aiter_lines()
        while seen < expected and time.monotonic() < deadline:
            try:
                line = await asyncio.wait_for(anext(lines), deadline - time.monotonic())
            except (TimeoutError, StopAsyncIteration):
                break
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "" and data:
                if event == "rows":
                    received = time.time()
                    batch = orjson.loads("\n".join(data))
                    for row in batch["rows"]:
                        latencies.append((received - row["data"]["sent_at"]) * 1000)
                        seen += 1
                event, data = "", []
    return latencies, seen


async def watch_all(
    base: str,
    token: str,
    dataset_id: str,
    clients: int,
    expected: int,
    seconds: float,
    connected: threading.Event,
) -> list[tuple[list[float], int]]:
    deadline = time.monotonic() + seconds + 30
    tasks = [
        asyncio.create_task(watch(base, token, dataset_id, 0, expected, deadline))
        for _ in range(clients)
    ]
    await asyncio.sleep(1.0)  # let every feed connect and finish its (empty) replay
    connected.set()
    return await asyncio.gather(*tasks)


CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Runs in each page: when the card shows a new row (its data-value is the row's
# sent_at), record how long after the push that was, in ms.
OBSERVE = """() => {
  window.__lat = [];
  const tile = document.querySelector('[data-testid=tile]');
  new MutationObserver(() => {
    const sent = Number(tile.dataset.value);
    if (sent) window.__lat.push(Date.now() - sent * 1000);
  }).observe(tile, {attributes: true, attributeFilter: ['data-value']});
}"""


class BrowserPages(threading.Thread):
    """Open dashboards in headless Chromium and record push-to-screen latency in the DOM."""

    def __init__(self, url: str, token: str, dashboard: str, pages: int) -> None:
        super().__init__(name="bench-browser", daemon=True)
        self.url, self.token, self.dashboard, self.pages = url, token, dashboard, pages
        self.ready = threading.Event()
        self.done = threading.Event()
        self.latencies: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by main()
            self.error = exc
            self.ready.set()

    def _run(self) -> None:
        from playwright.sync_api import sync_playwright

        target = f"/ui/%23/dashboards/{self.dashboard}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            context = browser.new_context()
            pages = []
            for _ in range(self.pages):
                page = context.new_page()
                page.goto(f"{self.url}/login?token={self.token}&next={target}")
                page.wait_for_selector("[data-testid=tile]")
                page.evaluate(OBSERVE)
                pages.append(page)
            self.ready.set()
            self.done.wait()
            for page in pages:
                self.latencies += page.evaluate("() => window.__lat")
            browser.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="pushes a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to push")
    parser.add_argument("--clients", type=int, default=20, help="open dashboards (live feeds)")
    parser.add_argument(
        "--browser-pages",
        type=int,
        default=0,
        help="also open this many dashboards in headless Chromium and time the card's update",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pbistream-bench-") as tmp:
        server = ServerProcess(
            Path(tmp) / "data", args=["--limits", "off", "--log-level", "warning"]
        )
        with server:
            assert server.process is not None
            pid = server.process.pid
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as api:
                body = {
                    "name": "bench",
                    "defaultMode": "Streaming",
                    "tables": [{"name": "RealTimeData", "columns": COLUMNS}],
                }
                created = api.post("/v1.0/myorg/datasets", json=body).raise_for_status().json()
                dataset_id = created["id"]
                push_url = api.get(f"/api/datasets/{dataset_id}").json()["pushUrl"]
                for n in range(max(1, args.clients)):
                    tile = {
                        "id": "card",
                        "type": "card",
                        "datasetId": dataset_id,
                        "table": "RealTimeData",
                        "fields": ["sent_at"],
                        "decimals": 3,
                    }
                    doc = {"name": f"d{n}", "tiles": [tile]}
                    dashboard = api.post("/api/dashboards", json=doc).raise_for_status().json()
            browser = BrowserPages(server.url, server.token, dashboard["id"], args.browser_pages)
            if args.browser_pages:
                browser.start()
                browser.ready.wait(120)
                if browser.error:
                    raise browser.error
            rss_start = rss_bytes(pid)

            expected = int(args.rate * args.seconds)
            connected = threading.Event()
            ctx = multiprocessing.get_context("spawn")
            go = ctx.Event()
            pusher = ctx.Process(
                target=push_steadily, args=(push_url, args.rate, args.seconds, go), daemon=True
            )
            pusher.start()
            samples: list[int] = []
            rss_idle = 0

            def sample_memory() -> None:
                nonlocal rss_idle
                connected.wait()
                rss_idle = rss_bytes(pid)
                go.set()
                while pusher.is_alive():
                    samples.append(rss_bytes(pid))
                    time.sleep(0.25)

            sampler = threading.Thread(target=sample_memory, daemon=True)
            sampler.start()
            results = asyncio.run(
                watch_all(
                    server.url,
                    server.token,
                    dataset_id,
                    args.clients,
                    expected,
                    args.seconds,
                    connected,
                )
            )
            pusher.join(30)
            sampler.join(5)
            if args.browser_pages:
                time.sleep(1.0)  # let the pages draw the last rows
                browser.done.set()
                browser.join(60)
            rss_after = rss_bytes(pid)

    received = [seen for _, seen in results] or [0]
    report: dict[str, Any] = {
        "rate_per_second": args.rate,
        "seconds": args.seconds,
        "sse_clients": args.clients,
        "browser_pages": args.browser_pages,
        "rows_pushed": expected,
        "rows_received_per_client_min": min(received),
        "latency_ms_at_sse_clients": summary([ms for lat, _ in results for ms in lat]),
        "latency_ms_in_browser": summary(browser.latencies),
        "server_rss_mb": {
            "before_clients": rss_start / 2**20,
            "with_clients_idle": rss_idle / 2**20,
            "peak_while_pushing": max(samples or [rss_after]) / 2**20,
        },
        "target_p99_ms": 250,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")

    mem = report["server_rss_mb"]
    print(
        f"push-to-screen at {args.rate:g} pushes/s for {args.seconds:g} s: {args.clients} live "
        f"feeds parsed like EventSource, {args.browser_pages} dashboards in Chromium"
    )
    print(f"{'measure':<36}{'SSE clients':>14}{'browser':>12}")
    sse, web = report["latency_ms_at_sse_clients"], report["latency_ms_in_browser"]
    for name in ("samples", "p50", "p90", "p99", "max"):
        style = ",.0f" if name == "samples" else ",.1f"
        cells = [
            f"{d[name]:>{w}{style}}" if d else f"{'-':>{w}}" for d, w in ((sse, 14), (web, 12))
        ]
        print(f"{'latency ' + name + ('' if name == 'samples' else ' (ms)'):<36}{''.join(cells)}")
    print(f"{'rows received (min per feed)':<36}{min(received):>14,} of {expected:,}")
    print(f"{'server RSS before feeds (MB)':<36}{mem['before_clients']:>14.1f}")
    print(f"{'server RSS, feeds open, idle (MB)':<36}{mem['with_clients_idle']:>14.1f}")
    print(f"{'server RSS peak while pushing (MB)':<36}{mem['peak_while_pushing']:>14.1f}")
    for label, d in (("SSE clients", sse), ("browser", web)):
        if d:
            verdict = "meets" if d["p99"] < 250 else "MISSES"
            print(f"{label}: p99 {d['p99']:.1f} ms {verdict} the 250 ms target")
    print(f"wrote {RESULTS}")
    if args.clients and min(received) < expected:
        print(f"WARNING: a feed saw {min(received)} of {expected} rows", file=sys.stderr)


def summary(latencies: list[float]) -> dict[str, float] | None:
    if not latencies:
        return None
    return {
        "samples": len(latencies),
        "p50": percentile(latencies, 50),
        "p90": percentile(latencies, 90),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "mean": statistics.fmean(latencies),
    }


if __name__ == "__main__":
    main()
