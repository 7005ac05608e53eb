"""Input → rows: the pure parsing every feed shares."""

from __future__ import annotations

import pytest

from pbistream.exceptions import ConfigError
from pbistream.feeds.payloads import (
    PayloadError,
    TopicField,
    coerce,
    parse_command_output,
    parse_key_values,
    parse_payload,
    parse_topic_field,
    topic_values,
)
from pbistream.feeds.runner import parse_duration
from pbistream.values import DataType


def test_payload_forms() -> None:
    assert parse_payload(b'{"t": 1}') == [{"t": 1}]
    assert parse_payload(b'[{"t": 1}, {"t": 2}]') == [{"t": 1}, {"t": 2}]
    assert parse_payload(b" 21.5 ", "temp") == [{"temp": 21.5}]
    assert parse_payload(b"-3", "temp") == [{"temp": -3}]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"21.5", "a bare number needs --value-field NAME"),
        (b"true", "a boolean is not a row"),
        (b"null", "null is not a row"),
        (b'"x"', "a string is not a row"),
        (b"[]", "an empty JSON array holds no row"),
        (b'[{"a": 1}, 2]', "element 1 of the array is a number, not a JSON object"),
        (b"{oops", "not JSON"),
        (b"  ", "the payload is empty"),
    ],
)
def test_payloads_that_are_not_rows_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason.replace("[", r"\[")):
        parse_payload(payload)


def test_topic_fields() -> None:
    field = parse_topic_field("device=1")
    assert field == TopicField("device", 1)
    assert topic_values("site/dev7/temp", [field, TopicField("site", 0)]) == {
        "device": "dev7",
        "site": "site",
    }
    with pytest.raises(PayloadError, match="the topic has only 2 levels"):
        topic_values("a/b", [TopicField("x", 2)])
    for bad in ("device", "=1", "device=x", "device=-1"):
        with pytest.raises(PayloadError, match="expected NAME=LEVEL"):
            parse_topic_field(bad)


def test_key_values_and_command_output() -> None:
    assert parse_key_values(["a=1", "b=x", "c="]) == {"a": 1, "b": "x", "c": None}
    assert parse_key_values(["n=007"], {"n": DataType.STRING}) == {"n": "007"}
    with pytest.raises(PayloadError, match="'novalue' is not FIELD=VALUE"):
        parse_key_values(["novalue"])
    assert parse_command_output("# c\ntemp = 21.5\n\nok=true\n") == [{"temp": 21.5, "ok": True}]
    assert parse_command_output('{"a": 1}\n') == [{"a": 1}]
    assert parse_command_output('name="Boiler 3"\nid="7"\nodd="x') == [
        {"name": "Boiler 3", "id": "7", "odd": '"x'}
    ]
    assert parse_command_output('[{"a": 1}]') == [{"a": 1}]
    with pytest.raises(PayloadError, match="printed nothing"):
        parse_command_output("\n")
    with pytest.raises(PayloadError, match="output line 2 'oops' is not key=value"):
        parse_command_output("a=1\noops\n")
    with pytest.raises(PayloadError, match="starts like JSON but is not JSON"):
        parse_command_output("{a=1}")
    assert coerce("1e3", None) == 1000.0
    assert coerce("12", DataType.DOUBLE) == 12.0


def test_durations() -> None:
    assert parse_duration("10s") == 10.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120.0
    assert parse_duration("1h") == 3600.0
    assert parse_duration("1.5") == 1.5
    for bad in ("0s", "soon", "-1s", ""):
        with pytest.raises(ConfigError):
            parse_duration(bad)
