"""Sinks: Power BI's three error shapes, Retry-After forms, URL handling and redaction."""

from __future__ import annotations

import email.utils
import json
import logging
from pathlib import Path

import httpx
import pytest

from pbistream import Client, Schema
from pbistream.client import PushUrlSink, RestApiSink
from pbistream.client.sinks import error_message, outcome_of, parse_retry_after
from pbistream.exceptions import ConfigError
from pbistream.testing import RunningServer


def response(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def test_the_three_error_shapes_become_one_line() -> None:
    plain = {"error": {"code": "ItemNotFound", "message": "Dataset X is not Push API dataset."}}
    assert error_message(response(404, plain)) == (
        "HTTP 404 ItemNotFound: Dataset X is not Push API dataset."
    )
    details = {
        "error": {
            "code": "BadRequest",
            "message": "Bad Request",
            "details": [{"message": "The property 'x' does not exist", "target": "dataset"}],
        }
    }
    assert "The property 'x' does not exist" in error_message(response(400, details))
    pbi = {
        "error": {
            "code": "FeatureDeprecatedError",
            "pbi.error": {
                "code": "FeatureDeprecatedError",
                "details": [
                    {"code": "M", "detail": {"type": 0, "value": "Creation is deprecated"}}
                ],
            },
        }
    }
    assert error_message(response(400, pbi)).endswith("Creation is deprecated")
    assert error_message(httpx.Response(502, text="<html>bad gateway</html>")).startswith(
        "HTTP 502: <html>"
    )


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after(when, now=1_000_000.0) == pytest.approx(30.0)
    outcome = outcome_of(response(429, {"error": {"code": "Throttled"}}, **{"Retry-After": "3"}))
    assert (outcome.status, outcome.retry_after) == (429, 3.0)


def test_targets_and_their_limits() -> None:
    push = PushUrlSink("https://api.powerbi.com/beta/t/datasets/d/rows?key=abc%3D")
    assert push.shape == "array" and push.default_max_bytes == 15 * 1024
    assert "abc" not in push.label and "REDACTED" in push.label
    rest = RestApiSink("ds", "Sales", auth="tok", group_id="g")
    assert rest.url == "https://api.powerbi.com/v1.0/myorg/groups/g/datasets/ds/tables/Sales/rows"
    assert rest.shape == "rows" and rest.default_max_bytes == 16 * 1024 * 1024
    with pytest.raises(ConfigError):
        PushUrlSink("not a url")
    push.close()
    rest.close()


def test_no_key_or_token_reaches_the_log(
    pbistream_server: RunningServer, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    url = pbistream_server.create_streaming_dataset({"v": "Number"})
    key = url.split("key=")[1]
    caplog.set_level(logging.DEBUG)
    with Client(url, token=pbistream_server.token, spool=tmp_path / "s.spool") as client:
        client.push([{"v": 1}, {"v": "bad"}])
    assert client.stats.sent == 1 and client.stats.dead_lettered == 1
    text = caplog.text + (tmp_path / "s.spool.deadletter.jsonl").read_text()
    assert key not in text and pbistream_server.token not in text
    assert "REDACTED" in caplog.text


def test_spooled_rows_refused_locally_are_failed_with_their_reason(
    pbistream_server: RunningServer, tmp_path: Path
) -> None:
    from pbistream.spool import Spool

    url = pbistream_server.create_streaming_dataset({"v": "Number"})
    with Client(url, schema=Schema(v="Number"), spool=tmp_path / "f.spool") as client:
        client.push([{"v": 1}, {"v": "x"}, {"w": 2}])
    spool = Spool(tmp_path / "f.spool")
    reasons = [error for _, _, error in spool.failed()]
    assert len(reasons) == 2
    # The dead letters hold the rows: private like the spool itself.
    assert (tmp_path / "f.spool.deadletter.jsonl").stat().st_mode & 0o777 == 0o600
    assert "column 'v': expected a number" in reasons[0]
    assert "'w' is not a column" in reasons[1]
    assert spool.stats().ready == 0


def test_a_refused_schema_token_is_said_not_silently_ignored(
    pbistream_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = pbistream_server.create_streaming_dataset({"v": "Number"})
    caplog.set_level(logging.WARNING, logger="pbistream.client")
    sink = PushUrlSink(url, token="not-the-token")
    assert sink.fetch_table() is None
    sink.close()
    assert "refused the credential" in caplog.text and "HTTP 401" in caplog.text
    assert "not-the-token" not in caplog.text
    sink = PushUrlSink(url, token=pbistream_server.token)
    found = sink.fetch_table()
    sink.close()
    assert found is not None and found.table is not None


def test_a_refusal_quoting_the_push_url_reaches_no_error_unredacted() -> None:
    import http.server
    import threading

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"error": {"code": "BadRequest", "message": f"bad {self.path}"}})
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    errors: list[Exception] = []
    letters: list[object] = []
    url = f"http://127.0.0.1:{server.server_address[1]}/beta/t/datasets/d/rows?key=SECRET42"
    try:
        with Client(url, schema=None, on_error=errors.append, on_dead_letter=letters.extend) as c:
            c.push({"v": 1})
            assert c.flush(timeout=10) == 0
    finally:
        server.shutdown()
    assert len(errors) == 1 and len(letters) == 1
    error = errors[0]
    assert "bad /beta/t/datasets/d/rows?key=REDACTED" in str(error)
    assert "SECRET42" not in str(error) and "SECRET42" not in getattr(error, "body", "")
    assert "SECRET42" not in str(letters)
