"""The value rules shared by the client and the server: behaviour pinned, fast paths checked."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbistream.values import (
    DataType,
    RowRules,
    RuleError,
    UntypedRules,
    converter_for,
    parse_data_type,
)
from pbistream.values import RowErrorException as RowFailure

to_datetime = converter_for(DataType.DATETIME)


def reference_text(moment: datetime) -> str:
    """The plain, slow formatting the fast one must equal (1/300 s grid, UTC, 'Z')."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    ticks = round(moment.microsecond * 300 / 1_000_000)
    if ticks == 300:
        if (moment.year, moment.month, moment.day, moment.hour) == (9999, 12, 31, 23):
            ticks = 299
        else:
            moment = moment.replace(microsecond=0) + timedelta(seconds=1)
            ticks = 0
    millis = ticks * 1000 // 300
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{millis:03d}Z"
    )


aware = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)


@given(aware)
def test_fast_datetime_formatting_equals_the_reference(moment: datetime) -> None:
    assert to_datetime(moment) == reference_text(moment)


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_naive_is_utc_and_text_round_trips(moment: datetime) -> None:
    text = to_datetime(moment)
    assert text == reference_text(moment)
    assert to_datetime(text) == text  # canonical text is kept as is
    assert to_datetime(text.replace("Z", "+00:00")) == text


def test_datetime_formats_power_bi_reads() -> None:
    assert to_datetime("07/30/2014") == "2014-07-30T00:00:00.000Z"
    assert to_datetime("8/19/2016 9:24:40 PM") == "2016-08-19T21:24:40.000Z"
    assert to_datetime("2024-01-01") == "2024-01-01T00:00:00.000Z"
    assert to_datetime("2024-01-01T10:00:00+02:00") == "2024-01-01T08:00:00.000Z"
    assert to_datetime(date(2020, 2, 29)) == "2020-02-29T00:00:00.000Z"
    # .124 is not on the 1/300 s grid: it is quantised, not passed through.
    assert to_datetime("2024-01-01T00:00:00.124Z") == "2024-01-01T00:00:00.123Z"
    assert to_datetime("2024-12-31T23:59:59.999Z") == "2025-01-01T00:00:00.000Z"
    for bad in ("2024-02-30T00:00:00.000Z", "yesterday", "13/45/2020"):
        with pytest.raises(RuleError) as info:
            to_datetime(bad)
        assert info.value.rule == "datetime"


def test_numbers_and_their_limits() -> None:
    to_int = converter_for(DataType.INT64)
    to_double = converter_for(DataType.DOUBLE)
    assert to_int(2**63 - 2) == 2**63 - 2
    for bad, rule in ((2**63 - 1, "range"), (-(2**63), "range"), (1.5, "type"), (True, "type")):
        with pytest.raises(RuleError) as info:
            to_int(bad)
        assert info.value.rule == rule
    for bad, rule in ((math.nan, "nan"), (math.inf, "infinity"), (1.7976931348623157e308, "range")):
        with pytest.raises(RuleError) as info:
            to_double(bad)
        assert info.value.rule == rule
    assert converter_for(DataType.DECIMAL)(Decimal("1.23456")) == 1.2346


def test_strings_booleans_and_type_names() -> None:
    to_text = converter_for(DataType.STRING)
    assert to_text(42) == "42"
    with pytest.raises(RuleError, match="longer than 4,000"):
        to_text("x" * 4001)
    with pytest.raises(RuleError) as info:
        to_text("\ud800")
    assert info.value.rule == "unicode"
    assert converter_for(DataType.BOOLEAN)("TRUE") is True
    assert parse_data_type("bool") is DataType.BOOLEAN
    assert parse_data_type("int64") is DataType.INT64


def test_row_rules_name_row_field_and_rule() -> None:
    rules = RowRules({"t": DataType.DOUBLE, "s": DataType.STRING})
    good, errors = rules.normalize_rows([{"t": 1.0}, {"t": math.nan}, {"x": 1}, [1]], start=10)
    assert good == [{"t": 1.0}]
    assert [(e.row, e.column, e.rule) for e in errors] == [
        (11, "t", "nan"),
        (12, "x", "unknown_column"),
        (13, None, "shape"),
    ]
    assert str(errors[0]) == "row 11, column 't': NaN is not allowed for Double"


class _Unreadable:
    """A value whose own conversion fails, like a sensor object that raises."""

    def __float__(self) -> float:
        raise RuntimeError("sensor offline")


def test_a_value_that_raises_in_its_own_code_is_a_row_error_naming_the_field() -> None:
    for rules in (RowRules({"t": DataType.DOUBLE}), UntypedRules()):
        with pytest.raises(RowFailure) as info:
            rules.normalize_row({"t": _Unreadable()}, 4)
        error = info.value.error
        assert (error.row, error.column, error.rule) == (4, "t", "type")
        assert "RuntimeError: sensor offline" in str(error)


def test_untyped_rules_normalise_rich_values_and_refuse_what_power_bi_refuses() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    rules = UntypedRules()
    row = {
        "a": np.int64(3),
        "b": np.float32(1.5),
        "c": np.bool_(True),
        "d": pd.Timestamp("2024-01-01 12:00", tz="Europe/Paris"),
        "e": pd.NaT,
        "f": pd.NA,
        "g": Decimal("2.5"),
        "h": datetime(2024, 1, 1, tzinfo=UTC),
        "i": None,
        "j": "text",
    }
    assert rules.normalize_row(row) == {
        "a": 3,
        "b": 1.5,
        "c": True,
        "d": "2024-01-01T11:00:00.000Z",
        "e": None,
        "f": None,
        "g": 2.5,
        "h": "2024-01-01T00:00:00.000Z",
        "i": None,
        "j": "text",
    }
    for bad, rule in (
        (math.nan, "nan"),
        (2**64, "range"),
        (object(), "type"),
        ("x" * 4001, "length"),
    ):
        with pytest.raises(RowFailure) as info:
            rules.normalize_row({"v": bad}, 7)
        assert (info.value.error.row, info.value.error.column, info.value.error.rule) == (
            7,
            "v",
            rule,
        )


def test_untyped_rules_refuse_more_fields_than_a_table_has_columns() -> None:
    with pytest.raises(RowFailure) as info:
        UntypedRules().normalize_row({f"f{i}": i for i in range(76)}, 2)
    assert (info.value.error.row, info.value.error.rule) == (2, "columns")
    assert len(UntypedRules().normalize_row({f"f{i}": i for i in range(75)})) == 75


# --- numbers sent as text (Add-PowerBIRow -Rows (Import-Csv ...)) ------------------------


@pytest.mark.parametrize(
    ("data_type", "text", "expected"),
    [
        (DataType.INT64, "5", 5),
        (DataType.INT64, " -7 ", -7),
        (DataType.INT64, "+12", 12),
        (DataType.DOUBLE, "21.5", 21.5),
        (DataType.DOUBLE, "1e3", 1000.0),
        (DataType.DOUBLE, "-.5", -0.5),
        (DataType.DOUBLE, "5.", 5.0),
        (DataType.DECIMAL, "1.23456", 1.2346),
        (DataType.DECIMAL, "10", 10),
    ],
)
def test_numbers_sent_as_text_are_converted(data_type: DataType, text: str, expected: Any) -> None:
    value = converter_for(data_type)(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("data_type", "text", "rule"),
    [
        (DataType.INT64, "5.0", "type"),
        (DataType.INT64, "", "type"),
        (DataType.INT64, "1_000", "type"),
        (DataType.INT64, "٣", "type"),  # a non-ASCII digit int() would read
        (DataType.INT64, "9223372036854775807", "range"),
        (DataType.DOUBLE, "nan", "type"),
        (DataType.DOUBLE, "inf", "type"),
        (DataType.DOUBLE, "1,5", "type"),
        (DataType.DOUBLE, "0x10", "type"),
        (DataType.DOUBLE, "1e400", "range"),
        (DataType.DECIMAL, "Infinity", "type"),
        (DataType.DECIMAL, "1e30", "range"),
        (DataType.DOUBLE, "9" * 500, "type"),
    ],
)
def test_text_that_is_no_number_is_refused_with_its_rule(
    data_type: DataType, text: str, rule: str
) -> None:
    with pytest.raises(RuleError) as info:
        converter_for(data_type)(text)
    assert info.value.rule == rule


def test_text_numbers_false_refuses_all_text_in_numeric_columns() -> None:
    for data_type in (DataType.INT64, DataType.DOUBLE, DataType.DECIMAL):
        with pytest.raises(RuleError) as info:
            converter_for(data_type, text_numbers=False)("5")
        assert info.value.rule == "type"
    # Booleans as text were always accepted, in both modes; strings stay strings.
    rules = RowRules({"b": DataType.BOOLEAN, "s": DataType.STRING}, text_numbers=False)
    assert rules.normalize_row({"b": "TRUE", "s": "5"}) == {"b": True, "s": "5"}


@given(st.integers(min_value=-(2**63) + 1, max_value=2**63 - 2))
def test_any_int64_survives_the_trip_through_text(number: int) -> None:
    assert converter_for(DataType.INT64)(str(number)) == number


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_any_finite_double_survives_the_trip_through_text(number: float) -> None:
    text = repr(number)
    if abs(number) >= 1.7976931348623157e308:
        return  # Double.MaxValue itself is refused, as text or not
    assert converter_for(DataType.DOUBLE)(text) == number
