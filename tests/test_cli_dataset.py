"""``pbistream dataset``: click's CliRunner against a live server over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from pbistream.cli import main
from pbistream.testing import RunningServer, free_port


def run(server: RunningServer | None, *args: str, token: str | None = None) -> Result:
    """Invoke ``pbistream dataset ...`` with the server and token in the environment."""
    env = {}
    if server is not None:
        env = {"PBISTREAM_SERVER": server.url, "PBISTREAM_TOKEN": token or server.token}
    return CliRunner().invoke(main, ["dataset", *args], env=env, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def one_line_error(result: Result) -> str:
    """The command failed as a user mistake: exit 1, one line on stderr, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_create_streaming_prints_a_working_push_url_last(pbistream_server: RunningServer) -> None:
    out = ok(
        run(
            pbistream_server,
            "create",
            "Sensors",
            "--field",
            "temp:Number",
            "--field",
            "at:DateTime",
        )
    )
    push_url = out.strip().splitlines()[-1]
    assert push_url.startswith(f"{pbistream_server.url}/beta/") and "key=" in push_url
    assert "Streaming" in out and "RealTimeData" in out
    response = httpx.post(push_url, json=[{"temp": 21.5, "at": "2024-01-01T00:00:00Z"}], timeout=10)
    assert response.status_code == 200, response.text
    (dataset,) = pbistream_server.storage.list_datasets(all_groups=True)
    assert dataset.name == "Sensors"
    assert [(c.name, c.data_type.value) for c in dataset.tables[0].columns] == [
        ("temp", "Double"),
        ("at", "DateTime"),
    ]
    assert pbistream_server.count_rows(dataset.id) == 1


def test_create_historic_and_push_modes(pbistream_server: RunningServer) -> None:
    historic = json.loads(
        ok(run(pbistream_server, "create", "H", "--field", "n:Int64", "--historic", "--json"))
    )
    assert historic["defaultMode"] == "PushStreaming"
    assert historic["tables"][0]["name"] == "RealTimeData"
    assert historic["pushUrl"]

    out = ok(
        run(
            pbistream_server,
            "create",
            "Sales",
            "--mode",
            "push",
            "--table",
            "Orders",
            "--retention",
            "basicfifo",
            "--field",
            "amount:Decimal",
            "--field",
            "paid:Boolean",
            "--field",
            "note:Text",
        )
    )
    dataset_id = out.strip().splitlines()[-1]
    dataset = pbistream_server.storage.get_dataset(dataset_id)
    assert dataset is not None
    assert dataset.mode.value == "Push" and dataset.retention.value == "basicFIFO"
    assert dataset.tables[0].name == "Orders"
    assert [c.data_type.value for c in dataset.tables[0].columns] == [
        "Decimal",
        "Boolean",
        "String",
    ]
    assert "Push URL" not in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["X", "--field", "a:Whatever"], "unknown field type"),
        (["X", "--field", "noType"], "name:Type"),
        (["X", "--field", "a:Number", "--field", "a:Text"], "given twice"),
        (["X"], "at least one --field"),
        (["X", "--field", "a:Number", "--historic", "--mode", "push"], "--historic"),
        (["X", "--field", "a:Number", "--table", "Other"], "RealTimeData"),
    ],
)
def test_create_mistakes_are_one_red_line(
    pbistream_server: RunningServer, args: list[str], expected: str
) -> None:
    line = one_line_error(run(pbistream_server, "create", *args))
    assert expected in line
    assert pbistream_server.storage.list_datasets(all_groups=True) == []


def test_server_refusals_are_one_line_with_its_message(pbistream_server: RunningServer) -> None:
    # A table name Power BI does not allow: the server's 400 message comes through.
    line = one_line_error(
        run(
            pbistream_server,
            "create",
            "X",
            "--mode",
            "push",
            "--table",
            "a.b",
            "--field",
            "v:Int64",
        )
    )
    assert "400" in line


def test_list_show_delete(pbistream_server: RunningServer) -> None:
    assert "No datasets yet" in ok(run(pbistream_server, "list"))
    first = pbistream_server.create_dataset({"v": "Number"}, name="first")
    group = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    second = pbistream_server.create_dataset(
        {"v": "Number"}, name="second", mode="Push", table="T", group_id=group
    )
    httpx.post(first["push_url"], json=[{"v": 1}, {"v": 2}], timeout=10).raise_for_status()

    table = ok(run(pbistream_server, "list")).splitlines()
    assert table[0].split() == ["ID", "NAME", "MODE", "RETENTION", "ROWS", "LAST", "ROW"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[first["id"]][1:5] == ["first", "Streaming", "None", "2"]
    assert rows[second["id"]][1:5] == ["second", "Push", "None", "0"]

    listed = json.loads(ok(run(pbistream_server, "list", "--json")))
    assert {d["id"] for d in listed} == {first["id"], second["id"]}

    shown = ok(run(pbistream_server, "show", first["id"]))
    assert shown.strip().splitlines()[-1] == first["push_url"]
    assert "2 rows" in shown
    detail = json.loads(ok(run(pbistream_server, "show", second["id"], "--json")))
    assert detail["groupId"] == group and detail["pushUrl"] is None

    # A dataset in a workspace is deleted through its workspace's endpoint.
    deleted = json.loads(ok(run(pbistream_server, "delete", second["id"], "--json")))
    assert deleted == {"id": second["id"], "name": "second", "deleted": True}
    assert "Deleted dataset 'first'" in ok(run(pbistream_server, "delete", first["id"]))
    assert pbistream_server.storage.list_datasets(all_groups=True) == []
    line = one_line_error(run(pbistream_server, "show", first["id"]))
    assert "404" in line and first["id"] in line


def test_rotate_key_prints_the_new_url_and_the_old_one_stops(
    pbistream_server: RunningServer,
) -> None:
    created = pbistream_server.create_dataset({"v": "Number"})
    new_url = ok(run(pbistream_server, "rotate-key", created["id"])).strip().splitlines()[-1]
    assert new_url != created["push_url"]
    assert httpx.post(created["push_url"], json=[{"v": 1}], timeout=10).status_code == 403
    assert httpx.post(new_url, json=[{"v": 1}], timeout=10).status_code == 200
    as_json: dict[str, Any] = json.loads(
        ok(run(pbistream_server, "rotate-key", created["id"], "--json"))
    )
    assert as_json["pushUrl"] not in (new_url, created["push_url"])


def test_wrong_token_and_unreachable_server(pbistream_server: RunningServer) -> None:
    line = one_line_error(run(pbistream_server, "list", token="not-the-token"))
    assert "refused the token" in line and "not-the-token" not in line

    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main, ["dataset", "list", "--server", url], env={})
    assert one_line_error(result) == (
        f"Error: cannot reach the server at {url}: is `pbistream serve` running?"
    )


def test_flags_override_the_environment(pbistream_server: RunningServer) -> None:
    result = CliRunner().invoke(
        main,
        [
            "dataset",
            "list",
            "--json",
            "--server",
            pbistream_server.url,
            "--token",
            pbistream_server.token,
        ],
        env={"PBISTREAM_SERVER": "http://127.0.0.1:9", "PBISTREAM_TOKEN": "wrong"},
    )
    assert json.loads(ok(result)) == []


@pytest.mark.parametrize("server", ["notaurl", "http://[::1", "ftp://127.0.0.1:8765"])
def test_a_bad_server_url_is_one_line(server: str) -> None:
    result = CliRunner().invoke(main, ["dataset", "list", "--server", server], env={})
    assert "--server" in one_line_error(result)


def test_an_id_cannot_reach_another_endpoint(pbistream_server: RunningServer) -> None:
    # "../../metrics" would be GET /metrics if the id were pasted into the path as is.
    line = one_line_error(run(pbistream_server, "show", "../../metrics"))
    assert "404" in line


def test_a_pbi_error_body_is_read_for_its_message(
    server_factory: Callable[..., RunningServer],
) -> None:
    # Deprecation mode answers Power BI's FeatureDeprecatedError, whose text sits in
    # pbi.error.details rather than in a message.
    server = server_factory(deprecation=True)
    line = one_line_error(run(server, "create", "S", "--field", "v:Number"))
    assert "FeatureDeprecatedError" in line
    assert "Creation of streaming dataset is deprecated" in line
