"""The DAX parser: statements, precedence, and errors that name the token and position."""

from __future__ import annotations

import pytest

from pbistream.dax import DaxError, parse_expression, parse_query
from pbistream.dax.parser import MAX_DEPTH
from pbistream.dax.syntax import (
    Binary,
    BracketRef,
    Call,
    ColumnRef,
    Literal,
    Name,
    TableConstructor,
    TableRef,
    Unary,
    VarBlock,
)


def shape(expr: object) -> object:
    """A compact form of a tree, without positions."""
    if isinstance(expr, Binary):
        return (expr.op, shape(expr.left), shape(expr.right))
    if isinstance(expr, Unary):
        return (expr.op, shape(expr.operand))
    if isinstance(expr, Call):
        return (expr.name, *[shape(a) for a in expr.args])
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, ColumnRef):
        return f"{expr.table}[{expr.column}]"
    if isinstance(expr, BracketRef):
        return f"[{expr.name}]"
    if isinstance(expr, TableRef | Name):
        return getattr(expr, "table", None) or getattr(expr, "name", None)
    if isinstance(expr, TableConstructor):
        return tuple(shape(v) for v in expr.values)
    if isinstance(expr, VarBlock):
        return ("VAR", tuple((n, shape(v)) for n, v in expr.bindings), shape(expr.body))
    raise AssertionError(expr)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("1 + 2 * 3", ("+", 1, ("*", 2, 3))),
        ("(1 + 2) * 3", ("*", ("+", 1, 2), 3)),
        ("1 - 2 - 3", ("-", ("-", 1, 2), 3)),
        ("-2 ^ 2", ("-", ("^", 2, 2))),
        ("2 ^ 3 ^ 2", ("^", 2, ("^", 3, 2))),
        ("a || b && c", ("||", "a", ("&&", "b", "c"))),
        ("NOT T[x] = 1 && y", ("&&", ("NOT", ("=", "T[x]", 1)), "y")),
        ('T[x] IN {1, "a"}', ("IN", "T[x]", (1, "a"))),
        ("T[x] + 1 > 2 * [m]", (">", ("+", "T[x]", 1), ("*", 2, "[m]"))),
        ("'My T'[c] <> BLANK()", ("<>", "My T[c]", ("BLANK",))),
        ("sum ( T[x] )", ("SUM", "T[x]")),
        ("VAR a = 1 VAR b = a + 1 RETURN b", ("VAR", (("a", 1), ("b", ("+", "a", 1))), "b")),
        ("2.5e1", 25.0),
        ("TOPN(3, T, T[x], ASC)", ("TOPN", 3, "T", "T[x]", "ASC")),
    ],
)
def test_precedence_and_forms(text: str, tree: object) -> None:
    assert shape(parse_expression(text)) == tree


def test_query_with_define_order_by_and_start_at() -> None:
    query = parse_query(
        "DEFINE MEASURE 'Sales'[Total] = SUM(Sales[Amount]) VAR lim = 3\n"
        'EVALUATE SUMMARIZECOLUMNS(Sales[Region], "T", [Total])\n'
        'ORDER BY Sales[Region] DESC, [T] START AT "W"'
    )
    assert [(d.kind, d.name, d.table) for d in query.defines] == [
        ("MEASURE", "Total", "Sales"),
        ("VAR", "lim", None),
    ]
    (statement,) = query.evaluates
    assert shape(statement.table)[0] == "SUMMARIZECOLUMNS"
    assert [(shape(e), asc) for e, asc in statement.order_by] == [
        ("Sales[Region]", False),
        ("[T]", True),
    ]
    assert [shape(v) for v in statement.start_at] == ["W"]
    assert statement.position == (2, 1)


def test_several_evaluates_are_kept_in_order() -> None:
    query = parse_query("EVALUATE A EVALUATE 'B'")
    assert [shape(e.table) for e in query.evaluates] == ["A", "B"]


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("SELECT 1", (1, 1), "'SELECT'"),
        ("EVALUATE", (1, 9), "end of the query"),
        ("EVALUATE FILTER(T, T[x] > )", (1, 27), "')'"),
        ("EVALUATE FILTER(T, T[x] > 1", (1, 28), "to close FILTER("),
        ("EVALUATE T ORDER T[x]", (1, 18), "Expected BY"),
        ("EVALUATE T ORDER BY T[x] START AT 1, 2", (1, 26), "START AT has 2 values"),
        ("EVALUATE T junk", (1, 12), "'junk'"),
        ("DEFINE EVALUATE T", (1, 8), "MEASURE or VAR"),
        ("DEFINE MEASURE T = 1 EVALUATE T", (1, 18), "[Name]"),
        ("EVALUATE T[x] IN 3", (1, 15), "IN needs a list"),
        ("EVALUATE (1, 2)", (1, 12), "tuples"),
        ("EVALUATE VAR 1 = 2 RETURN 1", (1, 14), "variable name"),
    ],
)
def test_syntax_errors_name_the_token_and_position(
    text: str, position: tuple[int, int], fragment: str
) -> None:
    with pytest.raises(DaxError) as caught:
        parse_query(text)
    assert caught.value.position == position, caught.value
    assert fragment in caught.value.message, caught.value


@pytest.mark.parametrize(
    "text",
    ["(" * (MAX_DEPTH + 5) + "1" + ")" * (MAX_DEPTH + 5), " + ".join(["1"] * (MAX_DEPTH + 5))],
)
def test_deep_nesting_is_refused_not_a_recursion_error(text: str) -> None:
    with pytest.raises(DaxError, match="nests expressions"):
        parse_expression(text)


def test_dt_literals_are_datetime_calls() -> None:
    for text, parts in [
        ('dt"2026-05-19"', (2026, 5, 19, 0, 0, 0)),
        ('DT"2026-05-19T13:05:09"', (2026, 5, 19, 13, 5, 9)),
        ('dt"2026-05-19 13:05:09"', (2026, 5, 19, 13, 5, 9)),
    ]:
        expr = parse_expression(text)
        assert isinstance(expr, Call) and expr.name == "DATETIME"
        assert tuple(a.value for a in expr.args if isinstance(a, Literal)) == parts
    with pytest.raises(DaxError, match=r"Query \(1, 3\) dt\"19/05/2026\" is not a DateTime"):
        parse_expression('dt"19/05/2026"')
