"""Alerts on the real server over loopback, notifying a real local HTTP receiver."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest
from receiver import Receiver

from pbistream.server.alerts.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from pbistream.testing import RunningServer, ServerProcess

FIELDS = {"temperature": "Number", "device": "Text"}


def make_dataset(server: RunningServer | ServerProcess, api: httpx.Client) -> tuple[str, str]:
    body = {
        "name": "Sensors",
        "defaultMode": "PushStreaming",
        "tables": [
            {
                "name": "RealTimeData",
                "columns": [
                    {"name": "temperature", "dataType": "Double"},
                    {"name": "device", "dataType": "String"},
                ],
            }
        ],
    }
    created = api.post("/v1.0/myorg/datasets", json=body)
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    push_url = api.get(f"/api/datasets/{dataset_id}").json()["pushUrl"]
    return dataset_id, push_url


def push(push_url: str, *rows: dict) -> None:
    answer = httpx.post(push_url, json=list(rows), timeout=10)
    assert answer.status_code == 200, answer.text


def wait_for_events(api: httpx.Client, n: int, timeout: float = 10.0, **params) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        events = [
            e
            for e in api.get("/api/alerts/events", params=params).json()["value"]
            if e["state"] == "fired"
        ]
        if len(events) >= n or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


@pytest.fixture
def client(pbistream_server: RunningServer):
    with pbistream_server.client(timeout=10) as c:
        yield c


def test_a_rule_fires_within_a_second_of_the_crossing_push(pbistream_server, client, receiver):
    dataset_id, push_url = make_dataset(pbistream_server, client)
    created = client.post(
        "/api/alerts",
        json={
            "dataset": dataset_id,
            "table": "RealTimeData",
            "field": "temperature",
            "op": ">",
            "threshold": 30,
            "webhook": receiver.url,
        },
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["id"] and rule["secret"]
    push(push_url, {"temperature": 25.0})
    pushed_at = time.time()
    push(push_url, {"temperature": 31.5, "device": "a"})
    [post] = receiver.wait_for(1, timeout=5)
    raw = receiver.posts[0]
    assert raw["at"] - pushed_at < 1.0
    assert post["rule"] == rule["id"]
    assert post["dataset"] == dataset_id
    assert post["field"] == "temperature"
    assert post["value"] == 31.5
    datetime.fromisoformat(post["firedAt"].replace("Z", "+00:00"))
    headers = {k.lower(): v for k, v in raw["headers"].items()}
    assert verify(
        rule["secret"],
        headers[TIMESTAMP_HEADER.lower()],
        raw["body"],
        headers[SIGNATURE_HEADER.lower()],
    )
    assert not verify(
        "wrong", headers[TIMESTAMP_HEADER.lower()], raw["body"], headers[SIGNATURE_HEADER.lower()]
    )
    # The rule's state, the history and /metrics all say so.
    assert client.get(f"/api/alerts/{rule['id']}").json()["firing"] is True
    assert wait_for_events(client, 1)[0]["value"] == 31.5
    metrics = client.get("/metrics").text
    assert f'pbistream_alert_firing{{rule="{rule["id"]}",dataset="{dataset_id}"}} 1' in metrics


def test_it_does_not_fire_again_until_it_clears(pbistream_server, client, receiver):
    dataset_id, push_url = make_dataset(pbistream_server, client)
    client.post(
        "/api/alerts",
        json={
            "dataset": dataset_id,
            "table": "RealTimeData",
            "field": "temperature",
            "op": ">=",
            "threshold": 30,
            "webhook": receiver.url,
        },
    ).raise_for_status()
    push(push_url, {"temperature": 30.0})
    receiver.wait_for(1)
    for value in (35.0, 40.0, 31.0):
        push(push_url, {"temperature": value})
    push(push_url, {"temperature": 10.0})  # clears
    push(push_url, {"temperature": 33.0})  # crosses again
    posts = receiver.wait_for(2)
    time.sleep(0.5)  # nothing more may arrive
    assert [p["value"] for p in receiver.accepted()] == [30.0, 33.0]
    assert len(posts) == 2


def test_per_device_rules_and_many_rows_in_one_post(pbistream_server, client, receiver):
    dataset_id, push_url = make_dataset(pbistream_server, client)
    client.post(
        "/api/alerts",
        json={
            "dataset": dataset_id,
            "table": "RealTimeData",
            "field": "temperature",
            "op": ">",
            "threshold": 50,
            "category": "device",
            "webhook": receiver.url,
            "format": "json",
        },
    ).raise_for_status()
    rows = [{"temperature": 20.0 + i % 10, "device": f"d{i % 5}"} for i in range(500)]
    rows[123]["temperature"] = 60.0  # d3 crosses once
    rows[124]["temperature"] = 70.0  # d4 crosses once
    push(push_url, *rows)
    posts = receiver.wait_for(2)
    time.sleep(0.3)
    assert sorted((p["categoryValue"], p["value"]) for p in receiver.accepted()) == [
        ("d3", 60.0),
        ("d4", 70.0),
    ]
    assert len(posts) == 2


def test_the_silence_rule_catches_a_quiet_device(pbistream_server, client, receiver):
    dataset_id, push_url = make_dataset(pbistream_server, client)
    rule = client.post(
        "/api/alerts",
        json={
            "dataset": dataset_id,
            "table": "RealTimeData",
            "field": "temperature",
            "silenceSeconds": 1,
            "webhook": receiver.url,
        },
    ).json()
    push(push_url, {"temperature": 20.0})
    started = time.time()
    [post] = receiver.wait_for(1, timeout=6)
    assert post["rule"] == rule["id"] and post["kind"] == "silence"
    assert receiver.posts[0]["at"] - started >= 0.9
    push(push_url, {"temperature": 21.0})  # the device is back: cleared
    deadline = time.monotonic() + 5
    while client.get(f"/api/alerts/{rule['id']}").json()["firing"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(f"/api/alerts/{rule['id']}").json()["firing"] is False


def test_teams_and_slack_templates(pbistream_server, client, receiver):
    dataset_id, push_url = make_dataset(pbistream_server, client)
    for fmt in ("teams", "slack"):
        client.post(
            "/api/alerts",
            json={
                "dataset": dataset_id,
                "field": "temperature",
                "op": ">",
                "threshold": 0,
                "format": fmt,
                "webhook": receiver.url,
            },
        ).raise_for_status()
    push(push_url, {"temperature": 5.0})
    posts = receiver.wait_for(2)
    teams = next(p for p in posts if p.get("type") == "message")
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "temperature" in str(card["content"]["body"])
    slack = next(p for p in posts if "text" in p)
    assert "pbistream alert" in slack["text"] and "5.0" in slack["text"]


def test_rules_are_listed_edited_and_deleted(pbistream_server, client):
    dataset_id, _ = make_dataset(pbistream_server, client)
    rule = client.post(
        "/api/alerts",
        json={
            "dataset": dataset_id,
            "table": "RealTimeData",
            "field": "temperature",
            "op": ">",
            "threshold": 30,
        },
    ).json()
    listed = client.get("/api/alerts").json()["value"]
    assert [r["id"] for r in listed] == [rule["id"]]
    assert "secret" not in listed[0]
    patched = client.patch(f"/api/alerts/{rule['id']}", json={"threshold": 40})
    assert patched.status_code == 200, patched.text
    assert patched.json()["threshold"] == 40 and patched.json()["op"] == ">"
    assert client.delete(f"/api/alerts/{rule['id']}").status_code == 204
    assert client.get("/api/alerts").json()["value"] == []
    assert client.get(f"/api/alerts/{rule['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"table": "RealTimeData", "field": "nope", "op": ">", "threshold": 1}, 400, "nope"),
        ({"table": "Other", "field": "temperature", "op": ">", "threshold": 1}, 400, "Other"),
        ({"table": "RealTimeData", "field": "temperature", "op": "=>", "threshold": 1}, 400, "op"),
        ({"table": "RealTimeData", "field": "temperature", "op": ">"}, 400, "threshold"),
    ],
)
def test_bad_rules_get_a_400_naming_the_problem(pbistream_server, client, body, status, needle):
    dataset_id, _ = make_dataset(pbistream_server, client)
    answer = client.post("/api/alerts", json={"dataset": dataset_id, **body})
    assert answer.status_code == status
    assert needle in answer.json()["error"]["message"]


def test_unknown_dataset_is_404_and_no_token_is_401(pbistream_server, client):
    answer = client.post(
        "/api/alerts", json={"dataset": "nope", "field": "x", "op": ">", "threshold": 1}
    )
    assert answer.status_code == 404
    assert httpx.get(f"{pbistream_server.url}/api/alerts").status_code == 401


def test_deleting_the_dataset_deletes_its_rules(pbistream_server, client):
    dataset_id, _ = make_dataset(pbistream_server, client)
    client.post(
        "/api/alerts",
        json={"dataset": dataset_id, "field": "temperature", "op": ">", "threshold": 1},
    ).raise_for_status()
    assert client.delete(f"/v1.0/myorg/datasets/{dataset_id}").status_code == 200
    assert client.get("/api/alerts").json()["value"] == []


def test_webhook_retries_survive_a_server_restart(tmp_path):
    receiver = Receiver()
    receiver.status = 503
    server = ServerProcess(tmp_path / "data").start()
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client:
            dataset_id, push_url = make_dataset(server, client)
            client.post(
                "/api/alerts",
                json={
                    "dataset": dataset_id,
                    "field": "temperature",
                    "op": ">",
                    "threshold": 30,
                    "webhook": receiver.url,
                },
            ).raise_for_status()
            push(push_url, {"temperature": 99.0})
            deadline = time.monotonic() + 10
            while not receiver.posts and time.monotonic() < deadline:
                time.sleep(0.05)
            assert receiver.posts, "the first attempt never came"
            server.kill()  # kill -9 with the delivery still pending
            receiver.status = 200
            server.start()
            # A retry in flight at the kill waits out its claim's lease (15 s) first.
            [post] = receiver.wait_for(1, timeout=40)
            assert post["value"] == 99.0
            events = wait_for_events(client, 1)
            deadline = time.monotonic() + 5
            while events[0]["delivery"] != "sent" and time.monotonic() < deadline:
                time.sleep(0.1)
                events = wait_for_events(client, 1)
            assert events[0]["delivery"] == "sent" and events[0]["attempts"] >= 2
    finally:
        server.stop()
        receiver.close()


def test_a_member_token_limited_to_a_dataset_handles_only_that_datasets_rules(
    pbistream_server, client
):
    """A rule's webhook URL is often a secret: a scoped token reaches its datasets' rules only."""
    mine, mine_push = make_dataset(pbistream_server, client)
    other, other_push = make_dataset(pbistream_server, client)
    hidden = client.post(
        "/api/alerts",
        json={
            "dataset": other,
            "field": "temperature",
            "op": ">",
            "threshold": 1,
            "webhook": "https://hooks.example.invalid/secret-path",
        },
    ).json()
    token = client.post(
        "/api/tokens", json={"role": "member", "datasets": [mine], "name": "line 1"}
    ).json()["token"]
    with httpx.Client(
        base_url=pbistream_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as scoped:
        created = scoped.post(
            "/api/alerts", json={"dataset": mine, "field": "temperature", "op": ">", "threshold": 1}
        )
        assert created.status_code == 201, created.text
        own = created.json()["id"]
        refused = scoped.post(
            "/api/alerts",
            json={"dataset": other, "field": "temperature", "op": "<", "threshold": 0},
        )
        assert refused.status_code == 404
        listed = scoped.get("/api/alerts")
        assert [r["id"] for r in listed.json()["value"]] == [own]
        assert "secret-path" not in listed.text
        assert scoped.get(f"/api/alerts/{hidden['id']}").status_code == 404
        moved = scoped.patch(f"/api/alerts/{own}", json={"dataset": other})
        assert moved.status_code == 404
        assert scoped.patch(f"/api/alerts/{hidden['id']}", json={"threshold": 5}).status_code == 404
        assert scoped.delete(f"/api/alerts/{hidden['id']}").status_code == 404
        push(mine_push, {"temperature": 2.0})
        push(other_push, {"temperature": 2.0})
        assert len(wait_for_events(client, 2)) == 2  # both fired, seen by the admin
        events = scoped.get("/api/alerts/events").json()["value"]
        assert {e["rule"] for e in events} == {own}
        assert scoped.patch(f"/api/alerts/{own}", json={"threshold": 5}).status_code == 200
        assert scoped.delete(f"/api/alerts/{own}").status_code == 204
    assert [r["id"] for r in client.get("/api/alerts").json()["value"]] == [hidden["id"]]
