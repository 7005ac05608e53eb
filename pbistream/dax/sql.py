# The SQL text is assembled from fixed fragments and generated aliases (t0, c0); every
# value from a query and every column name is a bound parameter.
# ruff: noqa: S608
"""A :class:`~pbistream.dax.plan.QueryPlan` → one SQL statement for SQLite or PostgreSQL.

Rows are stored as JSON text (``rows.data``), so a scan extracts each field with
the backend's JSON functions: SQLite's ``json_extract`` (JSON1), PostgreSQL's
``->>`` on the text cast once per row to ``jsonb`` (in a subquery that the
planner is told not to inline, ``OFFSET 0``, so the cast is not repeated per
field). Every other node is a subquery with columns ``c0, c1, ...``; both
planners flatten them. Every value from the query is a bound parameter (``?``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pbistream.dax.plan import (
    Aggregate,
    Column,
    Const,
    Distinct,
    Filter,
    Group,
    One,
    Op,
    Project,
    QueryPlan,
    Scalar,
    Scan,
    TablePlan,
    TopN,
)
from pbistream.values import DataType

__all__ = ["POSTGRES", "SQLITE", "Dialect", "compile_plan"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the two SQL backends."""

    name: str
    #: SQL ORDER BY suffixes that put BLANK first ascending and last descending (DAX's order).
    nulls_first: str
    nulls_last: str

    def param(self, dtype: DataType | None) -> str:
        """A typed placeholder: PostgreSQL cannot infer a parameter's type in a SELECT list."""
        if self.name == "sqlite" or dtype is None:
            return "?"
        return f"CAST(? AS {_PG_TYPES[dtype]})"

    def extract(self, field_name: str, dtype: DataType) -> tuple[str, list[Any]]:
        """SQL for one field of the stored JSON row, typed for comparisons."""
        if self.name == "sqlite":
            return "json_extract(data, ?)", [_json_path(field_name)]
        cast = _PG_CASTS.get(dtype, "")
        return (f"(j ->> ?){cast}", [field_name])


_PG_CASTS = {
    DataType.INT64: "::bigint",
    DataType.DOUBLE: "::float8",
    DataType.DECIMAL: "::float8",
    DataType.BOOLEAN: "::boolean",
}
_PG_TYPES = {
    DataType.INT64: "bigint",
    DataType.DOUBLE: "float8",
    DataType.DECIMAL: "float8",
    DataType.BOOLEAN: "boolean",
    DataType.STRING: "text",
    DataType.DATETIME: "text",
}
# SQLite puts NULLs first ascending already; PostgreSQL needs it said.
SQLITE = Dialect("sqlite", "", "")
POSTGRES = Dialect("postgres", " NULLS FIRST", " NULLS LAST")


def _json_path(name: str) -> str:
    # A quoted label, so dots and spaces in a column name are not read as a path.
    return '$."' + name + '"'


def compile_plan(
    plan: QueryPlan,
    dataset_id: str,
    dialect: Dialect,
    *,
    limit: int,
    sources: Mapping[str, tuple[str, Mapping[str, str]]] | None = None,
) -> tuple[str, list[Any]]:
    """The SQL statement and its parameters for ``plan`` over one dataset's rows.

    The statement returns the plan's columns in order, at most ``limit`` rows.

    Args:
        plan: The plan.
        dataset_id: Whose rows.
        dialect: SQLite or PostgreSQL.
        limit: At most this many rows.
        sources: Tables to read from a typed copy instead of the JSON rows:
            table name -> (copy table, {field: its column}); see storage/_dax_columns.py.
    """
    compiler = _Compiler(dataset_id, dialect, sources or {})
    rel = compiler.table(plan.table)
    alias = compiler.with_(rel)
    names = [rel.cols[key] for key, _ in plan.columns]
    select = ", ".join(f"{alias}.{n}" for n in names) or "1"
    sql = [f"SELECT {select} FROM {alias}"]
    params: list[Any] = []
    scope = {key: f"{alias}.{name}" for key, name in rel.cols.items()}
    if plan.start_at:
        text, more = compiler.start_at(plan, scope)
        sql.append(f"WHERE {text}")
        params += more
    if plan.order:
        parts = []
        for expr, ascending in plan.order:
            text, more = compiler.scalar(expr, scope)
            parts.append(compiler.order_term(text, ascending))
            params += more
        sql.append("ORDER BY " + ", ".join(parts))
    sql.append("LIMIT ?")
    params.append(limit)
    head, head_params = compiler.with_clause()
    return head + " ".join(sql), head_params + params


@dataclass
class _Rel:
    sql: str
    params: list[Any]
    cols: dict[str, str]  # answer key -> column name in this relation
    scope: dict[str, str] = field(default_factory=dict)


class _Compiler:
    def __init__(
        self,
        dataset_id: str,
        dialect: Dialect,
        sources: Mapping[str, tuple[str, Mapping[str, str]]],
    ) -> None:
        self.dataset_id = dataset_id
        self.dialect = dialect
        self.sources = sources
        self.ctes: list[tuple[str, str, list[Any]]] = []
        self._aliases = itertools.count()

    def alias(self) -> str:
        return f"t{next(self._aliases)}"

    def with_(self, rel: _Rel) -> str:
        """Name ``rel`` as a common table expression and return its name.

        Nodes chain through WITH rather than nested subqueries: SQLite's parser
        has a small fixed stack (about ten nested subqueries), WITH has no depth.
        Both databases inline a CTE used once, so the plans are the same.
        """
        name = self.alias()
        self.ctes.append((name, rel.sql, rel.params))
        return name

    def with_clause(self) -> tuple[str, list[Any]]:
        """``WITH t0 AS (...), t1 AS (...) `` and its parameters, in order."""
        if not self.ctes:
            return "", []
        parts = [f"{name} AS ({sql})" for name, sql, _ in self.ctes]
        return "WITH " + ", ".join(parts) + " ", [p for _, _, ps in self.ctes for p in ps]

    def order_term(self, text: str, ascending: bool) -> str:
        if ascending:
            return f"{text} ASC{self.dialect.nulls_first}"
        return f"{text} DESC{self.dialect.nulls_last}"

    # --- tables -----------------------------------------------------------------------
    def table(self, node: TablePlan) -> _Rel:
        if isinstance(node, Scan):
            return self.scan(node)
        if isinstance(node, One):
            return _Rel("SELECT 1 AS one", [], {})
        child = self.table(node.source)
        alias = self.with_(child)
        scope = {key: f"{alias}.{name}" for key, name in child.cols.items()}
        source = alias
        params: list[Any] = []
        if isinstance(node, Filter):
            text, more = self.scalar(node.predicate, scope)
            return _Rel(f"SELECT * FROM {source} WHERE {text}", params + more, dict(child.cols))
        if isinstance(node, Distinct):
            return _Rel(f"SELECT DISTINCT * FROM {source}", params, dict(child.cols))
        if isinstance(node, Project):
            return self.select(node.exprs, scope, source, params)
        if isinstance(node, Group):
            return self.group(node, scope, source, params)
        assert isinstance(node, TopN)
        return self.topn(node, child, scope, source, params)

    def scan(self, node: Scan) -> _Rel:
        source = self.sources.get(node.table)
        if source is not None:
            copy, columns = source
            picked = [f"{columns[f.field]} AS c{i}" for i, f in enumerate(node.fields)]
            keys = {f.key: f"c{i}" for i, f in enumerate(node.fields)}
            return _Rel(f"SELECT {', '.join(picked) or '1 AS one'} FROM {copy}", [], keys)
        parts: list[str] = []
        params: list[Any] = []
        cols: dict[str, str] = {}
        for i, f in enumerate(node.fields):
            text, more = self.dialect.extract(f.field, f.dtype)
            parts.append(f"{text} AS c{i}")
            params += more
            cols[f.key] = f"c{i}"
        select = ", ".join(parts) or "1 AS one"
        where = "dataset_id = ? AND table_name = ?"
        params += [self.dataset_id, node.table]
        if self.dialect.name == "sqlite":
            return _Rel(f"SELECT {select} FROM rows WHERE {where}", params, cols)
        inner = f"SELECT data::jsonb AS j FROM rows WHERE {where} OFFSET 0"
        return _Rel(f"SELECT {select} FROM ({inner}) AS s", params, cols)

    def select(
        self,
        exprs: tuple[tuple[str, Scalar], ...],
        scope: dict[str, str],
        source: str,
        params: list[Any],
    ) -> _Rel:
        parts: list[str] = []
        select_params: list[Any] = []
        cols: dict[str, str] = {}
        for i, (key, expr) in enumerate(exprs):
            text, more = self.scalar(expr, scope)
            parts.append(f"{text} AS c{i}")
            select_params += more
            cols[key] = f"c{i}"
        return _Rel(
            f"SELECT {', '.join(parts) or '1 AS one'} FROM {source}", select_params + params, cols
        )

    def group(self, node: Group, scope: dict[str, str], source: str, params: list[Any]) -> _Rel:
        keys: tuple[tuple[str, Scalar], ...] = tuple((k, Column(k, None)) for k in node.keys)
        exprs = keys + node.measures
        rel = self.select(exprs, scope, source, params)
        if node.keys:
            rel.sql += " GROUP BY " + ", ".join(scope[k] for k in node.keys)
        if node.drop_blank and node.measures:
            alias = self.with_(rel)
            blank = " AND ".join(f"{alias}.{rel.cols[k]} IS NULL" for k, _ in node.measures)
            return _Rel(f"SELECT * FROM {alias} WHERE NOT ({blank})", [], rel.cols)
        return rel

    def topn(
        self, node: TopN, child: _Rel, scope: dict[str, str], source: str, params: list[Any]
    ) -> _Rel:
        cols = dict(child.cols)
        names = ", ".join(f"{scope[k]} AS {n}" for k, n in child.cols.items()) or "1 AS one"
        if not node.order:
            return _Rel(f"SELECT {names} FROM {source} LIMIT ?", [*params, node.n], cols)
        terms: list[str] = []
        order_params: list[Any] = []
        for expr, ascending in node.order:
            text, more = self.scalar(expr, scope)
            terms.append(self.order_term(text, ascending))
            order_params += more
        # RANK keeps every row tied with the n-th, as DAX's TOPN does.
        ranked = f"SELECT {names}, RANK() OVER (ORDER BY {', '.join(terms)}) AS rk FROM {source}"
        alias = self.with_(_Rel(ranked, [*order_params, *params], cols))
        outer = ", ".join(f"{alias}.{n}" for n in child.cols.values()) or "1 AS one"
        return _Rel(f"SELECT {outer} FROM {alias} WHERE {alias}.rk <= ?", [node.n], cols)

    def start_at(self, plan: QueryPlan, scope: dict[str, str]) -> tuple[str, list[Any]]:
        """Rows at or after the START AT values in ORDER BY's order (lexicographic)."""
        keys = [(self.scalar(expr, scope), asc) for expr, asc in plan.order[: len(plan.start_at)]]
        clauses: list[str] = []
        params: list[Any] = []
        for i, ((key, asc), value) in enumerate(zip(keys, plan.start_at, strict=True)):
            terms: list[str] = []
            for (prior, _), prior_value in zip(keys[:i], plan.start_at[:i], strict=True):
                terms.append(f"{prior[0]} = ?")
                params += [*prior[1], prior_value.value]
            last = i == len(keys) - 1
            op = (">=" if last else ">") if asc else ("<=" if last else "<")
            if asc:
                terms.append(f"{key[0]} {op} ?")
                params += [*key[1], value.value]
            else:
                # BLANK sorts last descending, so it comes after any START AT value.
                terms.append(f"({key[0]} {op} ? OR {key[0]} IS NULL)")
                params += [*key[1], value.value, *key[1]]
            clauses.append("(" + " AND ".join(terms) + ")")
        return "(" + " OR ".join(clauses) + ")", params

    # --- scalars ----------------------------------------------------------------------
    def scalar(self, expr: Scalar, scope: dict[str, str]) -> tuple[str, list[Any]]:
        if isinstance(expr, Column):
            return scope[expr.key], []
        if isinstance(expr, Const):
            if expr.value is None:
                return "NULL", []
            return self.dialect.param(expr.dtype), [expr.value]
        if isinstance(expr, Aggregate):
            return self.aggregate(expr, scope)
        return self.op(expr, scope)

    def op(self, expr: Op, scope: dict[str, str]) -> tuple[str, list[Any]]:
        parts = [self.scalar(a, scope) for a in expr.args]
        if expr.op in _TEXT_COMPARISONS and any(a.dtype is DataType.STRING for a in expr.args):
            # DAX compares text case-insensitively ("East" = "east"; EXACT is the
            # case-sensitive test). LOWER folds ASCII letters on both backends.
            parts = [
                (t, ps) if isinstance(a, Const) and a.value is None else (f"LOWER({t})", ps)
                for a, (t, ps) in zip(expr.args, parts, strict=True)
            ]
        params = [p for _, ps in parts for p in ps]
        texts = [t for t, _ in parts]
        op = expr.op
        if op == "not":
            return f"(NOT {texts[0]})", params
        if op == "neg":
            return f"(-{texts[0]})", params
        if op == "isblank":
            return f"({texts[0]} IS NULL)", params
        if op in ("and", "or"):
            return f"({texts[0]} {op.upper()} {texts[1]})", params
        if op == "in":
            return f"({texts[0]} IN ({', '.join(texts[1:])}))", params
        blank = [isinstance(a, Const) and a.value is None for a in expr.args]
        if op in ("eq", "ne") and any(blank):
            # x = BLANK() asks whether x is blank; SQL's NULL = NULL would be unknown.
            text, own = parts[1] if blank[0] else parts[0]
            return f"({text} IS {'NOT ' if op == 'ne' else ''}NULL)", own
        if op == "div":
            # DAX's / is always real division; a zero divisor gives BLANK here.
            return f"(CAST({texts[0]} AS DOUBLE PRECISION) / NULLIF({texts[1]}, 0))", params
        return f"({texts[0]} {_SYMBOLS[op]} {texts[1]})", params

    def aggregate(self, expr: Aggregate, scope: dict[str, str]) -> tuple[str, list[Any]]:
        if expr.func == "countrows":
            if expr.where is None:
                return "NULLIF(COUNT(*), 0)", []
            text, params = self.scalar(expr.where, scope)
            return f"NULLIF(COUNT(CASE WHEN {text} THEN 1 END), 0)", params
        assert expr.arg is not None
        text, params = self.scalar(expr.arg, scope)
        if expr.func == "count":
            return f"NULLIF(COUNT({text}), 0)", params
        if expr.func == "distinctcount":
            # DAX counts BLANK as one more distinct value.
            return (
                f"NULLIF(COUNT(DISTINCT {text}) + MAX(CASE WHEN {text} IS NULL THEN 1 ELSE 0 "
                "END), 0)",
                params + params,
            )
        if expr.func == "avg" and self.dialect.name == "postgres":
            return f"AVG(CAST({text} AS DOUBLE PRECISION))", params
        return f"{expr.func.upper()}({text})", params


_TEXT_COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "in"})
_SYMBOLS = {
    "eq": "=",
    "ne": "<>",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "add": "+",
    "sub": "-",
    "mul": "*",
}
