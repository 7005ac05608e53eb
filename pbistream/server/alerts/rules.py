"""An alert rule: a condition on one field of one table, checked on every stored row.

A rule is either a *threshold* rule (``op`` and ``threshold``: fires on the row whose
value crosses into the condition) or a *silence* rule (``silenceSeconds``: fires when
no row has arrived for that long, to catch a device that went quiet). Either may be
kept per value of a ``category`` field (one state per device, say).

:func:`parse_rule` checks a rule's JSON (the ``POST /api/alerts`` body) and names the
property and the rule it breaks.
"""

from __future__ import annotations

import math
import secrets
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "FORMATS",
    "MAX_INTERVAL_SECONDS",
    "MAX_SILENCE_SECONDS",
    "OPS",
    "AlertRule",
    "RuleError",
    "parse_rule",
]

#: The comparisons a threshold rule may use.
OPS = (">", ">=", "<", "<=", "=", "!=")
#: Webhook body templates: plain JSON, a Microsoft Teams card, a Slack message.
FORMATS = ("json", "teams", "slack")
#: Power BI notifies at most hourly or daily; pbistream allows one second to 7 days.
MIN_INTERVAL_SECONDS = 0.0
MAX_INTERVAL_SECONDS = 7 * 86_400.0
#: Power BI's default: at most one notification an hour while a condition holds.
DEFAULT_INTERVAL_SECONDS = 3_600.0
MAX_SILENCE_SECONDS = 7 * 86_400.0
MAX_NAME_CHARS = 200
MAX_URL_CHARS = 2_000

_KNOWN = {
    "id",
    "name",
    "dataset",
    "table",
    "field",
    "op",
    "threshold",
    "category",
    "silenceSeconds",
    "minIntervalSeconds",
    "webhook",
    "format",
    "enabled",
    "createdAt",
    "updatedAt",
    "firing",
    "secret",
}


class RuleError(ValueError):
    """A rule's JSON broke a rule; the message names the property."""


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert rule (the wire form is :meth:`to_json`).

    Attributes:
        id: The rule's id.
        dataset: The dataset id.
        table: The table name.
        field: The column whose value is checked (for a silence rule: rows that carry it).
        op: The comparison of a threshold rule, or None for a silence rule.
        threshold: The value compared with (a number, a string or a boolean).
        category: Keep one state per value of this column, or None for one state.
        silence_seconds: A silence rule fires after this long without a row.
        min_interval_seconds: While the condition holds, notify again after this long.
        webhook: Where notifications are POSTed, or None (UI list and /metrics only).
        format: The webhook body template: ``json``, ``teams`` or ``slack``.
        secret: The HMAC key that signs webhook bodies.
        name: A label for people.
        enabled: A disabled rule is kept but not evaluated.
    """

    id: str
    dataset: str
    table: str
    field: str
    op: str | None = None
    threshold: Any = None
    category: str | None = None
    silence_seconds: float | None = None
    min_interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    webhook: str | None = None
    format: str = "json"
    secret: str = ""
    name: str = ""
    enabled: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def kind(self) -> str:
        """``threshold`` or ``silence``."""
        return "silence" if self.silence_seconds is not None else "threshold"

    def describe(self) -> str:
        """The condition in words, e.g. ``temperature > 30 (per device)``."""
        if self.kind == "silence":
            text = f"no {self.field} for {_seconds(self.silence_seconds or 0)}"
        else:
            text = f"{self.field} {self.op} {self.threshold!r}"
        return text + (f" (per {self.category})" if self.category else "")

    def to_json(self, *, with_secret: bool = False) -> dict[str, Any]:
        """The wire form; the signing secret only when asked (at creation)."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "dataset": self.dataset,
            "table": self.table,
            "field": self.field,
            "op": self.op,
            "threshold": self.threshold,
            "category": self.category,
            "silenceSeconds": self.silence_seconds,
            "minIntervalSeconds": self.min_interval_seconds,
            "webhook": self.webhook,
            "format": self.format,
            "enabled": self.enabled,
            "kind": self.kind,
            "condition": self.describe(),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }
        if with_secret:
            body["secret"] = self.secret
        return body

    def stored_json(self) -> dict[str, Any]:
        """What storage keeps (the wire form with its secret)."""
        return self.to_json(with_secret=True)


def _seconds(value: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g} {unit}"
    return f"{value:g} s"


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuleError(f"'{key}' must be a number of seconds, got {value!r}.")
    if not low <= value <= high:
        raise RuleError(f"'{key}' must be between {low:g} and {high:g} seconds, got {value:g}.")
    return float(value)


def _text(body: dict[str, Any], key: str, *, required: bool, limit: int = 512) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise RuleError(f"'{key}' is required.")
        return None
    if not isinstance(value, str):
        raise RuleError(f"'{key}' must be a string, got {type(value).__name__}.")
    if len(value) > limit:
        raise RuleError(f"'{key}' is longer than {limit:,} characters.")
    return value


def _webhook(body: dict[str, Any]) -> str | None:
    url = _text(body, "webhook", required=False, limit=MAX_URL_CHARS)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuleError(f"'webhook' must be an http:// or https:// URL, got {url[:80]!r}.")
    return url


def parse_rule(
    body: Any,
    *,
    columns: dict[str, str],
    dataset: str,
    previous: AlertRule | None = None,
    now: float | None = None,
) -> AlertRule:
    """Check a rule's JSON against the table's columns and return the rule.

    Args:
        body: The decoded JSON body.
        columns: The table's columns: name -> Power BI data type.
        dataset: The dataset id (already resolved by the caller).
        previous: The rule being edited (its id, secret and creation time are kept).
        now: The time stamped on the rule.

    Raises:
        RuleError: The body breaks a rule; the message names the property.
    """
    if not isinstance(body, dict):
        raise RuleError("The body must be a JSON object describing the rule.")
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise RuleError(f"Unknown property {unknown[0]!r}; see /openapi.json for a rule's shape.")
    table = _text(body, "table", required=True)
    field_name = _text(body, "field", required=True)
    assert table is not None and field_name is not None
    if field_name not in columns:
        raise RuleError(
            f"Table {table!r} has no column {field_name!r} (it has: {', '.join(columns)})."
        )
    category = _text(body, "category", required=False)
    if category is not None and category not in columns:
        raise RuleError(f"'category': table {table!r} has no column {category!r}.")
    silence = _number(body, "silenceSeconds", 1.0, MAX_SILENCE_SECONDS)
    op = body.get("op")
    threshold = body.get("threshold")
    if silence is None:
        if op not in OPS:
            raise RuleError(
                f"'op' must be one of {', '.join(OPS)} (or give 'silenceSeconds' for a "
                f"rule that fires when no row arrives), got {op!r}."
            )
        threshold = _threshold(op, threshold, columns[field_name])
    elif op is not None or threshold is not None:
        raise RuleError("A rule has either 'op' and 'threshold', or 'silenceSeconds', not both.")
    interval = _number(body, "minIntervalSeconds", MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS)
    fmt = body.get("format", "json")
    if fmt not in FORMATS:
        raise RuleError(f"'format' must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError(f"'enabled' must be true or false, got {enabled!r}.")
    stamp = time.time() if now is None else now
    rule = AlertRule(
        id=previous.id if previous else str(uuid.uuid4()),
        dataset=dataset,
        table=table,
        field=field_name,
        op=op if silence is None else None,
        threshold=threshold,
        category=category,
        silence_seconds=silence,
        min_interval_seconds=DEFAULT_INTERVAL_SECONDS if interval is None else interval,
        webhook=_webhook(body),
        format=fmt,
        secret=previous.secret if previous else secrets.token_urlsafe(32),
        name=_text(body, "name", required=False, limit=MAX_NAME_CHARS) or "",
        enabled=enabled,
        created_at=previous.created_at if previous else stamp,
        updated_at=stamp,
    )
    if not rule.name:
        rule = replace(rule, name=rule.describe())
    return rule


_NUMERIC = {"Int64", "Double", "Decimal"}


def _threshold(op: str, value: Any, data_type: str) -> Any:
    if value is None:
        raise RuleError("'threshold' is required with 'op'.")
    if data_type in _NUMERIC:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise RuleError(
                f"'threshold' must be a number for a {data_type} column, got {value!r}."
            )
        return value
    if op not in ("=", "!="):
        raise RuleError(
            f"'op' {op!r} needs a number column; a {data_type} column takes '=' or '!='."
        )
    if data_type == "Boolean" and not isinstance(value, bool):
        raise RuleError(f"'threshold' must be true or false for a Boolean column, got {value!r}.")
    if data_type != "Boolean" and not isinstance(value, str):
        raise RuleError(f"'threshold' must be a string for a {data_type} column, got {value!r}.")
    return value


def rule_from_stored(doc: dict[str, Any]) -> AlertRule:
    """A rule as storage kept it (trusted: it was checked when saved)."""
    return AlertRule(
        id=doc["id"],
        dataset=doc["dataset"],
        table=doc["table"],
        field=doc["field"],
        op=doc.get("op"),
        threshold=doc.get("threshold"),
        category=doc.get("category"),
        silence_seconds=doc.get("silenceSeconds"),
        min_interval_seconds=doc.get("minIntervalSeconds", DEFAULT_INTERVAL_SECONDS),
        webhook=doc.get("webhook"),
        format=doc.get("format", "json"),
        secret=doc.get("secret", ""),
        name=doc.get("name", ""),
        enabled=doc.get("enabled", True),
        created_at=doc.get("createdAt", 0.0),
        updated_at=doc.get("updatedAt", 0.0),
    )
