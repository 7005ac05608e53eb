"""`pbistream watch` as a real process: JSON and key=value output, failing runs go on."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from feed_helpers import Feed, stored_rows

from pbistream.cli import main
from pbistream.testing import RunningServer

# Run k (from 1) of this script, by a counter file: a cycle of six behaviours.
SCRIPT = """
import json, sys, time
from pathlib import Path
counter = Path(sys.argv[1])
k = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(k))
kind = k % 6
if kind == 1:
    print(json.dumps({"k": k, "value": k * 1.5}))
elif kind == 2:
    print(f"# a comment\\nk={k}\\nvalue = {k / 2}\\n")
elif kind == 3:
    print("oops", file=sys.stderr); sys.exit(3)
elif kind == 4:
    print(json.dumps([{"k": k, "value": 1.0}, {"k": -k, "value": 2.0}]))
elif kind == 5:
    print("this is not a row")
else:
    time.sleep(5)  # past --timeout: killed
"""


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(limits=False)


def test_a_failing_command_is_reported_and_the_schedule_goes_on(
    server: RunningServer, tmp_path: Path
) -> None:
    dataset = server.create_dataset({"k": "Int64", "value": "Number"}, mode="PushStreaming")
    script = tmp_path / "sensor.py"
    script.write_text(SCRIPT)
    spool = tmp_path / "w.spool"
    feed = Feed(
        [
            "watch",
            "--every",
            "200ms",
            "--timeout",
            "1s",
            "--count",
            "12",
            "--to",
            dataset["push_url"],
            "--token",
            server.token,
            "--spool",
            str(spool),
            "--no-pacing",
            "--json",
            "--",
            sys.executable,
            str(script),
            str(tmp_path / "counter"),
        ],
        tmp_path,
        "watch",
    )
    assert feed.process.wait(90) == 0, feed.log()
    runs = feed.events("run")
    assert [run["run"] for run in runs] == list(range(1, 13))
    assert [run["ok"] for run in runs] == [True, True, False, True, False, False] * 2
    errors = [run["error"] for run in runs if not run["ok"]]
    assert errors[0] == "exited with status 3: oops"
    assert "is not key=value nor JSON" in errors[1]
    assert errors[2] == "timed out after 1 s (killed)"
    stopped = feed.last("stopped")
    assert stopped is not None and stopped["rows"] == 8 and stopped["pending"] == 0
    rows = stored_rows(server, dataset["id"])
    expected = []
    for k in (1, 7):
        expected += [
            {"k": k, "value": k * 1.5},
            {"k": k + 1, "value": (k + 1) / 2},
            {"k": k + 3, "value": 1.0},
            {"k": -(k + 3), "value": 2.0},
        ]
    assert rows == expected
    letters = [json.loads(x) for x in Path(f"{spool}.deadletter.jsonl").read_text().splitlines()]
    assert [letter["row"]["output"].strip() for letter in letters] == ["this is not a row"] * 2


def test_a_missing_command_is_one_clear_line(server: RunningServer) -> None:
    url = server.create_streaming_dataset({"value": "Number"})
    result = CliRunner().invoke(
        main, ["watch", "--every", "1s", "--to", url, "--", "no-such-command-xyz"]
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: command not found: no-such-command-xyz"


def test_a_bad_duration_is_one_clear_line(server: RunningServer) -> None:
    url = server.create_streaming_dataset({"value": "Number"})
    result = CliRunner().invoke(main, ["watch", "--every", "soon", "--to", url, "--", "true"])
    assert result.exit_code == 1
    assert "'soon' is not a duration such as 10s" in result.stderr


def test_human_lines_and_a_rest_table_url(server: RunningServer, tmp_path: Path) -> None:
    dataset = server.create_dataset({"temp": "Number", "site": "Text"}, mode="Push")
    url = f"{server.url}/v1.0/myorg/datasets/{dataset['id']}/tables/RealTimeData/rows"
    feed = Feed(
        [
            "watch",
            "--every",
            "100ms",
            "--count",
            "3",
            "--to",
            url,
            "--token",
            server.token,
            "--spool",
            str(tmp_path / "h.spool"),
            "--no-pacing",
            "--",
            "sh",
            "-c",
            "echo temp=21.5; echo site=007",
        ],
        tmp_path,
        "watch",
    )
    assert feed.process.wait(60) == 0, feed.log()
    lines = feed.out.read_text().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["run 1", "run 2", "run 3"]
    assert lines[0].startswith("run 1: 1 row in ")
    assert lines[-1].startswith("stopped: 3 runs (0 failed), 3 rows, 3 delivered, 0 left")
    # The schema says site is Text: "007" stays text, not the number 7.
    assert stored_rows(server, dataset["id"]) == [{"temp": 21.5, "site": "007"}] * 3


def test_entra_id_sign_in_for_a_rest_url(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent / "client"))
    from fake_entra import FakeEntra

    emulator = server_factory(auth="any", limits=False)  # takes Entra's bearer tokens
    dataset = emulator.create_dataset({"value": "Number"}, mode="Push")
    url = f"{emulator.url}/v1.0/myorg/datasets/{dataset['id']}/tables/RealTimeData/rows"
    entra = FakeEntra()
    try:
        entra.secrets["feeds-app"] = "s3cret"
        feed = Feed(
            [
                "watch", "--every", "100ms", "--count", "2", "--to", url, "--json",
                "--tenant-id", entra.tenant, "--app-id", "feeds-app",
                "--authority-host", entra.url, "--spool", str(tmp_path / "e.spool"),
                "--no-pacing", "--", "echo", "value=4.5",
            ],
            tmp_path,
            "watch",
            env={"PBISTREAM_CLIENT_SECRET": "s3cret", "REQUESTS_CA_BUNDLE": entra.ca_file},
        )  # fmt: skip
        assert feed.process.wait(60) == 0, feed.log()
        assert entra.issued, "the feed signed in with Entra ID"
        assert stored_rows(emulator, dataset["id"]) == [{"value": 4.5}] * 2
        assert "s3cret" not in feed.out.read_text()
    finally:
        entra.close()


def test_entra_options_come_together(server: RunningServer) -> None:
    url = server.create_streaming_dataset({"value": "Number"})
    result = CliRunner().invoke(
        main, ["watch", "--every", "1s", "--to", url, "--app-id", "x", "--", "true"]
    )
    assert result.exit_code == 1
    assert "needs --tenant-id, --app-id and --client-secret" in result.stderr
