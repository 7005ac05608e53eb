"""`pbistream push` and `pbistream spool` against the real server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from client_helpers import FIELDS, rows_of

from pbistream.cli import main
from pbistream.testing import RunningServer, free_port


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_one_row_is_coerced_by_the_schema_and_delivered(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    code, out, err = run(
        "push",
        dataset["push_url"],
        "n=5",
        "value=21.5",
        "label=007",
        "ts=2024-05-01T12:00:00Z",
        "--token",
        fast_server.token,
    )
    assert (code, err) == (0, ""), err
    assert out.strip() == "1 row delivered."
    assert rows_of(fast_server, dataset["id"]) == [
        {"n": 5, "value": 21.5, "label": "007", "ts": "2024-05-01T12:00:00.000Z"}
    ]


def test_without_a_schema_values_are_json_ish(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset({"value": "Number", "label": "Text"}, mode="PushStreaming")
    code, out, err = run("push", dataset["push_url"], "value=2e3", "label=abc", "--json")
    assert code == 0, err
    assert json.loads(out)["sent"] == 1
    assert rows_of(fast_server, dataset["id"]) == [{"value": 2000.0, "label": "abc"}]


def test_a_bad_value_is_one_line_naming_row_field_and_rule(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    code, _, err = run("push", dataset["push_url"], "n=abc", "--token", fast_server.token)
    assert code == 1
    assert err.count("\n") == 1
    assert "row 0, column 'n': expected a number" in err
    assert "key=" not in err or "key=REDACTED" in err


def test_unreachable_server_fails_fast_or_spools(
    tmp_path: Path, fast_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the unsent row goes
    dead_url = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=SECRETKEY"
    code, _, err = run("push", dead_url, "value=1", "--timeout", "0.5")
    assert code == 1 and "not delivered" in err and "SECRETKEY" not in err
    (unsent,) = tmp_path.glob("pbistream-unsent-*.jsonl")
    assert unsent.read_text() == '{"value":1}\n' and str(unsent) in err

    spool = tmp_path / "cron.spool"
    code, out, err = run("push", dead_url, "value=1", "--spool", str(spool), "--timeout", "0.2")
    assert code == 0, err
    assert "kept in the spool" in out
    code, out, _ = run("spool", "status", str(spool), "--json")
    status = json.loads(out)
    assert code == 0 and status["ready"] == 1 and "SECRETKEY" not in out

    dataset = fast_server.create_dataset({"value": "Number"}, mode="PushStreaming")
    code, out, err = run("spool", "replay", str(spool), dataset["push_url"], "--json")
    assert code == 0, err
    assert json.loads(out)["replayed"] == 1
    assert rows_of(fast_server, dataset["id"]) == [{"value": 1}]
    code, out, _ = run("spool", "status", str(spool))
    assert code == 0 and out.startswith(f"{spool}: 0 ready")


def test_files_jsonl_csv_and_stdin(fast_server: RunningServer, tmp_path: Path) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps({"n": i, "value": i / 2}) + "\n" for i in range(2500)))
    code, out, err = run("push", dataset["push_url"], "--file", str(jsonl), "--json", "--progress")
    assert code == 0, err
    assert json.loads(out)["sent"] == 2500
    assert "2500" in err.replace(",", "") and "rows" in err  # the progress bar

    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("n,value,label\n1,1.5,007\n2,,x\n")
    args = ("push", dataset["push_url"], "--file", str(csv_file), "--token", fast_server.token)
    code, out, err = run(*args)
    assert code == 0, err
    code, out, err = run("push", dataset["push_url"], "--file", "-", input='{"n": 9}\n[1]\n')
    assert code == 1 and "line 2: a row must be a JSON object" in err
    stored = rows_of(fast_server, dataset["id"])
    assert len(stored) == 2500 + 2 + 1
    assert {"n": 1, "value": 1.5, "label": "007"} in stored
    assert {"n": 2, "value": None, "label": "x"} in stored


def test_a_ragged_csv_or_a_bad_row_is_named_by_its_file_line(
    fast_server: RunningServer, tmp_path: Path
) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    args = ("push", dataset["push_url"], "--token", fast_server.token, "--file")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("n,value\n1,2,3\n4\n5,6\n")
    code, out, err = run(*args, str(ragged))
    assert code == 1 and err.count("\n") == 1, err  # one line, not a traceback
    assert "2 rows not delivered: line 2: 3 values for 2 header columns (and 1 more)" in err
    assert out.strip() == "1 row delivered."
    gaps = tmp_path / "gaps.jsonl"
    gaps.write_text('\n{"n": 1}\n\n{"n": "x"}\n')
    code, _, err = run(*args, str(gaps))
    assert code == 1 and "line 4: column 'n': expected a number" in err
    assert [row["n"] for row in rows_of(fast_server, dataset["id"])] == [5, 1]


def test_a_file_of_bad_rows_keeps_counts_not_every_dead_letter(
    fast_server: RunningServer, tmp_path: Path
) -> None:
    import tracemalloc

    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    bad = tmp_path / "bad.jsonl"
    pad = "x" * 200
    bad.write_text("".join(f'{{"n": "{pad}{i}"}}\n' for i in range(50_000)))
    tracemalloc.start()
    try:
        code, out, err = run(
            "push", dataset["push_url"], "--token", fast_server.token, "--file", str(bad), "--json"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 1 and "50,000 rows not delivered: line 1: column 'n'" in err
    assert json.loads(out)["refused"] == 50_000
    assert "(and 49,999 more: each refused row is in " in err  # where to find the others
    # Keeping every dead letter (and its row) until the report held 11 MB more here,
    # and grew with the file.
    assert peak < 31_000_000, peak  # measured: 26 MB now, 37 MB before


def test_usage_mistakes_are_one_line_errors(fast_server: RunningServer) -> None:
    code, _, err = run("push", "http://127.0.0.1:1/beta/x/datasets/y/rows?key=k")
    assert code == 1 and "FIELD=VALUE" in err
    code, _, err = run("push", "http://127.0.0.1:1/beta/x/datasets/y/rows?key=k", "novalue")
    assert code == 1 and "'novalue' is not FIELD=VALUE" in err
    code, _, err = run("spool", "status", "/nonexistent/spool")
    assert code == 1 and "no spool at" in err


def test_replay_gives_up_after_its_timeout(tmp_path: Path) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=K"
    spool = str(tmp_path / "r.spool")
    code, _, err = run("push", dead_url, "n=1", "--spool", spool, "--timeout", "0.2")
    assert code == 0, err
    started = time.monotonic()
    code, _, err = run("spool", "replay", spool, dead_url, "--timeout", "0.5")
    assert time.monotonic() - started < 10  # it took 30 s more: close() flushed again
    assert code == 1 and "1 row is still in" in err and "key=K" not in err
    code, out, _ = run("spool", "status", spool, "--json")
    assert json.loads(out)["ready"] == 1


def test_purge(tmp_path: Path) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"
    spool = tmp_path / "p.spool"
    run("push", dead_url, "a=1", "--spool", str(spool), "--timeout", "0.1")
    code, out, _ = run("spool", "purge", str(spool), "--yes", "--json")
    assert code == 0 and json.loads(out) == {"deleted": 1}
