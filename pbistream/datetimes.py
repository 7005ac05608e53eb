"""Power BI's DateTime text: the formats it reads and its 1/300 s grid.

Pure functions on :mod:`datetime` values and strings, with no column rules: the
DateTime rule in :mod:`pbistream.values` calls them and turns their ``ValueError``
into a :class:`~pbistream.values.RuleError`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

__all__ = ["is_canonical", "parse_text", "quantised_text"]

# .NET-style US dates, as Microsoft's samples send them: "07/30/2014", "8/19/2016 9:24:40 PM".
_US_DATE = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{4})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?\s*([AaPp][Mm])?)?"
)
_TICKS_PER_SECOND = 300  # Power BI stores DateTime in multiples of 1/300 s.


# Formatting by table lookups and one concatenation is several times faster than
# strftime, isoformat on a replaced copy or an f-string with format specs.
_TWO_DIGITS = tuple(f"{i:02d}" for i in range(100))
_THREE_DIGITS = tuple(f"{i:03d}" for i in range(1000))
# Milliseconds that quantisation maps to themselves: a canonical string is kept as is.
_STABLE_MILLIS = frozenset(t * 1000 // _TICKS_PER_SECOND for t in range(_TICKS_PER_SECOND))


def quantised_text(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.fffZ`` for a UTC ``moment``, rounded to the 1/300 s grid."""
    micro = moment.microsecond
    millis = 0
    if micro:
        ticks = round(micro * _TICKS_PER_SECOND / 1_000_000)
        if ticks == _TICKS_PER_SECOND:
            if (
                moment.year == 9999
                and moment.month == 12
                and moment.day == 31
                and moment.hour == 23
            ):
                ticks -= 1  # stay inside year 9999 rather than overflow
            else:
                moment = moment.replace(microsecond=0) + timedelta(seconds=1)
                ticks = 0
        millis = ticks * 1000 // _TICKS_PER_SECOND
    year = moment.year
    two = _TWO_DIGITS
    return (
        (str(year) if year >= 1000 else f"{year:04d}")
        + "-"
        + two[moment.month]
        + "-"
        + two[moment.day]
        + "T"
        + two[moment.hour]
        + ":"
        + two[moment.minute]
        + ":"
        + two[moment.second]
        + "."
        + _THREE_DIGITS[millis]
        + "Z"
    )


def is_canonical(text: str) -> bool:
    """True when ``text`` is already ``YYYY-MM-DDTHH:MM:SS.fffZ`` on the 1/300 s grid."""
    return (
        len(text) == 24
        and text[23] == "Z"
        and text[19] == "."
        and text[10] == "T"
        and text[20:23].isdigit()
        and int(text[20:23]) in _STABLE_MILLIS
    )


def parse_text(text: str) -> datetime:
    """Read ISO 8601, ``yyyy-MM-dd`` or .NET-style US dates (naive when no offset is given).

    Raises:
        ValueError: ``text`` is none of those, or not a valid date.
    """
    text = text.strip()
    try:
        # Python 3.11 reads ISO 8601 with fractions, "Z" and offsets, and "yyyy-MM-dd".
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    match = _US_DATE.fullmatch(text)
    if match:
        month, day, year, hour, minute, second, fraction, ampm = match.groups()
        h = int(hour or 0)
        if ampm:
            if not 1 <= h <= 12:
                raise ValueError(f"hour {h} is not valid with {ampm.upper()}")
            h = h % 12 + (12 if ampm.lower() == "pm" else 0)
        micro = int((fraction or "0").ljust(6, "0")[:6])
        try:
            return datetime(
                int(year), int(month), int(day), h, int(minute or 0), int(second or 0), micro
            )
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid date: {exc}") from None
    shown = repr(text)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ValueError(
        f"{shown} is not a date and time Power BI reads; use ISO 8601 "
        "(2024-01-31T13:45:00Z), yyyy-MM-dd, MM/dd/yyyy or M/d/yyyy h:mm:ss tt"
    )
