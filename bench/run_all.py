"""Run every benchmark, one after the other: ``python bench/run_all.py``.

Each benchmark compares pbistream side by side with its baseline in one run, prints a
table and writes ``bench/results/<name>.json``; BENCHMARKS.md records the figures and
the machine they were measured on.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = (
    "bench_ingest.py",
    "bench_client.py",
    "bench_dashboard.py",
    "bench_bridge.py",
    "bench_access.py",
    "bench_dax.py",
    "bench_connections.py",
    "bench_quota.py",
    "bench_relay.py",
    "bench_alerts.py",
    "bench_hardening.py",
    "bench_values.py",
)


def main() -> int:
    failed = []
    for name in BENCHES:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / name), *sys.argv[1:]]).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
