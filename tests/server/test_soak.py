"""A bounded soak (issue #8): mixed traffic, live feeds, a ``kill -9`` and a restart.

Several clients push valid and invalid requests to a real ``pbistream serve`` process
over loopback while live feeds stay open and a few slow clients hold half-sent
requests; halfway through, the server is killed with SIGKILL and started again on the
same port and data dir. Afterwards:

* no response was a 5xx;
* every row the server acknowledged (200) is stored (0 acknowledged rows lost);
* the server's resident memory stayed bounded.

The figures are written to ``test-artifacts/soak.json`` (BENCHMARKS.md quotes a run).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pbistream.testing import ServerProcess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for RSS")

CLIENTS = 4
PHASE_SECONDS = 7.0  # before the kill, and again after the restart
RSS_LIMIT_MB = 400
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Traffic:
    """What every client saw: statuses, acknowledged rows, transport errors."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.server_errors: list[str] = []
        self.acknowledged: set[tuple[str, int]] = set()
        self.transport_errors = 0
        self.live_events = 0

    def answer(self, what: str, response: httpx.Response, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 500:
                self.server_errors.append(f"{what}: {response.status_code} {response.text[:200]}")
            if response.status_code == 200:
                self.acknowledged.update((r["client"], r["seq"]) for r in rows)


def _pusher(name: str, push_urls: list[str], traffic: Traffic, stop: threading.Event) -> None:
    """Valid batches with a few kinds of invalid request mixed in."""
    seq = 0
    with httpx.Client(timeout=10, trust_env=False) as http:
        step = 0
        while not stop.is_set():
            url = push_urls[step % len(push_urls)]
            kind = step % 6
            rows: list[dict[str, Any]] = []
            try:
                if kind == 1:  # not JSON
                    response = http.post(url, content=b"[{not json", headers=_json_type())
                elif kind == 3:  # a wrong type and an unknown field
                    bad = [{"client": name, "seq": "x", "value": 1}, {"nope": 1}]
                    response = http.post(url, json=bad)
                elif kind == 5:  # a wrong key
                    response = http.post(url.replace("key=", "key=AAAA"), json=[{"value": 1}])
                else:
                    rows = [
                        {"client": name, "seq": seq + i, "value": (seq + i) * 0.5}
                        for i in range(20)
                    ]
                    seq += len(rows)
                    response = http.post(url, json=rows)
            except httpx.TransportError:
                with traffic.lock:
                    traffic.transport_errors += 1
                stop.wait(0.05)  # the server is restarting: back off a moment
            else:
                traffic.answer(f"{name} kind {kind}", response, rows)
            step += 1


def _json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _live_reader(
    base: str, token: str, dataset_id: str, traffic: Traffic, stop: threading.Event
) -> None:
    """A dashboard's live feed, reconnecting across the restart."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=httpx.Timeout(5, read=2), trust_env=False) as http:
        while not stop.is_set():
            try:
                with http.stream(
                    "GET", f"{base}/api/datasets/{dataset_id}/live", headers=headers
                ) as r:
                    if r.status_code >= 500:
                        traffic.answer("live", r, [])
                    for line in r.iter_lines():
                        if line.startswith("event: rows"):
                            with traffic.lock:
                                traffic.live_events += 1
                        if stop.is_set():
                            break
            except httpx.HTTPError:
                stop.wait(0.1)


def _slow_clients(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /v1.0/myorg/datasets HTTP/1.1\r\nHost: x\r\n")
            held.append(sock)
        except OSError:
            pass
    return held


def _stored(base: str, headers: dict[str, str], dataset_id: str) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    after = 0
    with httpx.Client(base_url=base, headers=headers, timeout=30, trust_env=False) as http:
        while True:
            params = {"table": "RealTimeData", "after": after, "limit": 1000, "order": "asc"}
            page = http.get(f"/api/datasets/{dataset_id}/rows", params=params).json()
            found.update((r["data"]["client"], r["data"]["seq"]) for r in page["rows"])
            if page["next"] is None:
                return found
            after = page["next"]


def test_soak_with_a_kill_and_restart_loses_no_acknowledged_row(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data", args=["--limits", "off", "--header-timeout-seconds", "3"]
    ).start()
    traffic = Traffic()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    rss: list[float] = []
    held: list[socket.socket] = []
    figures: dict[str, Any] = {}
    try:
        datasets = []
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as api:
            for n in range(3):
                body = {
                    "name": f"soak {n}",
                    "defaultMode": "PushStreaming",
                    "tables": [
                        {
                            "name": "RealTimeData",
                            "columns": [
                                {"name": "client", "dataType": "String"},
                                {"name": "seq", "dataType": "Int64"},
                                {"name": "value", "dataType": "Double"},
                            ],
                        }
                    ],
                }
                created = api.post("/v1.0/myorg/datasets", json=body)
                assert created.status_code == 201, created.text
                dataset_id = created.json()["id"]
                info = api.get(f"/api/datasets/{dataset_id}").json()
                datasets.append((dataset_id, info["pushUrl"]))
        push_urls = [url for _, url in datasets]
        for i in range(CLIENTS):
            args = (f"c{i}", push_urls[i % 3 :] + push_urls[: i % 3], traffic, stop)
            threads.append(threading.Thread(target=_pusher, args=args, daemon=True))
        for dataset_id, _ in datasets[:2]:
            args2 = (server.url, server.token, dataset_id, traffic, stop)
            threads.append(threading.Thread(target=_live_reader, args=args2, daemon=True))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        held = _slow_clients(server.port, 20)

        def sample_for(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                assert server.process is not None
                rss.append(_rss_mb(server.process.pid))
                stop.wait(0.25)  # the sampling period, not a wait for a condition

        sample_for(PHASE_SECONDS)
        server.kill()  # SIGKILL: no chance to flush anything
        killed_at = time.monotonic()
        server.start()
        figures["restart_seconds"] = round(time.monotonic() - killed_at, 2)
        held += _slow_clients(server.port, 20)
        sample_for(PHASE_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(15)
        figures["seconds"] = round(time.monotonic() - started, 1)
        stored: set[tuple[str, int]] = set()
        for dataset_id, _ in datasets:
            stored |= _stored(server.url, server.headers, dataset_id)
        healthy = httpx.get(f"{server.url}/healthz", timeout=5).status_code
    finally:
        stop.set()
        for sock in held:
            sock.close()
        server.stop()
    lost = traffic.acknowledged - stored
    figures.update(
        {
            "clients": CLIENTS,
            "live_feeds": 2,
            "statuses": dict(sorted(traffic.statuses.items())),
            "requests": sum(traffic.statuses.values()),
            "transport_errors_during_restart": traffic.transport_errors,
            "rows_acknowledged": len(traffic.acknowledged),
            "rows_stored": len(stored),
            "rows_lost": len(lost),
            "live_events": traffic.live_events,
            "rss_mb_max": round(max(rss), 1),
            "rss_mb_first": round(rss[0], 1),
        }
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert healthy == 200
    assert traffic.server_errors == [], traffic.server_errors[:5]
    assert not lost, f"{len(lost)} acknowledged rows lost, e.g. {sorted(lost)[:5]}"
    assert figures["rows_acknowledged"] > 1000, figures  # the soak did push
    assert traffic.statuses[400] > 0 and traffic.statuses[403] + traffic.statuses[404] > 0
    assert traffic.live_events > 0
    assert figures["rss_mb_max"] < RSS_LIMIT_MB, figures
    assert "Traceback" not in server.log_text()
