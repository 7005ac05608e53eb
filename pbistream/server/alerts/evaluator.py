"""Evaluating alert rules on stored rows: pure, single-threaded, clock-injected.

The cost is per row, not per rule per row. Number rules on the same field (and
category field) share one *group*, whatever their comparison: the group keeps their
thresholds sorted, and a value's *place* among them,
``bisect_left + bisect_right`` (even between two thresholds, odd on one), says at
once which rules hold: a rule with threshold index ``j`` compares the place with
``2j+1`` (``>`` holds when the place is above it, ``=`` when it is equal ...). A
group remembers each category value's last place; a new value that lands in the same
place (the common case: nothing crossed) costs two bisections, done for a whole batch
in C by ``map``. Only the rules whose threshold lies between the old and the new
place can change state, and only those are looked at. Text and boolean rules (``=``
and ``!=`` only) are kept in a dict by threshold, with the same idea.

A rule *fires* on the row that crosses into its condition. While the condition holds
it stays quiet; it fires again after it has cleared and crossed again, or once its
``min_interval_seconds`` have passed since its last notification (on the next row
that still meets the condition; :meth:`AlertEvaluator.tick` marks those rules due).

Silence rules keep the last arrival per category value; :meth:`~AlertEvaluator.tick`
finds the ones past their silence (one bisection per category value over the rules
sorted by silence).
"""

from __future__ import annotations

import bisect
import dataclasses
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pbistream.server.alerts.rules import AlertRule

__all__ = ["MAX_CATEGORIES", "AlertEvaluator", "Event"]

#: Category values one group tracks at most (memory bound against a runaway key).
MAX_CATEGORIES = 10_000

# Does a rule hold, given the value's place p and the rule's c = 2j+1?
_HOLDS: dict[str, Callable[[int, int], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "!=": operator.ne,
}
_MISSING: Any = object()
# Rows are looked at in chunks: a chunk whose values all stay where they were is
# skipped after a min() and a max() in C.
_CHUNK = 256


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
class _Numbers:
    """Number rules on one field (and category field), every comparison together."""

    field: str
    category: str | None
    thresholds: list[float]  # sorted, unique
    at_threshold: list[list[AlertRule]]  # rules by threshold index
    places: dict[Any, int] = dataclasses.field(default_factory=dict)
    counts: dict[int, int] = dataclasses.field(
        default_factory=dict
    )  # place -> category values there
    due: dict[Any, set[str]] = dataclasses.field(default_factory=dict)

    def place(self, value: float) -> int:
        """Even between two thresholds, odd on one (``2j+1`` on threshold ``j``)."""
        return bisect.bisect_left(self.thresholds, value) + bisect.bisect_right(
            self.thresholds, value
        )

    def move(self, cat: Any, before: Any, place: int) -> None:
        """Record that ``cat``'s value now lies at ``place``."""
        self.places[cat] = place
        if before is not _MISSING:
            left = self.counts[before] - 1
            if left:
                self.counts[before] = left
            else:
                del self.counts[before]
        self.counts[place] = self.counts.get(place, 0) + 1

    def rules(self) -> Iterable[tuple[int, AlertRule]]:
        for j, rules in enumerate(self.at_threshold):
            for rule in rules:
                yield 2 * j + 1, rule

    def between(self, a: int, b: int) -> Iterable[tuple[int, AlertRule]]:
        """Rules whose truth may differ between places ``a`` and ``b``."""
        lo, hi = (a, b) if a <= b else (b, a)
        for j in range(max(0, (lo - 1) // 2), min(len(self.thresholds), (hi - 1) // 2 + 1)):
            for rule in self.at_threshold[j]:
                yield 2 * j + 1, rule


@dataclass(slots=True)
class _Equality:
    """Text and boolean rules (``=`` / ``!=``) on one field."""

    field: str
    category: str | None
    by_value: dict[Any, list[AlertRule]]
    rules: list[AlertRule]
    last: dict[Any, Any] = dataclasses.field(default_factory=dict)
    due: dict[Any, set[str]] = dataclasses.field(default_factory=dict)

    def true_ids(self, value: Any) -> set[str]:
        key = _key(value)
        return {r.id for r in self.rules if (_key(r.threshold) == key) == (r.op == "=")}


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
    numbers: list[_Numbers] = dataclasses.field(default_factory=list)
    equality: list[_Equality] = dataclasses.field(default_factory=list)
    silence: list[_Silence] = dataclasses.field(default_factory=list)


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

    Not thread-safe: one thread owns it (``AlertService``'s evaluator thread).

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
                kind = "silence"
            elif _is_number(rule.threshold):
                kind = "numbers"
            else:
                kind = "equality"
            groups.setdefault((kind, rule.field, rule.category), []).append(rule)
        for (kind, fname, cname), members in groups.items():
            if kind == "silence":
                members.sort(key=lambda r: r.silence_seconds or 0.0)
                last_seen = self._last_seen.setdefault((key[0], key[1], fname, cname), {})
                if cname is None:
                    last_seen.setdefault(None, max(now, self._started))
                seconds = [r.silence_seconds or 0.0 for r in members]
                watch.silence.append(_Silence(fname, cname, members, seconds, last_seen))
            elif kind == "equality":
                by_value: dict[Any, list[AlertRule]] = {}
                for rule in members:
                    by_value.setdefault(_key(rule.threshold), []).append(rule)
                eq = _Equality(fname, cname, by_value, members)
                watch.equality.append(eq)
                self._due_of.update((r.id, eq.due) for r in members)
            else:
                thresholds = sorted({float(r.threshold) for r in members})
                at: list[list[AlertRule]] = [[] for _ in thresholds]
                for rule in members:
                    at[bisect.bisect_left(thresholds, float(rule.threshold))].append(rule)
                numbers = _Numbers(fname, cname, thresholds, at)
                watch.numbers.append(numbers)
                self._due_of.update((r.id, numbers.due) for r in members)
        return watch

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
        rows: Sequence[dict[str, Any]],
        *,
        first_id: int | None,
        received_at: float,
    ) -> list[Event]:
        """Feed rows stored together (ids ``first_id``, ``first_id + 1`` ...); return events."""
        watch = self._watches.get((dataset, table))
        if watch is None or not rows:
            return []
        events: list[Event] = []
        columns: dict[str, list[Any]] = {}

        def column(name: str) -> list[Any]:
            found = columns.get(name)
            if found is None:  # map: the loop runs in C
                try:  # normalised rows usually carry every column
                    found = list(map(operator.itemgetter(name), rows))
                except KeyError:
                    found = list(map(operator.methodcaller("get", name), rows))
                columns[name] = found
            return found

        for numbers in watch.numbers:
            self._observe_numbers(numbers, column, first_id, received_at, events)
        for eq in watch.equality:
            self._observe_equality(eq, column, first_id, received_at, events)
        for silence in watch.silence:
            self._observe_silence(silence, column, received_at, events)
        if len(events) > 1:
            events.sort(key=lambda e: e.row_id or 0)
        return events

    def _category(self, places: dict[Any, Any], cat: Any) -> bool:
        """Whether ``cat`` may get a state (bounded number of category values)."""
        if cat in places or len(places) < MAX_CATEGORIES:
            return True
        self.skipped_categories += 1
        return False

    def _observe_numbers(
        self,
        group: _Numbers,
        column: Callable[[str], list[Any]],
        first_id: int | None,
        at: float,
        events: list[Event],
    ) -> None:
        values = column(group.field)
        cats = column(group.category) if group.category is not None else None
        for start in range(0, len(values), _CHUNK):
            if not group.due and self._unchanged(group, values, cats, start):
                continue
            self._observe_rows(group, values, cats, start, first_id, at, events)

    @staticmethod
    def _unchanged(group: _Numbers, values: list[Any], cats: list[Any] | None, start: int) -> bool:
        """Whether no row of a chunk can change a rule (the common case), found in C.

        If the chunk's smallest and largest values share a place, every value in it
        does; nothing changes when that is also where every category value already is.
        """
        chunk = values[start : start + _CHUNK]
        try:
            place = group.place(min(chunk))
            if place != group.place(max(chunk)):
                return False
        except TypeError:  # a None (field left out) or a non-number: look row by row
            return False
        if cats is None:
            return bool(group.places.get(None, _MISSING) == place)
        counts = group.counts
        return bool(
            len(counts) == 1
            and place in counts
            and group.places.keys() >= set(cats[start : start + _CHUNK])
        )

    def _observe_rows(
        self,
        group: _Numbers,
        values: list[Any],
        cats: list[Any] | None,
        start: int,
        first_id: int | None,
        at: float,
        events: list[Event],
    ) -> None:
        places = group.places
        for k in range(start, min(start + _CHUNK, len(values))):
            value = values[k]
            if value is None or not _is_number(value):
                continue
            place = group.place(value)
            cat = cats[k] if cats is not None else None
            before = places.get(cat, _MISSING)
            if before == place and not group.due:
                continue
            if before is _MISSING and not self._category(places, cat):
                continue
            group.move(cat, before, place)
            row_id = first_id + k if first_id is not None else None
            if before is _MISSING:
                true_ids = {r.id for c, r in group.rules() if _HOLDS[r.op or "="](place, c)}
                self._settle(
                    (r for _, r in group.rules()), true_ids, cat, value, row_id, at, events
                )
            elif before != place:
                for c, rule in group.between(before, place):
                    holds = _HOLDS[rule.op or "="]
                    was, now = holds(before, c), holds(place, c)
                    if now and not was:
                        self._fire(rule, cat, value, row_id, at, events)
                    elif was and not now:
                        self._clear(rule, cat, value, row_id, at, events)
            pending = group.due.pop(cat, None)
            if pending:
                for c, rule in group.rules():
                    if (
                        rule.id in pending
                        and (rule.id, cat) in self._firing
                        and _HOLDS[rule.op or "="](place, c)
                    ):
                        self._fire(rule, cat, value, row_id, at, events)

    def _observe_equality(
        self,
        group: _Equality,
        column: Callable[[str], list[Any]],
        first_id: int | None,
        at: float,
        events: list[Event],
    ) -> None:
        values = column(group.field)
        cats = column(group.category) if group.category is not None else None
        last = group.last
        for k, value in enumerate(values):
            if value is None:
                continue
            cat = cats[k] if cats is not None else None
            key = _key(value)
            before = last.get(cat, _MISSING)
            if before == key and not group.due:
                continue
            if before is _MISSING and not self._category(last, cat):
                continue
            last[cat] = key
            row_id = first_id + k if first_id is not None else None
            true_ids = group.true_ids(value)
            if before != key:
                self._settle(group.rules, true_ids, cat, value, row_id, at, events)
            pending = group.due.pop(cat, None)
            if pending:
                for rule in group.rules:
                    if (
                        rule.id in pending
                        and rule.id in true_ids
                        and (rule.id, cat) in self._firing
                    ):
                        self._fire(rule, cat, value, row_id, at, events)

    def _observe_silence(
        self,
        group: _Silence,
        column: Callable[[str], list[Any]],
        at: float,
        events: list[Event],
    ) -> None:
        values = column(group.field)
        if group.category is None:
            touched: set[Any] = {None} if any(v is not None for v in values) else set()
        else:
            cats = column(group.category)
            touched = {c for c, v in zip(cats, values, strict=True) if v is not None}
        seen = group.last_seen
        for cat in touched:
            if cat not in seen and not self._category(seen, cat):
                continue
            seen[cat] = at
            for rule in group.rules:
                if (rule.id, cat) in self._firing:
                    self._clear(rule, cat, None, None, at, events)

    def _settle(
        self,
        rules: Iterable[AlertRule],
        true_ids: set[str],
        cat: Any,
        value: Any,
        row_id: int | None,
        at: float,
        events: list[Event],
    ) -> None:
        """A category's first value (or a changed text value): fire and clear to match."""
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
                    quiet = bisect.bisect_right(group.seconds, now - seen)
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
