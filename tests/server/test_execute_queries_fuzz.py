"""Fuzzing executeQueries on the live server: random token streams and random valid
queries from a grammar of the subset. No answer may be a 5xx; valid queries answer 200."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

VOCABULARY = [
    *[
        "EVALUATE",
        "DEFINE",
        "MEASURE",
        "VAR",
        "RETURN",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "START",
        "AT",
        "IN",
        "NOT",
        "TRUE",
        "FALSE",
    ],
    *[
        "FILTER",
        "CALCULATETABLE",
        "SUMMARIZECOLUMNS",
        "TOPN",
        "ROW",
        "SELECTCOLUMNS",
        "ADDCOLUMNS",
        "DISTINCT",
        "VALUES",
        "ALL",
    ],
    *[
        "SUM",
        "AVERAGE",
        "MIN",
        "MAX",
        "COUNT",
        "COUNTROWS",
        "DISTINCTCOUNT",
        "DATE",
        "DATETIME",
        "BLANK",
        "ISBLANK",
        "AND",
        "OR",
    ],
    "F",
    "'F'",
    "F[S]",
    "'F'[I]",
    "F[D]",
    "F[B]",
    "F[W]",
    "[S]",
    "[x]",
    "'Nope'",
    "F[Nope]",
    "(",
    ")",
    ",",
    "{",
    "}",
    "=",
    "==",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "+",
    "-",
    "*",
    "/",
    "^",
    "&",
    "1",
    "0",
    "-3",
    "2.5",
    "1e3",
    '"a"',
    '""',
    '"x""y"',
    "\n",
    "//c\n",
    "/*",
    "*/",
    "'",
    "[",
    "]",
    '"',
    "@",
    "$",
    ";",
    "99999999999999999999999",
    "2147483648",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, server_factory: Callable[..., RunningServer]) -> Any:
    overrides: dict[str, Any] = {"queries_per_minute": 1_000_000}
    if request.param == "postgres":
        return server_factory(storage=request.getfixturevalue("postgres_storage"), **overrides)
    return server_factory(**overrides)


def _setup(server: RunningServer) -> tuple[httpx.Client, str]:
    fields = {"S": "Text", "I": "Int64", "D": "Number", "B": "Boolean", "W": "DateTime"}
    made = server.create_dataset(fields, mode="Push", table="F")
    client = server.client(timeout=30.0)
    rows = [
        {
            "S": f"s{i % 4}",
            "I": i - 5,
            "D": i / 3,
            "B": i % 2 == 0,
            "W": f"2026-01-{i + 1:02d}T00:00:00Z",
        }
        for i in range(12)
    ] + [{"S": None}, {}]
    assert (
        client.post(f"{PBI}/datasets/{made['id']}/tables/F/rows", json={"rows": rows}).status_code
        == 200
    )
    return client, f"{PBI}/datasets/{made['id']}/executeQueries"


# --- a grammar of valid queries --------------------------------------------------------------
def _string() -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6).map(
        lambda s: '"' + s.replace('"', '""') + '"'
    )


_INT = st.integers(-(10**6), 10**6).map(str)
_FLOAT = st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: repr(round(f, 3)))
_NUMBER = st.one_of(_INT, _FLOAT)
_BOOL = st.sampled_from(["TRUE", "FALSE", "TRUE()", "FALSE()"])
_DATE = st.builds(
    lambda y, m, d: f"DATE({y}, {m}, {d})",
    st.integers(1990, 2100),
    st.integers(1, 12),
    st.integers(1, 28),
)
_NUM_COL = st.sampled_from(["F[I]", "'F'[I]", "F[D]", "'F'[D]"])
_CMP = st.sampled_from(["=", "==", "<>", "<", "<=", ">", ">="])


def _comparison() -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda c, op, v: f"{c} {op} {v}", _NUM_COL, _CMP, _NUMBER),
        st.builds(lambda op, v: f"F[S] {op} {v}", _CMP, _string()),
        st.builds(lambda op, v: f"F[W] {op} {v}", _CMP, _DATE),
        st.builds(lambda v: f"F[B] = {v}", _BOOL),
        st.builds(
            lambda vs: "F[S] IN {" + ", ".join(vs) + "}",
            st.lists(_string(), min_size=1, max_size=3),
        ),
        st.builds(
            lambda vs: "F[I] IN {" + ", ".join(vs) + "}", st.lists(_INT, min_size=1, max_size=3)
        ),
        st.sampled_from(["ISBLANK(F[S])", "F[I] = BLANK()", "F[B]"]),
    )


_PREDICATE = st.recursive(
    _comparison(),
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a} && {b})", inner, inner),
        st.builds(lambda a, b: f"({a} || {b})", inner, inner),
        st.builds(lambda a: f"NOT ({a})", inner),
        st.builds(lambda a, b: f"AND({a}, {b})", inner, inner),
    ),
    max_leaves=4,
)
_FILTER_TABLE = st.recursive(
    st.sampled_from(["F", "'F'", "VALUES(F[S])", "DISTINCT(F[I])"]),
    lambda inner: st.one_of(
        st.builds(lambda t, p: f"FILTER({t}, {p})", inner, _PREDICATE),
        st.builds(lambda t, p: f"CALCULATETABLE({t}, {p})", inner, _PREDICATE),
    ),
    max_leaves=3,
)
_TABLE = st.recursive(
    st.sampled_from(["F", "'F'"]),
    lambda inner: st.one_of(
        st.builds(lambda t, p: f"FILTER({t}, {p})", inner, _PREDICATE),
        st.builds(lambda t, p: f"CALCULATETABLE({t}, {p})", inner, _PREDICATE),
        st.builds(
            lambda n, t, c, o: f"TOPN({n}, {t}, {c}{o})",
            st.integers(0, 20),
            inner,
            _NUM_COL,
            st.sampled_from(["", ", ASC", ", DESC", ", 0", ", 1"]),
        ),
    ),
    max_leaves=3,
)
_AGG = st.one_of(
    st.builds(
        lambda f, c: f"{f}({c})",
        st.sampled_from(["SUM", "AVERAGE", "MIN", "MAX", "COUNT"]),
        _NUM_COL,
    ),
    st.sampled_from(
        ["COUNTROWS(F)", "DISTINCTCOUNT(F[S])", "MIN(F[W])", "MAX(F[S])", "COUNT(F[B])"]
    ),
)
_QUERY = st.one_of(
    st.builds(
        lambda t, o: f"EVALUATE {t}{o}",
        _TABLE,
        st.sampled_from(
            ["", " ORDER BY F[I]", " ORDER BY F[D] DESC, F[S] ASC", " ORDER BY F[I] START AT 0"]
        ),
    ),
    st.builds(
        lambda flt, a, b: f'EVALUATE SUMMARIZECOLUMNS(F[S]{flt}, "A", {a}, "B", {b}) ORDER BY [A]',
        st.one_of(
            st.just(""),
            _FILTER_TABLE.map(lambda t: f", FILTER({t}, TRUE)"),
            _PREDICATE.map(lambda p: f", FILTER(F, {p})"),
        ),
        _AGG,
        _AGG,
    ),
    st.builds(lambda a, n: f'EVALUATE ROW("x", {a}, "n", {n})', _AGG, _NUMBER),
    st.builds(
        lambda c: f"EVALUATE VALUES({c})", st.sampled_from(["F[S]", "F[I]", "'F'[B]", "F[W]"])
    ),
    st.builds(
        lambda t, c: f'EVALUATE SELECTCOLUMNS({t}, "v", {c} * 2 + 1, "w", {c} / 3)',
        _TABLE,
        _NUM_COL,
    ),
    st.builds(
        lambda v, p: f"DEFINE VAR v = {v} EVALUATE FILTER(F, F[I] > v && {p})", _INT, _PREDICATE
    ),
)


def test_random_token_streams_never_get_a_5xx(server: RunningServer) -> None:
    client, url = _setup(server)
    pieces = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=3))

    @FUZZ
    @given(st.lists(pieces, max_size=25))
    def check(tokens: list[str]) -> None:
        query = " ".join(tokens)
        response = client.post(url, json={"queries": [{"query": query}]})
        assert response.status_code < 500, f"{query!r} -> {response.status_code} {response.text}"
        assert response.status_code in (200, 400), response.text

    try:
        check()
    finally:
        client.close()


def test_random_valid_queries_answer_200(server: RunningServer) -> None:
    client, url = _setup(server)

    @FUZZ
    @given(_QUERY)
    def check(query: str) -> None:
        response = client.post(url, json={"queries": [{"query": query}]})
        assert response.status_code == 200, f"{query!r} -> {response.status_code} {response.text}"
        assert "rows" in response.json()["results"][0]["tables"][0]

    try:
        check()
    finally:
        client.close()
