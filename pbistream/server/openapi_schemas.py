"""The schemas of ``/openapi.json``: its building blocks and the ``components`` section.

Kept apart from :mod:`pbistream.server.openapi`, which lays out the paths, so each
module reads on its own. The shapes follow Power BI's swagger (reference §1.2).
"""

from __future__ import annotations

from typing import Any

from pbistream import limits

__all__ = [
    "ANY_OBJECT",
    "BOOL",
    "COUNT",
    "EPOCH",
    "JSON",
    "MODES",
    "RETENTIONS",
    "STR",
    "UUID",
    "Schema",
    "array",
    "components",
    "obj",
    "ref",
]

JSON = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to a schema of ``components``."""
    return {"$ref": f"#/components/schemas/{name}"}


STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
COUNT: Schema = {"type": "integer", "minimum": 0}
EPOCH: Schema = {"type": "number", "description": "Epoch seconds."}
UUID: Schema = {"type": "string", "format": "uuid"}
MODES: Schema = {"type": "string", "enum": ["Push", "Streaming", "PushStreaming"]}
RETENTIONS: Schema = {"type": "string", "enum": ["None", "basicFIFO"]}


def obj(properties: Schema, *required: str, strict: bool = False) -> Schema:
    """An object schema; ``strict`` refuses unknown properties, as Power BI does (C3)."""
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if strict:
        out["additionalProperties"] = False
    return out


def array(items: Schema, max_items: int | None = None) -> Schema:
    """An array schema, with ``maxItems`` when given."""
    out: Schema = {"type": "array", "items": items}
    if max_items is not None:
        out["maxItems"] = max_items
    return out


ANY_OBJECT: Schema = {"type": "object"}


def components() -> Schema:
    """The ``components`` section: every named schema the paths refer to."""
    data_types = ["Int64", "Double", "Boolean", "bool", "DateTime", "String", "Decimal"]
    summarize = ["default", "none", "sum", "min", "max", "count", "average", "distinctCount"]
    column = obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "dataType": {"type": "string", "enum": data_types},
            "formatString": STR,
            "sortByColumn": STR,
            "dataCategory": STR,
            "isHidden": BOOL,
            "summarizeBy": {"type": "string", "enum": summarize},
        },
        "name",
        "dataType",
        strict=True,
    )
    measure_props = {"name": {"type": "string", "minLength": 1}, "expression": STR}
    measure_props |= {"formatString": STR, "description": STR, "isHidden": BOOL}
    measure = obj(measure_props, "name", "expression", strict=True)
    # Power BI's table-name pattern (swagger, reference §1.3).
    table_name = {"type": "string", "pattern": r"^[\t\n\r #\-0-9@A-Z^_a-z~\u007f-\uffff]{1,100}$"}
    table = obj(
        {
            "name": table_name,
            "columns": array(ref("Column"), limits.MAX_COLUMNS.value),
            "measures": array(ref("Measure")),
            "isHidden": BOOL,
            "description": STR,
        },
        "name",
        "columns",
        strict=True,
    )
    ends = ("name", "fromTable", "fromColumn", "toTable", "toColumn")
    crossing = {"type": "string", "enum": ["OneDirection", "BothDirections", "Automatic"]}
    relationship = obj(
        {k: STR for k in ends} | {"crossFilteringBehavior": crossing}, *ends, strict=True
    )
    create = obj(
        {
            "name": {"type": "string", "minLength": 1},
            "defaultMode": MODES,
            "tables": array(ref("Table"), limits.MAX_TABLES.value),
            "relationships": array(ref("Relationship")),
        },
        "name",
        "tables",
        strict=True,
    )
    dataset = obj(
        {
            "@odata.context": STR,
            "id": UUID,
            "name": STR,
            "defaultRetentionPolicy": RETENTIONS,
            "addRowsAPIEnabled": BOOL,
        },
        "id",
        "name",
    )
    # A cell: any JSON scalar; the column's dataType decides what is accepted.
    cell = {"nullable": True, "oneOf": [STR, {"type": "number"}, BOOL]}
    row = {"type": "object", "additionalProperties": cell}
    error_props = {"code": STR, "message": STR, "details": array(ANY_OBJECT)}
    error = obj({"error": obj(error_props | {"pbi.error": ANY_OBJECT}, "code")}, "error")
    stored_row = obj(
        {"id": {"type": "integer"}, "received_at": EPOCH, "table": STR, "data": ANY_OBJECT},
        "id",
        "received_at",
        "table",
        "data",
    )
    summary_props: Schema = {
        "id": UUID,
        "name": STR,
        "groupId": UUID | {"nullable": True},
        "defaultMode": MODES,
        "defaultRetentionPolicy": RETENTIONS,
        "rowCount": COUNT,
        "lastRowAt": EPOCH | {"nullable": True},
    }
    table_detail = obj(
        {"name": STR, "columns": array(ANY_OBJECT), "rowCount": COUNT},
        "name",
        "columns",
        "rowCount",
    )
    detail_props = summary_props | {
        "pushUrl": STR | {"nullable": True},
        "tables": array(table_detail),
    }
    dashboard = obj(
        {"name": {"type": "string", "minLength": 1}, "tiles": array(ANY_OBJECT)}, "name"
    )
    group = obj(
        {
            "@odata.context": STR,
            "id": UUID,
            "name": STR,
            "isReadOnly": BOOL,
            "isOnDedicatedCapacity": BOOL,
            "type": STR,
        },
        "id",
        "name",
    )
    group_name = {"type": "string", "minLength": 1, "maxLength": 256}
    create_group = obj({"name": group_name}, "name", strict=True)
    bearer = {"type": "http", "scheme": "bearer"}
    bearer["description"] = "The token `pbistream serve` printed at first start."
    key = {"type": "apiKey", "in": "query", "name": "key"}
    key["description"] = "The dataset's Push URL key (rotatable)."
    return {
        "securitySchemes": {"bearerAuth": bearer, "pushKey": key},
        "schemas": {
            "Column": column,
            "Measure": measure,
            "Table": table,
            "Relationship": relationship,
            "CreateDatasetRequest": create,
            "Dataset": dataset,
            "Row": row,
            "Error": error,
            "StoredRow": stored_row,
            "DatasetSummary": obj(summary_props),
            "DatasetDetail": obj(detail_props),
            "Dashboard": dashboard,
            "Group": group,
            "CreateGroupRequest": create_group,
        },
    }
