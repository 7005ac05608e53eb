"""Push-to-screen latency of the live dashboards, and the server's memory while they watch.

One command: ``python bench/bench_dashboard.py [--rate 100] [--seconds 10] [--clients 20]``.

1. Starts ``python -m pbistream serve --limits off`` on a temporary data dir (100 pushes
   a second is above Power BI's 120-a-minute limit, which the server enforces by default)
   and creates a streaming dataset and 20 dashboards on it.
2. Opens 20 live feeds (``GET /api/datasets/{id}/live``), as 20 open dashboards do, each
   parsing the Server-Sent Events exactly as the browser's EventSource would.
3. A separate process pushes one row per request to the Push URL at a steady rate; each
   row carries the wall-clock time it was sent. Each feed records, for every row, the
   time from "about to POST" to "event parsed": push-to-screen latency minus the
   browser's one frame of drawing (at most ~16 ms).
4. Samples the server's resident memory (VmRSS) before the feeds connect, with them
   idle, and during the pushes.

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
    url = f"{base}/api/datasets/{dataset_id}/live?after={after}"
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="pushes a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to push")
    parser.add_argument("--clients", type=int, default=20, help="open dashboards (live feeds)")
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
                for n in range(args.clients):
                    tile = {
                        "id": "card",
                        "type": "card",
                        "datasetId": dataset_id,
                        "table": "RealTimeData",
                        "fields": ["temperature"],
                    }
                    api.post("/api/dashboards", json={"name": f"d{n}", "tiles": [tile]})
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
            rss_after = rss_bytes(pid)

    latencies = [ms for lat, _ in results for ms in lat]
    received = [seen for _, seen in results]
    report = {
        "rate_per_second": args.rate,
        "seconds": args.seconds,
        "clients": args.clients,
        "rows_pushed": expected,
        "rows_received_per_client_min": min(received),
        "rows_received_total": sum(received),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": max(latencies),
            "mean": statistics.fmean(latencies),
        },
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

    lat, mem = report["latency_ms"], report["server_rss_mb"]
    print(
        f"push-to-screen, {args.clients} live dashboards, {args.rate:g} pushes/s "
        f"for {args.seconds:g} s"
    )
    print(f"{'measure':<34}{'value':>12}")
    print(
        f"{'rows received (min per client)':<34}{report['rows_received_per_client_min']:>12,}"
        f" / {expected:,}"
    )
    for name in ("p50", "p90", "p99", "max"):
        print(f"{'latency ' + name + ' (ms)':<34}{lat[name]:>12.1f}")
    print(f"{'server RSS before feeds (MB)':<34}{mem['before_clients']:>12.1f}")
    print(f"{'server RSS, 20 feeds idle (MB)':<34}{mem['with_clients_idle']:>12.1f}")
    print(f"{'server RSS peak pushing (MB)':<34}{mem['peak_while_pushing']:>12.1f}")
    verdict = "meets" if lat["p99"] < 250 else "MISSES"
    print(f"p99 {lat['p99']:.1f} ms {verdict} the 250 ms target; wrote {RESULTS}")
    if min(received) < expected:
        print(f"WARNING: a feed saw {min(received)} of {expected} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
