"""``X-PowerBI-PushData-SequenceNumber``: what the header means here, in one place.

Power BI's 2016 preview described the header as a way "to guarantee which rows have
been successfully pushed and avoiding duplication"; its current semantics are not
documented (reference §1.5, §7). pbistream keeps one number per table: a request
whose number is not above the table's last stored one is a duplicate, and its rows
are skipped. A skipped row is never silent: the 200 then carries
``X-PBIStream-Rows-Ignored: <n>`` and ``X-PBIStream-Sequence-Last: <M>`` (the table's
last stored number), and ``/metrics`` counts it in ``pbistream_rows_ignored_total``.
Deleting a table's rows forgets its number. The number is stored as a 64-bit
integer, so anything outside Int64's range is refused with a 400 before any work.

:func:`sequence_number` is the one place that decides which number (if any) a
request deduplicates on; a setting that changes the semantics belongs there.
"""

from __future__ import annotations

from starlette.requests import Request

from pbistream.server.errors import BadRequest
from pbistream.storage.base import InsertResult

__all__ = [
    "ROWS_IGNORED_HEADER",
    "SEQUENCE_HEADER",
    "SEQUENCE_LAST_HEADER",
    "SEQUENCE_MAX",
    "SEQUENCE_MIN",
    "ignored_headers",
    "parse_sequence_number",
    "sequence_number",
]

SEQUENCE_HEADER = "x-powerbi-pushdata-sequencenumber"
ROWS_IGNORED_HEADER = "X-PBIStream-Rows-Ignored"
SEQUENCE_LAST_HEADER = "X-PBIStream-Sequence-Last"
SEQUENCE_MIN = -(2**63)
SEQUENCE_MAX = 2**63 - 1
# Int64's extremes have 19 digits (and a sign); anything much longer is out of range,
# and is not handed to int(), whose cost grows with the length.
_MAX_CHARS = 40


def _out_of_range(raw: str) -> BadRequest:
    shown = raw if len(raw) <= _MAX_CHARS else raw[:_MAX_CHARS] + "..."
    return BadRequest(
        f"X-PowerBI-PushData-SequenceNumber must be a whole number from {SEQUENCE_MIN} "
        f"to {SEQUENCE_MAX} (a 64-bit integer); got {shown!r}."
    )


def parse_sequence_number(raw: str | None) -> int | None:
    """The header's value as an int (None when absent or blank).

    Raises:
        BadRequest: Not a whole number, or outside the 64-bit integer range.
    """
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if len(text) > _MAX_CHARS:
        raise _out_of_range(text)
    try:
        number = int(text)
    except ValueError:
        raise _out_of_range(text) from None
    if not SEQUENCE_MIN <= number <= SEQUENCE_MAX:
        raise _out_of_range(text)
    return number


def sequence_number(request: Request) -> int | None:
    """The number this request's rows are deduplicated on, or None for "store them all".

    Raises:
        BadRequest: The header is not a 64-bit whole number.
    """
    return parse_sequence_number(request.headers.get(SEQUENCE_HEADER))


def ignored_headers(result: InsertResult, rows: int) -> dict[str, str]:
    """The headers a 200 carries when its rows were skipped for their sequence number."""
    if not result.duplicate:
        return {}
    headers = {ROWS_IGNORED_HEADER: str(rows)}
    if result.last_sequence is not None:
        headers[SEQUENCE_LAST_HEADER] = str(result.last_sequence)
    return headers
