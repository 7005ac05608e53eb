"""Client against the real server: delivery, pacing within the limits, validation."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from client_helpers import FIELDS, TIME_SCALE, metric, rows_of

from pbistream import Client, Schema
from pbistream.client import BatchOptions, DeadLetter, PacingOptions
from pbistream.exceptions import ClientClosedError
from pbistream.testing import RunningServer


def test_50000_single_pushes_all_stored_without_a_429(limited_server: RunningServer) -> None:
    dataset = limited_server.create_dataset(FIELDS, mode="PushStreaming")
    started = time.monotonic()
    with Client(
        dataset["push_url"],
        token=limited_server.token,
        pacing=PacingOptions(time_scale=TIME_SCALE),
    ) as client:
        for n in range(50_000):
            client.push(
                {"n": n, "value": n / 7, "label": f"s{n % 10}", "ts": "2024-05-01T12:00:00Z"}
            )
        assert client.flush(timeout=120) == 0
    elapsed_minutes = (time.monotonic() - started) * TIME_SCALE / 60
    url, token = limited_server.url, limited_server.token
    posts = metric(url, token, "pbistream_http_requests_total", method="POST", status="200")
    assert limited_server.count_rows(dataset["id"]) == 50_000
    assert client.stats.sent == 50_000
    assert client.stats.rate_limited == 0
    assert metric(url, token, "pbistream_http_requests_total", status="429") == 0
    assert metric(url, token, "pbistream_throttled_total") == 0
    # Never more than 120 POSTs a (scaled) minute, on average over the run too.
    assert posts <= 120 * (elapsed_minutes + 1)
    assert sorted(r["n"] for r in rows_of(limited_server, dataset["id"])) == list(range(50_000))


def test_values_are_normalised_before_sending(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    plus2 = timezone(timedelta(hours=2))
    with Client(dataset["push_url"], token=fast_server.token) as client:
        client.push(
            [
                {
                    "n": 1,
                    "value": Decimal("1.5"),
                    "label": 7,
                    "ts": datetime(2024, 1, 1, 14, tzinfo=plus2),
                },
                {"n": 2, "value": True and 3, "ts": datetime(2024, 1, 1, 12)},
                {"n": 3, "ts": "07/30/2014"},
            ]
        )
    stored = rows_of(fast_server, dataset["id"])
    assert stored[0]["ts"] == "2024-01-01T12:00:00.000Z"
    assert stored[0]["value"] == 1.5 and stored[0]["label"] == "7"
    assert stored[1]["ts"] == "2024-01-01T12:00:00.000Z"  # naive is UTC by default
    assert stored[2]["ts"] == "2014-07-30T00:00:00.000Z"


def test_invalid_rows_are_dead_lettered_locally_and_never_hold_back_valid_ones(
    fast_server: RunningServer, tmp_path: Path
) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    letters: list[DeadLetter] = []
    dead_file = tmp_path / "dead.jsonl"
    with Client(
        dataset["push_url"],
        token=fast_server.token,
        on_dead_letter=letters.extend,
        dead_letter_path=dead_file,
    ) as client:
        client.push({"n": 1})
        client.push({"n": 2**63})  # Int64.MaxValue + 1
        client.push({"n": 3, "value": float("nan")})
        client.push({"n": 4, "nope": 1})
        client.push({"n": 5, "label": "x" * 4001})
        client.push({"n": 6})
    assert sorted(r["n"] for r in rows_of(fast_server, dataset["id"])) == [1, 6]
    assert [(d.index, d.column, d.rule) for d in letters] == [
        (1, "n", "range"),
        (2, "value", "nan"),
        (3, "nope", "unknown_column"),
        (4, "label", "length"),
    ]
    assert "row 2, column 'value': NaN is not allowed for Double" in letters[1].message
    lines = [json.loads(line) for line in dead_file.read_text().splitlines()]
    assert [line["rule"] for line in lines] == ["range", "nan", "unknown_column", "length"]
    assert client.stats.dead_lettered == 4 and client.stats.sent == 2


def test_declared_schema_is_used_without_asking_the_server(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset({"temp": "Number"}, mode="PushStreaming")
    letters: list[DeadLetter] = []
    with Client(
        dataset["push_url"], schema=Schema(temp="Number"), on_dead_letter=letters.extend
    ) as client:
        # Text holding a number is converted locally, as the server would; other text is
        # refused locally with the same rule the server would name.
        client.push([{"temp": "21.5"}, {"temp": "warm"}, {"temp": 22}])
    assert [d.rule for d in letters] == ["type"]
    assert rows_of(fast_server, dataset["id"]) == [{"temp": 21.5}, {"temp": 22}]


def test_server_refusal_is_dead_lettered_with_its_message(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset({"temp": "Number"}, mode="Streaming")
    letters: list[DeadLetter] = []
    errors: list[Exception] = []
    # No token: the client cannot read the schema, so the server is the one to refuse.
    with Client(
        dataset["push_url"], on_dead_letter=letters.extend, on_error=errors.append
    ) as client:
        client.push({"humidity": 3})
    assert len(letters) == 1 and letters[0].status == 404
    assert letters[0].rule == "server" and "humidity" in letters[0].message
    assert errors and getattr(errors[0], "status", None) == 404
    assert client.stats.retried == 0


def test_rest_target_with_token(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="Push", table="Sales")
    url = f"{fast_server.url}/v1.0/myorg/datasets/{dataset['id']}/tables/Sales/rows"
    with Client(url, auth=fast_server.token, batch=BatchOptions(max_rows=10)) as client:
        client.push([{"n": i} for i in range(95)])
        assert client.flush(timeout=30) == 0
    assert fast_server.count_rows(dataset["id"], "Sales") == 95
    assert client.stats.requests == 10


def test_lifecycle_and_callbacks_that_raise(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    seen: list[int] = []

    def bad_hook(rows: int) -> None:
        seen.append(rows)
        raise RuntimeError("user bug")

    client = Client(dataset["push_url"], on_success=bad_hook)
    assert client.state.name == "UNOPENED"
    client.push({"n": 1})
    assert client.state.name == "OPENED"
    assert client.flush(timeout=10) == 0
    assert seen == [1]
    assert client.close() == 0
    assert client.close() == 0
    with pytest.raises(ClientClosedError):
        client.push({"n": 2})
    with pytest.raises(ClientClosedError):
        client.__enter__()


def test_push_dataframe(fast_server: RunningServer) -> None:
    pd = pytest.importorskip("pandas")
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    df = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "value": [1.5, float("nan"), 2.5],
            "ts": [pd.Timestamp("2024-01-01T00:00:00Z"), pd.NaT, pd.Timestamp("2024-01-02")],
        }
    )
    with Client(dataset["push_url"], token=fast_server.token) as client:
        client.push_dataframe(df)
    stored = rows_of(fast_server, dataset["id"])
    assert stored == [
        {"n": 1, "value": 1.5, "ts": "2024-01-01T00:00:00.000Z"},
        {"n": None, "value": None, "ts": None},
        {"n": 3, "value": 2.5, "ts": "2024-01-02T00:00:00.000Z"},
    ]


def test_flush_from_a_callback_is_refused_not_a_deadlock(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    refused: list[Exception] = []
    client: Client

    def flush_inside(rows: int) -> None:
        try:
            client.flush()
        except RuntimeError as exc:
            refused.append(exc)

    with Client(dataset["push_url"], on_success=flush_inside) as client:
        client.push({"n": 1})
        assert client.flush(timeout=10) == 0
    assert refused and "wait for itself" in str(refused[0])


def test_a_row_whose_value_raises_is_dead_lettered_and_holds_back_no_other(
    fast_server: RunningServer,
) -> None:
    class Unreadable:
        def __float__(self) -> float:
            raise RuntimeError("sensor offline")

    class BrokenMapping(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            raise OSError("the row's source went away")

    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    letters: list[DeadLetter] = []
    with Client(dataset["push_url"], schema=None, on_dead_letter=letters.extend) as client:
        client.push([{"n": 1}, {"value": Unreadable()}, BrokenMapping(n=3), {"n": 4}])
        assert client.flush(timeout=10) == 0
    assert [r["n"] for r in rows_of(fast_server, dataset["id"])] == [1, 4]
    assert client.stats.dead_lettered == 2
    assert [(d.index, d.column) for d in letters] == [(1, "value"), (2, None)]
    assert "sensor offline" in letters[0].message and "went away" in letters[1].message


@pytest.mark.parametrize("spooled", [False, True])
def test_a_batch_the_server_refuses_is_halved_so_valid_rows_are_delivered(
    fast_server: RunningServer, tmp_path: Path, spooled: bool
) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    letters: list[DeadLetter] = []
    rows = [{"n": n} for n in range(40)]
    rows[13] = {"n": "thirteen"}  # Text passes the untyped check; the Int64 column refuses it
    with Client(
        dataset["push_url"],
        schema=None,  # the client cannot tell: only the server can refuse the row
        spool=tmp_path / "b.spool" if spooled else None,
        on_dead_letter=letters.extend,
    ) as client:
        client.push(rows)
        assert client.flush(timeout=30) == 0
    stored = [r["n"] for r in rows_of(fast_server, dataset["id"])]
    assert stored == [n for n in range(40) if n != 13]
    assert len(letters) == 1 and letters[0].rule == "server" and letters[0].status == 400
    assert letters[0].row == {"n": "thirteen"}
    assert letters[0].message.startswith(f"row {letters[0].index}: refused by the server: HTTP 400")
    assert client.stats.sent == 39 and client.stats.dead_lettered == 1
    assert client.stats.requests < 25  # about 2·log2(40), not one request per row


def test_a_server_refusing_every_row_costs_a_bounded_number_of_requests(
    fast_server: RunningServer,
) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    letters: list[DeadLetter] = []
    with Client(dataset["push_url"], schema=None, on_dead_letter=letters.extend) as client:
        client.push([{"n": f"row {n}"} for n in range(300)])
        assert client.flush(timeout=30) == 0
        client.push({"n": 300})  # after the refused rows: sent in a batch of its own
        assert client.flush(timeout=30) == 0
    assert [r["n"] for r in rows_of(fast_server, dataset["id"])] == [300]
    assert len(letters) == 300 and {d.rule for d in letters} == {"server"}
    assert "not sent, the server refused every part" in letters[-1].message
    assert client.stats.requests < 50  # a budget of refusals, not 300 single-row requests


def test_a_schema_request_that_raises_does_not_stop_delivery(
    fast_server: RunningServer,
) -> None:
    from pbistream.client import PushUrlSink

    class OddSchemaSink(PushUrlSink):
        def fetch_table(self):  # type: ignore[no-untyped-def]
            raise ValueError("invalid literal for int() with base 10: 'abc'")  # an odd rowCount

    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    with Client(OddSchemaSink(dataset["push_url"])) as client:
        client.push([{"n": 1}, {"n": 2}])
        assert client.flush(timeout=10) == 0
    assert [r["n"] for r in rows_of(fast_server, dataset["id"])] == [1, 2]


def test_the_worker_is_supervised_and_restarts_after_an_unexpected_error(
    fast_server: RunningServer,
) -> None:
    from pbistream.client import PushUrlSink

    class FlakySink(PushUrlSink):
        failures = 1

        def send(self, body: bytes, seq: int | None):  # type: ignore[no-untyped-def]
            if self.failures:
                self.failures -= 1
                raise RuntimeError("a bug in a sink")
            return super().send(body, seq)

    dataset = fast_server.create_dataset(FIELDS, mode="PushStreaming")
    with Client(FlakySink(dataset["push_url"]), schema=None) as client:
        client.push([{"n": 1}, {"n": 2}])
        assert client.flush(timeout=10) == 0
    assert sorted(r["n"] for r in rows_of(fast_server, dataset["id"])) == [1, 2]
