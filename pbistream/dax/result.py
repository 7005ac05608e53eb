"""Stored values → the JSON values Power BI's executeQueries answers with.

Both backends hand back what their SQL gives (SQLite: 1/0 for booleans;
PostgreSQL: ``Decimal`` for a SUM of integers); :func:`json_rows` makes them the
same, by the plan's column types, so the storage contract is one for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pbistream.dax.plan import ColumnSpec
from pbistream.values import DataType

__all__ = ["answer_datetime", "json_rows"]


def answer_datetime(text: str) -> str:
    """Stored ``2026-01-02T03:04:05.000Z`` → ``2026-01-02T03:04:05`` (milliseconds kept if any).

    Power BI's model has no time zone; executeQueries writes DateTime values
    without an offset.
    """
    text = text.removesuffix("Z")
    return text.removesuffix(".000")


def _as_bool(value: Any) -> Any:
    return bool(value)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _as_int(value: Any) -> Any:
    number = int(value)
    if not _INT64_MIN <= number <= _INT64_MAX:
        # PostgreSQL sums bigints as numeric; DAX's Int64 would overflow.
        raise OverflowError(f"the whole number {number} is outside the Int64 range")
    return number


def _as_float(value: Any) -> Any:
    return float(value)


def _as_datetime(value: Any) -> Any:
    return answer_datetime(str(value))


def _as_is(value: Any) -> Any:
    return value


_CONVERT: dict[DataType | None, Callable[[Any], Any]] = {
    DataType.BOOLEAN: _as_bool,
    DataType.INT64: _as_int,
    DataType.DOUBLE: _as_float,
    DataType.DECIMAL: _as_float,
    DataType.DATETIME: _as_datetime,
    DataType.STRING: str,
    None: _as_is,
}


def json_rows(
    columns: Sequence[ColumnSpec], records: Iterable[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """Convert SQL records to JSON-ready tuples in column order (None stays None: BLANK)."""
    converters = [_CONVERT[dtype] for _, dtype in columns]
    return [
        tuple(
            None if v is None else convert(v)
            for convert, v in zip(converters, record, strict=False)
        )
        for record in records
    ]
