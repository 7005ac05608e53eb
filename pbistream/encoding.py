"""Normalised rows to JSON request bodies, split within Power BI's row and byte limits.

Pure functions and one small builder, no I/O. A row is encoded once, on its own
(:func:`encode_row`), so the client can measure it, store it in the spool and then
join many encoded rows into one body without encoding them again.

Two body shapes exist: a streaming dataset's Push URL takes a bare JSON array
(``[{...}, {...}]``); the REST API's PostRows takes ``{"rows": [...]}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson

from pbistream.limits import MAX_PUSH_BODY_BYTES, MAX_ROWS_PER_POST, MAX_STREAMING_BODY_BYTES

__all__ = [
    "BodyBuilder",
    "BodyShape",
    "encode_row",
    "envelope",
    "split_bodies",
]

BodyShape = Literal["array", "rows"]

_OPENERS: dict[str, bytes] = {"array": b"[", "rows": b'{"rows":['}
_CLOSERS: dict[str, bytes] = {"array": b"]", "rows": b"]}"}

#: The documented maximum body size per shape's usual target.
DEFAULT_MAX_BYTES: dict[str, int] = {
    "array": MAX_STREAMING_BODY_BYTES.value,
    "rows": MAX_PUSH_BODY_BYTES.value,
}


def encode_row(row: Mapping[str, Any]) -> bytes:
    """Encode one normalised row (JSON-native values only) as compact JSON.

    Raises:
        TypeError: A value is not JSON-native (the row was not normalised), or an
            integer does not fit 64 bits.
    """
    return orjson.dumps(row)


def envelope(shape: BodyShape) -> tuple[bytes, bytes]:
    """The bytes that open and close a body of ``shape``."""
    return _OPENERS[shape], _CLOSERS[shape]


class BodyBuilder:
    """Accumulates encoded rows into one body, refusing a row that would break a limit.

    Args:
        shape: ``"array"`` for a Push URL, ``"rows"`` for the REST API.
        max_rows: Rows per body (at most 10,000).
        max_bytes: Bytes per body, envelope included.
    """

    __slots__ = ("_closer", "_opener", "_parts", "_size", "max_bytes", "max_rows")

    def __init__(
        self,
        shape: BodyShape,
        *,
        max_rows: int = MAX_ROWS_PER_POST.value,
        max_bytes: int | None = None,
    ) -> None:
        self._opener, self._closer = envelope(shape)
        self.max_rows = max_rows
        self.max_bytes = DEFAULT_MAX_BYTES[shape] if max_bytes is None else max_bytes
        self._parts: list[bytes] = []
        self._size = len(self._opener) + len(self._closer)

    def fits_alone(self, part: bytes) -> bool:
        """True when ``part`` fits in an otherwise empty body."""
        return len(self._opener) + len(self._closer) + len(part) <= self.max_bytes

    def add(self, part: bytes) -> bool:
        """Append ``part`` if the body stays within both limits; return whether it did."""
        extra = len(part) + (1 if self._parts else 0)  # the comma between rows
        if len(self._parts) >= self.max_rows or self._size + extra > self.max_bytes:
            return False
        self._parts.append(part)
        self._size += extra
        return True

    def __len__(self) -> int:
        return len(self._parts)

    @property
    def size(self) -> int:
        """The body's size in bytes so far."""
        return self._size

    def body(self) -> bytes:
        """The finished body."""
        return self._opener + b",".join(self._parts) + self._closer


def split_bodies(
    parts: Iterable[bytes],
    shape: BodyShape,
    *,
    max_rows: int = MAX_ROWS_PER_POST.value,
    max_bytes: int | None = None,
) -> list[tuple[bytes, int]]:
    """Join encoded rows into as few bodies as the limits allow, in order.

    Returns:
        ``(body, row_count)`` pairs.

    Raises:
        ValueError: One row alone is larger than ``max_bytes``.
    """
    bodies: list[tuple[bytes, int]] = []
    builder = BodyBuilder(shape, max_rows=max_rows, max_bytes=max_bytes)
    for index, part in enumerate(parts):
        if builder.add(part):
            continue
        if not builder.fits_alone(part):
            raise ValueError(
                f"row {index} encodes to {len(part):,} bytes, more than the "
                f"{builder.max_bytes:,}-byte body limit"
            )
        bodies.append((builder.body(), len(builder)))
        builder = BodyBuilder(shape, max_rows=max_rows, max_bytes=max_bytes)
        builder.add(part)
    if len(builder):
        bodies.append((builder.body(), len(builder)))
    return bodies
