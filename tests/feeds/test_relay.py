"""The relay: a local dataset forwarded to an upstream server by `pbistream serve`.

Real processes: the relay is a `pbistream serve` started by the CLI (its forwarder
runs there), the upstream another one with Power BI's limits on, and the relay is
SIGKILLed mid-run.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from pbistream import BatchOptions, Client
from pbistream.cli import main
from pbistream.exceptions import SpoolFullError
from pbistream.feeds.forward import CURSOR_KEY, CursorSpool
from pbistream.testing import RunningServer, ServerProcess, free_port

COLUMNS = [
    {"name": "device", "dataType": "String"},
    {"name": "n", "dataType": "Int64"},
    {"name": "value", "dataType": "Double"},
]


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until ``predicate()`` is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _create(base: str, headers: dict[str, str], mode: str, table: str = "RealTimeData") -> str:
    body = {"name": "Fleet", "defaultMode": mode, "tables": [{"name": table, "columns": COLUMNS}]}
    response = httpx.post(f"{base}/v1.0/myorg/datasets", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _all_rows(base: str, headers: dict[str, str], dataset_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = 0
    while True:
        page = httpx.get(
            f"{base}/api/datasets/{dataset_id}/rows",
            params={"after": after, "limit": 10_000},
            headers=headers,
        ).json()
        rows += [r["data"] for r in page["rows"]]
        if page["next"] is None:
            return rows
        after = page["next"]


def _count(base: str, headers: dict[str, str], dataset_id: str) -> int:
    return int(httpx.get(f"{base}/api/datasets/{dataset_id}", headers=headers).json()["rowCount"])


def _metric_sum(text: str, name: str, *, match: str = "") -> int:
    total = 0
    for line in text.splitlines():
        if line.startswith(name) and match in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(upstream with limits on at time scale 60, relay with limits off), both real processes."""
    upstream = ServerProcess(tmp_path / "upstream", args=["--time-scale", "60"])
    relay = ServerProcess(tmp_path / "relay", args=["--limits", "off"])
    upstream.start()
    try:
        relay.start()
        yield upstream, relay
    finally:
        relay.stop()
        upstream.stop()


async def _devices(
    push_url: str, devices: int, period: float, seconds: float, kill_at: float, relay: ServerProcess
) -> tuple[set[tuple[str, int]], int]:
    """Each device POSTs one row every ``period`` s; the relay is SIGKILLed and restarted.

    A POST that fails (the relay is down) is not retried: its row is simply not
    acknowledged. Returns the acknowledged (device, n) pairs and the POSTs made.
    """
    acked: set[tuple[str, int]] = set()
    posts = 0
    limits = httpx.Limits(max_connections=devices, max_keepalive_connections=devices)
    started = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=5.0) as http:

        async def device(name: str) -> None:
            nonlocal posts
            n = 0
            while (tick := started + n * period) < started + seconds:
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
                row = {"device": name, "n": n, "value": n / 10}
                posts += 1
                try:
                    response = await http.post(push_url, json=[row])
                    if response.status_code == 200:
                        acked.add((name, n))
                except httpx.TransportError:
                    pass  # the relay is down: this row was never acknowledged
                n += 1

        async def chaos() -> None:
            await asyncio.sleep(kill_at)
            relay.kill()
            await asyncio.to_thread(relay.start)

        await asyncio.gather(chaos(), *(device(f"dev{i:02d}") for i in range(devices)))
    return acked, posts


@pytest.mark.slow
def test_relay_delivers_every_acknowledged_row_once_across_a_kill_9(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    upstream, relay = servers
    up_id = _create(upstream.url, upstream.headers, "Push", table="Readings")
    local_id = _create(relay.url, relay.headers, "PushStreaming")
    target = f"{upstream.url}/v1.0/myorg/datasets/{up_id}/tables/Readings/rows"
    answer = httpx.put(
        f"{relay.url}/api/datasets/{local_id}/forward",
        json={"target": target, "token": upstream.token, "timeScale": 60},
        headers=relay.headers,
    )
    assert answer.status_code == 200, answer.text
    push_url = httpx.get(f"{relay.url}/api/datasets/{local_id}", headers=relay.headers).json()[
        "pushUrl"
    ]

    acked, device_posts = asyncio.run(
        _devices(push_url, devices=50, period=0.1, seconds=10.0, kill_at=5.0, relay=relay)
    )
    assert len(acked) > 2_000, "the devices could barely reach the relay"

    # Everything the relay stored (acknowledged or not) reaches the upstream.
    stored = len(_all_rows(relay.url, relay.headers, local_id))
    _wait_for(
        lambda: _count(upstream.url, upstream.headers, up_id) >= stored,
        60,
        f"{stored} rows upstream",
    )
    upstream_rows = _all_rows(upstream.url, upstream.headers, up_id)
    keys = [(r["device"], r["n"]) for r in upstream_rows]
    assert len(keys) == len(set(keys)), "a row reached the upstream twice"
    assert acked <= set(keys), f"{len(acked - set(keys))} acknowledged rows never arrived"
    assert len(keys) == stored

    metrics = httpx.get(f"{upstream.url}/metrics", headers=upstream.headers).text
    assert _metric_sum(metrics, "pbistream_throttled_total") == 0
    assert _metric_sum(metrics, "pbistream_http_requests_total", match='status="429"') == 0
    upstream_posts = _metric_sum(
        metrics, "pbistream_http_requests_total", match='route="/v1.0/myorg/datasets/'
    )
    # The fewest, largest POSTs: far fewer upstream than the devices made.
    assert upstream_posts * 20 < device_posts, (upstream_posts, device_posts)

    forward = httpx.get(f"{relay.url}/api/datasets/{local_id}", headers=relay.headers).json()[
        "forward"
    ]

    def settled() -> dict[str, Any] | None:
        answer = httpx.get(f"{relay.url}/api/datasets/{local_id}/forward", headers=relay.headers)
        state: dict[str, Any] | None = answer.json()["forward"]["state"]
        return state if state and state["pending"] == 0 else None

    # The state is a snapshot the forwarder posts every few tens of milliseconds.
    state = _wait_for(settled, 10, "the forward's state to show nothing pending")
    assert forward["auth"] == "token"
    assert state["running"] is True
    assert state["pending"] == 0
    assert state["rateLimited"] == 0
    assert state["cursor"] >= 1
    relay_metrics = httpx.get(f"{relay.url}/metrics", headers=relay.headers).text
    assert f'pbistream_forward_running{{dataset="{local_id}"}} 1' in relay_metrics
    assert f'pbistream_forward_delivered_rows_total{{dataset="{local_id}"}}' in relay_metrics
    # The upstream token is kept by the relay but never shown or logged.
    assert upstream.token not in json.dumps(forward)
    assert upstream.token not in relay.log_text()


def _cli(relay: ServerProcess, *args: str) -> Result:
    env = {"PBISTREAM_SERVER": relay.url, "PBISTREAM_TOKEN": relay.token}
    return CliRunner().invoke(main, ["dataset", "forward", *args], env=env)


def test_forward_command_sets_shows_and_stops_the_forward(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    upstream = server_factory(time_scale=60)
    relay = ServerProcess(tmp_path / "relay", args=["--limits", "off"]).start()
    try:
        up_id = _create(upstream.url, upstream.headers, "PushStreaming")
        up_push = httpx.get(f"{upstream.url}/api/datasets/{up_id}", headers=upstream.headers)
        local_id = _create(relay.url, relay.headers, "PushStreaming")
        push_url = httpx.get(f"{relay.url}/api/datasets/{local_id}", headers=relay.headers).json()[
            "pushUrl"
        ]
        before = httpx.post(push_url, json=[{"device": "old", "n": 0, "value": 0}])
        assert before.status_code == 200  # stored before the forward: not forwarded

        # A Push URL target (its key is a secret too).
        target = up_push.json()["pushUrl"]
        result = _cli(relay, local_id, "--to", target, "--time-scale", "60")
        assert result.exit_code == 0, result.output
        assert f"Forwarding dataset {local_id}" in result.output
        assert "key=REDACTED" in result.output
        key = re.search(r"key=([^&\s]+)", target)
        assert key is not None and key.group(1) not in result.output

        for n in range(5):
            assert httpx.post(push_url, json=[{"device": "d", "n": n, "value": 1}]).is_success
        _wait_for(lambda: _count(upstream.url, upstream.headers, up_id) == 5, 30, "5 rows upstream")

        shown = _wait_for(
            lambda: (
                (r := _cli(relay, local_id, "--json")).exit_code == 0
                and (answer := json.loads(r.output))["forward"]["state"]
                and answer["forward"]["state"]["delivered"] == 5
                # A snapshot: delivered is posted on the upstream's answer, pending on
                # the forwarder's next look (tens of ms later), so wait for both.
                and answer["forward"]["state"]["pending"] == 0
                and answer
            ),
            15,
            "the state to show 5 delivered rows and none pending",
        )
        assert shown["forward"]["state"]["pending"] == 0
        human = _cli(relay, local_id)
        assert "Delivered   5 rows" in human.output, human.output
        env = {"PBISTREAM_SERVER": relay.url, "PBISTREAM_TOKEN": relay.token}
        show = CliRunner().invoke(main, ["dataset", "show", local_id], env=env)
        assert "Forward   RealTimeData to " in show.output and "5 delivered" in show.output

        off = _cli(relay, local_id, "--off")
        assert off.exit_code == 0, off.output
        assert f"Stopped forwarding dataset {local_id}" in off.output
        # Once the serve process drops the forwarder's state, the forwarder has stopped.
        _wait_for(
            lambda: (
                f'dataset="{local_id}"'
                not in httpx.get(f"{relay.url}/metrics", headers=relay.headers).text
            ),
            15,
            "the forwarder to stop",
        )
        for n in range(5, 8):
            assert httpx.post(push_url, json=[{"device": "d", "n": n, "value": 1}]).is_success
        assert _count(relay.url, relay.headers, local_id) == 9
        assert _count(upstream.url, upstream.headers, up_id) == 5
        assert json.loads(_cli(relay, local_id, "--json").output)["forward"] is None
        again = _cli(relay, local_id, "--off", "--json")
        assert json.loads(again.output)["stopped"] is False

        bad = _cli(relay, local_id, "--to", "ftp://example.invalid/rows")
        assert bad.exit_code == 1
        assert "'target'" in bad.output and "Traceback" not in bad.output
        both = _cli(relay, local_id, "--to", target, "--off")
        assert both.exit_code == 1 and "not both" in both.output
        missing = _cli(relay, "no-such-dataset", "--to", target)
        assert missing.exit_code == 1 and "not found" in missing.output
    finally:
        relay.stop()


def test_forward_api_checks_the_body_and_hides_credentials(
    server_factory: Callable[..., RunningServer],
) -> None:
    # forwards=False: the forwards set here name hosts that must not be contacted.
    server = server_factory(forwards=False)
    api = server.client(timeout=30.0)
    local = _create(server.url, server.headers, "PushStreaming")
    path = f"/api/datasets/{local}/forward"
    assert api.get(path).json() == {"id": local, "forward": None}
    assert api.get(f"/api/datasets/{local}").json()["forward"] is None

    def refused(body: Any, status: int = 400) -> str:
        response = api.put(path, json=body)
        assert response.status_code == status, response.text
        return str(response.json()["error"]["message"])

    assert "'target' is required" in refused({})
    assert "http(s) URL" in refused({"target": "file:///etc/passwd"})
    assert "unknown field 'tokn'" in refused({"target": "http://x.invalid/rows", "tokn": "t"})
    assert "not both" in refused(
        {
            "target": "http://x.invalid/rows",
            "token": "t",
            "tenantId": "a",
            "clientId": "b",
            "clientSecret": "c",
        }
    )
    assert "clientSecret" in refused({"target": "http://x.invalid/rows", "tenantId": "a"})
    assert "timeScale" in refused({"target": "http://x.invalid/rows", "timeScale": 0})
    assert "was not found" in refused({"target": "http://x.invalid/rows", "table": "Nope"}, 404)
    assert "JSON object" in refused(["http://x.invalid/rows"])
    assert api.put("/api/datasets/nope/forward", json={"target": "http://x/r"}).status_code == 404

    secret = "s3cr3t-client-secret"
    good = api.put(
        path,
        json={
            "target": "https://api.powerbi.com/v1.0/myorg/groups/g/datasets/d/tables/T/rows",
            "tenantId": "tenant",
            "clientId": "client",
            "clientSecret": secret,
        },
    )
    assert good.status_code == 200, good.text
    forward = good.json()["forward"]
    assert forward["auth"] == "entra" and forward["table"] == "RealTimeData"
    assert secret not in good.text and secret not in api.get(f"/api/datasets/{local}").text
    # Replacing the forward keeps its position; --off clears it.
    assert api.put(path, json={"target": "http://x.invalid/rows", "token": "tok"}).is_success
    assert api.get(path).json()["forward"]["auth"] == "token"
    assert api.delete(path).json() == {"id": local, "forward": None, "stopped": True}
    assert api.get(path).json()["forward"] is None


def test_cursor_spool_commits_the_cursor_with_the_rows(tmp_path: Path) -> None:
    spool = CursorSpool(tmp_path / "f.spool", max_rows=3)
    spool.stage(10)
    spool.put_many([b'{"a":1}', b'{"a":2}'])
    assert spool.cursor() == 10
    spool.stage(11)
    spool.put(b'{"a":3}')
    assert spool.cursor() == 11
    spool.stage(13)
    with pytest.raises(SpoolFullError):
        spool.put_many([b'{"a":4}', b'{"a":5}'])
    spool.unstage()
    spool.settle()  # nothing staged: nothing written
    assert spool.get_meta(CURSOR_KEY) == "11"
    assert spool.stats().ready == 3
    spool.close()


def test_a_down_target_shows_its_error_and_gets_every_row_once_it_is_up(tmp_path: Path) -> None:
    upstream = ServerProcess(tmp_path / "upstream", port=free_port(), args=["--time-scale", "60"])
    relay = ServerProcess(tmp_path / "relay", args=["--limits", "off"]).start()
    try:
        upstream.start()
        up_id = _create(upstream.url, upstream.headers, "Push")
        upstream.stop()  # down from here on
        local_id = _create(relay.url, relay.headers, "PushStreaming")
        push_url = httpx.get(f"{relay.url}/api/datasets/{local_id}", headers=relay.headers).json()[
            "pushUrl"
        ]
        target = f"{upstream.url}/v1.0/myorg/datasets/{up_id}/tables/RealTimeData/rows"
        result = _cli(relay, local_id, "--to", target, "--token", upstream.token)
        assert result.exit_code == 0, result.output
        for n in range(30):
            assert httpx.post(push_url, json=[{"device": "d", "n": n, "value": 1}]).is_success

        def state() -> dict[str, Any] | None:
            answer = httpx.get(f"{relay.url}/api/datasets/{local_id}", headers=relay.headers)
            found: dict[str, Any] | None = answer.json()["forward"]["state"]
            return found

        down = _wait_for(
            lambda: (s := state()) and s["lastError"] and s["pending"] == 30 and s, 30, "an error"
        )
        assert down["delivered"] == 0
        assert "Connect" in down["lastError"]
        human = _cli(relay, local_id)
        assert "Last error" in human.output and "Pending     30 rows" in human.output

        upstream.start()  # back up: the rows follow, once each
        _wait_for(lambda: _count(upstream.url, upstream.headers, up_id) == 30, 60, "30 rows up")
        _wait_for(lambda: (s := state()) and s["pending"] == 0 and s["delivered"] == 30, 15, "0")
        rows = _all_rows(upstream.url, upstream.headers, up_id)
        assert sorted(r["n"] for r in rows) == list(range(30))
    finally:
        relay.stop()
        upstream.stop()


def test_the_test_servers_forward_like_serve(server_factory: Callable[..., RunningServer]) -> None:
    upstream = server_factory(time_scale=60)
    relay = server_factory(limits=False)
    up_id = _create(upstream.url, upstream.headers, "Push", table="Readings")
    local = relay.create_dataset({"device": "Text", "n": "Int64", "value": "Number"})
    target = f"{upstream.url}/v1.0/myorg/datasets/{up_id}/tables/Readings/rows"
    with relay.client(timeout=30.0) as api:
        answer = api.put(
            f"/api/datasets/{local['id']}/forward",
            json={"target": target, "token": upstream.token, "timeScale": 60},
        )
        assert answer.status_code == 200, answer.text
        rows = [{"device": "a", "n": n, "value": 0.5} for n in range(10)]
        assert httpx.post(local["push_url"], json=rows).is_success

        def delivered() -> dict[str, Any] | None:
            state: dict[str, Any] | None = api.get(f"/api/datasets/{local['id']}").json()[
                "forward"
            ]["state"]
            done = state and state["delivered"] == 10 and state["pending"] == 0
            return state if done else None

        state = _wait_for(delivered, 30, "10 rows delivered")
    assert state["upstreamPosts"] >= 1 and state["lastError"] is None
    assert upstream.count_rows(up_id, "Readings") == 10


def test_many_client_devices_on_one_relay_push_url_lose_no_row_and_reach_upstream_once(
    server_factory: Callable[..., RunningServer],
) -> None:
    # Each device is a pbistream.Client with its default sequence numbers: the relay's
    # table keeps one last number, so devices skipped as old must resend above it,
    # and two skipped at the same number must not both count the second send as stored.
    upstream = server_factory(time_scale=60)
    relay = server_factory(limits=False)
    up_id = _create(upstream.url, upstream.headers, "Push", table="Readings")
    local = relay.create_dataset({"device": "Text", "n": "Int64", "value": "Number"})
    target = f"{upstream.url}/v1.0/myorg/datasets/{up_id}/tables/Readings/rows"
    with relay.client(timeout=30.0) as api:
        answer = api.put(
            f"/api/datasets/{local['id']}/forward",
            json={"target": target, "token": upstream.token, "timeScale": 60},
        )
        assert answer.status_code == 200, answer.text
    devices, rows_each = 12, 150
    sent: dict[str, int] = {}

    def device(name: str) -> None:
        with Client(local["push_url"], batch=BatchOptions(max_delay=0.005)) as client:
            for n in range(rows_each):
                client.push({"device": name, "n": n, "value": n / 10})
                time.sleep(0.002)  # a device's pace: its batches interleave the others'
        sent[name] = client.stats.sent

    threads = [threading.Thread(target=device, args=(f"dev{i:02d}",)) for i in range(devices)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {(f"dev{i:02d}", n) for i in range(devices) for n in range(rows_each)}
    assert sum(sent.values()) == len(expected)  # each client says every row was delivered
    stored = [(r["device"], r["n"]) for r in _all_rows(relay.url, relay.headers, local["id"])]
    assert set(stored) == expected, f"{len(expected - set(stored))} rows silently lost"
    _wait_for(
        lambda: _count(upstream.url, upstream.headers, up_id) >= len(stored),
        60,
        f"{len(stored)} rows upstream",
    )
    upstream_rows = _all_rows(upstream.url, upstream.headers, up_id)
    upstream_keys = [(r["device"], r["n"]) for r in upstream_rows]
    assert sorted(upstream_keys) == sorted(stored), "upstream is not exactly what the relay stored"


def test_replacing_a_forward_without_credentials_keeps_them_for_the_same_host(
    server_factory: Callable[..., RunningServer],
) -> None:
    # The dashboard's form says a kept token is kept ("type a new one to replace it")
    # and prefills tenant and client ids but never the secret: a replace that changes
    # only the time scale must not drop the credential (the upstream would then answer
    # 401 and every row would be dead-lettered).
    server = server_factory(forwards=False)  # hosts named here must not be contacted
    api = server.client(timeout=30.0)
    local = _create(server.url, server.headers, "PushStreaming")
    path = f"/api/datasets/{local}/forward"
    rest = "https://api.powerbi.com/v1.0/myorg/groups/g/datasets/d/tables/T/rows"
    assert api.put(path, json={"target": rest, "token": "tok"}).is_success
    kept = api.put(path, json={"target": rest, "timeScale": 2})
    assert kept.status_code == 200, kept.text
    assert kept.json()["forward"]["auth"] == "token"
    assert kept.json()["forward"]["timeScale"] == 2
    # Another host never receives the credential meant for the first one.
    other = api.put(path, json={"target": "https://elsewhere.invalid/v1.0/myorg/rows"})
    assert other.json()["forward"]["auth"] == "none"
    # An explicit empty token clears it.
    assert api.put(path, json={"target": rest, "token": "tok"}).is_success
    assert api.put(path, json={"target": rest, "token": ""}).json()["forward"]["auth"] == "none"

    entra = {"tenantId": "tenant", "clientId": "client"}
    assert api.put(path, json={"target": rest, **entra, "clientSecret": "s3cret"}).is_success
    again = api.put(path, json={"target": rest, **entra, "timeScale": 1})
    assert again.status_code == 200, again.text
    assert again.json()["forward"]["auth"] == "entra"
    # Another app registration needs its own secret.
    other_app = api.put(path, json={"target": rest, "tenantId": "tenant", "clientId": "other"})
    assert other_app.status_code == 400 and "clientSecret" in other_app.text


def test_a_restarted_forwarder_shows_the_rows_it_delivered_before(
    server_factory: Callable[..., RunningServer],
) -> None:
    # The delivered count is kept in the forward's spool; a forwarder that starts again
    # (a replaced forward here; a server restart alike) shows it before any new row.
    upstream = server_factory(time_scale=60)
    relay = server_factory(limits=False)
    up_id = _create(upstream.url, upstream.headers, "Push", table="Readings")
    local = relay.create_dataset({"device": "Text", "n": "Int64", "value": "Number"})
    target = f"{upstream.url}/v1.0/myorg/datasets/{up_id}/tables/Readings/rows"
    body = {"target": target, "token": upstream.token, "timeScale": 60}
    path = f"/api/datasets/{local['id']}/forward"
    with relay.client(timeout=30.0) as api:
        assert api.put(path, json=body).status_code == 200
        rows = [{"device": "a", "n": n, "value": 0.5} for n in range(4)]
        assert httpx.post(local["push_url"], json=rows).is_success

        def state() -> dict[str, Any] | None:
            found: dict[str, Any] | None = api.get(path).json()["forward"]["state"]
            return found

        _wait_for(lambda: (s := state()) and s["delivered"] == 4, 30, "4 rows delivered")
        assert api.put(path, json={**body, "timeScale": 30}).status_code == 200
        # cursor is posted once the forwarder reads rows, after it has read its spool.
        shown = _wait_for(lambda: (s := state()) and s["cursor"] > 0 and s, 30, "a state")
    assert shown["delivered"] == 4, shown
    assert upstream.count_rows(up_id, "Readings") == 4


def test_a_refused_upstream_token_holds_the_rows_until_it_is_fixed(
    server_factory: Callable[..., RunningServer],
) -> None:
    # The devices' rows were acknowledged by the relay: a wrong or expired upstream token
    # must not dead-letter them (the client's usual answer to a 401) but hold them.
    upstream = server_factory(time_scale=60)
    relay = server_factory(limits=False)
    up_id = _create(upstream.url, upstream.headers, "Push", table="Readings")
    local = relay.create_dataset({"device": "Text", "n": "Int64", "value": "Number"})
    target = f"{upstream.url}/v1.0/myorg/datasets/{up_id}/tables/Readings/rows"
    path = f"/api/datasets/{local['id']}/forward"
    with relay.client(timeout=30.0) as api:
        wrong = {"target": target, "token": "not-the-token", "timeScale": 60}
        assert api.put(path, json=wrong).status_code == 200
        for n in range(20):
            assert httpx.post(local["push_url"], json=[{"device": "d", "n": n, "value": 1}])
        state = _wait_for(
            lambda: (
                (s := api.get(f"/api/datasets/{local['id']}").json()["forward"]["state"])
                and s.get("lastError")
                and s
            ),
            30,
            "the forward to report the refused token",
        )
        assert "401" in str(state["lastError"]) or "token" in str(state["lastError"]).lower()
        assert _count(upstream.url, upstream.headers, up_id) == 0
        fixed = {"target": target, "token": upstream.token, "timeScale": 60}
        assert api.put(path, json=fixed).status_code == 200
        _wait_for(
            lambda: _count(upstream.url, upstream.headers, up_id) == 20, 60, "20 rows upstream"
        )
        rows = _all_rows(upstream.url, upstream.headers, up_id)
        assert sorted(r["n"] for r in rows) == list(range(20))
