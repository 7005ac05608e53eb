"""``pbistream token``: create / list / revoke against a live server, rotate offline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from pbistream.cli import main
from pbistream.testing import RunningServer, ServerProcess


def run(server: RunningServer | None, *args: str, token: str | None = None) -> Result:
    env = {}
    if server is not None:
        env = {"PBISTREAM_SERVER": server.url, "PBISTREAM_TOKEN": token or server.token}
    return CliRunner().invoke(main, ["token", *args], env=env, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def test_create_list_revoke_over_http(pbistream_server: RunningServer) -> None:
    server = pbistream_server
    dataset = server.create_dataset({"v": "Number"})["id"]
    out = ok(
        run(
            server,
            "create",
            "--role",
            "contributor",
            "--dataset",
            dataset,
            "--name",
            "sensor 12",
            "--expires",
            "30d",
        )
    )
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("pbist_") and "shown only this once" in out
    assert httpx.get(
        f"{server.url}/api/datasets", headers={"Authorization": f"Bearer {secret}"}
    ).is_success
    listed = ok(run(server, "list"))
    assert "sensor 12" in listed and "contributor" in listed and secret not in listed
    grants = json.loads(ok(run(server, "list", "--json")))
    made = next(g for g in grants if g["name"] == "sensor 12")
    assert made["datasets"] == [dataset] and made["expiresAt"] is not None
    ok(run(server, "revoke", made["id"]))
    refused = httpx.get(f"{server.url}/api/datasets", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    # A viewer token cannot manage tokens: one line, exit 1.
    viewer = json.loads(ok(run(server, "create", "--role", "viewer", "--json")))["token"]
    failed = run(server, "list", token=viewer)
    assert failed.exit_code == 1 and "admin" in failed.stderr and "Traceback" not in failed.output


def test_bad_expiry_is_one_line(pbistream_server: RunningServer) -> None:
    result = run(pbistream_server, "create", "--role", "viewer", "--expires", "soon")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: --expires")


def test_rotate_offline_replaces_a_lost_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, env={"PBISTREAM_TOKEN": ""})
    server.start()
    try:
        printed = [line for line in server.log_text().splitlines() if line.startswith("API token")]
        old = printed[0].rsplit(" ", 1)[1]
        old_headers = {"Authorization": f"Bearer {old}"}
        assert httpx.get(f"{server.url}/api/datasets", headers=old_headers).is_success
        # The printed token is lost: rotate on the data dir, with the server still running.
        out = CliRunner().invoke(main, ["token", "rotate", "--data-dir", str(data), "--json"])
        assert out.exit_code == 0, out.output
        new = json.loads(out.stdout)["token"]
        assert new.startswith("pbist_") and new != old
        new_headers = {"Authorization": f"Bearer {new}"}
        until = time.monotonic() + 30
        while httpx.get(f"{server.url}/api/datasets", headers=old_headers).status_code != 401:
            assert time.monotonic() < until, "the old token still works"
            time.sleep(0.1)
        assert httpx.get(f"{server.url}/api/datasets", headers=new_headers).is_success
        server.restart()
        assert httpx.get(f"{server.url}/api/datasets", headers=new_headers).is_success
    finally:
        server.stop()
    assert new not in server.log_text()
    assert new.encode() not in (data / "pbistream.db").read_bytes()


def test_rotate_refuses_a_dir_without_data(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["token", "rotate", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no pbistream data" in result.stderr
