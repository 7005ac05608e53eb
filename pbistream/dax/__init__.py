"""A subset of DAX for Power BI's executeQueries: lexer → parser → plan → SQL.

Pure: no server, no storage import. The endpoint
(:mod:`pbistream.server.execute_queries`) parses and plans a query with
:func:`plan_dax`; a storage backend runs the plan with its own SQL
(:mod:`pbistream.dax.sql`) and converts values with :func:`json_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pbistream.dax.errors import DaxError, Position
from pbistream.dax.parser import parse_expression, parse_query
from pbistream.dax.plan import QueryPlan
from pbistream.dax.planner import SUPPORTED_FUNCTIONS, plan_query
from pbistream.dax.result import answer_datetime, json_rows
from pbistream.dax.syntax import Query
from pbistream.schema import Table

__all__ = [
    "SUPPORTED_FUNCTIONS",
    "DaxError",
    "Position",
    "Query",
    "QueryPlan",
    "answer_datetime",
    "json_rows",
    "parse_expression",
    "parse_query",
    "plan_dax",
    "plan_query",
]


def plan_dax(text: str, tables: Sequence[Table]) -> tuple[QueryPlan, int]:
    """Parse and plan a query's first EVALUATE; also return how many EVALUATEs it has.

    Raises:
        DaxError: The query cannot be read, or is outside the subset.
    """
    query = parse_query(text)
    return plan_query(query, tables), len(query.evaluates)
