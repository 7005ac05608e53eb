"""Read a JSON body's structure without building it: count rows, find NaN.

Two questions the ingest path must answer before (or instead of) parsing a body:

* Does it hold more rows than a POST may? Asked before ``orjson.loads``, so a 16 MB
  ``[{},{},...]`` (5.6 million rows) is refused without materialising its rows: the
  scan walks only the structural tokens, and stops at the first row past the cap.
* Where is the ``NaN`` / ``Infinity`` that made it invalid JSON? Python's
  ``json.dumps`` writes them for non-finite floats, so users send them; the answer
  names the row and the field, as every other bad value does.

The scan is a regular expression over the bytes: strings (with their escapes) are
one token each, so brackets and commas inside them never count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NonFiniteToken", "count_rows_past", "find_non_finite"]

# A string (unrolled-loop form: no backtracking per character), or one structural byte.
_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRUCTURE = re.compile(_STRING + rb"|[\[\]{},:]")
_WITH_NON_FINITE = re.compile(_STRING + rb"|[\[\]{},:]|-?Infinity|NaN")
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


@dataclass(frozen=True, slots=True)
class NonFiniteToken:
    """A ``NaN``/``Infinity``/``-Infinity`` token outside any string."""

    #: The token as written: ``NaN``, ``Infinity`` or ``-Infinity``.
    text: str
    #: Index of the row holding it (None when it is not inside a row).
    row: int | None
    #: The row's top-level field it sits under (None when not inside a field).
    field: str | None
    #: Its position in characters, as JSON decoders report positions.
    char_pos: int


class _Walker:
    """Tracks where the scan is: depth, the rows array, the row index and its field."""

    __slots__ = ("depth", "field", "key", "row", "rows_depth", "top")

    def __init__(self) -> None:
        self.depth = 0
        self.rows_depth = 0  # depth inside the rows array (0: not found yet / left)
        self.row = -1  # index of the row being read
        self.top = 0  # the body's first byte: "[" or "{"
        self.key: bytes | None = None  # the last string seen (a key, if ":" follows)
        self.field: bytes | None = None  # the current row's top-level field

    def step(self, token: bytes) -> None:
        first = token[0]
        if first == 0x22:  # a string
            self.key = token
            return
        if first in _OPENERS:
            if self.depth == 0:
                self.top = first
                if first == 0x5B:  # a bare array of rows
                    self.rows_depth = 1
                    self.row = 0
            elif (
                self.depth == 1
                and self.top == 0x7B
                and first == 0x5B
                and self.key == b'"rows"'
                and self.rows_depth == 0
            ):
                self.rows_depth = 2  # {"rows": [ ... ]}
                self.row = 0
            self.depth += 1
            return
        if first in _CLOSERS:
            self.depth -= 1
            if self.rows_depth and self.depth < self.rows_depth:
                self.rows_depth = -1  # the rows array is over
            if self.depth == self.rows_depth:
                self.field = None  # a row ended
            return
        if first == 0x3A:  # ":" after a key
            if self.rows_depth > 0 and self.depth == self.rows_depth + 1:
                self.field = self.key
            return
        # ","
        if self.rows_depth > 0 and self.depth == self.rows_depth:
            self.row += 1
            self.field = None


def count_rows_past(body: bytes, cap: int, *, exact_up_to: int | None = None) -> int | None:
    """How many rows the body holds, if more than ``cap``; else None.

    Looks only at the array a row POST carries (a bare array, or ``{"rows": [...]}``);
    a body that is not JSON is left to the parser to refuse. The count is exact up to
    ``exact_up_to`` (default ``cap + 1``): past it the scan stops and returns
    ``exact_up_to + 1``, so a 5.6-million-row body costs no more than the first few.
    Cheap when the body has at most ``cap`` commas at all (n rows need n - 1 commas).
    """
    if body.count(b",") < cap:
        return None
    stop = max(cap + 1, exact_up_to or 0)
    walker = _Walker()
    for match in _STRUCTURE.finditer(body):
        walker.step(match.group())
        if walker.row >= stop:
            return stop + 1
        if walker.rows_depth < 0:
            break
    rows = walker.row + 1
    return rows if rows > cap else None


def find_non_finite(body: bytes) -> NonFiniteToken | None:
    """The first ``NaN``/``Infinity``/``-Infinity`` outside a string, with its row and field."""
    if b"NaN" not in body and b"Infinity" not in body:
        return None
    walker = _Walker()
    for match in _WITH_NON_FINITE.finditer(body):
        token = match.group()
        if token[0] in b"-IN" and token != b"-" and not token.startswith(b'"'):
            field = walker.field.decode("utf-8", "replace")[1:-1] if walker.field else None
            row = walker.row if walker.rows_depth > 0 and walker.row >= 0 else None
            char_pos = len(body[: match.start()].decode("utf-8", "replace"))
            return NonFiniteToken(token.decode(), row, field, char_pos)
        walker.step(token)
    return None
