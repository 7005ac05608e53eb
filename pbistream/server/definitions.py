"""Strict checking of dataset and table definitions, as Power BI checks them.

Power BI refuses a create-dataset body holding a property its contract does not
define (C3), with a table name outside the documented pattern (§1.3), or with more
than 75 tables, columns or relationships (§3). Streaming and PushStreaming datasets
also refuse column properties other than ``name`` and ``dataType`` (C1). Each check
raises an :class:`~pbistream.server.errors.ApiError` whose message says what to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pbistream.limits import (
    MAX_COLUMN_NAME_CHARS,
    MAX_DATASET_NAME_CHARS,
    MAX_TABLE_NAME_CHARS,
    Limit,
)
from pbistream.schema import Column, Mode, Table
from pbistream.server.errors import BadRequest, InvalidRequest
from pbistream.server.settings import Settings
from pbistream.values import parse_data_type

__all__ = [
    "DatasetDefinition",
    "check_dataset",
    "check_table",
    "initial_rows",
    "is_unset",
    "is_valid_table_name",
]

_TYPE_PREFIX = "Microsoft.PowerBI.ServiceContracts.Api."
_DATASET_PROPS = {"name", "tables", "defaultMode", "relationships", "datasources"}
_TABLE_PROPS = {"name", "columns", "measures", "rows", "isHidden", "description", "source"}
_COLUMN_PROPS = {"name", "dataType", "formatString", "sortByColumn", "dataCategory"}
_COLUMN_PROPS |= {"isHidden", "summarizeBy"}
_MEASURE_PROPS = {"name", "expression", "formatString", "description", "isHidden"}
_RELATIONSHIP_PROPS = {"name", "fromTable", "fromColumn", "toTable", "toColumn"}
_RELATIONSHIP_PROPS |= {"crossFilteringBehavior"}
_SUMMARIZE_BY = {"default", "none", "sum", "min", "max", "count", "average", "distinctcount"}
_CROSS_FILTERING = {"onedirection", "bothdirections", "automatic"}

# The swagger's table-name pattern: TAB/LF/CR, space, # - 0-9 @ A-Z ^ _ a-z ~, and >= U+007F.
_TABLE_NAME = re.compile(
    r"[\t\n\r #\-0-9@A-Z^_a-z~\u007f-\U0010ffff]{1," + str(MAX_TABLE_NAME_CHARS.value) + "}"
)
# Column names: anything but control characters other than TAB/LF/CR.
_BAD_COLUMN_CHAR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass(slots=True)
class DatasetDefinition:
    """A create-dataset body that passed every check."""

    name: str
    mode: Mode
    tables: list[Table]
    properties: dict[str, Any] = field(default_factory=dict)
    #: Rows that came inside table definitions (``Table.rows``), by table name.
    rows: dict[str, list[Any]] = field(default_factory=dict)


def is_valid_table_name(name: object) -> bool:
    """True if ``name`` fits Power BI's table-name pattern (1-100 allowed characters)."""
    return isinstance(name, str) and _TABLE_NAME.fullmatch(name) is not None


def _unknown_property(props: set[str], allowed: set[str], type_name: str, target: str) -> None:
    unknown = sorted(props - allowed)
    if unknown:
        raise BadRequest(
            "Bad Request",
            details=[
                {
                    "message": (
                        f"The property '{unknown[0]}' does not exist on type "
                        f"'{_TYPE_PREFIX}{type_name}'. Make sure to only use property "
                        "names that are defined by the type."
                    ),
                    "target": target,
                }
            ],
        )


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"{what} must be a JSON array")
    return value


def is_unset(value: Any) -> bool:
    """True for a property sent at its empty default: ``null``, ``""`` or ``false``.

    Client libraries send every property they know, set or not (python-power-bi 0.1.2
    sends ``"dataCategory": ""``, ``"formatString": ""``, ``"isHidden": false``,
    ``"sortByColumn": null``, ``"summarizeBy": null`` on every column). Such a property
    says nothing, so it is dropped before the checks, as if it had not been sent; only
    a property with a value counts (for example against a PushStreaming dataset, C1).
    """
    return value is None or value is False or (isinstance(value, str) and value == "")


def _absent_as_empty(value: Any) -> Any:
    return [] if value is None or value == "" else value


def _shown(name: Any, limit: int = 60) -> str:
    """A name for an error message: its repr, cut short (a 5 MB name is not echoed)."""
    if isinstance(name, str) and len(name) > limit:
        return repr(name[:limit]) + f"... ({len(name):,} characters)"
    return repr(name)


def _name(value: Any, what: str, limit: Limit) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} needs a non-empty 'name'")
    if len(value) > limit.value:
        raise BadRequest(
            f"{what}: the name {_shown(value)} is longer than {limit.value:,} characters "
            f"(the {limit.name} limit)"
        )
    return value


def _check_column(raw: Any, where: str, mode: Mode, target: str) -> Column:
    col = _object(raw, where)
    _unknown_property(set(col), _COLUMN_PROPS, "Column", target)
    name = _name(col.get("name"), where, MAX_COLUMN_NAME_CHARS)
    if _BAD_COLUMN_CHAR.search(name):
        raise BadRequest(f"{where}: column name {name!r} holds a control character")
    if "dataType" not in col:
        raise BadRequest(f"{where} ({name!r}) needs a 'dataType'")
    try:
        data_type = parse_data_type(col["dataType"])
    except ValueError as exc:
        raise BadRequest(f"{where} ({name!r}): {exc}") from None
    # Properties at their empty defaults are "not set" (see is_unset).
    extra = {k: v for k, v in col.items() if k not in ("name", "dataType") and not is_unset(v)}
    if extra and mode is not Mode.PUSH:
        raise InvalidRequest(
            "This dataset or endpoint does not support column properties other than name "
            f"and dataType. ({where} {name!r} has {', '.join(sorted(extra))})"
        )
    summarize = extra.get("summarizeBy")
    if summarize is not None and (
        not isinstance(summarize, str) or summarize.lower() not in _SUMMARIZE_BY
    ):
        raise BadRequest(
            f"{where} ({name!r}): summarizeBy {summarize!r} is not one of "
            "default, none, sum, min, max, count, average, distinctCount"
        )
    if "isHidden" in extra and not isinstance(extra["isHidden"], bool):
        raise BadRequest(f"{where} ({name!r}): isHidden must be true or false")
    return Column(name, data_type, extra)


def _check_measure(raw: Any, where: str, target: str) -> dict[str, Any]:
    measure = _object(raw, where)
    _unknown_property(set(measure), _MEASURE_PROPS, "Measure", target)
    _name(measure.get("name"), where, MAX_COLUMN_NAME_CHARS)
    if not isinstance(measure.get("expression"), str):
        raise BadRequest(f"{where} needs an 'expression' (DAX text)")
    return {k: v for k, v in measure.items() if k in ("name", "expression") or not is_unset(v)}


def initial_rows(raw_table: Any, settings: Settings) -> list[Any]:
    """The ``rows`` a table definition carries (the swagger's ``Table.rows``), unchecked.

    Raises:
        ApiError: ``rows`` is not an array, or holds more than a POST may.
    """
    rows = raw_table.get("rows") if isinstance(raw_table, dict) else None
    if rows is None or rows == "":
        return []
    rows = _list(rows, f"table {raw_table.get('name')!r} rows")
    if settings.limits and len(rows) > settings.max_rows_per_post:
        raise InvalidRequest(
            f"table {raw_table.get('name')!r} carries {len(rows):,} rows; at most "
            f"{settings.max_rows_per_post:,} may come with a definition"
        )
    return rows


def check_table(
    raw: Any, settings: Settings, mode: Mode, *, where: str = "table", target: str = "dataset"
) -> Table:
    """Check one table definition strictly and return it as a :class:`Table`.

    Its ``rows`` are not part of the table: read them with :func:`initial_rows`.

    Raises:
        ApiError: The definition breaks a rule; the message says which.
    """
    table = _object(raw, where)
    _unknown_property(set(table), _TABLE_PROPS, "Table", target)
    name = table.get("name")
    if not is_valid_table_name(name):
        raise BadRequest(
            f"{where}: table name {_shown(name)} is not valid: use 1-100 letters, digits, "
            # Not an f-string: single braces, or the message showed "{{ }}" literally.
            "spaces or # - @ ^ _ ~ (no . , / \\ : ; ( ) [ ] { } ' \" ! $ % & * + < = > ? |)"
        )
    assert isinstance(name, str)
    if "columns" not in table:
        raise BadRequest(f"table {name!r} needs 'columns'")
    raw_columns = _list(table["columns"], f"table {name!r} columns")
    if len(raw_columns) > settings.max_columns:
        raise BadRequest(
            f"table {name!r} has {len(raw_columns)} columns; "
            f"a table may have at most {settings.max_columns}"
        )
    columns = [
        _check_column(col, f"table {name!r} column {i}", mode, target)
        for i, col in enumerate(raw_columns)
    ]
    seen: set[str] = set()
    for col in columns:
        if col.name in seen:
            raise BadRequest(f"table {name!r} has two columns named {col.name!r}")
        seen.add(col.name)
    measures = [
        _check_measure(m, f"table {name!r} measure {i}", target)
        for i, m in enumerate(
            _list(_absent_as_empty(table.get("measures")), f"table {name!r} measures")
        )
    ]
    props = {
        k: v
        for k, v in table.items()
        if k not in ("name", "columns", "rows", "measures") and not is_unset(v)
    }
    if measures:
        props["measures"] = measures
    return Table(name, tuple(columns), props)


def _check_relationship(raw: Any, where: str, tables: dict[str, Table]) -> dict[str, Any]:
    rel = _object(raw, where)
    _unknown_property(set(rel), _RELATIONSHIP_PROPS, "Relationship", "dataset")
    for key in ("name", "fromTable", "fromColumn", "toTable", "toColumn"):
        if not isinstance(rel.get(key), str) or not rel[key]:
            raise BadRequest(f"{where} needs {key!r}")
    for side in ("from", "to"):
        table = tables.get(rel[f"{side}Table"])
        if table is None:
            raise BadRequest(f"{where}: {side}Table {rel[side + 'Table']!r} is not a table")
        if table.column(rel[f"{side}Column"]) is None:
            raise BadRequest(
                f"{where}: {side}Column {rel[side + 'Column']!r} is not a column of {table.name!r}"
            )
    behaviour = rel.get("crossFilteringBehavior")
    if behaviour is not None and (
        not isinstance(behaviour, str) or behaviour.lower() not in _CROSS_FILTERING
    ):
        raise BadRequest(
            f"{where}: crossFilteringBehavior {behaviour!r} is not one of "
            "OneDirection, BothDirections, Automatic"
        )
    return rel


def check_dataset(raw: Any, settings: Settings) -> DatasetDefinition:
    """Check a create-dataset body strictly (reference §1.3).

    Raises:
        ApiError: The body breaks a rule; the message says which.
    """
    body = _object(raw, "The dataset definition")
    _unknown_property(set(body), _DATASET_PROPS, "Dataset", "dataset")
    name = _name(body.get("name"), "The dataset", MAX_DATASET_NAME_CHARS)
    mode = Mode.PUSH
    # Some client libraries send "" for properties they leave unset; Push is the default.
    if body.get("defaultMode") not in (None, ""):
        if not isinstance(body["defaultMode"], str):
            raise BadRequest("defaultMode must be a string: Push, Streaming or PushStreaming")
        try:
            mode = Mode.parse(body["defaultMode"])
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    if "tables" not in body:
        raise BadRequest("The dataset needs 'tables'")
    raw_tables = _list(body["tables"], "tables")
    if len(raw_tables) > settings.max_tables:
        raise BadRequest(
            f"the dataset has {len(raw_tables)} tables; a dataset may have at most "
            f"{settings.max_tables}"
        )
    tables: dict[str, Table] = {}
    for i, raw_table in enumerate(raw_tables):
        table = check_table(raw_table, settings, mode, where=f"table {i}")
        if table.name in tables:
            raise BadRequest(f"two tables are named {table.name!r}")
        tables[table.name] = table
    props: dict[str, Any] = {}
    raw_rels = _list(_absent_as_empty(body.get("relationships")), "relationships")
    if len(raw_rels) > settings.max_relationships:
        raise BadRequest(
            f"the dataset has {len(raw_rels)} relationships; at most "
            f"{settings.max_relationships} are allowed"
        )
    if raw_rels:
        props["relationships"] = [
            _check_relationship(r, f"relationship {i}", tables) for i, r in enumerate(raw_rels)
        ]
    datasources = _list(_absent_as_empty(body.get("datasources")), "datasources")
    if datasources:
        # "Not applicable for Push datasets" (S8): kept verbatim, never used.
        props["datasources"] = datasources
    rows = {
        t.name: initial_rows(raw, settings)
        for t, raw in zip(tables.values(), raw_tables, strict=True)
    }
    return DatasetDefinition(
        name, mode, list(tables.values()), props, {k: v for k, v in rows.items() if v}
    )
