"""The logical plan: what a query computes, in terms every storage backend can run.

The planner (:mod:`pbistream.dax.planner`) turns the syntax tree into these
nodes; :mod:`pbistream.dax.sql` turns them into one SQL statement per backend.
Names are resolved, types known and constants typed by now, so a backend never
sees DAX.

Every table node has ``columns``: ``(key, type)`` pairs, where ``key`` is the name
the column has in the answer (``Table[Column]`` or ``[Name]``) and ``type`` a
:class:`~pbistream.values.DataType`, or None for a value that is always BLANK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pbistream.values import DataType

__all__ = [
    "Aggregate",
    "Column",
    "ColumnSpec",
    "Const",
    "Distinct",
    "Filter",
    "Group",
    "One",
    "Op",
    "Project",
    "QueryPlan",
    "Scalar",
    "Scan",
    "ScanColumn",
    "TablePlan",
    "TopN",
]

ColumnSpec = tuple[str, DataType | None]
"""A column of a table plan: its answer key and its type."""


# --- scalar expressions -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Column:
    """A column of the input table, by its key."""

    key: str
    dtype: DataType | None


@dataclass(frozen=True, slots=True)
class Const:
    """A typed constant; ``value`` None is BLANK. DateTime constants are canonical text."""

    value: Any
    dtype: DataType | None


@dataclass(frozen=True, slots=True)
class Op:
    """An operator on scalars.

    ``op`` is one of ``and or not eq ne lt le gt ge add sub mul div neg isblank in``
    (for ``in``, ``args[0]`` is tested against the constants ``args[1:]``).
    """

    op: str
    args: tuple[Scalar, ...]
    dtype: DataType | None


@dataclass(frozen=True, slots=True)
class Aggregate:
    """An aggregate over the rows of a group: ``sum avg min max count countrows distinctcount``.

    ``arg`` is None for ``countrows``; ``where`` keeps only the rows it holds for
    (``COUNTROWS(FILTER(T, ...))``).
    """

    func: str
    arg: Scalar | None
    dtype: DataType | None
    where: Scalar | None = None


Scalar = Column | Const | Op | Aggregate


# --- tables ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScanColumn:
    """One stored column: its answer key, its field name in the stored JSON row, its type."""

    key: str
    field: str
    dtype: DataType


@dataclass(frozen=True, slots=True)
class Scan:
    """Every stored row of one table."""

    table: str
    fields: tuple[ScanColumn, ...]

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """The output columns."""
        return tuple((f.key, f.dtype) for f in self.fields)


@dataclass(frozen=True, slots=True)
class One:
    """A table of one row and no columns (what ``ROW`` of constants projects from)."""

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """No columns."""
        return ()


@dataclass(frozen=True, slots=True)
class Filter:
    """The rows of ``source`` for which ``predicate`` is true."""

    source: TablePlan
    predicate: Scalar

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """The source's columns."""
        return self.source.columns


@dataclass(frozen=True, slots=True)
class Project:
    """New columns computed from each row of ``source``."""

    source: TablePlan
    exprs: tuple[tuple[str, Scalar], ...]

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """One column per expression."""
        return tuple((key, _dtype(expr)) for key, expr in self.exprs)


@dataclass(frozen=True, slots=True)
class Group:
    """Group ``source`` by ``keys`` and compute ``measures`` per group.

    With ``drop_blank`` (SUMMARIZECOLUMNS), a group whose measures are all BLANK
    is left out, as DAX does.
    """

    source: TablePlan
    keys: tuple[str, ...]
    measures: tuple[tuple[str, Scalar], ...]
    drop_blank: bool

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """The keys, then the measures."""
        types = dict(self.source.columns)
        return tuple((k, types[k]) for k in self.keys) + tuple(
            (key, _dtype(expr)) for key, expr in self.measures
        )


@dataclass(frozen=True, slots=True)
class Distinct:
    """The distinct rows of ``source``."""

    source: TablePlan

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """The source's columns."""
        return self.source.columns


@dataclass(frozen=True, slots=True)
class TopN:
    """The first ``n`` rows of ``source`` by ``order``, with rows tied with the n-th (DAX TOPN)."""

    source: TablePlan
    n: int
    order: tuple[tuple[Scalar, bool], ...]  # (expression, ascending)

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """The source's columns."""
        return self.source.columns


TablePlan = Scan | One | Filter | Project | Group | Distinct | TopN


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """One EVALUATE: its table, its ORDER BY and its START AT values."""

    table: TablePlan
    order: tuple[tuple[Scalar, bool], ...] = ()
    start_at: tuple[Const, ...] = ()

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """The answer's columns."""
        return self.table.columns

    @property
    def scans(self) -> tuple[Scan, ...]:
        """The stored tables the plan reads, once each."""
        found: dict[str, Scan] = {}
        for scan in _scans(self.table):
            found.setdefault(scan.table, scan)
        return tuple(found.values())


def _dtype(expr: Scalar) -> DataType | None:
    return expr.dtype


def _scans(node: TablePlan) -> list[Scan]:
    if isinstance(node, Scan):
        return [node]
    if isinstance(node, One):
        return []
    return _scans(node.source)
