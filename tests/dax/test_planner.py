"""The planner: names, functions and types checked against a dataset, without a server."""

from __future__ import annotations

import pytest

from pbistream.dax import DaxError, plan_dax
from pbistream.dax.plan import Distinct, Filter, Group, Project, Scan, TopN
from pbistream.schema import Column, Table
from pbistream.values import DataType

TABLES = [
    Table(
        "Sales",
        (
            Column("Region", DataType.STRING),
            Column("Amount", DataType.DOUBLE),
            Column("Qty", DataType.INT64),
            Column("Sold", DataType.DATETIME),
        ),
    ),
    Table("Other", (Column("k", DataType.STRING),)),
]


def plan(text: str) -> object:
    return plan_dax(text, TABLES)[0]


def test_answer_keys_are_qualified_or_bracketed() -> None:
    assert [k for k, _ in plan("EVALUATE sales").columns] == [  # type: ignore[attr-defined]
        "Sales[Region]",
        "Sales[Amount]",
        "Sales[Qty]",
        "Sales[Sold]",
    ]
    summarized = plan('EVALUATE SUMMARIZECOLUMNS(SALES[region], "Total", SUM(Sales[Amount]))')
    assert summarized.columns == (  # type: ignore[attr-defined]
        ("Sales[Region]", DataType.STRING),
        ("[Total]", DataType.DOUBLE),
    )


def test_plan_shapes() -> None:
    assert isinstance(plan("EVALUATE FILTER(Sales, Sales[Qty] > 1)").table, Filter)  # type: ignore[attr-defined]
    assert isinstance(plan("EVALUATE TOPN(2, Sales, Sales[Qty])").table, TopN)  # type: ignore[attr-defined]
    assert isinstance(plan("EVALUATE VALUES(Sales[Region])").table, Distinct)  # type: ignore[attr-defined]
    assert isinstance(plan('EVALUATE SELECTCOLUMNS(Sales, "a", 1)').table, Project)  # type: ignore[attr-defined]
    grouped = plan('EVALUATE SUMMARIZECOLUMNS(Sales[Region], "N", COUNTROWS(Sales))').table  # type: ignore[attr-defined]
    assert isinstance(grouped, Group) and grouped.drop_blank
    assert isinstance(plan("EVALUATE ALL(Sales)").table, Scan)  # type: ignore[attr-defined]


def test_several_evaluates_are_counted() -> None:
    assert plan_dax("EVALUATE Sales EVALUATE Other", TABLES)[1] == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("EVALUATE SUMMARIZE(Sales, Sales[Region])", "The function SUMMARIZE is not supported"),
        ("EVALUATE Nope", "Cannot find table 'Nope'"),
        ("EVALUATE FILTER(Sales, Sales[Nope] = 1)", "Column 'Nope'"),
        (
            "EVALUATE FILTER(Sales, Sales[Region] = 1)",
            "comparing values of type String with values of type Int64",
        ),
        ('EVALUATE FILTER(Sales, Sales[Qty] + "a" > 1)', "Arithmetic needs numbers"),
        ("EVALUATE FILTER(Sales, Sales[Qty])", "true or false"),
        (
            "EVALUATE FILTER(Sales, SUM(Sales[Qty]) > 1)",
            "SUM can be used in SUMMARIZECOLUMNS or ROW",
        ),
        ('EVALUATE ROW("a", Sales[Qty])', "single value for column 'Qty'"),
        ('EVALUATE ROW("a", SUM(Sales[Region]))', "numeric column"),
        ('EVALUATE ROW("a", SUM(Sales[Qty]), "b", COUNTROWS(Other))', "several tables"),
        ("EVALUATE SUM(Sales[Qty])", "The function SUM returns a single value, not a table"),
        ("EVALUATE 1 + 2", "EVALUATE needs a table"),
        ('EVALUATE ROW("a", DATE(2024, 2, 30))', "not a valid date"),
        ("EVALUATE TOPN(-1, Sales)", "cannot be negative"),
        ("EVALUATE TOPN(1.5, Sales)", "whole number"),
        ('EVALUATE SELECTCOLUMNS(Sales, "a", 1, "A", 2)', "used twice"),
        ('DEFINE MEASURE Sales[m] = [m] + 1 EVALUATE ROW("x", [m])', "refers to itself"),
        ("DEFINE VAR v = SUM(Sales[Qty]) EVALUATE Sales", "use DEFINE MEASURE"),
        ('EVALUATE ROW("a", [nothing])', "Cannot find a column or measure named [nothing]"),
        ("EVALUATE T ORDER BY 1", "Cannot find table 'T'"),
        ('EVALUATE Sales ORDER BY Sales[Qty] START AT "x"', "comparing"),
    ],
)
def test_outside_the_subset_names_the_function_or_token(text: str, fragment: str) -> None:
    with pytest.raises(DaxError) as caught:
        plan(text)
    assert fragment in caught.value.message, caught.value
    assert caught.value.position[0] >= 1 and caught.value.position[1] >= 1
