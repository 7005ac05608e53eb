"""The pure evaluator: crossing, clearing, intervals, categories, silence (no server)."""

from __future__ import annotations

import random

import pytest

from pbistream.server.alerts.evaluator import AlertEvaluator
from pbistream.server.alerts.rules import AlertRule, RuleError, parse_rule

COLUMNS = {"temperature": "Double", "device": "String", "ok": "Boolean", "n": "Int64"}


def rule(**kw):
    body = {"table": "T", "field": "temperature", "op": ">", "threshold": 30}
    body.update(kw)
    return parse_rule(body, columns=COLUMNS, dataset="D", now=0.0)


def feed(ev, *values, at=1.0, field="temperature", start=1, **extra):
    rows = [{field: v, **extra} for v in values]
    return ev.observe("D", "T", rows, first_id=start, received_at=at)


def kinds(events):
    return [(e.kind, e.value) for e in events]


def test_fires_on_the_crossing_row_and_not_again_until_it_clears():
    ev = AlertEvaluator(now=0.0)
    ev.set_rules([rule()], now=0.0)
    assert kinds(feed(ev, 20, 25, 31, 35, 40)) == [("fired", 31)]
    assert feed(ev, 36, 50) == []
    assert kinds(feed(ev, 29)) == [("cleared", 29)]
    fired = feed(ev, 33, start=10)
    assert kinds(fired) == [("fired", 33)]
    assert fired[0].row_id == 10


@pytest.mark.parametrize(
    ("op", "values", "fires_on"),
    [
        (">", [30, 30.5], 30.5),
        (">=", [29.9, 30], 30),
        ("<", [30, 29], 29),
        ("<=", [31, 30], 30),
        ("=", [29, 30], 30),
        ("!=", [30, 31], 31),
    ],
)
def test_every_operator(op, values, fires_on):
    ev = AlertEvaluator(now=0.0)
    ev.set_rules([rule(op=op)], now=0.0)
    assert kinds(feed(ev, *values)) == [("fired", fires_on)]


def test_fires_again_after_the_interval_while_the_condition_holds():
    ev = AlertEvaluator(now=0.0)
    ev.set_rules([rule(minIntervalSeconds=10)], now=0.0)
    assert kinds(feed(ev, 40, at=1.0)) == [("fired", 40)]
    ev.tick(5.0)
    assert feed(ev, 41, at=5.0) == []
    ev.tick(11.5)
    assert kinds(feed(ev, 42, at=11.5)) == [("fired", 42)]
    ev.tick(12.0)
    assert feed(ev, 43, at=12.0) == []


def test_per_category_states_are_independent():
    ev = AlertEvaluator(now=0.0)
    ev.set_rules([rule(category="device")], now=0.0)
    rows = [
        {"temperature": 35, "device": "a"},
        {"temperature": 20, "device": "b"},
        {"temperature": 36, "device": "a"},
        {"temperature": 31, "device": "b"},
    ]
    events = ev.observe("D", "T", rows, first_id=1, received_at=1.0)
    assert [(e.category_value, e.row_id) for e in events] == [("a", 1), ("b", 4)]
    assert sorted(ev.firing()[events[0].rule.id]) == ["a", "b"]


def test_silence_fires_after_n_seconds_and_clears_on_a_row():
    ev = AlertEvaluator(now=0.0)
    silent = parse_rule(
        {"table": "T", "field": "temperature", "silenceSeconds": 5},
        columns=COLUMNS,
        dataset="D",
        now=0.0,
    )
    ev.set_rules([silent], now=0.0)
    assert ev.tick(4.0) == []
    fired = ev.tick(5.5)
    assert [(e.kind, e.rule.id) for e in fired] == [("fired", silent.id)]
    assert ev.tick(6.0) == []  # once, not every tick
    assert kinds(feed(ev, 20, at=7.0)) == [("cleared", None)]
    assert ev.tick(11.0) == []
    assert len(ev.tick(12.5)) == 1


def test_silence_per_device_catches_the_one_that_went_quiet():
    ev = AlertEvaluator(now=0.0)
    silent = parse_rule(
        {"table": "T", "field": "temperature", "silenceSeconds": 5, "category": "device"},
        columns=COLUMNS,
        dataset="D",
        now=0.0,
    )
    ev.set_rules([silent], now=0.0)
    ev.observe(
        "D",
        "T",
        [{"temperature": 1, "device": "a"}, {"temperature": 1, "device": "b"}],
        first_id=1,
        received_at=1.0,
    )
    ev.observe("D", "T", [{"temperature": 1, "device": "a"}], first_id=3, received_at=4.0)
    fired = ev.tick(7.0)
    assert [e.category_value for e in fired if e.category_value is not None] == ["b"]


def test_editing_one_rule_keeps_the_others_quiet():
    ev = AlertEvaluator(now=0.0)
    a, b = rule(), rule(threshold=50)
    ev.set_rules([a, b], now=0.0)
    assert kinds(feed(ev, 40)) == [("fired", 40)]
    ev.set_rules([a, rule(threshold=60)], now=1.0)
    assert feed(ev, 41) == []


def test_many_rules_match_a_brute_force_model():
    rng = random.Random(7)
    rules = [
        rule(op=rng.choice([">", ">=", "<", "<=", "=", "!="]), threshold=rng.randint(0, 20))
        for _ in range(200)
    ]
    ev = AlertEvaluator(now=0.0)
    ev.set_rules(rules, now=0.0)
    ops = {
        ">": float.__gt__,
        ">=": float.__ge__,
        "<": float.__lt__,
        "<=": float.__le__,
        "=": float.__eq__,
        "!=": float.__ne__,
    }
    state = {r.id: False for r in rules}
    for i in range(300):
        v = float(rng.randint(0, 20))
        got = sorted((e.rule.id, e.kind) for e in feed(ev, v, start=i))
        want = []
        for r in rules:
            holds = ops[r.op](v, float(r.threshold))
            if holds != state[r.id]:
                want.append((r.id, "fired" if holds else "cleared"))
            state[r.id] = holds
        assert got == sorted(want)


def test_batches_with_categories_and_gaps_match_a_brute_force_model():
    rng = random.Random(11)
    rules = [
        rule(
            op=rng.choice([">", ">=", "<", "<=", "=", "!="]),
            threshold=rng.randint(0, 10),
            category=rng.choice([None, "device"]),
        )
        for _ in range(120)
    ]
    ev = AlertEvaluator(now=0.0)
    ev.set_rules(rules, now=0.0)
    ops = {
        ">": float.__gt__,
        ">=": float.__ge__,
        "<": float.__lt__,
        "<=": float.__le__,
        "=": float.__eq__,
        "!=": float.__ne__,
    }
    state: dict = {}
    next_id = 1
    for _ in range(60):
        batch = [
            {
                "temperature": rng.choice([None, float(rng.randint(0, 10))]),
                "device": rng.choice("abc"),
            }
            for _ in range(rng.randint(1, 30))
        ]
        got = sorted(
            (e.row_id, e.rule.id, e.kind)
            for e in ev.observe("D", "T", batch, first_id=next_id, received_at=1.0)
        )
        want = []
        for k, row in enumerate(batch):
            v = row["temperature"]
            if v is None:
                continue
            for r in rules:
                key = (r.id, row["device"] if r.category else None)
                holds = ops[r.op](v, float(r.threshold))
                if holds != state.get(key, False):
                    want.append((next_id + k, r.id, "fired" if holds else "cleared"))
                state[key] = holds
        next_id += len(batch)
        assert got == sorted(want)


def test_text_and_boolean_rules():
    ev = AlertEvaluator(now=0.0)
    ev.set_rules(
        [rule(field="device", op="=", threshold="down"), rule(field="ok", op="!=", threshold=True)],
        now=0.0,
    )
    assert kinds(feed(ev, "up", "down", "down", "up", field="device")) == [
        ("fired", "down"),
        ("cleared", "up"),
    ]
    assert kinds(feed(ev, True, False, field="ok")) == [("fired", False)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"field": "nope", "op": ">", "threshold": 1}, "no column 'nope'"),
        ({"op": "~", "threshold": 1}, "'op' must be one of"),
        ({"op": ">", "threshold": "x"}, "'threshold' must be a number"),
        ({"field": "device", "op": ">", "threshold": "x"}, "needs a number column"),
        ({"op": ">", "threshold": 1, "silenceSeconds": 5}, "not both"),
        ({"op": ">", "threshold": 1, "minIntervalSeconds": -1}, "between 0"),
        ({"op": ">", "threshold": 1, "webhook": "file:///etc/passwd"}, "http:// or https://"),
        ({"op": ">", "threshold": 1, "bogus": 1}, "Unknown property 'bogus'"),
    ],
)
def test_bad_rules_name_the_property(body, message):
    full = {"table": "T", "field": "temperature", **body}
    with pytest.raises(RuleError, match=message):
        parse_rule(full, columns=COLUMNS, dataset="D")


def test_rule_json_hides_the_secret_unless_asked():
    r = rule(webhook="http://127.0.0.1:1/hook")
    assert "secret" not in r.to_json()
    assert len(r.to_json(with_secret=True)["secret"]) >= 32
    assert isinstance(r, AlertRule)


def test_rows_that_leave_the_field_out_are_skipped():
    ev = AlertEvaluator(now=0.0)
    ev.set_rules([rule(category="device")], now=0.0)
    rows = [{"device": "a"}, {"temperature": 35.0}, {"temperature": 40.0, "device": "a"}, {}]
    events = ev.observe("D", "T", rows, first_id=1, received_at=1.0)
    assert [(e.row_id, e.category_value, e.value) for e in events] == [
        (2, None, 35.0),
        (3, "a", 40.0),
    ]
