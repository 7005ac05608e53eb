"""Connection exhaustion: does the server still answer while slow clients hold sockets?

One command: ``python bench/bench_connections.py [--limit 1024] [--slow 1100] [--seconds 15]``.

Each variant runs as its own process with its open-file limit set to ``--limit``
(soft and hard, as ``ulimit -n`` would), serving the same app on the same SQLite store:

* ``plain uvicorn``: the obvious way, ``uvicorn.Config(app)`` with its defaults;
* ``pbistream serve``: the connection cap, header deadline and log-repeat filter.

For each: the /healthz latency with no attack (the ideal), then ``--slow`` connections
that send half a request head and stop, then ``--seconds`` of /healthz probes (one
every 0.25 s, 1 s timeout) counting answers, the first 200 after the attack began, and
how many bytes the server logged. Prints a table and writes
``bench/results/connections.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results"

_PLAIN_UVICORN = """
import logging, sys, uvicorn
from pbistream.server import Settings, create_app
from pbistream.storage import open_storage
logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
settings = Settings(host="127.0.0.1", port=int(sys.argv[1]), data_dir=sys.argv[2], token="t" * 32)
app = create_app(settings, open_storage(settings.storage_url))
# The obvious alternative: uvicorn with its defaults.
uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, access_log=False)).run()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _limit(n: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


def _healthz(url: str, timeout: float = 1.0) -> float | None:
    started = time.perf_counter()
    try:
        ok = httpx.get(f"{url}/healthz", timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return None
    return (time.perf_counter() - started) * 1000 if ok else None


def run_variant(name: str, limit: int, slow: int, seconds: float) -> dict[str, Any]:
    """Start one server variant, attack it, and measure."""
    work = Path(tempfile.mkdtemp(prefix="pbistream-bench-conn-"))
    port = _free_port()
    log_path = work / "server.log"
    env = {**os.environ, "PBISTREAM_TOKEN": "t" * 32}
    if name == "plain uvicorn":
        command = [sys.executable, "-c", _PLAIN_UVICORN, str(port), str(work / "data")]
    else:
        command = [sys.executable, "-m", "pbistream", "serve", "--port", str(port)]
        command += ["--data-dir", str(work / "data")]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_limit(limit)
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while _healthz(url) is None:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    ideal = [t for t in (_healthz(url) for _ in range(30)) if t is not None]
    log_before = log_path.stat().st_size
    held = []
    attack_started = time.monotonic()
    for _ in range(slow):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            held.append(sock)
        except OSError:
            break
    answered, probes, first_ok = [], 0, None
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        probes += 1
        took = _healthz(url)
        if took is not None:
            answered.append(took)
            if first_ok is None:
                first_ok = time.monotonic() - attack_started
        time.sleep(0.25)
    log_bytes = log_path.stat().st_size - log_before
    for sock in held:
        sock.close()
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
    return {
        "variant": name,
        "healthz_ms_p50_no_attack": round(statistics.median(ideal), 2),
        "slow_connections_opened": len(held),
        "probes": probes,
        "probes_answered": len(answered),
        "first_200_after_attack_s": None if first_ok is None else round(first_ok, 1),
        "healthz_ms_p50_under_attack": round(statistics.median(answered), 2) if answered else None,
        "log_bytes_during_attack": log_bytes,
    }


def main() -> None:
    """Run both variants and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1024, help="open-file limit of the server")
    parser.add_argument("--slow", type=int, default=1100, help="half-open connections")
    parser.add_argument("--seconds", type=float, default=15.0, help="probing time")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.slow + 200:  # this process holds the slow connections itself
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.slow + 1000), hard))
    rows = [
        run_variant(v, args.limit, args.slow, args.seconds)
        for v in ("plain uvicorn", "pbistream serve")
    ]
    print(f"open-file limit {args.limit}, {args.slow} half-open connections, {args.seconds:g} s")
    keys = [k for k in rows[0] if k != "variant"]
    print(f"{'':34}" + "".join(f"{r['variant']:>18}" for r in rows))
    for key in keys:
        print(f"{key:34}" + "".join(f"{r[key]!s:>18}" for r in rows))
    RESULTS.mkdir(exist_ok=True)
    out = {"machine": platform.platform(), "args": vars(args), "variants": rows}
    (RESULTS / "connections.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
