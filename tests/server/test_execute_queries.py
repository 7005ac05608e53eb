"""executeQueries over the real server (SQLite and PostgreSQL): every DAX form of the
subset, checked against an independent computation over the rows read through /api."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from dax_cases import (
    FIELDS,
    Row,
    agg_avg,
    agg_count,
    agg_countrows,
    agg_distinctcount,
    agg_max,
    agg_min,
    agg_sum,
    blank_low,
    group_by,
    make_rows,
    qualified,
    shown,
    top_with_ties,
)

from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"


class Sales:
    """A dataset with one table, Sales, holding :func:`make_rows`, on a running server."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        made = server.create_dataset(FIELDS, mode="Push", table="Sales", name="Sales")
        self.id = made["id"]
        self.client = server.client(timeout=30.0)
        posted = self.client.post(
            f"{PBI}/datasets/{self.id}/tables/Sales/rows", json={"rows": make_rows()}
        )
        assert posted.status_code == 200, posted.text
        page = self.client.get(
            f"/api/datasets/{self.id}/rows", params={"table": "Sales", "limit": 1000}
        )
        assert page.status_code == 200
        # The independent side reads the rows back through /api, as stored.
        self.rows: list[Row] = [r["data"] for r in page.json()["rows"]]
        assert len(self.rows) == 150

    def query(self, dax: str, **extra: Any) -> httpx.Response:
        return self.client.post(
            f"{PBI}/datasets/{self.id}/executeQueries", json={"queries": [{"query": dax}], **extra}
        )

    def rows_of(self, dax: str, **extra: Any) -> list[Row]:
        response = self.query(dax, **extra)
        assert response.status_code == 200, f"{dax}\n{response.text}"
        body = response.json()
        assert list(body) == ["results"] and len(body["results"]) == 1
        (table,) = body["results"][0]["tables"]
        assert "error" not in table and "error" not in body["results"][0], body
        rows: list[Row] = table["rows"]
        return rows


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sales(
    request: pytest.FixtureRequest, server_factory: Callable[..., RunningServer]
) -> Iterator[Sales]:
    if request.param == "postgres":
        server = server_factory(storage=request.getfixturevalue("postgres_storage"))
    else:
        server = server_factory()
    made = Sales(server)
    yield made
    made.client.close()


def _norm(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def _canon(rows: list[Row]) -> list[Row]:
    return [{k: _norm(v) for k, v in r.items()} for r in rows]


def _same_bag(got: list[Row], want: list[Row]) -> None:
    def key(r: Row) -> bytes:
        return orjson.dumps(r, option=orjson.OPT_SORT_KEYS)

    assert sorted(_canon(got), key=key) == sorted(_canon(want), key=key)


def test_evaluate_a_table_quoted_or_not(sales: Sales) -> None:
    want = [qualified(r) for r in sales.rows]
    _same_bag(sales.rows_of("EVALUATE 'Sales'"), want)
    _same_bag(sales.rows_of("evaluate Sales"), want)


def test_filter_with_comparisons_and_or_not_in(sales: Sales) -> None:
    got = sales.rows_of(
        "EVALUATE FILTER('Sales', ('Sales'[Qty] > 5 && 'Sales'[Region] IN {\"East\", \"West\"}) "
        "|| NOT ('Sales'[Amount] <= 400) || Sales[Product] == \"Bell\")"
    )
    want = [
        r
        for r in sales.rows
        if (r.get("Qty") is not None and r["Qty"] > 5 and r["Region"] in ("East", "West"))
        or (r.get("Amount") is not None and not r["Amount"] <= 400)
        or r.get("Product") == "Bell"
    ]
    _same_bag(got, [qualified(r) for r in want])


def test_filter_on_dates_booleans_decimals_and_blank(sales: Sales) -> None:
    got = sales.rows_of(
        "EVALUATE FILTER(Sales, Sales[Sold] >= DATE(2026, 5, 1) && Sales[Sold] < DATETIME(2026, "
        "8, 15, 12, 0, 0) "
        "&& Sales[Returned] = FALSE() && Sales[Price] <> 50.5 && NOT ISBLANK(Sales[Product]))"
    )
    want = [
        r
        for r in sales.rows
        if r.get("Sold") is not None
        and "2026-05-01T00:00:00.000Z" <= r["Sold"] < "2026-08-15T12:00:00.000Z"
        and r.get("Returned") is False
        and r.get("Price") is not None
        and r["Price"] != 50.5
        and r.get("Product") is not None
    ]
    assert want
    _same_bag(got, [qualified(r) for r in want])
    blanks = sales.rows_of("EVALUATE FILTER(Sales, Sales[Qty] = BLANK())")
    _same_bag(blanks, [qualified(r) for r in sales.rows if r.get("Qty") is None])


def test_topn_and_order_by_with_start_at(sales: Sales) -> None:
    got = sales.rows_of("EVALUATE TOPN(7, Sales, Sales[Amount]) ORDER BY Sales[Amount] DESC")
    with_amount = [r for r in sales.rows if r.get("Amount") is not None]
    want = top_with_ties(with_amount, 7, lambda r: r["Amount"])
    assert [r["Sales[Amount]"] for r in got] == [r["Amount"] for r in want]

    ordered = sales.rows_of(
        'EVALUATE SELECTCOLUMNS(Sales, "R", Sales[Region], "Q", Sales[Qty]) '
        'ORDER BY [R] ASC, [Q] DESC START AT "North", 6'
    )
    expected = sorted(
        sales.rows, key=lambda r: (r["Region"], -blank_low(r.get("Qty"))[0], -(r.get("Qty") or 0))
    )
    expected = [
        r
        for r in expected
        if r["Region"] > "North"
        or (r["Region"] == "North" and (r.get("Qty") is None or r["Qty"] <= 6))
    ]
    assert [(r["[R]"], r.get("[Q]")) for r in ordered] == [
        (r["Region"], r.get("Qty")) for r in expected
    ]

    ascending = sales.rows_of("EVALUATE TOPN(3, Sales, Sales[Qty], ASC) ORDER BY Sales[Qty]")
    qtys = sorted(blank_low(r.get("Qty")) for r in sales.rows)
    cut = qtys[2]
    assert [r.get("Sales[Qty]") for r in ascending] == [
        q[1] if q[0] else None for q in qtys if q <= cut
    ]


def test_calculatetable_with_filter_arguments(sales: Sales) -> None:
    got = sales.rows_of(
        "EVALUATE CALCULATETABLE('Sales', 'Sales'[Region] = \"East\", FILTER(Sales, Sales[Qty] >= "
        "3))"
    )
    want = [r for r in sales.rows if r["Region"] == "East" and (r.get("Qty") or -1) >= 3]
    _same_bag(got, [qualified(r) for r in want])
    # A boolean filter on a column replaces the outer one on the same column (DAX's rule).
    override = sales.rows_of(
        'EVALUATE CALCULATETABLE(CALCULATETABLE(Sales, Sales[Region] = "West"), Sales[Region] = '
        '"East")'
    )
    _same_bag(override, [qualified(r) for r in sales.rows if r["Region"] == "West"])


def test_summarizecolumns_with_every_aggregate(sales: Sales) -> None:
    got = sales.rows_of(
        "EVALUATE SUMMARIZECOLUMNS('Sales'[Region], \"Total\", SUM('Sales'[Amount]), "
        '"Avg", AVERAGE(Sales[Price]), "Min", MIN(Sales[Sold]), "Max", MAX(Sales[Qty]), '
        '"N", COUNT(Sales[Qty]), "Rows", COUNTROWS(\'Sales\'), "Products", '
        "DISTINCTCOUNT(Sales[Product]))"
    )
    want = group_by(
        sales.rows,
        ["Region"],
        {
            "Total": agg_sum("Amount"),
            "Avg": agg_avg("Price"),
            "Min": agg_min("Sold"),
            "Max": agg_max("Qty"),
            "N": agg_count("Qty"),
            "Rows": agg_countrows,
            "Products": agg_distinctcount("Product"),
        },
    )
    _same_bag(got, want)


def test_summarizecolumns_with_filter_tables_and_two_groups(sales: Sales) -> None:
    got = sales.rows_of(
        "EVALUATE SUMMARIZECOLUMNS(Sales[Region], Sales[Product], FILTER(Sales, Sales[Returned] = "
        "FALSE), "
        '"Qty", SUM(Sales[Qty]), "Amount", SUM(Sales[Amount]))'
    )
    kept = [r for r in sales.rows if r.get("Returned") is False]
    want = group_by(
        kept, ["Region", "Product"], {"Qty": agg_sum("Qty"), "Amount": agg_sum("Amount")}
    )
    _same_bag(got, want)
    groups_only = sales.rows_of("EVALUATE SUMMARIZECOLUMNS(Sales[Product])")
    _same_bag(groups_only, group_by(sales.rows, ["Product"], {}))


def test_row_of_literals_of_every_type(sales: Sales) -> None:
    query = (
        'EVALUATE ROW("Int", 42, "Dec", 2.5, "Text", "a ""quoted"" word", "T", TRUE(), "F", FALSE, '
        '"Date", DATE(2024, 2, 29), "When", DATETIME(2024, 1, 2, 3, 4, 5), "Blank", BLANK(), '
        '"Neg", -7 * 3)'
    )
    want = {
        "[Int]": 42,
        "[Dec]": 2.5,
        "[Text]": 'a "quoted" word',
        "[T]": True,
        "[F]": False,
        "[Date]": "2024-02-29T00:00:00",
        "[When]": "2024-01-02T03:04:05",
        "[Neg]": -21,
    }
    assert sales.rows_of(query) == [want]
    with_nulls = sales.rows_of(query, serializerSettings={"includeNulls": True})
    assert with_nulls == [{**want, "[Blank]": None}] and list(with_nulls[0]) == [
        "[Int]",
        "[Dec]",
        "[Text]",
        "[T]",
        "[F]",
        "[Date]",
        "[When]",
        "[Blank]",
        "[Neg]",
    ]


def test_row_of_aggregates_and_measures_and_vars(sales: Sales) -> None:
    got = sales.rows_of(
        "DEFINE MEASURE Sales[Total Qty] = SUM(Sales[Qty]) "
        "MEASURE 'Sales'[Per Row] = [Total Qty] / COUNTROWS(Sales) "
        "VAR floor = 2 "
        'EVALUATE ROW("Total", [Total Qty], "PerRow", [Per Row], "Rows", COUNTROWS(FILTER(Sales, '
        "Sales[Qty] > floor)))"
    )
    total = sum(present_qty := [r["Qty"] for r in sales.rows if r.get("Qty") is not None])
    assert present_qty
    want = {
        "[Total]": total,
        "[PerRow]": total / len(sales.rows),
        "[Rows]": sum(1 for r in sales.rows if (r.get("Qty") or -1) > 2),
    }
    assert _canon(got) == _canon([want])


def test_selectcolumns_addcolumns_distinct_values(sales: Sales) -> None:
    got = sales.rows_of(
        'EVALUATE SELECTCOLUMNS(Sales, "Where", Sales[Region], Sales[Product], "Double", '
        "Sales[Qty] * 2)"
    )
    want = [
        {
            k: v
            for k, v in {
                "[Where]": r["Region"],
                "Sales[Product]": r.get("Product"),
                "[Double]": None if r.get("Qty") is None else r["Qty"] * 2,
            }.items()
            if v is not None
        }
        for r in sales.rows
    ]
    _same_bag(got, want)
    added = sales.rows_of(
        'EVALUATE ADDCOLUMNS(FILTER(Sales, Sales[Qty] > 10), "Half", Sales[Qty] / 2)'
    )
    _same_bag(
        added,
        [{**qualified(r), "[Half]": r["Qty"] / 2} for r in sales.rows if (r.get("Qty") or 0) > 10],
    )
    distinct = sales.rows_of("EVALUATE DISTINCT('Sales'[Product])")
    _same_bag(
        distinct,
        [{"Sales[Product]": p} if p else {} for p in {r.get("Product") for r in sales.rows}],
    )
    values = sales.rows_of("EVALUATE VALUES(Sales[Region]) ORDER BY Sales[Region]")
    assert values == [{"Sales[Region]": r} for r in sorted({r["Region"] for r in sales.rows})]


def test_define_measure_and_var_in_summarizecolumns(sales: Sales) -> None:
    got = sales.rows_of(
        "DEFINE\n  MEASURE Sales[Total] = SUM(Sales[Amount])\n  VAR minQty = 4\n"
        "EVALUATE\n  SUMMARIZECOLUMNS(Sales[Region], FILTER(VALUES(Sales[Qty]), Sales[Qty] >= "
        "minQty), "
        '"T", [Total], "Avg", [Total] / COUNT(Sales[Amount]))\nORDER BY Sales[Region] DESC'
    )
    kept = [r for r in sales.rows if (r.get("Qty") if r.get("Qty") is not None else -1) >= 4]
    want = group_by(kept, ["Region"], {"T": agg_sum("Amount"), "Avg": agg_avg("Amount")})
    want.sort(key=lambda r: r["Sales[Region]"], reverse=True)
    assert _canon(got) == _canon(want)


def test_var_return_block_and_group_route(sales: Sales) -> None:
    got = sales.rows_of(
        'EVALUATE VAR big = FILTER(Sales, Sales[Qty] >= 11) RETURN SELECTCOLUMNS(big, "Q", '
        "Sales[Qty])"
    )
    _same_bag(got, [{"[Q]": r["Qty"]} for r in sales.rows if (r.get("Qty") or 0) >= 11])


def test_includenulls_keeps_blank_columns(sales: Sales) -> None:
    got = sales.rows_of("EVALUATE 'Sales'", serializerSettings={"includeNulls": True})
    assert all(len(r) == len(FIELDS) for r in got)
    want = [{f"Sales[{k}]": shown(r.get(k)) for k in FIELDS} for r in sales.rows]
    _same_bag(got, want)


def test_text_comparisons_ignore_case_as_in_dax(sales: Sales) -> None:
    # DAX compares text case-insensitively ("sqlbi" = "SQLBI" is TRUE; EXACT is the
    # case-sensitive test), so a filter typed in another case finds the same rows.
    got = sales.rows_of(
        'EVALUATE FILTER(Sales, Sales[Region] = "east" || Sales[Product] IN {"BIKE", "lOcK"})'
    )
    want = [r for r in sales.rows if r["Region"] == "East" or r.get("Product") in ("Bike", "Lock")]
    assert want
    _same_bag(got, [qualified(r) for r in want])
    got = sales.rows_of('EVALUATE FILTER(Sales, Sales[Region] <> "NORTH" && Sales[Region] < "s")')
    _same_bag(got, [qualified(r) for r in sales.rows if r["Region"] in ("East",)])
    counted = sales.rows_of('EVALUATE ROW("n", COUNTROWS(FILTER(Sales, Sales[Region] >= "WEST")))')
    assert counted == [{"[n]": sum(1 for r in sales.rows if r["Region"] == "West")}]


def test_a_one_value_table_constructor_answers_value(sales: Sales) -> None:
    # EVALUATE {COUNTROWS(T)} is the usual way to read one number back; its column is [Value].
    assert sales.rows_of("EVALUATE {COUNTROWS('Sales')}") == [{"[Value]": len(sales.rows)}]
    total = sum(r["Amount"] for r in sales.rows if r.get("Amount") is not None)
    (row,) = sales.rows_of("EVALUATE { SUM(Sales[Amount]) }")
    assert list(row) == ["[Value]"] and round(row["[Value]"], 6) == round(total, 6)
    east = sum(1 for r in sales.rows if r["Region"] == "East")
    got = sales.rows_of(
        'DEFINE VAR t = {COUNTROWS(FILTER(Sales, Sales[Region] = "East"))} EVALUATE t'
    )
    assert got == [{"[Value]": east}]
    many = sales.query("EVALUATE {1, 2}")
    assert many.status_code == 400
    assert many.json()["error"]["code"] == "DatasetExecuteQueriesError"
    assert "Query (1, 10)" in many.json()["error"]["message"]


def test_values_of_a_table_keeps_duplicate_rows_distinct_removes_them(sales: Sales) -> None:
    # Microsoft's own executeQueries example is EVALUATE VALUES(MyTable): for a table,
    # VALUES returns its rows with duplicates preserved; DISTINCT(table) removes them.
    twice = [{"Region": "East", "Qty": 99}, {"Region": "East", "Qty": 99}]
    posted = sales.client.post(f"{PBI}/datasets/{sales.id}/tables/Sales/rows", json={"rows": twice})
    assert posted.status_code == 200, posted.text
    rows = sales.rows + twice
    _same_bag(sales.rows_of("EVALUATE VALUES(Sales)"), [qualified(r) for r in rows])
    unique = {orjson.dumps(r, option=orjson.OPT_SORT_KEYS): r for r in rows}
    assert len(unique) == len(rows) - 1
    _same_bag(sales.rows_of("EVALUATE DISTINCT('Sales')"), [qualified(r) for r in unique.values()])


def test_calculate_of_one_expression_as_power_bi_desktop_writes_it(sales: Sales) -> None:
    # Power BI Desktop's Performance analyzer wraps each implicit measure in CALCULATE(...)
    # with no filter; that query, pasted into executeQueries, answers as in Power BI.
    got = sales.rows_of(
        "DEFINE VAR __DS0Core = SUMMARIZECOLUMNS('Sales'[Region], \"SumAmount\", "
        "CALCULATE(SUM('Sales'[Amount])), \"Rows\", CALCULATE(COUNTROWS('Sales')))\n"
        "EVALUATE TOPN(501, __DS0Core, 'Sales'[Region], 1)\nORDER BY 'Sales'[Region]"
    )
    want = group_by(sales.rows, ["Region"], {"SumAmount": agg_sum("Amount"), "Rows": agg_countrows})
    assert [r["Sales[Region]"] for r in got] == sorted(r["Sales[Region]"] for r in want)
    _same_bag(got, want)
    (row,) = sales.rows_of('EVALUATE ROW("n", CALCULATE(COUNTROWS(Sales)))')
    assert row == {"[n]": len(sales.rows)}
    refused = sales.query('EVALUATE ROW("n", CALCULATE(COUNTROWS(Sales), Sales[Region] = "East"))')
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "CALCULATE" in message and "Query (1, 19)" in message


def test_dt_datetime_literals_filter_like_datetime(sales: Sales) -> None:
    got = sales.rows_of(
        'EVALUATE FILTER(Sales, Sales[Sold] >= dt"2026-05-01" '
        '&& Sales[Sold] < dt"2026-08-15 12:00:00")'
    )
    want = [
        r
        for r in sales.rows
        if r.get("Sold") is not None
        and "2026-05-01T00:00:00.000Z" <= r["Sold"] < "2026-08-15T12:00:00.000Z"
    ]
    assert want
    _same_bag(got, [qualified(r) for r in want])
    assert sales.rows_of('EVALUATE ROW("d", dt"2026-01-31T13:05:00")') == [
        {"[d]": "2026-01-31T13:05:00"}
    ]
