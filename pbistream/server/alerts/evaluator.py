"""Evaluating alert rules on stored rows: pure, single-threaded, clock-injected.

The cost is per row, not per rule per row. Threshold rules on the same field (and
category field) share one *group*: ``>`` rules keep their thresholds sorted, so the
set of rules a value satisfies is a prefix of that list, found by one bisection.
A group remembers, per category value, where the last value fell; a new value that
falls in the same place (the common case: nothing crossed) costs one bisection and
one comparison, however many rules there are. Only the rules between the old and the
new place change state, and only they produce events. ``=`` / ``!=`` rules are kept
in a dict by threshold, with the same idea.

A rule *fires* on the row that crosses into its condition. While the condition holds
it stays quiet; it fires again after it has cleared and crossed again, or once its
``min_interval_seconds`` have passed since its last notification (on the next row
that still meets the condition; :meth:`AlertEvaluator.tick` marks those rules due).

Silence rules keep the last arrival per category value; :meth:`tick` finds the ones
past their silence (one bisection per category value over rules sorted by silence).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pbistream.server.alerts.rules import AlertRule

__all__ = ["MAX_CATEGORIES", "AlertEvaluator", "Event"]

logger = logging.getLogger("pbistream.server.alerts")

#: Category values one group tracks at most (memory bound against a runaway key).
MAX_CATEGORIES = 10_000

_PREFIX_OPS = {">": bisect.bisect_left, ">=": bisect.bisect_right}
_SUFFIX_OPS = {"<": bisect.bisect_right, "<=": bisect.bisect_left}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Event:
    """A rule changed state: ``fired`` (notify) or ``cleared`` (history only)."""

    rule: AlertRule
    kind: Literal["fired", "cleared"]
    at: float
    value: Any = None
    category_value: Any = None
    row_id: int | None = None
    last_seen: float | None = None


@dataclass(slots=True)
class _Ordered:
    """Threshold rules with one of ``>``, ``>=``, ``<``, ``<=`` on one field."""

    field: str
    category: str | None
    op: str
    thresholds: list[float]
    rules: list[AlertRule]
    places: dict[Any, int] = field(default_factory=dict)
    due: dict[Any, set[str]] = field(default_factory=dict)

    def true_slice(self, place: int) -> range:
        n = len(self.rules)
        return range(place) if self.op in _PREFIX_OPS else range(place, n)

    def place(self, value: float) -> int:
        search = _PREFIX_OPS.get(self.op) or _SUFFIX_OPS[self.op]
        return search(self.thresholds, value)


@dataclass(slots=True)
class _Equality:
    """Threshold rules with ``=`` or ``!=`` on one field."""

    field: str
    category: str | None
    op: str
    by_value: dict[Any, list[AlertRule]]
    rules: list[AlertRule]
    last: dict[Any, Any] = field(default_factory=dict)
    due: dict[Any, set[str]] = field(default_factory=dict)

    def true_rules(self, value: Any) -> list[AlertRule]:
        matching = self.by_value.get(_key(value), [])
        if self.op == "=":
            return matching
        return [r for r in self.rules if r not in matching]


@dataclass(slots=True)
class _Silence:
    """Silence rules on one field (and category field), sorted by their silence."""

    field: str
    category: str | None
    rules: list[AlertRule]
    seconds: list[float]
    last_seen: dict[Any, float]


@dataclass(slots=True)
class _Watch:
    ordered: list[_Ordered] = field(default_factory=list)
    equality: list[_Equality] = field(default_factory=list)
    silence: list[_Silence] = field(default_factory=list)


def _key(value: Any) -> Any:
    # True == 1 in Python: keep booleans apart from numbers in dict keys.
    return ("bool", value) if isinstance(value, bool) else value


def _is_number(value: Any) -> bool:
    return value.__class__ is not bool and isinstance(value, int | float)


def _signature(rule: AlertRule) -> tuple[Any, ...]:
    return (
        rule.dataset,
        rule.table,
        rule.field,
        rule.op,
        _key(rule.threshold),
        rule.category,
        rule.silence_seconds,
    )


class AlertEvaluator:
    """The state of every rule, fed rows as they are committed.

    Not thread-safe: one thread owns it (:class:`~pbistream.server.alerts.service.AlertService`).

    Args:
        now: The time the evaluator starts (silence rules count from it).
    """

    def __init__(self, *, now: float) -> None:
        self._started = now
        self._rules: dict[str, AlertRule] = {}
        self._watches: dict[tuple[str, str], _Watch] = {}
        # (rule id, category value) -> when it last notified, for every pair whose
        # condition holds now.
        self._firing: dict[tuple[str, Any], float] = {}
        self._last_seen: dict[tuple[str, str, str, str | None], dict[Any, float]] = {}
        # Threshold rule id -> its group's "due to notify again" map.
        self._due_of: dict[str, dict[Any, set[str]]] = {}
        self.skipped_categories = 0

    # --- rules ------------------------------------------------------------------------
    def set_rules(self, rules: Iterable[AlertRule], *, now: float) -> None:
        """Replace the rule set; states of rules whose condition did not change are kept."""
        old = self._rules
        self._rules = {r.id: r for r in rules if r.enabled}
        kept = {
            rid
            for rid, rule in self._rules.items()
            if rid in old and _signature(old[rid]) == _signature(rule)
        }
        self._firing = {k: v for k, v in self._firing.items() if k[0] in kept}
        self._watches = {}
        self._due_of = {}
        by_table: dict[tuple[str, str], list[AlertRule]] = {}
        for rule in self._rules.values():
            by_table.setdefault((rule.dataset, rule.table), []).append(rule)
        for key, table_rules in by_table.items():
            self._watches[key] = self._build(key, table_rules, now)

    def _build(self, key: tuple[str, str], rules: list[AlertRule], now: float) -> _Watch:
        watch = _Watch()
        groups: dict[tuple[Any, ...], list[AlertRule]] = {}
        for rule in rules:
            if rule.silence_seconds is not None:
                groups.setdefault(("silence", rule.field, rule.category), []).append(rule)
            elif rule.op in ("=", "!="):
                groups.setdefault(("eq", rule.field, rule.category, rule.op), []).append(rule)
            else:
                groups.setdefault(("ord", rule.field, rule.category, rule.op), []).append(rule)
        for gkey, members in groups.items():
            if gkey[0] == "silence":
                members.sort(key=lambda r: r.silence_seconds or 0.0)
                seen_key = (key[0], key[1], members[0].field, members[0].category)
                last_seen = self._last_seen.setdefault(seen_key, {})
                if members[0].category is None:
                    last_seen.setdefault(None, max(now, self._started))
                watch.silence.append(
                    _Silence(
                        members[0].field,
                        members[0].category,
                        members,
                        [r.silence_seconds or 0.0 for r in members],
                        last_seen,
                    )
                )
            elif gkey[0] == "eq":
                by_value: dict[Any, list[AlertRule]] = {}
                for rule in members:
                    by_value.setdefault(_key(rule.threshold), []).append(rule)
                eq = _Equality(gkey[1], gkey[2], gkey[3], by_value, members)
                watch.equality.append(eq)
                self._due_of.update((r.id, eq.due) for r in members)
            else:
                members.sort(key=lambda r: float(r.threshold))
                thresholds = [float(r.threshold) for r in members]
                ordered = _Ordered(gkey[1], gkey[2], gkey[3], thresholds, members)
                watch.ordered.append(ordered)
                self._due_of.update((r.id, ordered.due) for r in members)
        return watch

    @property
    def rules(self) -> dict[str, AlertRule]:
        """The enabled rules by id."""
        return self._rules

    def watches(self, dataset: str, table: str) -> bool:
        """Whether any rule looks at this table (ingest skips the queue otherwise)."""
        return (dataset, table) in self._watches

    def firing(self) -> dict[str, list[Any]]:
        """Rule id -> the category values whose condition holds now."""
        found: dict[str, list[Any]] = {}
        for rid, cat in self._firing:
            found.setdefault(rid, []).append(cat)
        return found

    # --- rows -------------------------------------------------------------------------
    def observe(
        self,
        dataset: str,
        table: str,
        rows: Sequence[tuple[int | None, dict[str, Any]]],
        *,
        received_at: float,
    ) -> list[Event]:
        """Feed rows stored together (in id order); return the events they cause."""
        watch = self._watches.get((dataset, table))
        if watch is None:
            return []
        events: list[Event] = []
        for group in watch.ordered:
            self._observe_ordered(group, rows, received_at, events)
        for eq in watch.equality:
            self._observe_equality(eq, rows, received_at, events)
        for silence in watch.silence:
            self._observe_silence(silence, rows, received_at, events)
        if len(events) > 1:
            events.sort(key=lambda e: e.row_id or 0)
        return events

    def _category(self, places: dict[Any, Any], cat: Any) -> bool:
        """Whether ``cat`` may get a state (bounded number of category values)."""
        if cat in places or len(places) < MAX_CATEGORIES:
            return True
        self.skipped_categories += 1
        return False

    def _observe_ordered(
        self,
        group: _Ordered,
        rows: Sequence[tuple[int | None, dict[str, Any]]],
        at: float,
        events: list[Event],
    ) -> None:
        fname, cname, places, due = group.field, group.category, group.places, group.due
        search = _PREFIX_OPS.get(group.op) or _SUFFIX_OPS[group.op]
        thresholds = group.thresholds
        for row_id, data in rows:
            value = data.get(fname)
            if value is None or value.__class__ is bool or not isinstance(value, int | float):
                continue
            cat = data.get(cname) if cname is not None else None
            place = search(thresholds, value)
            before = places.get(cat, _MISSING)
            if before == place and not due:
                continue
            if before is _MISSING and not self._category(places, cat):
                continue
            places[cat] = place
            now_true = group.true_slice(place)
            if before is _MISSING:
                true_ids = {group.rules[i].id for i in now_true}
                self._settle(group.rules, true_ids, cat, value, row_id, at, events)
            elif before != place:
                was_true = group.true_slice(before)  # type: ignore[arg-type]
                lo, hi = min(before, place), max(before, place)  # type: ignore[type-var]
                for i in range(lo, hi):
                    rule = group.rules[i]
                    if i in now_true and i not in was_true:
                        self._fire(rule, cat, value, row_id, at, events)
                    elif i in was_true and i not in now_true:
                        self._clear(rule, cat, value, row_id, at, events)
            pending = due.get(cat)
            if pending:
                for i in now_true:
                    rule = group.rules[i]
                    if rule.id in pending and (rule.id, cat) in self._firing:
                        self._fire(rule, cat, value, row_id, at, events)
                del due[cat]

    def _observe_equality(
        self,
        group: _Equality,
        rows: Sequence[tuple[int | None, dict[str, Any]]],
        at: float,
        events: list[Event],
    ) -> None:
        fname, cname, last, due = group.field, group.category, group.last, group.due
        for row_id, data in rows:
            value = data.get(fname)
            if value is None:
                continue
            cat = data.get(cname) if cname is not None else None
            key = _key(value)
            before = last.get(cat, _MISSING)
            if before == key and not due:
                continue
            if before is _MISSING and not self._category(last, cat):
                continue
            last[cat] = key
            now_true = group.true_rules(value)
            if before != key:
                true_ids = {r.id for r in now_true}
                self._settle(group.rules, true_ids, cat, value, row_id, at, events)
            pending = due.get(cat)
            if pending:
                for rule in now_true:
                    if rule.id in pending and (rule.id, cat) in self._firing:
                        self._fire(rule, cat, value, row_id, at, events)
                del due[cat]

    def _observe_silence(
        self,
        group: _Silence,
        rows: Sequence[tuple[int | None, dict[str, Any]]],
        at: float,
        events: list[Event],
    ) -> None:
        fname, cname, seen = group.field, group.category, group.last_seen
        touched: set[Any] = set()
        for _row_id, data in rows:
            if data.get(fname) is None:
                continue
            cat = data.get(cname) if cname is not None else None
            if cat not in seen and not self._category(seen, cat):
                continue
            seen[cat] = at
            touched.add(cat)
        firing = self._firing
        for cat in touched:
            for rule in group.rules:
                if (rule.id, cat) in firing:
                    self._clear(rule, cat, None, None, at, events)

    def _settle(
        self,
        rules: list[AlertRule],
        true_ids: set[str],
        cat: Any,
        value: Any,
        row_id: int | None,
        at: float,
        events: list[Event],
    ) -> None:
        """A category's first value (or a changed equality value): fire and clear to match."""
        for rule in rules:
            holds = rule.id in true_ids
            was = (rule.id, cat) in self._firing
            if holds and not was:
                self._fire(rule, cat, value, row_id, at, events)
            elif was and not holds:
                self._clear(rule, cat, value, row_id, at, events)

    def _fire(
        self,
        rule: AlertRule,
        cat: Any,
        value: Any,
        row_id: int | None,
        at: float,
        events: list[Event],
        last_seen: float | None = None,
    ) -> None:
        self._firing[(rule.id, cat)] = at
        events.append(Event(rule, "fired", at, value, cat, row_id, last_seen))

    def _clear(
        self,
        rule: AlertRule,
        cat: Any,
        value: Any,
        row_id: int | None,
        at: float,
        events: list[Event],
    ) -> None:
        if self._firing.pop((rule.id, cat), None) is not None:
            events.append(Event(rule, "cleared", at, value, cat, row_id))

    # --- time -------------------------------------------------------------------------
    def tick(self, now: float) -> list[Event]:
        """Fire silence rules past their silence; mark threshold rules due to notify again."""
        events: list[Event] = []
        firing = self._firing
        for watch in self._watches.values():
            for group in watch.silence:
                for cat, seen in group.last_seen.items():
                    gap = now - seen
                    quiet = bisect.bisect_right(group.seconds, gap)
                    for rule in group.rules[:quiet]:
                        last = firing.get((rule.id, cat))
                        if last is None or now - last >= rule.min_interval_seconds:
                            self._fire(rule, cat, None, None, now, events, last_seen=seen)
        # Threshold rules still holding past their interval notify again on their next row.
        for (rid, cat), last in firing.items():
            due = self._due_of.get(rid)
            if due is not None and now - last >= self._rules[rid].min_interval_seconds:
                due.setdefault(cat, set()).add(rid)
        return events
