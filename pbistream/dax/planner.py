"""The syntax tree → a :class:`~pbistream.dax.plan.QueryPlan`, checked against the dataset.

This is where DAX's meaning lives: which functions exist in the subset, what
their arguments are, which table a name means, the filter context that
``CALCULATETABLE`` and ``SUMMARIZECOLUMNS`` set, and the types of values. Anything
outside the subset is a :class:`~pbistream.dax.errors.DaxError` naming the
function or token and its position.

Filter context: a list of :class:`_ContextFilter`, each a predicate on one table's
columns. A boolean filter argument of ``CALCULATETABLE`` replaces the filters on
the same columns (DAX's override rule); ``ALL(...)`` as a filter argument removes
them; a table filter adds its predicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pbistream.dax.errors import DaxError, Position
from pbistream.dax.plan import (
    Column,
    Const,
    Distinct,
    Filter,
    Group,
    One,
    Project,
    QueryPlan,
    Scalar,
    Scan,
    ScanColumn,
    TablePlan,
    TopN,
)
from pbistream.dax.scalars import (
    EMPTY_SCOPE,
    FILTER_TABLE_FUNCTIONS,
    SUPPORTED_FUNCTIONS,
    TABLE_FUNCTIONS,
    ScalarPlanner,
    Scope,
    arity,
    check_comparable,
    columns_in,
    describe,
    position_of,
    row_scope,
    unsupported,
)
from pbistream.dax.syntax import (
    Binary,
    BracketRef,
    Call,
    ColumnRef,
    Define,
    Evaluate,
    Expr,
    Literal,
    Name,
    Query,
    TableConstructor,
    TableRef,
    Unary,
    VarBlock,
)
from pbistream.schema import Table
from pbistream.values import DataType

__all__ = ["SUPPORTED_FUNCTIONS", "plan_query"]


def plan_query(query: Query, tables: Sequence[Table], *, statement: int = 0) -> QueryPlan:
    """Plan one EVALUATE statement of ``query`` over a dataset's ``tables``.

    Args:
        query: The parsed query.
        tables: The dataset's tables (names are matched case-insensitively, as DAX does).
        statement: Which EVALUATE to plan (Power BI answers only the first).

    Raises:
        DaxError: A name that is not in the dataset, a function outside the subset,
            or values of types that cannot be combined.
    """
    planner = _Planner(tables, query.defines)
    return planner.evaluate(query.evaluates[statement])


@dataclass(frozen=True, slots=True)
class _ContextFilter:
    table: str
    columns: frozenset[str] | None  # None: the whole table (a table filter)
    predicate: Scalar


class _Planner(ScalarPlanner):
    def __init__(self, tables: Sequence[Table], defines: Sequence[Define]) -> None:
        self.tables = {t.name.lower(): t for t in tables}
        self.measures: dict[str, Define] = {}
        self.vars: dict[str, Expr] = {}
        self.expanding: set[str] = set()
        for define in defines:
            if define.kind == "MEASURE":
                if define.table is not None:
                    self.table_of(define.table, define.position)
                self.measures[define.name.lower()] = define
            else:
                self.bind_var(define.name, define.expr)

    # --- names ------------------------------------------------------------------------
    def table_of(self, name: str, position: Position) -> Table:
        table = self.tables.get(name.lower())
        if table is None:
            known = ", ".join(repr(t.name) for t in self.tables.values()) or "none"
            raise DaxError(f"Cannot find table '{name}'. The dataset's tables: {known}.", position)
        return table

    def column_key(self, ref: ColumnRef) -> tuple[Table, str]:
        table = self.table_of(ref.table, ref.position)
        for column in table.columns:
            if column.name.lower() == ref.column.lower():
                return table, f"{table.name}[{column.name}]"
        raise DaxError(
            f"Column '{ref.column}' in table '{table.name}' cannot be found.", ref.position
        )

    def scan(self, table: Table) -> Scan:
        return Scan(
            table.name,
            tuple(
                ScanColumn(f"{table.name}[{c.name}]", c.name, c.data_type) for c in table.columns
            ),
        )

    def bind_var(self, name: str, expr: Expr) -> None:
        # A variable is evaluated once, where it is defined. Table variables are
        # re-planned where used (same rows: the subset has no outer context that
        # could differ); scalar ones must be constants.
        if not self.is_table_expr(expr):
            if self.tables_in(expr):
                raise DaxError(
                    f"VAR {name} must be a constant or a table here; "
                    "use DEFINE MEASURE for an aggregate.",
                    position_of(expr),
                )
            const = self.scalar(expr, EMPTY_SCOPE, ())
            if not isinstance(const, Const):
                raise DaxError(
                    f"VAR {name} must be a constant or a table here; "
                    "use DEFINE MEASURE for an aggregate.",
                    position_of(expr),
                )
        self.vars[name.lower()] = expr

    def is_table_expr(self, expr: Expr) -> bool:
        if isinstance(expr, TableRef):
            return True
        if isinstance(expr, Name):
            var = self.vars.get(expr.name.lower())
            if var is not None:
                return self.is_table_expr(var)
            return expr.name.lower() in self.tables
        if isinstance(expr, Call):
            return expr.name in TABLE_FUNCTIONS.split()
        if isinstance(expr, VarBlock):
            return self.is_table_expr(expr.body)
        return isinstance(expr, TableConstructor)

    # --- statements -------------------------------------------------------------------
    def evaluate(self, statement: Evaluate) -> QueryPlan:
        table = self.table(statement.table, ())
        scope = Scope({key: Column(key, dtype) for key, dtype in table.columns})
        order = tuple((self.scalar(e, scope, ()), asc) for e, asc in statement.order_by)
        start: list[Const] = []
        for (key_expr, _), value in zip(order, statement.start_at, strict=False):
            const = self.scalar(value, EMPTY_SCOPE, ())
            if not isinstance(const, Const):
                raise DaxError("START AT takes constant values.", position_of(value))
            check_comparable(key_expr, const, position_of(value))
            start.append(const)
        return QueryPlan(table, order, tuple(start))

    # --- tables -----------------------------------------------------------------------
    def table(self, expr: Expr, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        if isinstance(expr, TableRef | Name):
            name = expr.table if isinstance(expr, TableRef) else expr.name
            if isinstance(expr, Name) and name.lower() in self.vars:
                return self.table(self.vars[name.lower()], ctx)
            return self.filtered_scan(self.table_of(name, expr.position), ctx)
        if isinstance(expr, VarBlock):
            saved = dict(self.vars)
            try:
                for var_name, value in expr.bindings:
                    self.bind_var(var_name, value)
                return self.table(expr.body, ctx)
            finally:
                self.vars = saved
        if isinstance(expr, Call):
            handler = getattr(self, f"table_{expr.name.lower()}", None)
            if handler is not None:
                result: TablePlan = handler(expr, ctx)
                return result
            if expr.name in SUPPORTED_FUNCTIONS:
                raise DaxError(
                    f"The function {expr.name} returns a single value, not a table.", expr.position
                )
            raise unsupported(expr)
        if isinstance(expr, TableConstructor) and len(expr.values) == 1:
            # {expr}: a one-row table of one column, [Value]; EVALUATE {COUNTROWS(T)} is
            # how a DAX user reads back one number.
            value = Literal("Value", expr.position)
            return self.table_row(Call("ROW", (value, expr.values[0]), expr.position), ctx)
        if isinstance(expr, TableConstructor):
            raise DaxError(
                "A table constructor is supported with one value only ({expr}, whose column is "
                "[Value]); use ROW or a table for more.",
                expr.position,
            )
        raise DaxError(
            f"A table expression is expected here (EVALUATE needs a table), not {describe(expr)}.",
            position_of(expr),
        )

    def filtered_scan(self, table: Table, ctx: Sequence[_ContextFilter]) -> TablePlan:
        plan: TablePlan = self.scan(table)
        for flt in ctx:
            if flt.table == table.name:
                plan = Filter(plan, flt.predicate)
        return plan

    def table_filter(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        arity(call, 2, 2)
        source = self.table(call.args[0], ctx)
        return Filter(source, self.predicate(call.args[1], row_scope(source)))

    def table_calculatetable(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        arity(call, 1, None)
        return self.table(call.args[0], self.apply_filters(call.args[1:], ctx))

    def apply_filters(
        self, args: Sequence[Expr], ctx: tuple[_ContextFilter, ...]
    ) -> tuple[_ContextFilter, ...]:
        """The context after CALCULATETABLE's (or SUMMARIZECOLUMNS') filter arguments."""
        new = list(ctx)
        for arg in args:
            if isinstance(arg, Call) and arg.name == "ALL":
                table, columns = self.all_target(arg)
                new = [
                    f
                    for f in new
                    if f.table != table.name
                    or (columns is not None and (f.columns is None or not f.columns <= columns))
                ]
            elif self.is_table_expr(arg):
                new.extend(self.filter_table(arg, tuple(new)))
            else:
                predicate = self.predicate(arg, self.any_row_scope())
                keys = columns_in(predicate)
                tables = {k.split("[", 1)[0] for k in keys}
                if len(tables) != 1:
                    raise DaxError(
                        "A filter argument must use the columns of exactly one table.",
                        position_of(arg),
                    )
                (table_name,) = tables
                new = [
                    f
                    for f in new
                    if not (f.table == table_name and f.columns is not None and f.columns <= keys)
                ]
                new.append(_ContextFilter(table_name, frozenset(keys), predicate))
        return tuple(new)

    def filter_table(self, expr: Expr, ctx: tuple[_ContextFilter, ...]) -> list[_ContextFilter]:
        """A table used as a filter → the predicates it adds on its table's rows."""
        if isinstance(expr, Name) and expr.name.lower() in self.vars:
            return self.filter_table(self.vars[expr.name.lower()], ctx)
        if isinstance(expr, TableRef | Name):
            return []  # the table as the context already filters it
        if isinstance(expr, Call):
            if expr.name == "FILTER" and len(expr.args) == 2:
                inner = self.filter_table(expr.args[0], ctx)
                table = self.filter_source_table(expr.args[0])
                source = self.scan(table)
                predicate = self.predicate(expr.args[1], row_scope(source))
                return [*inner, _ContextFilter(table.name, None, predicate)]
            if expr.name in ("VALUES", "DISTINCT") and len(expr.args) == 1:
                return []
            if expr.name == "CALCULATETABLE" and expr.args:
                applied = self.apply_filters(expr.args[1:], ctx)
                return [*applied[len(ctx) :], *self.filter_table(expr.args[0], applied)]
        raise DaxError(
            f"{describe(expr)} cannot be used as a filter here; use a table, "
            "FILTER(table or VALUES(column), condition) or a condition.",
            position_of(expr),
        )

    def filter_source_table(self, expr: Expr) -> Table:
        if isinstance(expr, Name) and expr.name.lower() in self.vars:
            return self.filter_source_table(self.vars[expr.name.lower()])
        if isinstance(expr, TableRef | Name):
            return self.table_of(
                expr.table if isinstance(expr, TableRef) else expr.name, expr.position
            )
        if isinstance(expr, Call) and expr.args and expr.name in FILTER_TABLE_FUNCTIONS:
            first = expr.args[0]
            if isinstance(first, ColumnRef):
                return self.column_key(first)[0]
            return self.filter_source_table(first)
        raise DaxError(
            f"{describe(expr)} cannot be used as a filter table here; use a table, "
            "FILTER, VALUES, DISTINCT, ALL or CALCULATETABLE.",
            position_of(expr),
        )

    def all_target(self, call: Call) -> tuple[Table, frozenset[str] | None]:
        arity(call, 1, None)
        first = call.args[0]
        if isinstance(first, TableRef | Name) and len(call.args) == 1:
            return self.filter_source_table(first), None
        keys: set[str] = set()
        table: Table | None = None
        for arg in call.args:
            if not isinstance(arg, ColumnRef):
                raise DaxError("ALL takes a table or columns of one table.", position_of(arg))
            this, key = self.column_key(arg)
            if table is not None and this.name != table.name:
                raise DaxError("ALL takes columns of one table.", arg.position)
            table = this
            keys.add(key)
        assert table is not None
        return table, frozenset(keys)

    def table_all(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        table, keys = self.all_target(call)
        source = self.scan(table)
        if keys is None:
            return source
        ordered = tuple(f.key for f in source.fields if f.key in keys)
        return Distinct(
            Project(source, tuple((k, Column(k, _type_of(source, k))) for k in ordered))
        )

    def table_values(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        arity(call, 1, 1)
        arg = call.args[0]
        if isinstance(arg, ColumnRef):
            table, key = self.column_key(arg)
            source = self.filtered_scan(table, ctx)
            return Distinct(Project(source, ((key, Column(key, _type_of(source, key))),)))
        if call.name == "VALUES":
            # VALUES(table) returns the table's rows with duplicates preserved (Microsoft's
            # VALUES reference); only DISTINCT(table) removes duplicate rows.
            return self.table(arg, ctx)
        return Distinct(self.table(arg, ctx))

    table_distinct = table_values

    def table_selectcolumns(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        arity(call, 1, None)
        source = self.table(call.args[0], ctx)
        return Project(source, self.named_columns(call, call.args[1:], row_scope(source)))

    def table_addcolumns(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        arity(call, 3, None)
        source = self.table(call.args[0], ctx)
        scope = row_scope(source)
        added = self.named_columns(call, call.args[1:], scope, names_required=True)
        kept = tuple((key, Column(key, dtype)) for key, dtype in source.columns)
        return Project(source, kept + added)

    def named_columns(
        self,
        call: Call,
        args: Sequence[Expr],
        scope: Scope,
        *,
        names_required: bool = False,
    ) -> tuple[tuple[str, Scalar], ...]:
        out: list[tuple[str, Scalar]] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if isinstance(arg, ColumnRef) and not names_required:
                _, key = self.column_key(arg)
                out.append((key, self.scalar(arg, scope, ())))
                i += 1
                continue
            if not (isinstance(arg, Literal) and isinstance(arg.value, str)):
                raise DaxError(
                    f"{call.name} expects a column name in quotes here, not {describe(arg)}.",
                    position_of(arg),
                )
            if i + 1 >= len(args):
                raise DaxError(
                    f'{call.name}: the column "{arg.value}" has no expression.', arg.position
                )
            out.append((f"[{arg.value}]", self.scalar(args[i + 1], scope, ())))
            i += 2
        _unique_names(out, call)
        return tuple(out)

    def table_row(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        arity(call, 2, None)
        if len(call.args) % 2:
            raise DaxError('ROW takes pairs of "Name", expression.', call.position)
        base = self.aggregated_table(call.args[1::2])
        if base is None:
            return Project(
                One(), self.named_columns(call, call.args, EMPTY_SCOPE, names_required=True)
            )
        scan = self.scan(base)
        scope = Scope({}, scan)
        measures = self.named_columns(call, call.args, scope, names_required=True)
        return Group(self.filtered_scan(base, ctx), (), measures, drop_blank=False)

    def table_summarizecolumns(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        arity(call, 1, None)
        groups: list[tuple[Table, str, Position]] = []
        filters: list[Expr] = []
        i = 0
        args = call.args
        while i < len(args) and not (isinstance(args[i], Literal)):
            arg = args[i]
            if isinstance(arg, ColumnRef):
                table, key = self.column_key(arg)
                groups.append((table, key, arg.position))
            elif self.is_table_expr(arg):
                filters.append(arg)
            else:
                raise DaxError(
                    "SUMMARIZECOLUMNS takes group columns, filter tables, then "
                    f'"Name", expression pairs; {describe(arg)} is none of these.',
                    position_of(arg),
                )
            i += 1
        named = args[i:]
        if len(named) % 2:
            raise DaxError(
                'SUMMARIZECOLUMNS: every "Name" needs an expression after it.',
                position_of(named[-1]),
            )
        candidates = {t.name for t, _, _ in groups}
        aggregated = self.aggregated_table(named[1::2])
        if aggregated is not None:
            candidates.add(aggregated.name)
        for flt in filters:
            candidates.add(self.filter_source_table(flt).name)
        if len(candidates) != 1:
            raise DaxError(
                "SUMMARIZECOLUMNS here must group and aggregate the columns of exactly one "
                f"table (found {', '.join(sorted(candidates)) or 'none'}).",
                call.position,
            )
        table = self.tables[candidates.pop().lower()]
        inner = ctx
        for flt in filters:
            inner = inner + tuple(self.filter_table(flt, inner))
        scan = self.scan(table)
        measures = self.named_columns(call, named, Scope({}, scan), names_required=True)
        keys: list[str] = []
        for _, key, position in groups:
            if key in keys:
                raise DaxError(f"The column {key} is grouped twice.", position)
            keys.append(key)
        return Group(self.filtered_scan(table, inner), tuple(keys), measures, drop_blank=True)

    def table_topn(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        arity(call, 2, None)
        count = self.scalar(call.args[0], EMPTY_SCOPE, ())
        if not (
            isinstance(count, Const)
            and isinstance(count.value, int)
            and count.dtype is DataType.INT64
        ):
            raise DaxError(
                "TOPN's first argument must be a whole number.", position_of(call.args[0])
            )
        if count.value < 0:
            raise DaxError("TOPN's first argument cannot be negative.", position_of(call.args[0]))
        source = self.table(call.args[1], ctx)
        scope = row_scope(source)
        order: list[tuple[Scalar, bool]] = []
        rest = call.args[2:]
        i = 0
        while i < len(rest):
            expr = self.scalar(rest[i], scope, ())
            ascending = False  # TOPN's default order is descending
            if i + 1 < len(rest) and _is_order_flag(rest[i + 1]):
                ascending = _order_flag(rest[i + 1])
                i += 1
            order.append((expr, ascending))
            i += 1
        return TopN(source, count.value, tuple(order))

    def aggregated_table(self, exprs: Sequence[Expr]) -> Table | None:
        """The one table whose columns ``exprs`` aggregate (None when they aggregate nothing)."""
        found: dict[str, Table] = {}
        for expr in exprs:
            for table in self.tables_in(expr):
                found[table.name] = table
        if len(found) > 1:
            raise DaxError(
                "These expressions aggregate columns of several tables "
                f"({', '.join(sorted(found))}); "
                "the subset supports one table per query.",
                position_of(exprs[0]),
            )
        return next(iter(found.values()), None)

    def tables_in(self, expr: Expr) -> list[Table]:
        if isinstance(expr, ColumnRef):
            return [self.column_key(expr)[0]]
        if isinstance(expr, TableRef):
            return [self.table_of(expr.table, expr.position)]
        if isinstance(expr, Name):
            if expr.name.lower() in self.vars:
                return self.tables_in(self.vars[expr.name.lower()])
            if expr.name.lower() in self.tables:
                return [self.tables[expr.name.lower()]]
            return []
        if isinstance(expr, BracketRef):
            define = self.measures.get(expr.name.lower())
            if define is None or expr.name.lower() in self.expanding:
                return []
            self.expanding.add(expr.name.lower())
            try:
                return self.tables_in(define.expr)
            finally:
                self.expanding.discard(expr.name.lower())
        if isinstance(expr, Call):
            return [t for arg in expr.args for t in self.tables_in(arg)]
        if isinstance(expr, Unary):
            return self.tables_in(expr.operand)
        if isinstance(expr, Binary):
            return self.tables_in(expr.left) + self.tables_in(expr.right)
        return []

    def any_row_scope(self) -> Scope:
        """A scope where every column of every table can be named (filter arguments)."""
        row: dict[str, Column] = {}
        for table in self.tables.values():
            for column in table.columns:
                key = f"{table.name}[{column.name}]"
                row[key] = Column(key, column.data_type)
        return Scope(row)


# --- helpers ----------------------------------------------------------------------------
def _type_of(source: TablePlan, key: str) -> DataType | None:
    return dict(source.columns)[key]


def _is_order_flag(expr: Expr) -> bool:
    if isinstance(expr, Name):
        return expr.name.upper() in ("ASC", "DESC", "TRUE", "FALSE")
    if isinstance(expr, Literal):
        return expr.value in (0, 1) and not isinstance(expr.value, str)
    return isinstance(expr, Call) and expr.name in ("TRUE", "FALSE") and not expr.args


def _order_flag(expr: Expr) -> bool:
    if isinstance(expr, Name):
        return expr.name.upper() in ("ASC", "TRUE")
    if isinstance(expr, Literal):
        return expr.value == 1
    assert isinstance(expr, Call)
    return expr.name == "TRUE"


#: Most columns a table expression may make (SQLite's result limit is 2,000).
MAX_COLUMNS = 1_000


def _unique_names(columns: Sequence[tuple[str, Scalar]], call: Call) -> None:
    if len(columns) > MAX_COLUMNS:
        raise DaxError(f"{call.name} makes more than {MAX_COLUMNS:,} columns.", call.position)
    seen: set[str] = set()
    for key, _ in columns:
        if key.lower() in seen:
            raise DaxError(f"{call.name}: the column name {key} is used twice.", call.position)
        seen.add(key.lower())
