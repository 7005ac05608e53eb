"""Benchmark the relay: ``python bench/bench_relay.py [--devices 50] [--seconds 10]``.

N simulated devices each POST one row every 100 ms. Side by side, in one run:

(a) **direct**: every device POSTs straight to the upstream's Push URL (the obvious
    alternative: each device pointed at Power BI);
(b) **relay**: every device POSTs to a local `pbistream serve` whose dataset is
    forwarded (``PUT /api/datasets/{id}/forward``) to the upstream.

The upstream is a real `pbistream serve` with Power BI's limits on (``--time-scale``
shrinks a minute). Reported: device POSTs, upstream POSTs, their ratio, rows stored
upstream, 429 answers, and the ideal the limits allow (rows / 10,000 rows a POST).
Prints a table and writes ``bench/results/relay.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from pbistream import limits
from pbistream.testing import ServerProcess

RESULTS = Path(__file__).parent / "results" / "relay.json"
COLUMNS = [{"name": "device", "dataType": "String"}, {"name": "n", "dataType": "Int64"}]


def create(server: ServerProcess, mode: str) -> tuple[str, str | None]:
    body = {
        "name": "Fleet",
        "defaultMode": mode,
        "tables": [{"name": "RealTimeData", "columns": COLUMNS}],
    }
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        dataset_id = str(http.post("/v1.0/myorg/datasets", json=body).json()["id"])
        return dataset_id, http.get(f"/api/datasets/{dataset_id}").json()["pushUrl"]


def row_count(server: ServerProcess, dataset_id: str) -> int:
    detail = httpx.get(f"{server.url}/api/datasets/{dataset_id}", headers=server.headers).json()
    return int(detail["rowCount"])


def post_counts(server: ServerProcess, dataset_id: str) -> tuple[int, int]:
    """(POSTs of rows answered, of them 429) for one dataset, from the upstream's metrics.

    Metrics count by route template, so each side of the run posts to its own route
    shape: the direct devices to the Push URL, the relay to the REST API.
    """
    del dataset_id
    text = httpx.get(f"{server.url}/metrics", headers=server.headers).text
    out: dict[str, list[int]] = {"push": [0, 0], "rest": [0, 0]}
    for line in text.splitlines():
        if not line.startswith("pbistream_http_requests_total{") or 'method="POST"' not in line:
            continue
        kind = "push" if 'route="/beta/' in line else "rest" if "/tables/" in line else None
        if kind is None:
            continue
        count = int(float(line.rsplit(" ", 1)[1]))
        out[kind][0] += count
        if 'status="429"' in line:
            out[kind][1] += count
    return out["push"][0] + out["rest"][0], out["push"][1] + out["rest"][1]


async def devices(url: str, count: int, period: float, seconds: float) -> tuple[int, int]:
    """Each device POSTs one row every ``period`` s; returns (POSTs, POSTs answered 200)."""
    posts = acked = 0
    limits_ = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    started = time.monotonic()
    async with httpx.AsyncClient(limits=limits_, timeout=10.0) as http:

        async def device(name: str) -> None:
            nonlocal posts, acked
            n = 0
            while (tick := started + n * period) < started + seconds:
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
                posts += 1
                try:
                    response = await http.post(url, json=[{"device": name, "n": n}])
                    acked += response.status_code == 200
                except httpx.TransportError:
                    pass
                n += 1

        await asyncio.gather(*(device(f"dev{i:02d}") for i in range(count)))
    return posts, acked


def wait_for(predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.05)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument(
        "--period", type=float, default=0.1, help="Seconds between a device's POSTs."
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--time-scale", type=float, default=60.0)
    args, _ = parser.parse_known_args()

    with tempfile.TemporaryDirectory() as tmp:
        upstream = ServerProcess(Path(tmp) / "up", args=["--time-scale", f"{args.time_scale:g}"])
        relay = ServerProcess(Path(tmp) / "relay", args=["--limits", "off"])
        upstream.start()
        relay.start()
        try:
            # (a) direct: the devices at the upstream's Push URL.
            direct_id, direct_url = create(upstream, "PushStreaming")
            assert direct_url is not None
            d_posts, d_acked = asyncio.run(
                devices(direct_url, args.devices, args.period, args.seconds)
            )
            d_stored = row_count(upstream, direct_id)
            d_up_posts, d_429 = post_counts(upstream, direct_id)

            # (b) relay: the devices at the relay, forwarded to the upstream's REST API.
            relay_up_id, _ = create(upstream, "Push")
            local_id, local_url = create(relay, "PushStreaming")
            assert local_url is not None
            target = f"{upstream.url}/v1.0/myorg/datasets/{relay_up_id}/tables/RealTimeData/rows"
            httpx.put(
                f"{relay.url}/api/datasets/{local_id}/forward",
                json={"target": target, "token": upstream.token, "timeScale": args.time_scale},
                headers=relay.headers,
            ).raise_for_status()
            started = time.monotonic()
            r_posts, r_acked = asyncio.run(
                devices(local_url, args.devices, args.period, args.seconds)
            )
            devices_done = time.monotonic() - started
            stored_locally = row_count(relay, local_id)
            drain = wait_for(lambda: row_count(upstream, relay_up_id) >= stored_locally, 120)
            r_stored = row_count(upstream, relay_up_id)
            total_posts, total_429 = post_counts(upstream, relay_up_id)
            r_up_posts, r_429 = total_posts - d_up_posts, total_429 - d_429
        finally:
            relay.stop()
            upstream.stop()

    ideal = math.ceil(r_stored / limits.MAX_ROWS_PER_POST.value)
    minute = 60.0 / args.time_scale
    # A sliding minute: any run of up to a minute may use the whole minute's POSTs.
    allowed = math.ceil((devices_done + drain) / minute) * limits.POSTS_PER_MINUTE.value
    result = {
        "machine": f"{platform.machine()} {platform.system()} {platform.python_version()}",
        "devices": args.devices,
        "period_s": args.period,
        "seconds": args.seconds,
        "time_scale": args.time_scale,
        "direct": {
            "device_posts": d_posts,
            "acknowledged": d_acked,
            "upstream_posts": d_up_posts,
            "upstream_429": d_429,
            "rows_stored_upstream": d_stored,
        },
        "relay": {
            "device_posts": r_posts,
            "acknowledged": r_acked,
            "upstream_posts": r_up_posts,
            "upstream_429": r_429,
            "rows_stored_upstream": r_stored,
            "device_to_upstream_ratio": round(r_posts / max(1, r_up_posts), 1),
            "rows_per_upstream_post": round(r_stored / max(1, r_up_posts), 1),
            "drain_after_last_device_post_s": round(drain, 2),
        },
        "ideal": {
            "fewest_posts_for_the_rows": ideal,
            "posts_the_limit_allows_in_the_run": allowed,
        },
    }
    print(f"{'':34} {'direct':>12} {'relay':>12}")
    for label, key in (
        ("device POSTs", "device_posts"),
        ("device POSTs answered 200", "acknowledged"),
        ("upstream POSTs", "upstream_posts"),
        ("upstream 429 answers", "upstream_429"),
        ("rows stored upstream", "rows_stored_upstream"),
    ):
        print(f"{label:34} {result['direct'][key]:>12,} {result['relay'][key]:>12,}")
    relay_r = result["relay"]
    print(
        f"relay: {relay_r['device_to_upstream_ratio']}x fewer POSTs upstream than devices made, "
        f"{relay_r['rows_per_upstream_post']} rows a POST; ideal {ideal} POSTs "
        f"({limits.MAX_ROWS_PER_POST.value:,} rows each); the limit allowed {allowed:,}; "
        f"upstream caught up {drain:.2f} s after the last device POST"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
