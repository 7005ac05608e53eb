"""What scoped tokens cost per request: the role table and grant lookup on the hot path.

One command: ``python bench/bench_access.py [--requests 3000]``.

Starts ``python -m pbistream serve --limits off`` and sends the same one-row POST to a
dataset, one after the other on one keep-alive connection, signed in four ways:

* ``push key`` on the Push URL: no token to resolve (the ideal: what auth costs nothing);
* ``server token`` (Bearer) on PostRows: the token compared in memory (the obvious path);
* ``scoped token`` (Bearer ``pbist_...``, a contributor limited to the dataset): a grant
  found by its hash, then the role table and the scope check;
* ``session cookie`` of that scoped token: a signature check, then the same.

Prints requests/s and p50/p99 per way, with the ratio to the push key, and writes
``bench/results/access.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from pbistream.testing import ServerProcess

RESULTS = Path(__file__).parent / "results" / "access.json"
TABLE = "RealTimeData"


def _run(client: httpx.Client, url: str, requests: int, **kwargs: Any) -> dict[str, float]:
    for _ in range(50):  # warm up (and fill the grant cache)
        client.post(url, **kwargs).raise_for_status()
    times = []
    started = time.perf_counter()
    for _ in range(requests):
        sent = time.perf_counter()
        client.post(url, **kwargs).raise_for_status()
        times.append(time.perf_counter() - sent)
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(times, n=100)
    return {
        "requests_per_s": requests / elapsed,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", args=["--limits", "off"])
        server.start()
        try:
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as api:
                body = {
                    "name": "bench",
                    "defaultMode": "PushStreaming",
                    "tables": [{"name": TABLE, "columns": [{"name": "v", "dataType": "Double"}]}],
                }
                dataset = api.post("/v1.0/myorg/datasets", json=body).json()["id"]
                push_url = api.get(f"/api/datasets/{dataset}").json()["pushUrl"]
                scoped = api.post(
                    "/api/tokens", json={"role": "contributor", "datasets": [dataset]}
                ).json()["token"]
            rows_path = f"/v1.0/myorg/datasets/{dataset}/tables/{TABLE}/rows"
            one_row = {"rows": [{"v": 1.5}]}
            results: dict[str, dict[str, float]] = {}
            with httpx.Client(timeout=30) as client:
                results["push key"] = _run(client, push_url, args.requests, json=[{"v": 1.5}])
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as client:
                results["server token"] = _run(client, rows_path, args.requests, json=one_row)
            bearer = {"Authorization": f"Bearer {scoped}"}
            with httpx.Client(base_url=server.url, headers=bearer, timeout=30) as client:
                results["scoped token"] = _run(client, rows_path, args.requests, json=one_row)
            with httpx.Client(base_url=server.url, timeout=30) as client:
                client.get("/login", params={"token": scoped})
                results["session cookie"] = _run(
                    client,
                    rows_path,
                    args.requests,
                    json=one_row,
                    headers={"Origin": server.url},
                )
        finally:
            server.stop()
    ideal = results["push key"]["requests_per_s"]
    print(f"{'signed in by':<16}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'vs push key':>13}")
    for name, row in results.items():
        ratio = row["requests_per_s"] / ideal
        print(
            f"{name:<16}{row['requests_per_s']:>12,.0f}{row['p50_ms']:>9.2f}"
            f"{row['p99_ms']:>9.2f}{ratio:>12.2f}x"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "requests": args.requests,
                "results": results,
                "machine": {
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
