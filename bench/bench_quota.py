"""Quota use of the client's pacer against the ideal: ``python bench/bench_quota.py``.

A producer faster than Power BI allows pushes rows for two (simulated) hours. The
client's real sans-I/O engine decides every batch; the server's real ``Throttle``
(the code that answers 429 in ``pbistream serve``) counts them on the same simulated
clock, so two hours take a second and the figures do not depend on the machine's load.
Side by side, for each case:

* **ideal**: what the limits allow in that time (rows an hour x hours for a push
  dataset; 120 POSTs a minute x rows per 15 KB body for a Streaming dataset);
* **pbistream**: the planning pacer (this version);
* **naive pacer**: the same engine with the planning off (a batch as soon as a POST and
  any quota are free), i.e. the seed's client, which stored 66 % in the issue's run.

Cases: a push dataset through the REST API crossing 250,000 rows (120 POSTs an hour
from then on), a Streaming dataset through its Push URL (15 KB bodies, no row quota),
and a slow producer (rows must still arrive within the linger time).

``--real`` also runs the first two against a real ``pbistream serve --time-scale 60``
over loopback with a real ``pbistream.Client`` and producer thread (two scaled hours
take two minutes), counting what the server stored in that time. Writes
``bench/results/quota.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbistream.client.engine import Batch, Engine, Outcome, Send, Take, Wait
from pbistream.client.options import BatchOptions, PacingOptions, RetryOptions
from pbistream.limits import (
    MAX_PUSH_BODY_BYTES,
    MAX_STREAMING_BODY_BYTES,
    POSTS_PER_MINUTE,
    ROWS_PER_HOUR,
)
from pbistream.server.errors import ApiError
from pbistream.server.settings import Settings
from pbistream.server.throttle import Throttle

RESULTS = Path(__file__).parent / "results" / "quota.json"
ROW_BYTES = 100  # one encoded row of the seed's shape, about
LATENCY = 0.05  # seconds from send to answer; the server counts halfway


@dataclass
class Run:
    stored: int = 0
    posts: int = 0
    throttled: int = 0
    latencies: list[float] = field(default_factory=list)


class _NaivePacer:
    """Turns the planning off: any free quota is a batch, any partial batch may go."""

    @staticmethod
    def apply(engine: Engine) -> None:
        pacer = engine.pacer
        pacer.floor_rows = lambda cap: 1  # type: ignore[method-assign]
        pacer.spacing = lambda: 0.0  # type: ignore[method-assign]


def simulate(
    *,
    hours: float,
    rate: float,
    body_bytes: int,
    row_limited: bool,
    naive: bool = False,
    linger: float = 0.5,
) -> Run:
    """Drive one engine for ``hours`` against the server's throttle; return what was stored."""
    clock = [0.0]
    settings = Settings()
    throttle = Throttle(settings, clock=lambda: clock[0])
    engine = Engine(
        batch=BatchOptions(max_delay=linger),
        pacing=PacingOptions(),
        retry=RetryOptions(),
    )
    engine.body_rows = body_bytes // ROW_BYTES
    if not row_limited:
        engine.pacer.row_limited = False
    if naive:
        _NaivePacer.apply(engine)
    end = hours * 3600.0
    taken = 0
    table_rows = 0
    run = Run()
    now = 0.0
    while now < end:
        produced = math.floor(now * rate)
        buffered = produced - taken
        oldest = (taken + 1) / rate if buffered > 0 else None  # row n arrives at n / rate
        action = engine.poll(now, buffered=buffered, oldest_at=oldest)
        if isinstance(action, Wait):
            step = action.seconds
            cap = engine.cap()
            if buffered < cap:  # the batch fills up before the wait ends
                step = min(step, (cap - buffered) / rate + 1e-6)
            if buffered <= 0:
                step = min(step, (produced + 1) / rate - now + 1e-9)
            now += max(step, 1e-6)
            continue
        if isinstance(action, Take):
            rows = min(action.max_rows, buffered, engine.cap())
            first_at = (taken + 1) / rate
            taken += rows
            engine.start(Batch(b"", rows, seq=taken, items=first_at))
            continue
        assert isinstance(action, Send)
        batch = action.batch
        clock[0] = now + LATENCY / 2
        run.posts += 1
        try:
            throttle.admit("d", large_table=throttle.is_large("d"))
            try:
                throttle.reserve_rows("d", batch.rows, hourly=row_limited)
            finally:
                throttle.release("d")
            status = 200
            if clock[0] <= end:
                run.stored += batch.rows
                run.latencies.append(clock[0] - batch.items)
            table_rows += batch.rows
            throttle.set_row_count("d", "t", table_rows)
        except ApiError:
            status = 429
            run.throttled += 1
        now += LATENCY
        engine.on_response(now, Outcome(status))
    return run


def real_run(
    *, mode: str, scaled_hours: float, rate: float, time_scale: float = 60.0
) -> dict[str, Any]:
    """A real server and client: rows stored in ``scaled_hours`` by a producer of ``rate``."""
    import tempfile
    import threading
    import time

    import httpx
    import orjson

    from pbistream import BufferOptions, Client, UndeliveredRowsError
    from pbistream.testing import ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", args=["--time-scale", str(time_scale)])
        server.start()
        try:
            headers = {"Authorization": f"Bearer {server.token}"}
            body = {
                "name": "quota",
                "defaultMode": mode,
                "tables": [
                    {
                        "name": "RealTimeData",
                        "columns": [
                            {"name": "n", "dataType": "Int64"},
                            {"name": "label", "dataType": "String"},
                        ],
                    }
                ],
            }
            created = httpx.post(
                f"{server.url}/v1.0/myorg/datasets", json=body, headers=headers, timeout=30
            ).json()
            dataset = created["id"]
            if mode == "Push":
                target = f"{server.url}/v1.0/myorg/datasets/{dataset}/tables/RealTimeData/rows"
            else:
                info = httpx.get(
                    f"{server.url}/api/datasets/{dataset}", headers=headers, timeout=30
                ).json()
                target = info["pushUrl"]
            client = Client(
                target,
                token=server.token,
                buffer=BufferOptions(max_rows=5_000_000, when_full="drop_oldest"),
                unsent_path=Path(tmp) / "unsent.jsonl",
            )
            seconds = scaled_hours * 3600 / time_scale
            stop = threading.Event()
            produced = [0]

            def produce() -> None:
                chunk = 1_000
                started = time.monotonic()
                while not stop.is_set():
                    due = started + produced[0] / rate
                    if due > time.monotonic():
                        stop.wait(due - time.monotonic())
                        continue
                    first = produced[0]
                    client.push([{"n": first + i, "label": "reading"} for i in range(chunk)])
                    produced[0] += chunk

            thread = threading.Thread(target=produce, daemon=True)
            started = time.monotonic()
            thread.start()
            stop.wait(seconds)
            count = httpx.get(
                f"{server.url}/api/datasets/{dataset}", headers=headers, timeout=30
            ).json()
            stored = sum(int(t.get("rowCount") or 0) for t in count["tables"])
            elapsed = time.monotonic() - started
            stop.set()
            thread.join(10)
            stats = client.stats
            # The rest of the producer's rows are not the point: drop them.
            with contextlib.suppress(UndeliveredRowsError):
                client.close(timeout=0.1)
            if mode == "Push":
                # Sliding hours: the quota once at the start, once an hour later.
                ideal = ROWS_PER_HOUR.value * math.ceil(scaled_hours - 1e-9)
            else:
                # 120 POSTs at the start of each sliding minute, each as full as 15 KB
                # allows for the rows sent (their size grows with n).
                sizes = [
                    len(orjson.dumps({"n": n, "label": "reading"})) + 1
                    for n in range(0, max(stored, 1), 97)
                ]
                rows_per_body = (MAX_STREAMING_BODY_BYTES.value - 1) / statistics.mean(sizes)
                posts = POSTS_PER_MINUTE.value * math.ceil(scaled_hours * 60 - 1e-9)
                ideal = posts * rows_per_body
            return {
                "case": f"real server: {mode} dataset, {rate:,.0f} rows/s, "
                f"{scaled_hours * 60:g} scaled min at --time-scale {time_scale:g}",
                "ideal_rows": int(ideal),
                "pbistream": {
                    "rows": stored,
                    "of_ideal": round(stored / ideal, 4),
                    "posts": stats.requests,
                    "429s": stats.rate_limited,
                    "seconds": round(elapsed, 1),
                    "produced": produced[0],
                },
            }
        finally:
            server.kill()


def _case(name: str, ideal: float, runs: dict[str, Run]) -> dict[str, Any]:
    out: dict[str, Any] = {"case": name, "ideal_rows": int(ideal)}
    for label, run in runs.items():
        lat = sorted(run.latencies) or [0.0]
        out[label] = {
            "rows": run.stored,
            "of_ideal": round(run.stored / ideal, 4) if ideal else None,
            "posts": run.posts,
            "429s": run.throttled,
            "latency_p50_s": round(statistics.median(lat), 2),
            "latency_max_s": round(lat[-1], 2),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours per case")
    parser.add_argument(
        "--real", action="store_true", help="also run a real server (about 2.5 minutes)"
    )
    args = parser.parse_args()
    hours = args.hours
    rows_per_body = MAX_STREAMING_BODY_BYTES.value // ROW_BYTES
    cases = []
    big = MAX_PUSH_BODY_BYTES.value
    small = MAX_STREAMING_BODY_BYTES.value
    for name, rate, body, limited, span, ideal in (
        # A push dataset through the REST API (16 MB bodies), crossing 250,000 rows: the
        # issue's producer (20,000 rows/s at --time-scale 60 is 333 rows a real second).
        ("push dataset, 333 rows/s", 333.0, big, True, hours, ROWS_PER_HOUR.value * hours),
        ("push dataset, 20,000 rows/s", 20_000.0, big, True, hours, ROWS_PER_HOUR.value * hours),
        # A Streaming dataset through its Push URL: 15 KB bodies, no rows-an-hour limit;
        # ten minutes, while its cache holds fewer than 250,000 rows.
        (
            "Streaming dataset, 2,000 rows/s",
            2_000.0,
            small,
            False,
            10 / 60,
            POSTS_PER_MINUTE.value * 10 * rows_per_body,
        ),
        # A slow producer: every row stored, within the linger time (0.5 s).
        ("slow producer, 1 row/s", 1.0, big, True, 0.5, 0.5 * 3600),
    ):
        runs = {
            label: simulate(
                hours=span, rate=rate, body_bytes=body, row_limited=limited, naive=label == "naive"
            )
            for label in ("pbistream", "naive")
        }
        cases.append(_case(name, ideal, runs))

    print(f"{'case':34} {'ideal':>11} {'pbistream':>11} {'ratio':>7} {'429s':>5}  naive")
    for c in cases:
        p, n = c["pbistream"], c["naive"]
        print(
            f"{c['case']:34} {c['ideal_rows']:>11,} {p['rows']:>11,} {p['of_ideal']:>7.2%} "
            f"{p['429s']:>5}  {n['rows']:,} ({n['of_ideal']:.2%}, {n['429s']} 429s); "
            f"latency p50 {p['latency_p50_s']} s vs {n['latency_p50_s']} s"
        )
    if args.real:
        import logging

        logging.getLogger("pbistream").addHandler(logging.NullHandler())
        # Streaming at --time-scale 6: at 60 its quota (120 POSTs a real second, ~480
        # rows each) is beyond what one Python producer and one connection can offer.
        for mode, hours_, rate, scale in (
            ("Push", 2.0, 20_000.0, 60.0),
            ("Streaming", 3 / 60, 10_000.0, 6.0),
        ):
            real = real_run(mode=mode, scaled_hours=hours_, rate=rate, time_scale=scale)
            cases.append(real)
            p = real["pbistream"]
            print(
                f"{real['case']:60} ideal {real['ideal_rows']:>11,}  stored {p['rows']:>11,} "
                f"{p['of_ideal']:>7.2%}  429s {p['429s']}  in {p['seconds']} s"
            )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"machine": platform.platform(), "python": platform.python_version(), "cases": cases},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
