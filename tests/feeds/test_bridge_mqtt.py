"""`pbistream bridge mqtt` against a real Mosquitto and a real `pbistream serve`.

Each test starts its own broker on a free port (no queue cap, see broker.py) and runs
the bridge as a real process, killed with real signals.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from feed_helpers import Feed, stored_rows, wait_for
from mqtt_broker import Broker, mosquitto_or_skip

from pbistream.testing import RunningServer

paho = pytest.importorskip("paho.mqtt.client", reason="the mqtt extra (paho-mqtt) is needed")

FIELDS = {"n": "Int64", "device": "Text", "value": "Number"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path, binary=mosquitto_or_skip()).start()
    yield server
    server.stop()


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(limits=False)


class Publisher:
    """A QoS 1 publisher that waits for the broker's PUBACK of every message."""

    def __init__(
        self, broker: Broker, *, cafile: Path | None = None, user: tuple[str, str] | None = None
    ) -> None:
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"pub-{time.monotonic_ns()}",
            protocol=paho.MQTTv5,
        )
        if cafile is not None:
            self.client.tls_set(ca_certs=str(cafile))
        if user is not None:
            self.client.username_pw_set(*user)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> Any:
        return self.client.publish(topic, payload, qos=qos)

    def publish_many(self, messages: list[tuple[str, bytes]], rate: float | None = None) -> None:
        infos = []
        start = time.monotonic()
        for count, (topic, payload) in enumerate(messages):
            infos.append(self.client.publish(topic, payload, qos=1))
            if rate and count % 100 == 99:
                ahead = start + (count + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the publisher, not waiting for a condition
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bridge_args(broker: Broker, url: str, spool: Path, client_id: str, *extra: str) -> list[str]:
    return [
        "bridge", "mqtt",
        "--broker", broker.url,
        "--topic", "plant/+/reading",
        "--to", url,
        "--spool", str(spool),
        "--client-id", client_id,
        "--topic-field", "device=1",
        "--no-pacing",
        "--status-every", "0.2",
        "--json",
        *extra,
    ]  # fmt: skip


def readings(start: int, stop: int, devices: int = 5) -> list[tuple[str, bytes]]:
    return [
        (f"plant/dev{n % devices}/reading", json.dumps({"n": n, "value": n / 10}).encode())
        for n in range(start, stop)
    ]


def settled(feed: Feed, server: RunningServer, dataset_id: str, distinct: int) -> list[Any]:
    """Wait until ``distinct`` different n are stored and the bridge has nothing pending."""

    def done() -> list[Any] | None:
        status = feed.last("status")
        if status is None or status["pending"]:
            return None
        rows = stored_rows(server, dataset_id)
        return rows if len({row["n"] for row in rows}) >= distinct else None

    return wait_for(done, 90, f"{distinct} distinct rows stored")  # type: ignore[no-any-return]


def test_sigkill_mid_stream_and_restart_loses_nothing(
    broker: Broker, server: RunningServer, tmp_path: Path
) -> None:
    dataset = server.create_dataset(FIELDS, mode="PushStreaming")
    args = bridge_args(broker, dataset["push_url"], tmp_path / "b.spool", "kill-test")
    feed = Feed(args, tmp_path, "bridge")
    feed.wait_event("subscribed")
    publisher = Publisher(broker)
    messages = readings(0, 10_000)
    sender = threading.Thread(target=publisher.publish_many, args=(messages, 4_000.0))
    sender.start()
    killed_at = wait_for(
        lambda: (s := feed.last("status")) and s["acked"] >= 2_500 and s["acked"], 60, "2,500 acks"
    )
    feed.kill()
    assert killed_at < 10_000, "the bridge must be killed mid-stream"
    sender.join(90)
    publisher.close()

    again = Feed(args, tmp_path, "bridge2")
    again.wait_event("connected", session_present=True)
    rows = settled(again, server, dataset["id"], 10_000)
    again.stop()
    counts = Counter(row["n"] for row in rows)
    assert set(counts) == set(range(10_000))  # nothing lost
    duplicates = len(rows) - 10_000
    print(f"\nSIGKILL after {killed_at:,} acks: {duplicates} duplicate rows of 10,000")
    # At most what was committed but not yet acknowledged: one commit group, bounded
    # by the receive maximum (5,000); in practice a handful or none.
    assert duplicates <= 5_000
    assert {row["device"] for row in rows} == {f"dev{i}" for i in range(5)}
    assert all(row["device"] == f"dev{row['n'] % 5}" for row in rows)


def test_two_bridges_in_a_group_split_the_stream(
    broker: Broker, server: RunningServer, tmp_path: Path
) -> None:
    dataset = server.create_dataset(FIELDS, mode="PushStreaming")
    feeds = [
        Feed(
            bridge_args(
                broker,
                dataset["push_url"],
                tmp_path / f"g{i}.spool",
                f"member-{i}",
                "--group",
                "plants",
            ),
            tmp_path,
            f"member{i}",
        )
        for i in range(2)
    ]
    for feed in feeds:
        feed.wait_event("subscribed", subscription="$share/plants/plant/+/reading")
    publisher = Publisher(broker)
    publisher.publish_many(readings(0, 2_000))
    publisher.close()

    def shares() -> list[int] | None:
        acked = [(f.last("status") or {}).get("acked", 0) for f in feeds]
        return acked if sum(acked) >= 2_000 else None

    acked = wait_for(shares, 60, "2,000 messages acknowledged by the group")
    rows = wait_for(
        lambda: len(r := stored_rows(server, dataset["id"])) >= 2_000 and r, 60, "2,000 rows"
    )
    for feed in feeds:
        assert feed.stop() == 0, feed.log()
    assert sum(acked) == 2_000 and all(share > 0 for share in acked), acked
    assert sorted(row["n"] for row in rows) == list(range(2_000))  # exact: none twice


def test_broker_restart_mid_stream(tmp_path: Path, server: RunningServer) -> None:
    broker = Broker(tmp_path, persistence=True, binary=mosquitto_or_skip()).start()
    try:
        dataset = server.create_dataset(FIELDS, mode="PushStreaming")
        args = bridge_args(broker, dataset["push_url"], tmp_path / "r.spool", "restart-test")
        feed = Feed(args, tmp_path, "bridge")
        feed.wait_event("subscribed")
        publisher = Publisher(broker)
        publisher.publish_many(readings(0, 1_000))
        feed.wait_event("status", acked=1_000)
        # Mid-stream for certain: the bridge is frozen with messages sent to it and not
        # acknowledged (in its socket) and more queued on the broker, when it restarts.
        feed.process.send_signal(signal.SIGSTOP)
        publisher.publish_many(readings(1_000, 3_000))
        publisher.close()
        broker.restart()  # the session and its messages survive (persistence)
        feed.process.send_signal(signal.SIGCONT)
        feed.wait_event("disconnected")
        feed.wait_event("connected", session_present=True)
        publisher = Publisher(broker)
        publisher.publish_many(readings(3_000, 5_000))
        publisher.close()
        rows = settled(feed, server, dataset["id"], 5_000)
        assert feed.stop() == 0, feed.log()
        assert {row["n"] for row in rows} == set(range(5_000))
        # What the frozen bridge read from the old connection it commits (the broker
        # might have lost them) but can no longer acknowledge: the broker sends them
        # again. At least once; the count is reported, bounded by the in-flight window.
        print(f"\nbroker restart: {len(rows) - 5_000} duplicate rows of 5,000")
        assert len(rows) - 5_000 <= 2_000
        assert len(feed.events("connected")) >= 2
    finally:
        broker.stop()


def test_malformed_payloads_are_dead_lettered_while_good_ones_flow(
    broker: Broker, server: RunningServer, tmp_path: Path
) -> None:
    dataset = server.create_dataset(FIELDS, mode="PushStreaming")
    spool = tmp_path / "m.spool"
    args = bridge_args(
        broker, dataset["push_url"], spool, "malformed-test", "--value-field", "value"
    )
    feed = Feed(args, tmp_path, "bridge")
    feed.wait_event("subscribed")
    publisher = Publisher(broker)
    good = 0
    bad = {
        b"{not json": "not JSON",
        b'"a string"': "a string is not a row",
        b"[1, 2]": "element 0 of the array is a number",
        b"": "the payload is empty",
        b"\xff\xfe": "not JSON",
        b"[]": "an empty JSON array",
    }
    messages: list[tuple[str, bytes]] = []
    for n in range(300):
        if n % 50 == 7:
            for payload in bad:
                messages.append(("plant/devx/reading", payload))
        if n % 3 == 0:
            messages.append((f"plant/dev{n % 5}/reading", json.dumps({"n": n}).encode()))
            good += 1
        elif n % 3 == 1:  # an array of two rows
            body = [{"n": n, "value": 1.5}, {"n": n + 1000, "value": 2.5}]
            messages.append((f"plant/dev{n % 5}/reading", json.dumps(body).encode()))
            good += 2
        else:  # a bare number: needs --value-field
            messages.append((f"plant/dev{n % 5}/reading", str(n / 4).encode()))
            good += 1
    publisher.publish_many(messages)
    publisher.close()
    total_bad = 6 * len(bad)
    feed.wait_event("status", acked=len(messages), pending=0, timeout=60)
    assert feed.stop() == 0, feed.log()
    rows = stored_rows(server, dataset["id"])
    assert len(rows) == good
    assert sum(1 for row in rows if "n" not in row) == 100  # the bare numbers
    letters = [
        json.loads(line) for line in Path(f"{spool}.deadletter.jsonl").read_text().splitlines()
    ]
    assert len(letters) == total_bad
    assert all(letter["row"]["topic"] == "plant/devx/reading" for letter in letters)
    for payload, reason in bad.items():
        matching = [letter for letter in letters if reason in letter["message"]]
        assert matching, (payload, reason, letters[:3])
    assert all(letter["message"].startswith("topic plant/devx/reading: ") for letter in letters)
    stopped = feed.last("stopped")
    assert stopped is not None and stopped["rejected"] == total_bad


def test_without_a_spool_the_default_is_derived_from_the_client_id(
    broker: Broker, server: RunningServer, tmp_path: Path
) -> None:
    dataset = server.create_dataset({"value": "Number"}, mode="Push")
    # A REST table URL with a token: the same client, the REST sink.
    url = f"{server.url}/v1.0/myorg/datasets/{dataset['id']}/tables/RealTimeData/rows"
    args = [
        "bridge", "mqtt", "--broker", broker.url, "--topic", "t/#", "--to", url,
        "--token", server.token,
        "--client-id", "default-spool", "--value-field", "value", "--count", "3", "--json",
        "--no-pacing",
    ]  # fmt: skip
    feed = Feed(args, tmp_path, "bridge")
    spool_event = feed.wait_event("spool")
    assert spool_event["spool"].startswith(str(tmp_path / "state" / "mqtt-default-spool"))
    feed.wait_event("subscribed")
    publisher = Publisher(broker)
    publisher.publish_many([("t/a", b"1"), ("t/b", b"2.5"), ("t/c", b"3")])
    publisher.close()
    assert feed.process.wait(60) == 0, feed.log()
    assert feed.last("stopped")["acked"] == 3  # type: ignore[index]
    assert Path(spool_event["spool"]).exists()
    assert sorted(r["value"] for r in stored_rows(server, dataset["id"])) == [1, 2.5, 3]


def test_tls_and_a_password(server: RunningServer, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent / "client"))
    from fake_entra import self_signed

    key_pem, cert_pem, _ = self_signed("127.0.0.1", ip="127.0.0.1")
    cert, key = tmp_path / "broker.pem", tmp_path / "broker.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    broker = Broker(
        tmp_path, binary=mosquitto_or_skip(), users={"bridge": "pa55word"}, tls=(cert, key)
    ).start()
    try:
        url = server.create_streaming_dataset({"value": "Number"}, historic=True)
        common = [
            "bridge", "mqtt", "--broker", broker.url, "--cafile", str(cert), "--topic", "t/#",
            "--to", url, "--username", "bridge", "--value-field", "value", "--no-pacing",
            "--json", "--status-every", "0.2",
        ]  # fmt: skip
        wrong = Feed(
            [*common, "--client-id", "wrong", "--spool", str(tmp_path / "w.spool")],
            tmp_path,
            "wrong",
            env={"PBISTREAM_MQTT_PASSWORD": "not-it"},
        )
        refused = wrong.wait_event("connect_refused")
        assert "Not authorized" in refused["reason"] or "Bad user" in refused["reason"]
        assert wrong.process.poll() is None  # it keeps trying, with backoff
        assert wrong.stop() == 0
        assert "not-it" not in wrong.out.read_text() + wrong.err.read_text()

        feed = Feed(
            [*common, "--client-id", "right", "--spool", str(tmp_path / "r.spool"),
             "--count", "2"],
            tmp_path,
            "right",
            env={"PBISTREAM_MQTT_PASSWORD": "pa55word"},
        )  # fmt: skip
        feed.wait_event("subscribed")
        publisher = Publisher(broker, cafile=cert, user=("bridge", "pa55word"))
        publisher.publish_many([("t/a", b"1.5"), ("t/b", b"2.5")])
        publisher.close()
        assert feed.process.wait(60) == 0, feed.log()
        assert feed.last("stopped")["acked"] == 2  # type: ignore[index]
    finally:
        broker.stop()


def test_messages_are_acknowledged_while_the_target_is_down_and_delivered_later(
    broker: Broker, tmp_path: Path
) -> None:
    import httpx

    from pbistream.testing import ServerProcess

    upstream = ServerProcess(tmp_path / "server", args=["--limits", "off"]).start()
    try:
        with httpx.Client(base_url=upstream.url, headers=upstream.headers, timeout=30) as http:
            body = {
                "name": "down",
                "defaultMode": "PushStreaming",
                "tables": [{"name": "RealTimeData", "columns": [
                    {"name": "n", "dataType": "Int64"}, {"name": "device", "dataType": "String"},
                    {"name": "value", "dataType": "Double"},
                ]}],
            }  # fmt: skip
            dataset_id = http.post("/v1.0/myorg/datasets", json=body).json()["id"]
            push_url = http.get(f"/api/datasets/{dataset_id}").json()["pushUrl"]
        upstream.stop()  # Power BI, or the site's server, is away
        args = bridge_args(broker, push_url, tmp_path / "d.spool", "down-test")
        feed = Feed(args, tmp_path, "bridge")
        feed.wait_event("subscribed")
        publisher = Publisher(broker)
        publisher.publish_many(readings(0, 500))
        publisher.close()
        # Every message is acknowledged to the broker: its row is safe in the spool.
        feed.wait_event("status", acked=500, pending=500)
        upstream.start()

        def stored() -> list[int] | None:
            with httpx.Client(base_url=upstream.url, headers=upstream.headers) as http:
                rows = http.get(
                    f"/api/datasets/{dataset_id}/rows",
                    params={"table": "RealTimeData", "limit": 10_000, "order": "asc"},
                ).json()["rows"]
            numbers = [row["data"]["n"] for row in rows]
            return numbers if len(numbers) >= 500 else None

        numbers = wait_for(stored, 60, "500 rows delivered after the server came back")
        assert feed.stop() == 0, feed.log()
        assert sorted(numbers) == list(range(500))
    finally:
        upstream.stop()
