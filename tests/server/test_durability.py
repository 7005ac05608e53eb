"""Durability: a 200 means committed. kill -9 loses nothing acknowledged; restart works."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from pbistream.storage import open_storage
from pbistream.testing import ServerProcess

PBI = "/v1.0/myorg"


def test_acknowledged_rows_survive_kill_9_and_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, args=["--limits", "off"]).start()
    try:
        body = {
            "name": "durable",
            "defaultMode": "PushStreaming",
            "tables": [{"name": "RealTimeData", "columns": [{"name": "n", "dataType": "Int64"}]}],
        }
        created = httpx.post(f"{server.url}{PBI}/datasets", json=body, headers=server.headers)
        assert created.status_code == 201
        dataset_id = created.json()["id"]
        details = httpx.get(f"{server.url}/api/datasets/{dataset_id}", headers=server.headers)
        push_url = details.json()["pushUrl"]

        acknowledged: list[int] = []
        stop = threading.Event()

        def pusher() -> None:
            n = 0
            with httpx.Client(timeout=5) as client:
                while not stop.is_set():
                    rows = [{"n": n + i} for i in range(50)]
                    try:
                        response = client.post(push_url, json=rows)
                    except httpx.TransportError:
                        return  # the server died mid-request: not acknowledged
                    if response.status_code == 200:
                        acknowledged.extend(r["n"] for r in rows)
                    n += 50

        thread = threading.Thread(target=pusher, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 2_000:
            assert time.monotonic() < deadline, "the pusher made no progress"
            time.sleep(0.01)
        server.kill()  # SIGKILL while the pusher is still sending
        stop.set()
        thread.join(10)
        assert not thread.is_alive()

        storage = open_storage(str(data_dir))
        try:
            stored = {r.data["n"] for r in storage.read_rows(dataset_id, limit=10_000_000)}
        finally:
            storage.close()
        missing = set(acknowledged) - stored
        assert not missing, f"{len(missing)} acknowledged rows were lost"

        server.start()  # same port, same data dir
        again = httpx.post(push_url, json=[{"n": -1}])
        assert again.status_code == 200
        listed = httpx.get(f"{server.url}{PBI}/datasets", headers=server.headers).json()
        assert [d["id"] for d in listed["value"]] == [dataset_id]
    finally:
        server.stop()
