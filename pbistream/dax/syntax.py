"""The syntax tree of a DAX query: what the parser builds and the planner reads.

Nodes are plain frozen dataclasses; each keeps the ``position`` of its first
token so a later stage (the planner) can still point at the exact place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pbistream.dax.errors import Position

__all__ = [
    "Binary",
    "BracketRef",
    "Call",
    "ColumnRef",
    "Define",
    "Evaluate",
    "Expr",
    "Literal",
    "Name",
    "Query",
    "TableConstructor",
    "TableRef",
    "Unary",
    "VarBlock",
]


@dataclass(frozen=True, slots=True)
class Literal:
    """A number or string written in the query (``12``, ``2.5``, ``"East"``)."""

    value: int | float | str
    position: Position


@dataclass(frozen=True, slots=True)
class ColumnRef:
    """``'Table'[Column]`` or ``Table[Column]``."""

    table: str
    column: str
    position: Position


@dataclass(frozen=True, slots=True)
class BracketRef:
    """``[Name]`` alone: a measure, or a column of the row being iterated."""

    name: str
    position: Position


@dataclass(frozen=True, slots=True)
class TableRef:
    """``'Table'`` (quoted; unquoted names are :class:`Name` until resolved)."""

    table: str
    position: Position


@dataclass(frozen=True, slots=True)
class Name:
    """A bare identifier: an unquoted table, a variable, ``TRUE``/``FALSE``."""

    name: str
    position: Position


@dataclass(frozen=True, slots=True)
class Call:
    """``NAME(arg, ...)``; ``name`` is upper-cased (DAX functions are case-insensitive)."""

    name: str
    args: tuple[Expr, ...]
    position: Position


@dataclass(frozen=True, slots=True)
class Unary:
    """``-x``, ``+x`` or ``NOT x``."""

    op: str
    operand: Expr
    position: Position


@dataclass(frozen=True, slots=True)
class Binary:
    """``left op right``; ``op`` is one of ``|| && = == <> < <= > >= IN & + - * / ^``."""

    op: str
    left: Expr
    right: Expr
    position: Position


@dataclass(frozen=True, slots=True)
class TableConstructor:
    """``{ v1, v2, ... }``: a one-column table (``IN``'s right side)."""

    values: tuple[Expr, ...]
    position: Position


@dataclass(frozen=True, slots=True)
class VarBlock:
    """``VAR a = ... [VAR b = ...] RETURN expr``."""

    bindings: tuple[tuple[str, Expr], ...]
    body: Expr
    position: Position


Expr = (
    Literal
    | ColumnRef
    | BracketRef
    | TableRef
    | Name
    | Call
    | Unary
    | Binary
    | TableConstructor
    | VarBlock
)


@dataclass(frozen=True, slots=True)
class Define:
    """One ``DEFINE`` entry: ``MEASURE 'T'[Name] = expr`` or ``VAR name = expr``."""

    kind: str  # "MEASURE" or "VAR"
    name: str
    table: str | None
    expr: Expr
    position: Position


@dataclass(frozen=True, slots=True)
class Evaluate:
    """``EVALUATE table [ORDER BY expr [ASC|DESC], ... [START AT value, ...]]``."""

    table: Expr
    order_by: tuple[tuple[Expr, bool], ...] = ()  # (expression, ascending)
    start_at: tuple[Expr, ...] = field(default=())
    position: Position = (1, 1)


@dataclass(frozen=True, slots=True)
class Query:
    """A whole query: its definitions and its EVALUATE statements."""

    defines: tuple[Define, ...]
    evaluates: tuple[Evaluate, ...]
