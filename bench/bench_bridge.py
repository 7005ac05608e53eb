"""Benchmark the MQTT bridge: ``python bench/bench_bridge.py [--messages 100000]``.

Side by side in one run, on a private Mosquitto (no queue cap) on loopback:

* **the broker's own rate**: ``mosquitto_sub -q 1 -C N > /dev/null`` drains N QoS 1
  messages queued for its persistent session (a C client that does nothing with them:
  the ideal here);
* **the bridge**: ``pbistream bridge mqtt --count N`` drains the same N messages queued
  for its session: parse each payload, add a topic field, commit to the spool in
  groups, acknowledge each message after its group's commit; the client then delivers
  the rows to a real ``pbistream serve`` (limits off) in another process.

Both start with N messages already queued, so the figure is the consumer's rate, not
the publisher's. The bridge's rate is timed from its first message to its last
acknowledgement (its own JSON status); delivery to the server is reported beside it.
Prints a table and writes ``bench/results/bridge.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "feeds"))

from mqtt_broker import Broker

from pbistream.testing import ServerProcess

RESULTS = Path(__file__).parent / "results" / "bridge.json"
TOPIC = "bench/+/reading"


def preload(broker: Broker, count: int) -> float:
    """Publish ``count`` QoS 1 messages and wait for every PUBACK; return the seconds."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    start = time.perf_counter()
    for first in range(0, count, 20_000):  # under the 65,535 message ids of a session
        infos = [
            client.publish(
                f"bench/dev{n % 10}/reading",
                json.dumps({"n": n, "value": 21.5 + n % 7, "ok": True}).encode(),
                qos=1,
            )
            for n in range(first, min(count, first + 20_000))
        ]
        for info in infos:
            info.wait_for_publish(120)
    seconds = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return seconds


def make_session(broker: Broker, client_id: str) -> None:
    """Create a persistent session subscribed at QoS 1, then leave (it keeps queueing)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    done: list[bool] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.on_subscribe = lambda *args: done.append(True)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", broker.port, clean_start=True, properties=properties)
    client.loop_start()
    client.subscribe(TOPIC, qos=1)
    deadline = time.monotonic() + 10
    while not done and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def bench_mosquitto_sub(broker: Broker, count: int) -> dict[str, Any]:
    make_session(broker, "bench-sub")
    publish_seconds = preload(broker, count)
    start = time.perf_counter()
    subprocess.run(
        ["mosquitto_sub", "-p", str(broker.port), "-i", "bench-sub", "-c", "-q", "1",
         "-V", "mqttv5", "-x", "3600", "-t", TOPIC, "-C", str(count)],
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return {"messages": count, "seconds": seconds, "rate": count / seconds,
            "publish_rate": count / publish_seconds}  # fmt: skip


def create_dataset(server: ServerProcess) -> tuple[str, str]:
    columns = [
        {"name": "n", "dataType": "Int64"},
        {"name": "value", "dataType": "Double"},
        {"name": "ok", "dataType": "Boolean"},
        {"name": "device", "dataType": "String"},
    ]
    body = {
        "name": "bridge bench",
        "defaultMode": "PushStreaming",
        "tables": [{"name": "RealTimeData", "columns": columns}],
    }
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        dataset_id = http.post("/v1.0/myorg/datasets", json=body).json()["id"]
        push_url = http.get(f"/api/datasets/{dataset_id}").json()["pushUrl"]
    return dataset_id, push_url


def count_rows(server: ServerProcess, dataset_id: str) -> int:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        return int(http.get(f"/api/datasets/{dataset_id}").json()["tables"][0]["rowCount"])


def bench_bridge(broker: Broker, server: ServerProcess, work: Path, count: int) -> dict[str, Any]:
    dataset_id, push_url = create_dataset(server)
    make_session(broker, "bench-bridge")
    preload(broker, count)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pbistream", "bridge", "mqtt", "--broker", broker.url,
         "--topic", TOPIC, "--client-id", "bench-bridge", "--to", push_url,
         "--token", server.token, "--spool", str(work / "bridge.spool"),
         "--topic-field", "device=1", "--no-pacing", "--count", str(count),
         "--close-timeout", "600", "--status-every", "60", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )  # fmt: skip
    wall = time.perf_counter() - start
    stopped = [json.loads(x) for x in done.stdout.splitlines() if '"stopped"' in x][-1]
    stored = count_rows(server, dataset_id)
    return {
        "messages": count,
        "seconds": stopped["seconds"],
        "rate": count / stopped["seconds"],
        "commits": stopped["commits"],
        "messages_per_commit": count / max(1, stopped["commits"]),
        "wall_seconds_to_all_delivered": wall,
        "delivered": stopped["delivered"],
        "stored": stored,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbistream-bench-bridge-") as tmp:
        work = Path(tmp)
        broker = Broker(work, binary="mosquitto").start()
        server = ServerProcess(work / "server", args=["--limits", "off"]).start()
        try:
            sub = bench_mosquitto_sub(broker, args.messages)
            bridge = bench_bridge(broker, server, work, args.messages)
        finally:
            server.stop()
            broker.stop()
    ratio = bridge["rate"] / sub["rate"]
    print(f"{'':34} {'mosquitto_sub > /dev/null':>26} {'pbistream bridge mqtt':>22}")
    label = "QoS 1 messages/s (drain N queued)"
    print(f"{label:34} {sub['rate']:>26,.0f} {bridge['rate']:>22,.0f}")
    print(f"{'ratio to the broker':34} {1:>26.2f} {ratio:>22.2f}")
    print(
        f"messages per spool commit: {bridge['messages_per_commit']:,.0f}; "
        f"{bridge['stored']:,} of {args.messages:,} rows stored on the server, "
        f"{bridge['wall_seconds_to_all_delivered']:.1f} s from start to all delivered"
    )
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "mosquitto_sub": sub,
        "bridge": bridge,
        "ratio": ratio,
    }  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if bridge["stored"] == args.messages else 1


if __name__ == "__main__":
    raise SystemExit(main())
