"""The value rules of Power BI columns: one module, shared by the client and the server.

Everything that decides whether a value fits a column lives here: data type names,
Int64 and Double ranges, the 4,000-character string cap, the DateTime formats Power
BI accepts and their normalisation to UTC. The client calls it before sending (so a
bad row is caught locally, with the same words the server would use) and the server
calls it on every row it receives.

Normalised values are what goes on the wire and into storage:

==========  ==============================================================
Int64       ``int`` strictly between Int64.MinValue and Int64.MaxValue
Double      finite ``float`` (or ``int``) strictly inside ±Double.MaxValue
Decimal     finite number, rounded to scale 4, magnitude below 10**24
Boolean     ``bool`` (the strings "true"/"false" are accepted)
DateTime    ``"YYYY-MM-DDTHH:MM:SS.fffZ"`` in UTC, quantised to 1/300 s
String      ``str`` of at most 4,000 characters (numbers are turned into text)
==========  ==============================================================

``None`` (JSON null) is accepted for every type: an omitted field is a null.

Numbers sent as text (``"5"``, ``"-21.5"``, ``"1e3"``) are converted for Int64, Double
and Decimal columns, as Power BI converts them: Microsoft's own documented
``Add-PowerBIRow -Rows (Import-Csv ...)`` sends every CSV cell as a JSON string. Only
plain decimal notation is read (no ``NaN``, ``Infinity``, ``0x10``, ``1_000``, thousands
separators or empty text); other text is refused with the ``type`` rule. Pass
``text_numbers=False`` to refuse all text in numeric columns (the server's
``--text-numbers refuse``).

Naive datetimes -- a Python ``datetime`` without ``tzinfo``, or a string without
``Z`` or an offset, such as the seed's ``"%Y-%m-%dT%H:%M:%S"`` -- are taken as UTC,
as Power BI stores them. Pass ``naive="local"`` to :func:`datetime_converter` to
read naive Python datetimes as the machine's local time instead.
"""

from __future__ import annotations

import enum
import math
import re
import reprlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pbistream.datetimes import is_canonical, parse_text, quantised_text
from pbistream.limits import MAX_COLUMNS, MAX_STRING_CHARS

__all__ = [
    "DataType",
    "RowError",
    "RowRules",
    "RuleError",
    "UntypedRules",
    "converter_for",
    "parse_data_type",
    "parse_field_type",
]


class DataType(enum.Enum):
    """The column data types of a Power BI push dataset (their canonical names)."""

    INT64 = "Int64"
    DOUBLE = "Double"
    DECIMAL = "Decimal"
    BOOLEAN = "Boolean"
    DATETIME = "DateTime"
    STRING = "String"


# The REST API's names, compared case-insensitively; "bool" is a documented alias
# (Microsoft's own PostDataset example uses it).
_API_TYPE_NAMES = {t.value.lower(): t for t in DataType} | {"bool": DataType.BOOLEAN}
# The streaming-dataset form (and our CLI) also says Text and Number.
_FIELD_TYPE_NAMES = _API_TYPE_NAMES | {"text": DataType.STRING, "number": DataType.DOUBLE}


def parse_data_type(name: object) -> DataType:
    """Return the DataType for a REST API ``dataType`` value.

    Raises:
        ValueError: The name is not one Power BI accepts.
    """
    found = _API_TYPE_NAMES.get(name.lower()) if isinstance(name, str) else None
    if found is None:
        accepted = ", ".join(t.value for t in DataType)
        raise ValueError(f"unknown dataType {name!r}; use one of {accepted} (or bool)")
    return found


def parse_field_type(name: str) -> DataType:
    """Like :func:`parse_data_type`, also accepting the UI's Text and Number.

    Raises:
        ValueError: The name is not a known field type.
    """
    found = _FIELD_TYPE_NAMES.get(name.lower())
    if found is None:
        raise ValueError(
            f"unknown field type {name!r}; use Text, Number, Int64, Boolean, DateTime or Decimal"
        )
    return found


class RuleError(ValueError):
    """A value broke a column rule; ``rule`` is a short stable name, the message explains."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row was refused: its index in the request, the column and the rule."""

    row: int
    column: str | None
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column {_name(self.column)}" if self.column else "")
        return f"{where}: {self.message}"


Converter = Callable[[Any], Any]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_DOUBLE_MAX = sys.float_info.max
_DECIMAL_BOUND = 10**24  # precision 28, scale 4
_MAX_CHARS = MAX_STRING_CHARS.value


def _is_nan_like(value: Any) -> bool:
    # pandas.NA, pandas.NaT and numpy.datetime64("NaT") are missing values, not data.
    name = type(value).__name__
    return name in ("NAType", "NaTType") or (name == "datetime64" and value != value)


def _to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise RuleError("type", f"expected a number, got a boolean ({value!r})")
    if isinstance(value, int | float):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    # numpy scalars and other numeric types expose __index__ or __float__.
    if hasattr(value, "__index__"):
        return int(value.__index__())
    if hasattr(value, "__float__") and not isinstance(value, str | bytes):
        return float(value)
    raise RuleError("type", f"expected a number, got {_got(value)}")


def _int64(value: Any) -> int | None:
    if type(value) is not int:
        if value is None or _is_nan_like(value):
            return None
        number = _to_number(value)
        if isinstance(number, float):
            if not math.isfinite(number) or not number.is_integer():
                raise RuleError("type", f"expected a whole number for Int64, got {value!r}")
            number = int(number)
        value = number
    if value <= _INT64_MIN or value >= _INT64_MAX:
        raise RuleError(
            "range", f"{value} is outside Int64's range (MinValue and MaxValue are not allowed)"
        )
    return int(value)


def _double(value: Any) -> Any:  # float | int | None; Any keeps the fast path cast-free
    if type(value) is not float:
        if value is None or _is_nan_like(value):
            return None
        value = _to_number(value)
        if type(value) is int:
            if abs(value) >= _DOUBLE_MAX:
                raise RuleError("range", f"{value} is outside Double's range")
            return value
        value = float(value)
    if value != value:
        raise RuleError("nan", "NaN is not allowed for Double")
    if value in (math.inf, -math.inf):
        raise RuleError("infinity", "Infinity is not allowed for Double")
    if value >= _DOUBLE_MAX or value <= -_DOUBLE_MAX:
        raise RuleError("range", "Double.MaxValue and Double.MinValue are not allowed")
    return value


def _decimal(value: Any) -> float | int | None:
    if value is None or _is_nan_like(value):
        return None
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise RuleError("nan", f"{value} is not allowed for Decimal")
        if abs(value) >= _DECIMAL_BOUND:
            raise RuleError("range", f"{value} is outside Decimal's range (precision 28, scale 4)")
        rounded = round(value, 4)
        return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)
    number = _to_number(value)
    if isinstance(number, float):
        if not math.isfinite(number):
            raise RuleError("nan", f"{number} is not allowed for Decimal")
        number = round(number, 4)
    if abs(number) >= _DECIMAL_BOUND:
        raise RuleError("range", f"{number} is outside Decimal's range (precision 28, scale 4)")
    return number


def _boolean(value: Any) -> bool | None:
    if value is True or value is False or value is None:
        return bool(value) if value is not None else None
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    elif type(value).__name__ == "bool_":  # numpy.bool_
        return bool(value)
    elif _is_nan_like(value):
        return None
    raise RuleError("type", f"expected a boolean, got {_got(value)}")


def _string(value: Any) -> Any:  # str | None
    if type(value) is not str:
        if value is None or _is_nan_like(value):
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            raise RuleError("type", f"expected text, got {_got(value)}")
        value = str(value)
    if len(value) > _MAX_CHARS:
        raise RuleError(
            "length", f"text of {len(value):,} characters is longer than {_MAX_CHARS:,}"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RuleError(
                "unicode", "text holds a lone surrogate, which is not valid Unicode"
            ) from None
    return value


# Plain decimal notation only: what a CSV cell holding a number looks like. Python's own
# int()/float() would also read "1_000", "nan", "inf" and non-ASCII digits.
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Longer text is no number a column can hold (Decimal has 28 digits, Double ~17).
_MAX_NUMBER_TEXT = 400


def _number_from_text(text: str, data_type: DataType) -> int | float | Decimal:
    """Read a number sent as text for a numeric column, or refuse it with the ``type`` rule."""
    stripped = text.strip()
    if len(stripped) <= _MAX_NUMBER_TEXT:
        if data_type is DataType.INT64:
            if _INTEGER_TEXT.fullmatch(stripped):
                return int(stripped)
        elif _NUMBER_TEXT.fullmatch(stripped):
            if data_type is DataType.DECIMAL:
                return Decimal(stripped)
            number = float(stripped)
            if math.isinf(number):  # "1e400": a number, but no Double can hold it
                raise RuleError("range", f"{_short(text)} is outside Double's range")
            return number
    whole = " (a whole number)" if data_type is DataType.INT64 else ""
    raise RuleError(
        "type", f"expected a number for {data_type.value}{whole}, got text {_short(text)}"
    )


# The numeric rules that also take numbers sent as JSON strings ("5", "21.5"). Each
# repeats its strict twin's fast path first, so a value that already is a number costs
# no extra call (the ingest path checks millions of them).
def _int64_or_text(value: Any) -> int | None:
    if type(value) is int and _INT64_MIN < value < _INT64_MAX:
        return value
    if type(value) is str:
        value = _number_from_text(value, DataType.INT64)
    return _int64(value)


def _double_or_text(value: Any) -> Any:
    if type(value) is float and -_DOUBLE_MAX < value < _DOUBLE_MAX:  # NaN fails both
        return value
    if type(value) is str:
        value = _number_from_text(value, DataType.DOUBLE)
    return _double(value)


def _decimal_or_text(value: Any) -> float | int | None:
    if type(value) is str:
        value = _number_from_text(value, DataType.DECIMAL)
    return _decimal(value)


def datetime_converter(naive: Literal["utc", "local"] = "utc") -> Converter:
    """Return the DateTime converter; ``naive`` says how tz-less Python datetimes are read."""

    def convert(value: Any) -> str | None:
        # The common types first: each test costs time on every value.
        if isinstance(value, str):
            try:
                moment = parse_text(value)
            except ValueError as exc:
                raise RuleError("datetime", str(exc)) from None
            if is_canonical(value) and moment.tzinfo is UTC:
                return value  # parsed, so valid; already normalised
            local_naive = False
        elif isinstance(value, datetime):
            if value != value:  # pandas.NaT compares unequal to itself
                return None
            moment = value
            local_naive = naive == "local"
        elif value is None or _is_nan_like(value):
            return None
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day)
            local_naive = False
        elif type(value).__name__ == "datetime64":
            moment = datetime.fromisoformat(str(value.astype("datetime64[us]")))
            local_naive = False
        else:
            raise RuleError("type", f"expected a date and time, got {_got(value)}")
        if moment.tzinfo is None:
            moment = moment.astimezone(UTC) if local_naive else moment.replace(tzinfo=UTC)
        elif moment.tzinfo is not UTC:
            try:
                moment = moment.astimezone(UTC)
            except OverflowError:
                raise RuleError(
                    "datetime", f"{_short(value)} is outside the years 1-9999"
                ) from None
        return quantised_text(moment)

    return convert


_CONVERTERS: dict[DataType, Converter] = {
    DataType.INT64: _int64,
    DataType.DOUBLE: _double,
    DataType.DECIMAL: _decimal,
    DataType.BOOLEAN: _boolean,
    DataType.DATETIME: datetime_converter("utc"),
    DataType.STRING: _string,
}


_TEXT_READING_CONVERTERS: dict[DataType, Converter] = {
    DataType.INT64: _int64_or_text,
    DataType.DOUBLE: _double_or_text,
    DataType.DECIMAL: _decimal_or_text,
}


def converter_for(
    data_type: DataType, *, naive: Literal["utc", "local"] = "utc", text_numbers: bool = True
) -> Converter:
    """Return the function that checks and normalises one value of ``data_type``.

    It returns the normalised value, or raises :class:`RuleError`.

    Args:
        data_type: The column's type.
        naive: How naive Python datetimes are read, ``"utc"`` or ``"local"``.
        text_numbers: Convert numbers sent as text (``"5"``) for Int64, Double and
            Decimal, as Power BI does; ``False`` refuses any text there.
    """
    if data_type is DataType.DATETIME and naive != "utc":
        return datetime_converter(naive)
    if text_numbers and data_type in _TEXT_READING_CONVERTERS:
        return _TEXT_READING_CONVERTERS[data_type]
    return _CONVERTERS[data_type]


class RowRules:
    """Checks and normalises rows for one table.

    Args:
        columns: ``(name, DataType)`` pairs, or a mapping of name to DataType.
        unknown: ``"error"`` refuses a row holding a field that is not a column;
            ``"ignore"`` drops such fields.
        naive: How naive Python datetimes are read, ``"utc"`` or ``"local"``.
        text_numbers: Convert numbers sent as text (``"5"``, ``"21.5"``) in Int64,
            Double and Decimal columns (the default, as Power BI); ``False`` refuses them.
    """

    __slots__ = ("_converters", "_ignore_unknown")

    def __init__(
        self,
        columns: Mapping[str, DataType] | Iterable[tuple[str, DataType]],
        *,
        unknown: Literal["error", "ignore"] = "error",
        naive: Literal["utc", "local"] = "utc",
        text_numbers: bool = True,
    ) -> None:
        pairs = columns.items() if isinstance(columns, Mapping) else columns
        self._converters = {
            name: converter_for(dtype, naive=naive, text_numbers=text_numbers)
            for name, dtype in pairs
        }
        self._ignore_unknown = unknown == "ignore"

    def normalize_row(self, row: Any, index: int = 0) -> dict[str, Any]:
        """Return the normalised copy of one row.

        Raises:
            RowErrorException: The row breaks a rule; ``.error`` says which.
        """
        if type(row) is not dict:
            if not isinstance(row, Mapping):
                raise RowErrorException(
                    RowError(index, None, "shape", f"a row must be an object, got {_kind(row)}")
                )
            row = dict(row)
        converters = self._converters
        out: dict[str, Any] = {}
        for key, value in row.items():
            convert = converters.get(key)
            if convert is None:
                if self._ignore_unknown:
                    continue
                raise RowErrorException(
                    RowError(
                        index,
                        str(key),
                        "unknown_column",
                        f"{_name(str(key))} is not a column of this table",
                    )
                )
            try:
                out[key] = convert(value)
            except RuleError as exc:
                raise RowErrorException(RowError(index, key, exc.rule, exc.message)) from None
            except Exception as exc:  # the value's own __float__, __index__, ... failed
                raise RowErrorException(_unreadable(index, key, value, exc)) from None
        return out

    def normalize_rows(
        self, rows: Iterable[Any], *, start: int = 0
    ) -> tuple[list[dict[str, Any]], list[RowError]]:
        """Normalise many rows; return the good ones and an error for each bad one."""
        good: list[dict[str, Any]] = []
        errors: list[RowError] = []
        normalize = self.normalize_row
        for index, row in enumerate(rows, start):
            try:
                good.append(normalize(row, index))
            except RowErrorException as exc:
                errors.append(exc.error)
        return good, errors


class RowErrorException(ValueError):
    """Carries a :class:`RowError` out of :meth:`RowRules.normalize_row`."""

    def __init__(self, error: RowError) -> None:
        super().__init__(str(error))
        self.error = error


def _unreadable(index: int, key: Any, value: Any, exc: Exception) -> RowError:
    """A value whose own conversion raised: refuse the row, naming the field and why."""
    return RowError(
        index,
        str(key),
        "type",
        f"a {type(value).__name__} value could not be read: {type(exc).__name__}: {exc}",
    )


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


# Shows a few levels and items of a value: a row value nested 1,000 deep (or a
# megabyte long) must give a short message, not a RecursionError or an echo.
_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 4, 4
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 40


def _name(name: str, limit: int = 100) -> str:
    """A field's name quoted for a message; a long one (a 1 MB key) cut, with its length."""
    if len(name) <= limit:
        return repr(name)
    return f"{name[:limit]!r}... ({len(name):,} characters)"


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = _REPR.repr(value)
    except Exception:  # a value whose own __repr__ fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _got(value: Any) -> str:
    """What a value is, for "expected X, got ..." messages."""
    if isinstance(value, list | dict):
        kind = "an array" if isinstance(value, list) else "an object"
        return f"{kind} {_short(value)} (a column holds one value, not an array or object)"
    return f"{type(value).__name__} {_short(value)}"


def _untyped_value(value: Any, naive: Literal["utc", "local"]) -> Any:
    # Order: the JSON-native types first (the common case), then the rich ones.
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is float:
        return _double(value)
    if kind is int:
        if value <= _INT64_MIN or value >= _INT64_MAX:
            raise RuleError("range", f"{value} is outside Int64's range")
        return value
    if value is None or kind is bool:
        return value
    if isinstance(value, datetime | date) or kind.__name__ == "datetime64":
        return converter_for(DataType.DATETIME, naive=naive)(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if _is_nan_like(value):
        return None
    if kind.__name__ == "bool_":  # numpy.bool_
        return bool(value)
    if isinstance(value, str):  # str subclasses, numpy.str_
        return _string(str(value))
    if hasattr(value, "__index__"):  # numpy integers
        return _untyped_value(int(value.__index__()), naive)
    if hasattr(value, "__float__") and not isinstance(value, bytes):  # numpy floats
        return _double(float(value))
    raise RuleError("type", f"cannot send a {kind.__name__} value {_short(value)}")


class UntypedRules:
    """Normalises rows when the table's schema is not known.

    Values keep their JSON type; rich Python values are normalised as a typed column
    would do (datetimes to UTC ISO 8601, Decimal, numpy and pandas scalars, NaT/NA to
    null); what Power BI refuses for any type (NaN, infinities, 4,000+ characters,
    integers beyond Int64, values with no JSON form) is refused here too.

    Args:
        naive: How naive Python datetimes are read, ``"utc"`` or ``"local"``.
    """

    __slots__ = ("_naive",)

    def __init__(self, *, naive: Literal["utc", "local"] = "utc") -> None:
        self._naive: Literal["utc", "local"] = naive

    def normalize_row(self, row: Any, index: int = 0) -> dict[str, Any]:
        """Return the normalised copy of one row.

        Raises:
            RowErrorException: The row breaks a rule; ``.error`` says which.
        """
        if not isinstance(row, Mapping):
            raise RowErrorException(
                RowError(index, None, "shape", f"a row must be an object, got {_kind(row)}")
            )
        if len(row) > MAX_COLUMNS.value:
            raise RowErrorException(
                RowError(
                    index,
                    None,
                    "columns",
                    f"a row of {len(row)} fields cannot fit a table: at most "
                    f"{MAX_COLUMNS.value} columns",
                )
            )
        out: dict[str, Any] = {}
        naive = self._naive
        for key, value in row.items():
            if type(key) is not str:
                raise RowErrorException(
                    RowError(index, str(key), "shape", "a field name must be text")
                )
            try:
                out[key] = _untyped_value(value, naive)
            except RuleError as exc:
                raise RowErrorException(RowError(index, key, exc.rule, exc.message)) from None
            except Exception as exc:  # the value's own __float__, __index__, ... failed
                raise RowErrorException(_unreadable(index, key, value, exc)) from None
        return out
