"""What a feed reads, turned into rows: MQTT payloads, command output, text values.

Pure functions, no I/O. A piece of input that is not a row raises
:class:`PayloadError` with the reason, which the feed writes to the dead letter with
where the input came from (a topic, a file line, a command); it never stops the feed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from pbistream.exceptions import PbiStreamError
from pbistream.values import DataType

__all__ = [
    "PayloadError",
    "TopicField",
    "coerce",
    "parse_command_output",
    "parse_key_values",
    "parse_payload",
    "parse_topic_field",
    "topic_values",
]

_JSONISH = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null")


class PayloadError(PbiStreamError):
    """A piece of input is not a row; the message says why."""


def coerce(text: str, data_type: DataType | None) -> Any:
    """Turn command-line, CSV or ``key=value`` text into the value the column wants.

    With a known type, text that does not parse is left as text, so the value rules
    refuse it with the row, the field and the rule. Without one: JSON numbers,
    ``true``/``false``/``null``, else text (``007``, ``00`` or ``-01`` are not JSON
    numbers: they stay text). An empty text is a null.
    """
    if text == "":
        return None
    if data_type is None:
        if not _JSONISH.fullmatch(text):
            return text
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # leading zeros: the pattern lets them through
            return text
    try:
        if data_type is DataType.INT64:
            return int(text)
        if data_type in (DataType.DOUBLE, DataType.DECIMAL):
            return float(text)
    except ValueError:
        return text
    return text


def parse_key_values(
    pairs: Iterable[str],
    types: Mapping[str, DataType] | None = None,
    *,
    unquote: bool = False,
) -> dict[str, Any]:
    """``FIELD=VALUE`` texts → one row, values coerced by ``types`` when given.

    With ``unquote``, a value in double quotes (``name="Boiler 3"``, as scripts and
    env files print it) is a JSON string: the quotes go, and it stays text.

    Raises:
        PayloadError: A text is not ``FIELD=VALUE``.
    """
    row: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise PayloadError(f"{pair!r} is not FIELD=VALUE")
        if unquote and len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                row[name] = str(orjson.loads(value))
                continue
            except orjson.JSONDecodeError:
                pass  # not a JSON string after all: read it as it is
        row[name] = coerce(value, types.get(name) if types is not None else None)
    return row


def _rows_from_json(value: Any, value_field: str | None) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        if not value:
            raise PayloadError("an empty JSON array holds no row")
        for position, item in enumerate(value):
            if not isinstance(item, dict):
                raise PayloadError(
                    f"element {position} of the array is {_kind(item)}, not a JSON object"
                )
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value_field is None:
            raise PayloadError("a bare number needs --value-field NAME to name its field")
        if isinstance(value, float) and not math.isfinite(value):
            raise PayloadError(f"{value} is not a finite number")
        return [{value_field: value}]
    raise PayloadError(f"{_kind(value)} is not a row (a JSON object, an array of objects)")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a number"


def parse_payload(payload: bytes, value_field: str | None = None) -> list[dict[str, Any]]:
    """An MQTT payload → rows: a JSON object, a JSON array of objects, or a bare number.

    Args:
        payload: The message's bytes (UTF-8 JSON).
        value_field: The field a bare number goes to; without it a number is refused.

    Raises:
        PayloadError: The payload is not a row, with the reason.
    """
    if not payload.strip():
        raise PayloadError("the payload is empty")
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON ({exc})") from None
    return _rows_from_json(value, value_field)


def parse_command_output(
    text: str, types: Mapping[str, DataType] | None = None
) -> list[dict[str, Any]]:
    """What a command printed → rows: a JSON object or array, or ``key=value`` lines.

    Blank lines and lines starting with ``#`` are skipped in the ``key=value`` form,
    and a value in double quotes is text without its quotes.

    Raises:
        PayloadError: The output is neither form, with the reason (and the line).
    """
    stripped = text.strip()
    if not stripped:
        raise PayloadError("the command printed nothing")
    if stripped[0] in "[{":
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"output starts like JSON but is not JSON ({exc})") from None
        return _rows_from_json(value, None)
    lines = [
        line.strip()
        for line in stripped.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for number, line in enumerate(lines, 1):
        if "=" not in line or not line.partition("=")[0].strip():
            raise PayloadError(f"output line {number} {line[:80]!r} is not key=value nor JSON")
    return [parse_key_values(lines, types, unquote=True)]


@dataclass(frozen=True, slots=True)
class TopicField:
    """``--topic-field NAME=LEVEL``: copy topic level ``level`` (from 0) into ``name``."""

    name: str
    level: int


def parse_topic_field(spec: str) -> TopicField:
    """Read ``NAME=LEVEL``.

    Raises:
        PayloadError: The text is not ``NAME=LEVEL`` with a level ≥ 0.
    """
    name, sep, level = spec.partition("=")
    if not sep or not name.strip() or not level.strip().isdigit():
        raise PayloadError(f"--topic-field {spec!r}: expected NAME=LEVEL, e.g. device=1")
    return TopicField(name.strip(), int(level))


def topic_values(topic: str, fields: Iterable[TopicField]) -> dict[str, str]:
    """The ``--topic-field`` values of one topic.

    Raises:
        PayloadError: The topic has no such level.
    """
    levels = topic.split("/")
    out: dict[str, str] = {}
    for field in fields:
        if field.level >= len(levels):
            raise PayloadError(
                f"--topic-field {field.name}={field.level}: the topic has only "
                f"{len(levels)} levels (0 to {len(levels) - 1})"
            )
        out[field.name] = levels[field.level]
    return out
