"""Ingest throughput of `pbistream serve`, side by side with the raw storage insert.

One command: ``python bench/bench_ingest.py [--rows 500000] [--latency-posts 2000]``.

1. Starts ``python -m pbistream serve --limits off`` on a temporary data dir and
   POSTs 10,000-row bodies (5 columns) to PostRows with httpx: rows/s end to end.
2. Inserts the same rows, already normalised, with ``storage.insert_rows`` into a
   fresh SQLite store in this process: rows/s of the raw insert. The ratio of the
   two is the server's overhead (HTTP, JSON parsing, validation, bookkeeping).
3. p50/p99 latency of 2,000 one-row posts to a streaming Push URL.

Prints a table and writes ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
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

from pbistream.schema import Dataset, Mode, Retention, Table
from pbistream.storage import open_storage
from pbistream.testing import ServerProcess

ROWS_PER_POST = 10_000
COLUMNS = [
    {"name": "id", "dataType": "Int64"},
    {"name": "value", "dataType": "Double"},
    {"name": "label", "dataType": "String"},
    {"name": "ts", "dataType": "DateTime"},
    {"name": "ok", "dataType": "Boolean"},
]
RESULTS = Path(__file__).parent / "results" / "ingest.json"


def make_rows(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "value": i * 0.5,
            "label": f"sensor-{i % 100}",
            "ts": f"2024-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}.123Z",
            "ok": i % 2 == 0,
        }
        for i in range(start, start + count)
    ]


def bench_server(total_rows: int, latency_posts: int, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(
            Path(tmp) / "data", args=["--limits", "off", "--log-level", "warning"]
        )
        server.start()
        try:
            headers = {**server.headers, "Content-Type": "application/json"}
            body = {"name": "bench", "tables": [{"name": "T", "columns": COLUMNS}]}
            created = httpx.post(f"{server.url}/v1.0/myorg/datasets", json=body, headers=headers)
            created.raise_for_status()
            rows_url = f"{server.url}/v1.0/myorg/datasets/{created.json()['id']}/tables/T/rows"
            posts = total_rows // ROWS_PER_POST
            bodies = [
                orjson.dumps({"rows": make_rows(p * ROWS_PER_POST, ROWS_PER_POST)})
                for p in range(posts)
            ]
            # Warm up (imports, SQLite page cache) outside the timed part.
            httpx.post(rows_url, content=bodies[0], headers=headers).raise_for_status()
            failures: list[str] = []

            def send(share: list[bytes]) -> None:
                with httpx.Client(headers=headers, timeout=120) as client:
                    for data in share:
                        response = client.post(rows_url, content=data)
                        if response.status_code != 200:
                            failures.append(response.text[:200])

            threads = [
                threading.Thread(target=send, args=(bodies[i::clients],)) for i in range(clients)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            if failures:
                raise SystemExit(f"{len(failures)} posts failed: {failures[0]}")

            stream = {
                "name": "latency",
                "defaultMode": "Streaming",
                "tables": [{"name": "RealTimeData", "columns": COLUMNS}],
            }
            created = httpx.post(f"{server.url}/v1.0/myorg/datasets", json=stream, headers=headers)
            dataset_id = created.json()["id"]
            details = httpx.get(f"{server.url}/api/datasets/{dataset_id}", headers=headers)
            push_url = details.json()["pushUrl"]
            one = orjson.dumps(make_rows(0, 1))
            latencies = []
            with httpx.Client(headers={"Content-Type": "application/json"}) as client:
                for _ in range(50):  # warm-up
                    client.post(push_url, content=one)
                for _ in range(latency_posts):
                    t0 = time.perf_counter()
                    response = client.post(push_url, content=one)
                    latencies.append(time.perf_counter() - t0)
                    if response.status_code != 200:
                        raise SystemExit(f"one-row push failed: {response.text[:200]}")
        finally:
            server.stop()
    latencies.sort()
    return {
        "rows": posts * ROWS_PER_POST,
        "seconds": elapsed,
        "rows_per_second": posts * ROWS_PER_POST / elapsed,
        "one_row_p50_ms": statistics.median(latencies) * 1000,
        "one_row_p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "one_row_posts": latency_posts,
    }


def bench_raw(total_rows: int) -> dict[str, Any]:
    table = Table.from_json({"name": "T", "columns": COLUMNS})
    rules = table.rules()
    posts = total_rows // ROWS_PER_POST
    batches = []
    for p in range(posts):
        good, errors = rules.normalize_rows(make_rows(p * ROWS_PER_POST, ROWS_PER_POST))
        assert not errors
        batches.append(good)
    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(tmp)
        try:
            dataset = Dataset("bench", "bench", Mode.PUSH, Retention.NONE, [table])
            storage.create_dataset(dataset)
            storage.insert_rows("bench", "T", batches[0], received_at=time.time())  # warm-up
            started = time.perf_counter()
            for batch in batches:
                storage.insert_rows("bench", "T", batch, received_at=time.time())
            elapsed = time.perf_counter() - started
        finally:
            storage.close()
    return {"rows": total_rows, "seconds": elapsed, "rows_per_second": total_rows / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="rows to push (x10,000)")
    parser.add_argument("--latency-posts", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=2, help="concurrent pushing threads")
    args = parser.parse_args()

    server = bench_server(args.rows, args.latency_posts, args.clients)
    raw = bench_raw(args.rows)
    ratio = raw["rows_per_second"] / server["rows_per_second"]
    result = {
        "server": server,
        "raw_sqlite_insert": raw,
        "overhead_ratio": ratio,
        "rows_per_post": ROWS_PER_POST,
        "columns": len(COLUMNS),
        "clients": args.clients,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"{'measure':<44}{'value':>14}")
    print("-" * 58)
    print(f"{'server ingest, 10,000-row posts (rows/s)':<44}{server['rows_per_second']:>14,.0f}")
    print(f"{'raw SQLite insert_rows (rows/s)':<44}{raw['rows_per_second']:>14,.0f}")
    print(f"{'overhead (raw / server)':<44}{ratio:>13.2f}x")
    print(f"{'one-row Push URL post p50 (ms)':<44}{server['one_row_p50_ms']:>14.2f}")
    print(f"{'one-row Push URL post p99 (ms)':<44}{server['one_row_p99_ms']:>14.2f}")
    print(f"machine: {result['machine']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
