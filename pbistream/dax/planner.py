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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pbistream.datetimes import quantised_text
from pbistream.dax.errors import DaxError, Position
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
    ScanColumn,
    TablePlan,
    TopN,
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

_NUMERIC = frozenset({DataType.INT64, DataType.DOUBLE, DataType.DECIMAL})
_AGGREGATES = {
    "SUM": "sum",
    "AVERAGE": "avg",
    "MIN": "min",
    "MAX": "max",
    "COUNT": "count",
    "COUNTA": "count",
    "COUNTROWS": "countrows",
    "DISTINCTCOUNT": "distinctcount",
}
_TABLE_FUNCTIONS = (
    "FILTER CALCULATETABLE SUMMARIZECOLUMNS TOPN ROW SELECTCOLUMNS ADDCOLUMNS DISTINCT VALUES ALL"
)
# Tables that can filter another (their rows are a filter on their source table's rows).
_FILTER_TABLE_FUNCTIONS = frozenset({"FILTER", "VALUES", "DISTINCT", "ALL", "CALCULATETABLE"})
_SCALAR_FUNCTIONS = "BLANK TRUE FALSE DATE DATETIME NOT AND OR ISBLANK " + " ".join(_AGGREGATES)
#: Every function the subset knows, for error messages and the docs.
SUPPORTED_FUNCTIONS = tuple(sorted((_TABLE_FUNCTIONS + " " + _SCALAR_FUNCTIONS).split()))
_COMPARISONS = {"=": "eq", "==": "eq", "<>": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_ARITHMETIC = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


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


@dataclass(frozen=True, slots=True)
class _Scope:
    """What names mean where a scalar is read.

    ``row`` holds the columns of the row being iterated (FILTER, SELECTCOLUMNS).
    ``base`` is set where aggregates are allowed: the scan they aggregate over.
    """

    row: Mapping[str, Column]
    base: Scan | None = None


_EMPTY = _Scope({})


class _Planner:
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
                    _position(expr),
                )
            const = self.scalar(expr, _EMPTY, ())
            if not isinstance(const, Const):
                raise DaxError(
                    f"VAR {name} must be a constant or a table here; "
                    "use DEFINE MEASURE for an aggregate.",
                    _position(expr),
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
            return expr.name in _TABLE_FUNCTIONS.split()
        if isinstance(expr, VarBlock):
            return self.is_table_expr(expr.body)
        return False

    # --- statements -------------------------------------------------------------------
    def evaluate(self, statement: Evaluate) -> QueryPlan:
        table = self.table(statement.table, ())
        scope = _Scope({key: Column(key, dtype) for key, dtype in table.columns})
        order = tuple((self.scalar(e, scope, ()), asc) for e, asc in statement.order_by)
        start: list[Const] = []
        for (key_expr, _), value in zip(order, statement.start_at, strict=False):
            const = self.scalar(value, _EMPTY, ())
            if not isinstance(const, Const):
                raise DaxError("START AT takes constant values.", _position(value))
            _check_comparable(key_expr, const, _position(value))
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
            raise _unsupported(expr)
        raise DaxError(
            f"A table expression is expected here (EVALUATE needs a table), not {_describe(expr)}.",
            _position(expr),
        )

    def filtered_scan(self, table: Table, ctx: Sequence[_ContextFilter]) -> TablePlan:
        plan: TablePlan = self.scan(table)
        for flt in ctx:
            if flt.table == table.name:
                plan = Filter(plan, flt.predicate)
        return plan

    def table_filter(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        _arity(call, 2, 2)
        source = self.table(call.args[0], ctx)
        return Filter(source, self.predicate(call.args[1], _row_scope(source)))

    def table_calculatetable(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        _arity(call, 1, None)
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
                keys = _columns_in(predicate)
                tables = {k.split("[", 1)[0] for k in keys}
                if len(tables) != 1:
                    raise DaxError(
                        "A filter argument must use the columns of exactly one table.",
                        _position(arg),
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
                predicate = self.predicate(expr.args[1], _row_scope(source))
                return [*inner, _ContextFilter(table.name, None, predicate)]
            if expr.name in ("VALUES", "DISTINCT") and len(expr.args) == 1:
                return []
            if expr.name == "CALCULATETABLE" and expr.args:
                applied = self.apply_filters(expr.args[1:], ctx)
                return [*applied[len(ctx) :], *self.filter_table(expr.args[0], applied)]
        raise DaxError(
            f"{_describe(expr)} cannot be used as a filter here; use a table, "
            "FILTER(table or VALUES(column), condition) or a condition.",
            _position(expr),
        )

    def filter_source_table(self, expr: Expr) -> Table:
        if isinstance(expr, Name) and expr.name.lower() in self.vars:
            return self.filter_source_table(self.vars[expr.name.lower()])
        if isinstance(expr, TableRef | Name):
            return self.table_of(
                expr.table if isinstance(expr, TableRef) else expr.name, expr.position
            )
        if isinstance(expr, Call) and expr.args and expr.name in _FILTER_TABLE_FUNCTIONS:
            first = expr.args[0]
            if isinstance(first, ColumnRef):
                return self.column_key(first)[0]
            return self.filter_source_table(first)
        raise DaxError(
            f"{_describe(expr)} cannot be used as a filter table here; use a table, "
            "FILTER, VALUES, DISTINCT, ALL or CALCULATETABLE.",
            _position(expr),
        )

    def all_target(self, call: Call) -> tuple[Table, frozenset[str] | None]:
        _arity(call, 1, None)
        first = call.args[0]
        if isinstance(first, TableRef | Name) and len(call.args) == 1:
            return self.filter_source_table(first), None
        keys: set[str] = set()
        table: Table | None = None
        for arg in call.args:
            if not isinstance(arg, ColumnRef):
                raise DaxError("ALL takes a table or columns of one table.", _position(arg))
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
        _arity(call, 1, 1)
        arg = call.args[0]
        if isinstance(arg, ColumnRef):
            table, key = self.column_key(arg)
            source = self.filtered_scan(table, ctx)
            return Distinct(Project(source, ((key, Column(key, _type_of(source, key))),)))
        return Distinct(self.table(arg, ctx))

    table_distinct = table_values

    def table_selectcolumns(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        _arity(call, 1, None)
        source = self.table(call.args[0], ctx)
        return Project(source, self.named_columns(call, call.args[1:], _row_scope(source)))

    def table_addcolumns(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        _arity(call, 3, None)
        source = self.table(call.args[0], ctx)
        scope = _row_scope(source)
        added = self.named_columns(call, call.args[1:], scope, names_required=True)
        kept = tuple((key, Column(key, dtype)) for key, dtype in source.columns)
        return Project(source, kept + added)

    def named_columns(
        self,
        call: Call,
        args: Sequence[Expr],
        scope: _Scope,
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
                    f"{call.name} expects a column name in quotes here, not {_describe(arg)}.",
                    _position(arg),
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
        _arity(call, 2, None)
        if len(call.args) % 2:
            raise DaxError('ROW takes pairs of "Name", expression.', call.position)
        base = self.aggregated_table(call.args[1::2])
        if base is None:
            return Project(One(), self.named_columns(call, call.args, _EMPTY, names_required=True))
        scan = self.scan(base)
        scope = _Scope({}, scan)
        measures = self.named_columns(call, call.args, scope, names_required=True)
        return Group(self.filtered_scan(base, ctx), (), measures, drop_blank=False)

    def table_summarizecolumns(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        _arity(call, 1, None)
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
                    f'"Name", expression pairs; {_describe(arg)} is none of these.',
                    _position(arg),
                )
            i += 1
        named = args[i:]
        if len(named) % 2:
            raise DaxError(
                'SUMMARIZECOLUMNS: every "Name" needs an expression after it.', _position(named[-1])
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
        measures = self.named_columns(call, named, _Scope({}, scan), names_required=True)
        keys: list[str] = []
        for _, key, position in groups:
            if key in keys:
                raise DaxError(f"The column {key} is grouped twice.", position)
            keys.append(key)
        return Group(self.filtered_scan(table, inner), tuple(keys), measures, drop_blank=True)

    def table_topn(self, call: Call, ctx: tuple[_ContextFilter, ...]) -> TablePlan:
        _arity(call, 2, None)
        count = self.scalar(call.args[0], _EMPTY, ())
        if not (
            isinstance(count, Const)
            and isinstance(count.value, int)
            and count.dtype is DataType.INT64
        ):
            raise DaxError("TOPN's first argument must be a whole number.", _position(call.args[0]))
        if count.value < 0:
            raise DaxError("TOPN's first argument cannot be negative.", _position(call.args[0]))
        source = self.table(call.args[1], ctx)
        scope = _row_scope(source)
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
                _position(exprs[0]),
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

    def any_row_scope(self) -> _Scope:
        """A scope where every column of every table can be named (filter arguments)."""
        row: dict[str, Column] = {}
        for table in self.tables.values():
            for column in table.columns:
                key = f"{table.name}[{column.name}]"
                row[key] = Column(key, column.data_type)
        return _Scope(row)

    # --- scalars ----------------------------------------------------------------------
    def predicate(self, expr: Expr, scope: _Scope) -> Scalar:
        result = self.scalar(expr, scope, ())
        if result.dtype not in (DataType.BOOLEAN, None):
            raise DaxError(
                f"A condition must be true or false; this is a {result.dtype.value}.",
                _position(expr),
            )
        return result

    def scalar(self, expr: Expr, scope: _Scope, inside: tuple[str, ...]) -> Scalar:
        """Plan a scalar; ``inside`` names the aggregate it is the argument of, if any."""
        if isinstance(expr, Literal):
            if isinstance(expr.value, str):
                return Const(expr.value, DataType.STRING)
            if isinstance(expr.value, int):
                return Const(expr.value, DataType.INT64)
            return Const(expr.value, DataType.DOUBLE)
        if isinstance(expr, Name):
            word = expr.name.lower()
            if word in self.vars:
                return self.scalar(self.vars[word], scope, inside)
            if word in ("true", "false"):
                return Const(word == "true", DataType.BOOLEAN)
            if word in self.tables:
                raise DaxError(
                    f"The table '{expr.name}' is used where a single value is expected.",
                    expr.position,
                )
            raise DaxError(f"Cannot find a table or variable named '{expr.name}'.", expr.position)
        if isinstance(expr, ColumnRef):
            _, key = self.column_key(expr)
            return self.column(key, scope, inside, expr.position)
        if isinstance(expr, BracketRef):
            return self.bracket(expr, scope, inside)
        if isinstance(expr, Unary):
            operand = self.scalar(expr.operand, scope, inside)
            if expr.op == "NOT":
                return Op("not", (_boolean(operand, expr),), DataType.BOOLEAN)
            _numeric(operand, expr)
            if expr.op == "+":
                return operand
            if isinstance(operand, Const) and operand.value is not None:
                return Const(-operand.value, operand.dtype)
            return Op("neg", (operand,), operand.dtype)
        if isinstance(expr, Binary):
            return self.binary(expr, scope, inside)
        if isinstance(expr, Call):
            return self.call(expr, scope, inside)
        if isinstance(expr, VarBlock):
            saved = dict(self.vars)
            try:
                for var_name, value in expr.bindings:
                    self.bind_var(var_name, value)
                return self.scalar(expr.body, scope, inside)
            finally:
                self.vars = saved
        raise DaxError(
            f"{_describe(expr)} is a table; a single value is expected here.", _position(expr)
        )

    def column(
        self, key: str, scope: _Scope, inside: tuple[str, ...], position: Position
    ) -> Column:
        found = scope.row.get(key)
        if found is not None:
            return found
        if scope.base is not None and inside:
            for field in scope.base.fields:
                if field.key == key:
                    return Column(key, field.dtype)
            raise DaxError(
                f"The column {key} is not in the table {scope.base.table} that is aggregated.",
                position,
            )
        table, _, name = key.partition("[")
        raise DaxError(
            f"A single value for column '{name[:-1]}' in table '{table}' cannot be determined "
            "here (use it inside an aggregate such as SUM, or iterate its table).",
            position,
        )

    def bracket(self, ref: BracketRef, scope: _Scope, inside: tuple[str, ...]) -> Scalar:
        name = ref.name.lower()
        own = f"[{ref.name}]".lower()
        matches = [c for k, c in scope.row.items() if k.lower() == own]
        if not matches:
            matches = [c for k, c in scope.row.items() if k.lower().endswith(own)]
        if len(matches) == 1:
            return matches[0]
        define = self.measures.get(name)
        if define is not None:
            if name in self.expanding:
                raise DaxError(f"The measure [{ref.name}] refers to itself.", ref.position)
            if scope.row or inside:
                raise DaxError(
                    f"The measure [{ref.name}] can be used in SUMMARIZECOLUMNS or ROW "
                    "expressions only (not per row, nor inside another aggregate).",
                    ref.position,
                )
            self.expanding.add(name)
            try:
                return self.scalar(define.expr, scope, inside)
            finally:
                self.expanding.discard(name)
        if len(matches) > 1:
            raise DaxError(f"The name [{ref.name}] is ambiguous; add its table.", ref.position)
        raise DaxError(f"Cannot find a column or measure named [{ref.name}].", ref.position)

    def binary(self, expr: Binary, scope: _Scope, inside: tuple[str, ...]) -> Scalar:
        op = expr.op
        if op in ("&", "^"):
            raise DaxError(f"The operator '{op}' is not supported.", expr.position)
        left = self.scalar(expr.left, scope, inside)
        if op == "IN":
            assert isinstance(expr.right, TableConstructor)
            values: list[Scalar] = []
            for item in expr.right.values:
                value = self.scalar(item, scope, inside)
                if not isinstance(value, Const):
                    raise DaxError("The list after IN must hold constants.", _position(item))
                _check_comparable(left, value, _position(item))
                values.append(value)
            if not values:
                return Const(False, DataType.BOOLEAN)
            return Op("in", (left, *values), DataType.BOOLEAN)
        right = self.scalar(expr.right, scope, inside)
        if op in ("&&", "||"):
            args = (_boolean(left, expr.left), _boolean(right, expr.right))
            return Op("and" if op == "&&" else "or", args, DataType.BOOLEAN)
        if op in _COMPARISONS:
            _check_comparable(left, right, expr.position)
            return Op(_COMPARISONS[op], (left, right), DataType.BOOLEAN)
        _numeric(left, expr.left)
        _numeric(right, expr.right)
        name = _ARITHMETIC[op]
        if name == "div":
            dtype: DataType | None = DataType.DOUBLE
        elif DataType.DOUBLE in (left.dtype, right.dtype) or DataType.DECIMAL in (
            left.dtype,
            right.dtype,
        ):
            dtype = DataType.DOUBLE
        else:
            dtype = DataType.INT64
        return Op(name, (left, right), dtype)

    def call(self, call: Call, scope: _Scope, inside: tuple[str, ...]) -> Scalar:
        name = call.name
        if name == "BLANK":
            _arity(call, 0, 0)
            return Const(None, None)
        if name in ("TRUE", "FALSE"):
            _arity(call, 0, 0)
            return Const(name == "TRUE", DataType.BOOLEAN)
        if name in ("DATE", "DATETIME"):
            return self.date(call)
        if name == "NOT":
            _arity(call, 1, 1)
            return Op(
                "not", (_boolean(self.scalar(call.args[0], scope, inside), call),), DataType.BOOLEAN
            )
        if name in ("AND", "OR"):
            _arity(call, 2, 2)
            args = tuple(_boolean(self.scalar(a, scope, inside), a) for a in call.args)
            return Op(name.lower(), args, DataType.BOOLEAN)
        if name == "ISBLANK":
            _arity(call, 1, 1)
            return Op("isblank", (self.scalar(call.args[0], scope, inside),), DataType.BOOLEAN)
        if name in _AGGREGATES:
            return self.aggregate(call, scope, inside)
        if name in SUPPORTED_FUNCTIONS:
            raise DaxError(
                f"The function {name} returns a table; a single value is expected here.",
                call.position,
            )
        raise _unsupported(call)

    def aggregate(self, call: Call, scope: _Scope, inside: tuple[str, ...]) -> Scalar:
        func = _AGGREGATES[call.name]
        if scope.base is None or inside:
            where = "inside another aggregate" if inside else "per row (FILTER, SELECTCOLUMNS, ...)"
            raise DaxError(
                f"{call.name} can be used in SUMMARIZECOLUMNS or ROW expressions only, not "
                f"{where}.",
                call.position,
            )
        _arity(call, 1, 1)
        arg = call.args[0]
        if func == "countrows":
            where_pred: Scalar | None = None
            target = arg
            if isinstance(arg, Call) and arg.name == "FILTER" and len(arg.args) == 2:
                target = arg.args[0]
                where_pred = self.predicate(arg.args[1], _row_scope(scope.base))
            if (
                not isinstance(target, TableRef | Name)
                or self.filter_source_table(target).name != scope.base.table
            ):
                raise DaxError(
                    f"COUNTROWS takes the table '{scope.base.table}' or FILTER over it here.",
                    _position(arg),
                )
            return Aggregate("countrows", None, DataType.INT64, where_pred)
        if not isinstance(arg, ColumnRef):
            raise DaxError(
                f"{call.name} takes a column, like {call.name}('Table'[Column]).", _position(arg)
            )
        column = self.scalar(arg, scope, (call.name,))
        if func in ("sum", "avg") and column.dtype not in _NUMERIC:
            raise DaxError(
                f"{call.name} needs a numeric column; {_describe(arg)} is "
                f"{column.dtype.value if column.dtype else 'BLANK'}.",
                arg.position,
            )
        if func in ("count", "distinctcount"):
            dtype: DataType | None = DataType.INT64
        elif func == "avg":
            dtype = DataType.DOUBLE
        else:
            dtype = column.dtype
        return Aggregate(func, column, dtype)

    def date(self, call: Call) -> Const:
        want = 3 if call.name == "DATE" else 6
        _arity(call, 3, want)
        parts: list[int] = []
        for arg in call.args:
            value = self.scalar(arg, _EMPTY, ())
            if not (isinstance(value, Const) and value.dtype is DataType.INT64):
                raise DaxError(f"{call.name} takes whole numbers.", _position(arg))
            parts.append(int(value.value))
        try:
            y, mo, d, h, mi, sec = [*parts, 0, 0, 0][:6]
            moment = datetime(y, mo, d, h, mi, sec, tzinfo=UTC)
        except (ValueError, OverflowError) as exc:
            raise DaxError(
                f"{call.name}{tuple(parts)} is not a valid date: {exc}.", call.position
            ) from None
        return Const(quantised_text(moment), DataType.DATETIME)


# --- helpers ----------------------------------------------------------------------------
def _row_scope(source: TablePlan) -> _Scope:
    return _Scope({key: Column(key, dtype) for key, dtype in source.columns})


def _type_of(source: TablePlan, key: str) -> DataType | None:
    return dict(source.columns)[key]


def _columns_in(expr: Scalar) -> set[str]:
    if isinstance(expr, Column):
        return {expr.key}
    if isinstance(expr, Op):
        return set().union(*(_columns_in(a) for a in expr.args))
    if isinstance(expr, Aggregate) and expr.arg is not None:
        return _columns_in(expr.arg)
    return set()


def _position(expr: Expr) -> Position:
    return expr.position


def _describe(expr: Expr) -> str:
    if isinstance(expr, Call):
        return f"{expr.name}(...)"
    if isinstance(expr, ColumnRef):
        return f"'{expr.table}'[{expr.column}]"
    if isinstance(expr, TableRef):
        return f"'{expr.table}'"
    if isinstance(expr, BracketRef):
        return f"[{expr.name}]"
    if isinstance(expr, Name):
        return expr.name
    if isinstance(expr, Literal):
        return repr(expr.value) if not isinstance(expr.value, str) else f'"{expr.value}"'
    if isinstance(expr, TableConstructor):
        return "a {...} list"
    return "this expression"


def _unsupported(call: Call) -> DaxError:
    return DaxError(
        f"The function {call.name} is not supported by pbistream's DAX subset "
        f"(supported: {', '.join(SUPPORTED_FUNCTIONS)}).",
        call.position,
    )


def _arity(call: Call, least: int, most: int | None) -> None:
    n = len(call.args)
    if n < least or (most is not None and n > most):
        if most == least:
            want = f"{least}"
        elif most is None:
            want = f"at least {least}"
        else:
            want = f"{least} to {most}"
        raise DaxError(f"{call.name} takes {want} arguments, not {n}.", call.position)


def _boolean(value: Scalar, where: Expr | Call) -> Scalar:
    if value.dtype not in (DataType.BOOLEAN, None):
        raise DaxError(
            f"A true/false value is expected here, not a {value.dtype.value}.", _position(where)
        )
    return value


def _numeric(value: Scalar, where: Expr) -> None:
    if value.dtype not in _NUMERIC and value.dtype is not None:
        raise DaxError(
            f"Arithmetic needs numbers; this is a {value.dtype.value}.", _position(where)
        )


def _family(dtype: DataType | None) -> str | None:
    if dtype is None:
        return None
    return "number" if dtype in _NUMERIC else dtype.value


def _check_comparable(left: Scalar, right: Scalar, position: Position) -> None:
    a, b = _family(left.dtype), _family(right.dtype)
    if a is not None and b is not None and a != b:
        raise DaxError(
            f"DAX comparison operations do not support comparing values of type "
            f"{left.dtype.value if left.dtype else ''} with values of type "
            f"{right.dtype.value if right.dtype else ''}.",
            position,
        )


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
