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
from typing import Any

import orjson

__all__ = [
    "NonFiniteToken",
    "count_rows_past",
    "find_non_finite",
    "locate",
    "parse_rows_in_pieces",
]

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


def locate(body: bytes, char_pos: int) -> tuple[int | None, str | None]:
    """The row index and top-level field at a decoder's character position (or None)."""
    byte_pos = len(body.decode("utf-8", "replace")[:char_pos].encode("utf-8", "replace"))
    walker = _Walker()
    for match in _STRUCTURE.finditer(body, 0, byte_pos):
        walker.step(match.group())
    field = walker.field.decode("utf-8", "replace")[1:-1] if walker.field else None
    row = walker.row if walker.rows_depth > 0 and walker.row >= 0 else None
    return row, field


# Where one row object ends and the next begins: "}" "," "{" with optional spaces.
_ROW_BOUNDARY = re.compile(rb"\}\s*,\s*\{")
_ROWS_OBJECT_START = re.compile(rb'\s*\{\s*"rows"\s*:\s*\[')
_ROWS_OBJECT_END = re.compile(rb"\]\s*\}\s*$")
# Boundaries tried per piece before giving up (strings holding "},{" mislead the cut).
_MAX_MISCUTS = 8


def parse_rows_in_pieces(
    body: bytes, piece_bytes: int = 256 * 1024, *, rows_object: bool = True
) -> list[Any] | None:
    """Parse a big array of rows piece by piece; None if it cannot be split.

    One ``orjson.loads`` of a 10 MB body holds the GIL for a few hundred ms, which
    stalls the event loop; pieces of ``piece_bytes`` let it run in between. A piece
    ends at a ``},{`` boundary, and is parsed as ``[ ... ]``: if the boundary was
    inside a string or a nested value, that piece is not valid JSON (its strings or
    brackets do not close), so a wrongly cut piece can never parse into wrong rows.
    Any failure returns None, and the caller parses the whole body (and reports
    its error) as before. ``rows_object`` False takes a bare array only (a
    ``{"rows": [...]}`` body is then left to the caller to refuse).
    """
    start = body.find(b"[")
    if start < 0:
        return None
    end = len(body.rstrip())
    if body[:start].strip() == b"":
        if body[end - 1 : end] != b"]":
            return None
        end -= 1
    elif not rows_object:
        return None
    else:  # {"rows": [ ... ]}
        head = _ROWS_OBJECT_START.match(body)
        tail = _ROWS_OBJECT_END.search(body)
        if head is None or tail is None:
            return None
        start, end = head.end() - 1, tail.start()
    rows: list[Any] = []
    position = start + 1  # the first byte of the first row
    while True:
        boundary = _ROW_BOUNDARY.search(body, position + piece_bytes, end)
        for _ in range(_MAX_MISCUTS):
            cut = boundary.start() + 1 if boundary else end
            try:
                piece = orjson.loads(b"[" + body[position:cut] + b"]")
                break
            except orjson.JSONDecodeError:
                if boundary is None:
                    return None  # the body itself is not valid JSON
                # Cut inside a string or nested value: try the next boundary.
                boundary = _ROW_BOUNDARY.search(body, boundary.end(), end)
        else:
            return None
        rows.extend(piece)
        if boundary is None:
            return rows
        position = boundary.end() - 1  # the next row's "{"
