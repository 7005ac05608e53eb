"""Issue 7: `pbistream push` waits for delivery, resumes a file, and says what happens.

Real server (limits on, a fast clock), real `pbistream` processes and signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from client_helpers import rows_of

from pbistream.cli import main
from pbistream.testing import RunningServer, free_port

PBISTREAM = [sys.executable, "-c", "from pbistream.cli import main; main()"]
PAD = "x" * 100  # about 150 bytes a row: ~100 rows per 15 KB request, 250 requests in all


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_a_25000_row_file_is_delivered_once_across_a_timeout_and_a_ctrl_c(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    # A "minute" of 3 s: 120 requests, then a wait of up to 3 s; about 6 s in all.
    server = server_factory(time_scale=20.0)
    dataset = server.create_dataset({"n": "Int64", "label": "Text"}, mode="Streaming")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f'{{"n": {n}, "label": "{PAD}"}}\n' for n in range(25_000)))
    command = [*PBISTREAM, "push", dataset["push_url"], "--file", str(rows)]

    # 1. --timeout 3 ends in about 3 s, says why, and keeps the rest for a rerun.
    started = time.monotonic()
    first = subprocess.run(
        [*command, "--timeout", "3", "--progress"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert time.monotonic() - started < 12  # ~3 s, plus interpreter start on a busy box
    assert first.returncode == 1, first.stderr
    assert "--timeout ended the wait first" in first.stderr
    assert "run the same command again" in first.stderr
    assert "paced by 120 POSTs a minute" in first.stderr  # the bar names the limit
    stored_first = server.count_rows(dataset["id"])
    assert 0 < stored_first < 25_000

    # 2. The same command, interrupted (SIGINT) once it delivered more.
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    deadline = time.monotonic() + 60
    while server.count_rows(dataset["id"]) <= stored_first and child.poll() is None:
        assert time.monotonic() < deadline, "the rerun delivered nothing"
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    if child.returncode != 0:  # it may have finished first on a fast machine
        assert child.returncode == 130 and "interrupted" in err, err

    # 3. Once more: it finishes, and every row of the file is stored exactly once.
    last = subprocess.run(
        [*command, "--progress"], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert last.returncode == 0, last.stderr
    stored = sorted(r["n"] for r in rows_of(server, dataset["id"]))
    assert stored == list(range(25_000))
    # A fourth run has nothing left to send and says so.
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_env())
    assert again.returncode == 0 and "Nothing to do" in again.stdout
    assert server.count_rows(dataset["id"]) == 25_000


def test_ctrl_c_while_the_file_is_read_exits_130_and_says_a_rerun_goes_on(
    fast_server: RunningServer, tmp_path: Path
) -> None:
    dataset = fast_server.create_dataset({"n": "Int64"}, mode="PushStreaming")
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)  # reading blocks until the writer closes: Ctrl-C lands mid-read
    child = subprocess.Popen(
        [*PBISTREAM, "push", dataset["push_url"], "--file", str(fifo), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    # Opening a FIFO to write returns once the command has opened it to read: it is
    # past its start-up, in the read, which blocks until more comes.
    with fifo.open("w") as writer:
        writer.write('{"n": 1}\n')
        writer.flush()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "interrupted while reading" in err and "run the same command again" in err
    assert "Aborted" not in err


def test_with_spool_it_exits_0_once_the_rows_are_in_it(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/beta/t/datasets/d/rows?key=k"
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f'{{"n": {n}}}\n' for n in range(100)))
    started = time.monotonic()
    code, out, err = run("push", dead, "--file", str(rows), "--spool", str(tmp_path / "s"))
    assert code == 0, err
    assert time.monotonic() - started < 10  # no delivery wait beyond a short try
    assert "100 kept in the spool" in out
    # It retries for its short try only, and says so (not "until it works").
    assert "retrying for 2 s, then the rows wait in the spool" in err, err
    assert "until it works" not in err


def test_values_that_are_not_json_numbers_stay_text(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset({"string_value": "Text"}, mode="PushStreaming")
    for value in ("007", "00", "-01"):
        code, out, err = run("push", dataset["push_url"], f"string_value={value}")
        assert (code, out.strip()) == (0, "1 row delivered."), err
    assert [r["string_value"] for r in rows_of(fast_server, dataset["id"])] == [
        "007",
        "00",
        "-01",
    ]


def test_a_server_that_is_not_running_is_named_at_once(tmp_path: Path) -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{port}/beta/t/datasets/d/rows?key=k"
    started = time.monotonic()
    child = subprocess.Popen(
        [*PBISTREAM, "push", dead, "n=1"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(),
    )
    assert child.stderr is not None
    line = child.stderr.readline()
    assert time.monotonic() - started < 10  # at once, not after 31 s of silence
    assert f"nothing answers at 127.0.0.1:{port}" in line
    assert "retrying until it works (Ctrl-C stops)" in line
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130
    (unsent,) = tmp_path.glob("pbistream-unsent-*.jsonl")
    assert unsent.read_text().strip() == '{"n":1}' and str(unsent) in err


def test_a_row_the_server_refuses_is_one_message_with_its_file_line(
    fast_server: RunningServer, tmp_path: Path
) -> None:
    dataset = fast_server.create_dataset({"number_value": "Number"}, mode="PushStreaming")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"number_value": 1}\n{"number_value": 2}\n{"number_value": "abc"}\n')
    # No token: the client cannot read the schema, so the server is the one that refuses.
    code, out, err = run("push", dataset["push_url"], "--file", str(rows))
    assert code == 1 and out.strip() == "2 rows delivered."
    assert err.count("\n") == 1, err
    assert "1 row not delivered: line 3: refused by the server: HTTP 400 InvalidRequest: " in err
    assert err.count("number_value") == 1 and "row 0" not in err.lower(), err
    # The same command again: nothing to send, and it says a row was refused, and where.
    code, out, err = run("push", dataset["push_url"], "--file", str(rows))
    assert code == 0, err
    assert "1 row of them was refused (see " in out and ".deadletter.jsonl" in out


def test_a_single_row_the_server_refuses_is_named_once(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset({"number_value": "Number"}, mode="PushStreaming")
    # No token: the server, not the client, refuses the value.
    code, out, err = run("push", dataset["push_url"], "number_value=abc")
    assert code == 1 and out.strip() == "0 rows delivered."
    assert "refused by the server: HTTP 400 InvalidRequest: column 'number_value'" in err
    assert err.lower().count("row 0") == 1, err


def test_targets_and_tokens_are_explained(fast_server: RunningServer) -> None:
    code, _, err = run("push", f"{fast_server.url}/ui/", "a=1")
    assert code == 1 and "is not a URL rows can be pushed to" in err
    assert "a Push URL looks like https://api.powerbi.com/beta/" in err

    dataset = fast_server.create_dataset({"a": "Number"}, mode="PushStreaming")
    code, _, err = run("push", dataset["push_url"], "a=1", "--token", "not-the-token")
    assert code == 0
    assert "--token is not used: a Push URL's credential is the key in it" in err
    assert "the server refused this token (HTTP 401)" in err  # wrong, not merely unneeded
    assert "not-the-token" not in err

    code, _, err = run("dataset", "list", "--server", fast_server.url, "--token", "")
    assert code == 1 and "needs a token and none was given" in err
