"""Planning scalar expressions: literals, columns, measures, operators, aggregates.

The half of the planner (:mod:`pbistream.dax.planner`) that reads single values:
which names a row or an aggregate can see (:class:`Scope`), the types of values and
which may be compared or added, and the functions that return one value. Errors
name the function or token and its position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pbistream.datetimes import quantised_text
from pbistream.dax.errors import DaxError, Position
from pbistream.dax.plan import Aggregate, Column, Const, Op, Scalar, Scan, TablePlan
from pbistream.dax.syntax import (
    Binary,
    BracketRef,
    Call,
    ColumnRef,
    Define,
    Expr,
    Literal,
    Name,
    TableConstructor,
    TableRef,
    Unary,
    VarBlock,
)
from pbistream.schema import Table
from pbistream.values import DataType

__all__ = [
    "AGGREGATES",
    "EMPTY_SCOPE",
    "FILTER_TABLE_FUNCTIONS",
    "SUPPORTED_FUNCTIONS",
    "TABLE_FUNCTIONS",
    "ScalarPlanner",
    "Scope",
    "arity",
    "check_comparable",
    "columns_in",
    "describe",
    "position_of",
    "row_scope",
    "unsupported",
]

NUMERIC = frozenset({DataType.INT64, DataType.DOUBLE, DataType.DECIMAL})
AGGREGATES = {
    "SUM": "sum",
    "AVERAGE": "avg",
    "MIN": "min",
    "MAX": "max",
    "COUNT": "count",
    "COUNTA": "count",
    "COUNTROWS": "countrows",
    "DISTINCTCOUNT": "distinctcount",
}
TABLE_FUNCTIONS = (
    "FILTER CALCULATETABLE SUMMARIZECOLUMNS TOPN ROW SELECTCOLUMNS ADDCOLUMNS DISTINCT VALUES ALL"
)
# Tables that can filter another (their rows are a filter on their source table's rows).
FILTER_TABLE_FUNCTIONS = frozenset({"FILTER", "VALUES", "DISTINCT", "ALL", "CALCULATETABLE"})
_SCALAR_FUNCTIONS = "BLANK TRUE FALSE DATE DATETIME NOT AND OR ISBLANK CALCULATE " + " ".join(
    AGGREGATES
)
#: Every function the subset knows, for error messages and the docs.
SUPPORTED_FUNCTIONS = tuple(sorted((TABLE_FUNCTIONS + " " + _SCALAR_FUNCTIONS).split()))
_COMPARISONS = {"=": "eq", "==": "eq", "<>": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_ARITHMETIC = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


@dataclass(frozen=True, slots=True)
class Scope:
    """What names mean where a scalar is read.

    ``row`` holds the columns of the row being iterated (FILTER, SELECTCOLUMNS).
    ``base`` is set where aggregates are allowed: the scan they aggregate over.
    """

    row: Mapping[str, Column]
    base: Scan | None = None


EMPTY_SCOPE = Scope({})


class ScalarPlanner:
    """Plans scalars; :class:`~pbistream.dax.planner.Planner` adds tables on top.

    The names a query defines are shared with the table half: ``tables`` (by lower
    name), ``measures`` (DEFINE MEASURE), ``vars`` (VAR) and ``expanding`` (measures
    being expanded, to catch one that refers to itself).
    """

    tables: dict[str, Table]
    measures: dict[str, Define]
    vars: dict[str, Expr]
    expanding: set[str]

    # Provided by the table half.
    def column_key(self, ref: ColumnRef) -> tuple[Table, str]:
        """The table and ``Table[Column]`` key of a column reference."""
        raise NotImplementedError

    def bind_var(self, name: str, expr: Expr) -> None:
        """Bind a VAR to its expression."""
        raise NotImplementedError

    def filter_source_table(self, expr: Expr) -> Table:
        """The stored table a filter table filters."""
        raise NotImplementedError

    def predicate(self, expr: Expr, scope: Scope) -> Scalar:
        """Plan a condition (true, false or BLANK)."""
        result = self.scalar(expr, scope, ())
        if result.dtype not in (DataType.BOOLEAN, None):
            raise DaxError(
                f"A condition must be true or false; this is a {result.dtype.value}.",
                position_of(expr),
            )
        return result

    def scalar(self, expr: Expr, scope: Scope, inside: tuple[str, ...]) -> Scalar:
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
                return Op("not", (boolean(operand, expr),), DataType.BOOLEAN)
            numeric(operand, expr)
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
            f"{describe(expr)} is a table; a single value is expected here.", position_of(expr)
        )

    def column(self, key: str, scope: Scope, inside: tuple[str, ...], position: Position) -> Column:
        """A column as the scope sees it: of the iterated row, or aggregated."""
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

    def bracket(self, ref: BracketRef, scope: Scope, inside: tuple[str, ...]) -> Scalar:
        """``[Name]``: a column of the iterated row, or a measure (expanded in place)."""
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

    def binary(self, expr: Binary, scope: Scope, inside: tuple[str, ...]) -> Scalar:
        """Plan an operator, checking its operands' types."""
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
                    raise DaxError("The list after IN must hold constants.", position_of(item))
                check_comparable(left, value, position_of(item))
                values.append(value)
            if not values:
                return Const(False, DataType.BOOLEAN)
            return Op("in", (left, *values), DataType.BOOLEAN)
        right = self.scalar(expr.right, scope, inside)
        if op in ("&&", "||"):
            args = (boolean(left, expr.left), boolean(right, expr.right))
            return Op("and" if op == "&&" else "or", args, DataType.BOOLEAN)
        if op in _COMPARISONS:
            check_comparable(left, right, expr.position)
            return Op(_COMPARISONS[op], (left, right), DataType.BOOLEAN)
        numeric(left, expr.left)
        numeric(right, expr.right)
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

    def call(self, call: Call, scope: Scope, inside: tuple[str, ...]) -> Scalar:
        """Plan a function that returns one value."""
        name = call.name
        if name == "BLANK":
            arity(call, 0, 0)
            return Const(None, None)
        if name in ("TRUE", "FALSE"):
            arity(call, 0, 0)
            return Const(name == "TRUE", DataType.BOOLEAN)
        if name in ("DATE", "DATETIME"):
            return self.date(call)
        if name == "NOT":
            arity(call, 1, 1)
            return Op(
                "not", (boolean(self.scalar(call.args[0], scope, inside), call),), DataType.BOOLEAN
            )
        if name in ("AND", "OR"):
            arity(call, 2, 2)
            args = tuple(boolean(self.scalar(a, scope, inside), a) for a in call.args)
            return Op(name.lower(), args, DataType.BOOLEAN)
        if name == "CALCULATE":
            # CALCULATE(expr) without filters is how Power BI Desktop writes an implicit
            # measure; outside a row context it is expr itself. Its filter arguments would
            # change the context per group, which the subset does not model.
            arity(call, 1, None)
            if scope.base is None or inside:
                raise DaxError(
                    "CALCULATE is supported where aggregates are: in SUMMARIZECOLUMNS and ROW "
                    "expressions and in measures (not per row, nor inside an aggregate).",
                    call.position,
                )
            if len(call.args) > 1:
                raise DaxError(
                    "CALCULATE with filter arguments is not supported by pbistream's DAX "
                    "subset; filter the table instead (CALCULATETABLE, FILTER, "
                    "COUNTROWS(FILTER(...))).",
                    call.position,
                )
            return self.scalar(call.args[0], scope, inside)
        if name == "ISBLANK":
            arity(call, 1, 1)
            return Op("isblank", (self.scalar(call.args[0], scope, inside),), DataType.BOOLEAN)
        if name in AGGREGATES:
            return self.aggregate(call, scope, inside)
        if name in SUPPORTED_FUNCTIONS:
            raise DaxError(
                f"The function {name} returns a table; a single value is expected here.",
                call.position,
            )
        raise unsupported(call)

    def aggregate(self, call: Call, scope: Scope, inside: tuple[str, ...]) -> Scalar:
        """SUM, AVERAGE, MIN, MAX, COUNT(A), COUNTROWS, DISTINCTCOUNT over the scope's table."""
        func = AGGREGATES[call.name]
        if scope.base is None or inside:
            where = "inside another aggregate" if inside else "per row (FILTER, SELECTCOLUMNS, ...)"
            raise DaxError(
                f"{call.name} can be used in SUMMARIZECOLUMNS or ROW expressions only, not "
                f"{where}.",
                call.position,
            )
        arity(call, 1, 1)
        arg = call.args[0]
        if func == "countrows":
            where_pred: Scalar | None = None
            target = arg
            if isinstance(arg, Call) and arg.name == "FILTER" and len(arg.args) == 2:
                target = arg.args[0]
                where_pred = self.predicate(arg.args[1], row_scope(scope.base))
            if (
                not isinstance(target, TableRef | Name)
                or self.filter_source_table(target).name != scope.base.table
            ):
                raise DaxError(
                    f"COUNTROWS takes the table '{scope.base.table}' or FILTER over it here.",
                    position_of(arg),
                )
            return Aggregate("countrows", None, DataType.INT64, where_pred)
        if not isinstance(arg, ColumnRef):
            raise DaxError(
                f"{call.name} takes a column, like {call.name}('Table'[Column]).", position_of(arg)
            )
        column = self.scalar(arg, scope, (call.name,))
        if func in ("sum", "avg") and column.dtype not in NUMERIC:
            raise DaxError(
                f"{call.name} needs a numeric column; {describe(arg)} is "
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
        """DATE(y, m, d) / DATETIME(y, m, d, h, mi, s) as a DateTime constant."""
        want = 3 if call.name == "DATE" else 6
        arity(call, 3, want)
        parts: list[int] = []
        for arg in call.args:
            value = self.scalar(arg, EMPTY_SCOPE, ())
            if not (isinstance(value, Const) and value.dtype is DataType.INT64):
                raise DaxError(f"{call.name} takes whole numbers.", position_of(arg))
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
def row_scope(source: TablePlan) -> Scope:
    """A scope where the columns of ``source`` are the row's."""
    return Scope({key: Column(key, dtype) for key, dtype in source.columns})


def columns_in(expr: Scalar) -> set[str]:
    """The column keys an expression reads."""
    if isinstance(expr, Column):
        return {expr.key}
    if isinstance(expr, Op):
        return set().union(*(columns_in(a) for a in expr.args))
    if isinstance(expr, Aggregate) and expr.arg is not None:
        return columns_in(expr.arg)
    return set()


def position_of(expr: Expr) -> Position:
    """Where an expression starts."""
    return expr.position


def describe(expr: Expr) -> str:
    """An expression as an error message names it."""
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


def unsupported(call: Call) -> DaxError:
    """The error for a function outside the subset, listing the supported ones."""
    return DaxError(
        f"The function {call.name} is not supported by pbistream's DAX subset "
        f"(supported: {', '.join(SUPPORTED_FUNCTIONS)}).",
        call.position,
    )


def arity(call: Call, least: int, most: int | None) -> None:
    """Refuse a call with too few or too many arguments."""
    n = len(call.args)
    if n < least or (most is not None and n > most):
        if most == least:
            want = f"{least}"
        elif most is None:
            want = f"at least {least}"
        else:
            want = f"{least} to {most}"
        raise DaxError(f"{call.name} takes {want} arguments, not {n}.", call.position)


def boolean(value: Scalar, where: Expr | Call) -> Scalar:
    """``value``, if it is true/false (or BLANK)."""
    if value.dtype not in (DataType.BOOLEAN, None):
        raise DaxError(
            f"A true/false value is expected here, not a {value.dtype.value}.", position_of(where)
        )
    return value


def numeric(value: Scalar, where: Expr) -> None:
    """Refuse a value that is not a number (or BLANK)."""
    if value.dtype not in NUMERIC and value.dtype is not None:
        raise DaxError(
            f"Arithmetic needs numbers; this is a {value.dtype.value}.", position_of(where)
        )


def _family(dtype: DataType | None) -> str | None:
    if dtype is None:
        return None
    return "number" if dtype in NUMERIC else dtype.value


def check_comparable(left: Scalar, right: Scalar, position: Position) -> None:
    """Refuse comparing values of different kinds (text with a number), as DAX does."""
    a, b = _family(left.dtype), _family(right.dtype)
    if a is not None and b is not None and a != b:
        raise DaxError(
            f"DAX comparison operations do not support comparing values of type "
            f"{left.dtype.value if left.dtype else ''} with values of type "
            f"{right.dtype.value if right.dtype else ''}.",
            position,
        )
