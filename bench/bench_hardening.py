"""The server under abuse: loop responsiveness and memory, side by side.

One command: ``python bench/bench_hardening.py [--rows 1000000]``.

1. A ``--rows``-row POST (limits off) to a PushStreaming dataset, three ways, each on a
   fresh ``pbistream serve`` process while a thread measures ``/healthz`` round trips:
   (a) with one live feed open (the case that stalled the loop for 1.7 s),
   (b) the obvious alternative: the same POST with no feed open,
   (c) the ideal: ``/healthz`` with no POST at all.
   Reports the worst and p99 ``/healthz`` latency, the POST time and peak RSS (VmHWM).
2. A 16 MB body of ``[{},{},...]`` (5.6M rows) with limits on: the server's peak RSS
   while refusing it, against (b) ``orjson.loads`` of the same body in this process
   (what the server did before) and (c) the ideal: the idle server.

Prints tables and writes ``bench/results/hardening.json``. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from pbistream.testing import ServerProcess

RESULTS = Path(__file__).resolve().parent / "results" / "hardening.json"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def create(client: httpx.Client, mode: str) -> str:
    created = client.post(
        "/v1.0/myorg/datasets",
        json={
            "name": "bench",
            "defaultMode": mode,
            "tables": [{"name": "RealTimeData", "columns": [{"name": "v", "dataType": "Int64"}]}],
        },
    )
    created.raise_for_status()
    return str(created.json()["id"])


def big_post(rows: int, *, feed: bool, post: bool) -> dict[str, Any]:
    body = b"[" + b",".join(b'{"v":%d}' % (i % 1000) for i in range(rows)) + b"]"
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", args=["--limits", "off"])
        with server, httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as c:
            assert server.process is not None
            dataset_id = create(c, "PushStreaming")
            stop = threading.Event()
            latencies: list[float] = []

            def read_feed() -> None:
                with (
                    httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as fc,
                    fc.stream("GET", f"/api/datasets/{dataset_id}/live") as stream,
                ):
                    for _ in stream.iter_raw():
                        if stop.is_set():
                            return

            def probe() -> None:
                with httpx.Client(base_url=server.url, timeout=60) as pc:
                    while not stop.is_set():
                        started = time.perf_counter()
                        pc.get("/healthz")
                        latencies.append(time.perf_counter() - started)

            if feed:
                threading.Thread(target=read_feed, daemon=True).start()
            prober = threading.Thread(target=probe, daemon=True)
            prober.start()
            started = time.perf_counter()
            if post:
                url = f"/v1.0/myorg/datasets/{dataset_id}/tables/RealTimeData/rows"
                c.post(url, content=body).raise_for_status()
            else:
                time.sleep(3)  # the ideal: the same probing with nothing else going on
            seconds = time.perf_counter() - started
            stop.set()
            prober.join(60)
            rss = peak_rss_mb(server.process.pid)
    latencies.sort()
    return {
        "post_seconds": round(seconds, 2) if post else None,
        "healthz_worst_ms": round(latencies[-1] * 1000, 1),
        "healthz_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "healthz_median_ms": round(statistics.median(latencies) * 1000, 2),
        "probes": len(latencies),
        "peak_rss_mb": round(rss),
    }


def over_cap() -> dict[str, Any]:
    size = 16 * 1024 * 1024
    body = b"[" + b",".join([b"{}"] * ((size - 2) // 3)) + b"]"
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data")
        with server, httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as c:
            assert server.process is not None
            dataset_id = create(c, "Push")
            idle = peak_rss_mb(server.process.pid)
            started = time.perf_counter()
            answer = c.post(
                f"/v1.0/myorg/datasets/{dataset_id}/tables/RealTimeData/rows", content=body
            )
            seconds = time.perf_counter() - started
            assert answer.status_code == 400, answer.text
            refused = peak_rss_mb(server.process.pid)
    # In a fresh interpreter: this one's high-water mark is already past it.
    script = (
        "import orjson, sys\n"
        "from pathlib import Path\n"
        "def hwm():\n"
        "    for line in Path('/proc/self/status').read_text().splitlines():\n"
        "        if line.startswith('VmHWM:'): return int(line.split()[1]) / 1024\n"
        "body = sys.stdin.buffer.read(); before = hwm(); rows = orjson.loads(body)\n"
        "print(hwm() - before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=body, capture_output=True, check=True
    )
    parsed = float(done.stdout)
    return {
        "rows_in_body": body.count(b",") + 1,
        "server_idle_peak_rss_mb": round(idle),
        "server_refusing_peak_rss_mb": round(refused),
        "refusal_seconds": round(seconds, 2),
        "orjson_loads_extra_rss_mb": round(parsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    results = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {sys.version.split()[0]}",
        "load_average": os.getloadavg(),
        "with_feed": big_post(args.rows, feed=True, post=True),
        "no_feed": big_post(args.rows, feed=False, post=True),
        "ideal_no_post": big_post(args.rows, feed=False, post=False),
        "over_cap": over_cap(),
    }
    print(f"{args.rows:,}-row POST, limits off; /healthz measured throughout")
    print(f"{'case':<28}{'POST s':>8}{'worst ms':>10}{'p99 ms':>9}{'median ms':>11}{'RSS MB':>8}")
    for name in ("with_feed", "no_feed", "ideal_no_post"):
        r = results[name]
        post = f"{r['post_seconds']:.1f}" if r["post_seconds"] is not None else "-"
        print(
            f"{name:<28}{post:>8}{r['healthz_worst_ms']:>10}{r['healthz_p99_ms']:>9}"
            f"{r['healthz_median_ms']:>11}{r['peak_rss_mb']:>8}"
        )
    o = results["over_cap"]
    print(
        f"\n16 MB over-cap body ({o['rows_in_body']:,} rows): server peak RSS "
        f"{o['server_refusing_peak_rss_mb']} MB (idle {o['server_idle_peak_rss_mb']} MB), "
        f"refused in {o['refusal_seconds']} s; orjson.loads of it alone adds "
        f"{o['orjson_loads_extra_rss_mb']} MB"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
