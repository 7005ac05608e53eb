"""Benchmark the client: ``python bench/bench_client.py [--seconds 20] [--time-scale 60]``.

(a) The seed's snippet (one ``requests`` POST per row) against ``pbistream.Client``
    pushing one row at a time, each to its own dataset on the same real server with
    Power BI's limits on (``--time-scale`` shrinks a minute to a second): rows stored per
    (scaled) minute and 429 answers seen, side by side.
(b) Validate-and-encode rows/s on one core against plain ``json.dumps`` of the same rows.
(c) The caller's cost per ``push()``: p50 and p99, in memory and with a spool.

Prints a table and writes ``bench/results/client.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from pbistream import BufferOptions, Client, PacingOptions, Schema, UndeliveredRowsError
from pbistream.testing import ServerProcess

FIELDS = {"string_value": "String", "number_value": "Double", "datetime_value": "DateTime"}
RESULTS = Path(__file__).parent / "results" / "client.json"


def seed_row(i: int) -> dict[str, Any]:
    """The seed's row, with its timestamp format."""
    now = datetime.strftime(datetime.now(), "%Y-%m-%dT%H:%M:%S")
    return {"string_value": "ABC XYZ", "number_value": 12345 + i, "datetime_value": now}


def create_dataset(server: ServerProcess, name: str) -> tuple[str, str]:
    body = {
        "name": name,
        "defaultMode": "PushStreaming",
        "tables": [
            {
                "name": "RealTimeData",
                "columns": [{"name": k, "dataType": v} for k, v in FIELDS.items()],
            }
        ],
    }
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        dataset_id = http.post("/v1.0/myorg/datasets", json=body).json()["id"]
        push_url = http.get(f"/api/datasets/{dataset_id}").json()["pushUrl"]
    return dataset_id, push_url


def count_rows(server: ServerProcess, dataset_id: str) -> int:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        return int(http.get(f"/api/datasets/{dataset_id}").json()["rowCount"])


def run_seed(url: str, seconds: float) -> dict[str, Any]:
    """The seed's snippet, verbatim but for the loop: one blocking POST per row."""
    import requests

    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    i = 0
    session_less = requests.request  # the seed calls requests.request each time
    while time.monotonic() < deadline:
        data = [seed_row(i)]
        headers = {"Content-Type": "application/json"}
        response = session_less(method="POST", url=url, headers=headers, data=json.dumps(data))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        i += 1
    return {"rows_offered": i, "statuses": statuses, "rate_limited": statuses.get(429, 0)}


def run_client(url: str, token: str, seconds: float, time_scale: float) -> dict[str, Any]:
    """Client.push() one row at a time from a tight loop; push() blocks only when the
    bounded buffer is full, i.e. when the stream outruns what Power BI allows."""
    client = Client(
        url,
        token=token,
        pacing=PacingOptions(time_scale=time_scale),
        buffer=BufferOptions(max_rows=50_000, when_full="block", timeout=600),
        unsent_path=Path(tempfile.gettempdir()) / "bench-client-unsent.jsonl",
    )
    deadline = time.monotonic() + seconds
    i = 0
    with client:
        while time.monotonic() < deadline:
            for _ in range(1000):
                client.push(seed_row(i))
                i += 1
        sent_in_window = client.stats.sent
        try:
            left = client.close(timeout=5)
        except UndeliveredRowsError as exc:  # the stream outran the limits: expected
            left = exc.rows
    stats = client.stats
    return {
        "rows_offered": i,
        "sent_in_window": sent_in_window,
        "requests": stats.requests,
        "rate_limited": stats.rate_limited,
        "left_at_close": left,
    }


def bench_push_vs_seed(server: ServerProcess, seconds: float, time_scale: float) -> dict[str, Any]:
    seed_id, seed_url = create_dataset(server, "seed")
    _, client_url = create_dataset(server, "client")
    seed = run_seed(seed_url, seconds)
    seed_stored = count_rows(server, seed_id)
    started = time.monotonic()
    client = run_client(client_url, server.token, seconds, time_scale)
    client_window = time.monotonic() - started
    client_stored = client["sent_in_window"]
    scaled_minutes = seconds * time_scale / 60.0
    out = {
        "seconds_each": seconds,
        "time_scale": time_scale,
        "seed": {**seed, "stored": seed_stored, "stored_per_minute": seed_stored / scaled_minutes},
        "client": {
            **client,
            "stored": client_stored,
            "stored_per_minute": client_stored / scaled_minutes,
            "wall_seconds": round(client_window, 2),
        },
    }
    seed_rate = max(out["seed"]["stored_per_minute"], 1e-9)
    out["ratio"] = out["client"]["stored_per_minute"] / seed_rate
    return out


def bench_encode(rows: int = 200_000) -> dict[str, Any]:
    """Validate + normalise + encode on one core, against json.dumps of the same rows."""
    from datetime import UTC

    rules = Schema("RealTimeData", FIELDS).rules()
    stamp = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    data = [
        {"string_value": f"sensor {i % 50}", "number_value": i * 0.25, "datetime_value": stamp}
        for i in range(rows)
    ]
    normalize = rules.normalize_row
    dumps = orjson.dumps
    best_ours = best_json = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for row in data:
            dumps(normalize(row))
        best_ours = min(best_ours, time.perf_counter() - started)
        started = time.perf_counter()
        for row in data:
            json.dumps(row, default=str)
        best_json = min(best_json, time.perf_counter() - started)
    return {
        "rows": rows,
        "validate_encode_rows_per_s": rows / best_ours,
        "json_dumps_rows_per_s": rows / best_json,
        "ratio": best_json / best_ours,
    }


def _percentiles(samples: list[int]) -> dict[str, float]:
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
    }


def bench_caller_cost(
    server: ServerProcess, pushes: int = 200_000, spooled: int = 20_000
) -> dict[str, Any]:
    """Nanoseconds per push() on the caller's thread, while the worker validates,
    encodes and sends to the real server as fast as it answers (the worst case for the
    caller: the worker competes for the GIL the whole time)."""
    _, url = create_dataset(server, "caller-cost")
    out: dict[str, Any] = {}
    client = Client(
        url,
        token=server.token,
        buffer=BufferOptions(max_rows=pushes + 1),
        pacing=PacingOptions(enabled=False),
    )
    clock = time.perf_counter_ns
    samples = []
    row = seed_row(0)
    for _ in range(pushes):
        started = clock()
        client.push(row)
        samples.append(clock() - started)
    client.close(timeout=30)
    out["memory"] = {"pushes": pushes, **_percentiles(samples)}
    with tempfile.TemporaryDirectory() as tmp:
        client = Client(
            url, token=server.token, spool=Path(tmp) / "bench.spool", pacing=PacingOptions()
        )
        samples = []
        for _ in range(spooled):
            started = clock()
            client.push(row)
            samples.append(clock() - started)
        client.close(timeout=30)
    out["spool"] = {"pushes": spooled, **_percentiles(samples)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per side in (a)")
    parser.add_argument("--time-scale", type=float, default=60.0)
    args = parser.parse_args()

    import logging

    logging.getLogger("pbistream").addHandler(logging.NullHandler())
    print("(b) validate + encode ...", file=sys.stderr)
    encode = bench_encode()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", args=["--time-scale", str(args.time_scale)])
        server.start()
        try:
            print(f"(a) seed vs Client, {args.seconds:g} s each ...", file=sys.stderr)
            push = bench_push_vs_seed(server, args.seconds, args.time_scale)
        finally:
            server.stop()
        fast = ServerProcess(Path(tmp) / "fast", args=["--limits", "off"])
        fast.start()
        try:
            print("(c) caller cost ...", file=sys.stderr)
            caller = bench_caller_cost(fast)
        finally:
            fast.stop()

    seed, ours = push["seed"], push["client"]
    print()
    print(
        f"(a) Power BI limits on, time scale {args.time_scale:g} (1 minute = "
        f"{60 / args.time_scale:g} s), {args.seconds:g} s each"
    )
    print(f"    {'':24}{'seed snippet':>16}{'pbistream.Client':>18}")
    print(
        f"    {'rows stored / minute':24}{seed['stored_per_minute']:>16,.0f}"
        f"{ours['stored_per_minute']:>18,.0f}"
    )
    print(f"    {'429 answers seen':24}{seed['rate_limited']:>16,}{ours['rate_limited']:>18,}")
    print(f"    {'POST requests':24}{sum(seed['statuses'].values()):>16,}{ours['requests']:>18,}")
    print(f"    ratio: {push['ratio']:,.0f}x more rows stored per minute")
    print(
        f"(b) validate + encode: {encode['validate_encode_rows_per_s']:,.0f} rows/s; "
        f"json.dumps: {encode['json_dumps_rows_per_s']:,.0f} rows/s "
        f"({encode['ratio']:.2f}x)   target >= 300,000"
    )
    for kind in ("memory", "spool"):
        c = caller[kind]
        print(
            f"(c) push() caller cost, {kind:6}: p50 {c['p50_us']:.2f} us, "
            f"p99 {c['p99_us']:.2f} us   target p99 < 50 us"
        )
    results = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "push_vs_seed": push,
        "validate_encode": encode,
        "caller_cost": caller,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten {RESULTS}")


if __name__ == "__main__":
    main()
