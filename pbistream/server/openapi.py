"""``GET /openapi.json``: an OpenAPI 3.0 description of every endpoint the server offers.

Written as data, not generated from the handlers: the Power BI endpoints must keep
Power BI's shapes (the swagger in microsoft/PowerBI-CSharp, reference §1.2), and the
schemas are precise enough for schemathesis to build requests that reach the
handlers' checks (``tests/server/test_fuzz.py`` runs it against a live server).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream import limits
from pbistream.server.openapi_schemas import (
    ANY_OBJECT,
    JSON,
    STR,
    UUID,
    Schema,
    array,
    components,
    ref,
)
from pbistream.server.roles import required_role, role_name
from pbistream.server.ui.series import MAX_POINTS

__all__ = ["openapi_document", "routes"]


def _json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json_body(ref("Error"), description)


_UNAUTHORIZED = _error("No or wrong token: PowerBINotAuthorizedException.")
_NOT_FOUND = _error("No such dataset (PowerBIEntityNotFound) or table (ItemNotFound).")
_BAD_REQUEST = _error("The request is malformed or breaks a rule; the message says which.")
_THROTTLED = {
    "description": "A Power BI rate limit: wait Retry-After seconds.",
    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    "content": {JSON: {"schema": ref("Error")}},
}
_TOO_LARGE = _error("The body is over the size limit (RequestEntityTooLarge).")
_ERRORS: dict[int, Schema] = {
    400: _BAD_REQUEST,
    401: _UNAUTHORIZED,
    403: _error("Missing or wrong Push URL key."),
    404: _NOT_FOUND,
    409: _error("A workspace with that name exists (PowerBIEntityAlreadyExists)."),
    413: _TOO_LARGE,
    429: _THROTTLED,
    507: _error("The server's storage is full; nothing was stored (InsufficientStorage)."),
}
_MAX_ROWS = limits.MAX_ROWS_PER_POST.value


def _path_param(name: str, description: str, *, uuid: bool = True) -> Schema:
    schema: Schema = {"type": "string", "format": "uuid"} if uuid else {"type": "string"}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _query(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        **extra,
        "description": description,
    }


_GROUP = _path_param("groupId", "The workspace id.")
_DATASET = _path_param("datasetId", "The dataset id.")
_TABLE = _path_param("tableName", "The table name (case-sensitive).", uuid=False)
_SEQUENCE = {
    "name": "X-PowerBI-PushData-SequenceNumber",
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "description": "Rows of a request whose number is not above the last one are not stored "
    "again; the 200 then says so in X-PBIStream-Rows-Ignored. Outside Int64: 400.",
}
# The 200 of a push: committed, or (for a sequence number not above the table's)
# skipped, which the two headers report.
_STORED: Schema = {
    "description": "Stored (committed), or skipped for the sequence number (see the headers).",
    "headers": {
        "X-PBIStream-Rows-Ignored": {
            "description": "Rows not stored: the sequence number was not above the table's.",
            "schema": {"type": "integer", "minimum": 0},
        },
        "X-PBIStream-Sequence-Last": {
            "description": "The table's last stored sequence number (with Rows-Ignored).",
            "schema": {"type": "integer"},
        },
    },
}


def _op(
    op_id: str,
    tag: str,
    ok: tuple[str, Schema],
    *,
    params: list[Schema] | None = None,
    body: Schema | None = None,
    errors: tuple[int, ...] = (401,),
    **extra: Any,
) -> Schema:
    """One operation: its id, tag, success answer, parameters, JSON body and error answers."""
    op: Schema = {"operationId": op_id, "tags": [tag], **extra}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    op["responses"] = {ok[0]: ok[1]} | {str(code): _ERRORS[code] for code in errors}
    return op


def _value_list(items: Schema) -> Schema:
    return {"type": "object", "properties": {"value": {"type": "array", "items": items}}}


_OK_EMPTY = {"description": "Done."}


def _rest_paths(prefix: str, tag: str) -> dict[str, Schema]:
    """The push-dataset endpoints under ``/v1.0/myorg`` or a workspace (``groups/{groupId}``)."""
    group = [_GROUP] if "{groupId}" in prefix else []
    g = "InGroup" if group else ""
    base = [*group, _DATASET]
    table = [*base, _TABLE]
    retention = _query(
        "defaultRetentionPolicy",
        {"type": "string", "enum": ["None", "basicFIFO"]},
        "None keeps up to 5,000,000 rows a table; basicFIFO the newest ~200,000.",
    )
    rows_body = {
        "type": "object",
        "required": ["rows"],
        "properties": {"rows": {"type": "array", "items": ref("Row"), "maxItems": _MAX_ROWS}},
    }
    listed = _json_body(_value_list(ref("Dataset")), "The workspace's datasets.")
    tables = _json_body(_value_list(ANY_OBJECT), "The dataset's tables.")
    return {
        f"{prefix}/datasets": {
            "get": _op(f"Datasets_GetDatasets{g}", tag, ("200", listed), params=group),
            "post": _op(
                f"Datasets_PostDataset{g}",
                tag,
                ("201", _json_body(ref("Dataset"), "Created.")),
                params=[*group, retention],
                body=ref("CreateDatasetRequest"),
                errors=(400, 401),
            ),
        },
        f"{prefix}/datasets/{{datasetId}}": {
            "get": _op(
                f"Datasets_GetDataset{g}",
                tag,
                ("200", _json_body(ref("Dataset"), "The dataset.")),
                params=base,
                errors=(401, 404),
            ),
            "delete": _op(
                f"Datasets_DeleteDataset{g}",
                tag,
                ("200", _OK_EMPTY),
                params=base,
                errors=(401, 404),
            ),
        },
        f"{prefix}/datasets/{{datasetId}}/tables": {
            "get": _op(
                f"Datasets_GetTables{g}", tag, ("200", tables), params=base, errors=(401, 404)
            ),
        },
        f"{prefix}/datasets/{{datasetId}}/tables/{{tableName}}": {
            "put": _op(
                f"Datasets_PutTable{g}",
                tag,
                ("200", _json_body(ANY_OBJECT, "The table's new schema.")),
                params=table,
                body=ref("Table"),
                errors=(400, 401, 404),
            ),
        },
        f"{prefix}/datasets/{{datasetId}}/tables/{{tableName}}/rows": {
            "post": _op(
                f"Datasets_PostRows{g}",
                tag,
                ("200", _STORED),
                params=[*table, _SEQUENCE],
                body=rows_body,
                errors=(400, 401, 404, 413, 429, 507),
            ),
            "delete": _op(
                f"Datasets_DeleteRows{g}",
                tag,
                ("200", _OK_EMPTY),
                params=table,
                errors=(400, 401, 404),
            ),
        },
    }


def _execute_queries_path(prefix: str, tag: str) -> dict[str, Schema]:
    """ExecuteQueries(InGroup): the DAX subset over a dataset's rows (docs/api.md)."""
    group = [_GROUP] if "{groupId}" in prefix else []
    g = "InGroup" if group else ""
    body = {
        "type": "object",
        "required": ["queries"],
        "properties": {
            "queries": {
                "type": "array",
                "minItems": 1,
                "maxItems": limits.QUERIES_PER_CALL.value,
                "items": {
                    "type": "object",
                    "required": ["query"],
                    "properties": {"query": {"type": "string", "example": "EVALUATE 'Sales'"}},
                },
            },
            "serializerSettings": {
                "type": "object",
                "properties": {"includeNulls": {"type": "boolean", "default": False}},
            },
            "impersonatedUserName": {"type": "string", "description": "Accepted; no RLS here."},
        },
    }
    error = {"type": "object", "properties": {"code": STR, "message": STR}}
    answer = {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "tables": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "rows": {"type": "array", "items": ANY_OBJECT},
                                    "error": error,
                                },
                            },
                        },
                        "error": error,
                    },
                },
            }
        },
    }
    ok = _json_body(
        answer,
        "The rows, keyed Table[Column] or [Name]. Over a limit (rows, values, 15 MB, "
        "several EVALUATEs): the rows that fit and an error beside them.",
    )
    return {
        f"{prefix}/datasets/{{datasetId}}/executeQueries": {
            "post": _op(
                f"Datasets_ExecuteQueries{g}",
                tag,
                ("200", ok),
                params=[*group, _DATASET],
                body=body,
                errors=(400, 401, 404, 413, 429),
                description="Least role: viewer. Bad DAX: 400 DatasetExecuteQueriesError.",
            ),
        }
    }


def _groups_paths() -> dict[str, Schema]:
    """The workspace endpoints (Power BI's Groups API): list, create, delete."""
    tag = "Workspaces"
    count = {"type": "integer", "minimum": 0, "maximum": 999_999_999}
    listed = {
        "type": "object",
        "properties": {
            "@odata.context": STR,
            "@odata.count": {"type": "integer"},
            "value": array(ref("Group")),
        },
    }
    filter_text = "Only the form name eq 'Workspace name' (other filters are a 400)."
    list_params = [
        _query("$filter", {"type": "string"}, filter_text),
        _query("$top", count, "At most this many workspaces."),
        _query("$skip", count, "Skip this many workspaces first."),
    ]
    v2 = _query("workspaceV2", {"type": "boolean"}, "Accepted and ignored (always a workspace).")
    return {
        "/v1.0/myorg/groups": {
            "get": _op(
                "Groups_GetGroups",
                tag,
                ("200", _json_body(listed, "Named workspaces, then those holding datasets.")),
                params=list_params,
                errors=(400, 401),
            ),
            "post": _op(
                "Groups_CreateGroup",
                tag,
                ("200", _json_body(ref("Group"), "The new workspace.")),
                params=[v2],
                body=ref("CreateGroupRequest"),
                errors=(400, 401, 409, 413),
            ),
        },
        "/v1.0/myorg/groups/{groupId}": {
            "delete": _op(
                "Groups_DeleteGroup",
                tag,
                ("200", _OK_EMPTY),
                params=[_GROUP],
                errors=(401, 404),
                description="Deletes the workspace and every dataset in it.",
            )
        },
    }


def _push_url_path() -> dict[str, Schema]:
    op = _op(
        "PushUrl_PostRows",
        "Push URL",
        ("200", _STORED),
        params=[_path_param("workspaceId", "The server's tenant id."), _DATASET, _SEQUENCE],
        body={"type": "array", "items": ref("Row"), "maxItems": _MAX_ROWS},
        errors=(400, 403, 404, 413, 429, 507),
        summary="A streaming dataset's Push URL: a bare JSON array of rows.",
        description="Other query parameters (ctid, experience) are ignored.",
        security=[{"pushKey": []}, {"bearerAuth": []}],
    )
    return {"/beta/{workspaceId}/datasets/{datasetId}/rows": {"post": op}}


def _api_paths() -> dict[str, Schema]:
    p = "pbistream"
    number = {"type": "number", "minimum": 0}
    cursor = {"type": "integer", "minimum": 0}
    rows_params = [
        _DATASET,
        _query("table", {"type": "string"}, "Only this table's rows."),
        _query("after", cursor, "Rows with a greater id (the cursor)."),
        _query("since", number, "Arrived at or after (epoch seconds)."),
        _query("until", number, "Arrived before (epoch seconds)."),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "Page size."),
        _query("order", {"type": "string", "enum": ["asc", "desc"]}, "Oldest or newest first."),
    ]
    page = {
        "type": "object",
        "properties": {
            "rows": {"type": "array", "items": ref("StoredRow")},
            "next": {"type": "integer", "nullable": True},
        },
    }
    rotated = {"type": "object", "properties": {"id": {}, "pushUrl": {"type": "string"}}}
    live_params = [
        _DATASET,
        _query("after", cursor, "Replay rows with a greater id."),
        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": cursor},
    ]
    stream = {
        "description": "The event stream.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    series_params = [
        _DATASET,
        _query("table", {"type": "string"}, "The table (default: the first)."),
        _query("field", {"type": "array", "items": {"type": "string"}}, "Fields to plot."),
        _query("since", number, "Window start (epoch seconds)."),
        _query("until", number, "Window end (epoch seconds)."),
        _query(
            "points",
            {"type": "integer", "minimum": 2, "maximum": MAX_POINTS},
            "At most this many points.",
        ),
    ]
    d = "dashboard"
    cursor_text = "One row id per dataset, joined by '.', in the order of the datasets."
    board = [_path_param("dashboardId", "The dashboard id.", uuid=False)]
    obj = _json_body(ANY_OBJECT, "The answer.")
    text = {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {}}}
    e404 = (401, 404)
    e400 = (400, 401, 404)
    return {
        "/api/datasets": {
            "get": _op(
                "Api_ListDatasets",
                p,
                ("200", _json_body(_value_list(ref("DatasetSummary")), "Every dataset.")),
            )
        },
        "/api/datasets/{datasetId}": {
            "get": _op(
                "Api_GetDataset",
                p,
                ("200", _json_body(ref("DatasetDetail"), "Details and the Push URL.")),
                params=[_DATASET],
                errors=e404,
            )
        },
        "/api/datasets/{datasetId}/rotate-key": {
            "post": _op(
                "Api_RotateKey",
                p,
                ("200", _json_body(rotated, "The new Push URL; the old key stops at once.")),
                params=[_DATASET],
                errors=e400,
            )
        },
        "/api/datasets/{datasetId}/rows": {
            "get": _op(
                "Api_ReadRows",
                p,
                ("200", _json_body(page, "A page of rows; `next` is the following page's cursor.")),
                params=rows_params,
                errors=e400,
            )
        },
        "/api/datasets/{datasetId}/live": {
            "get": _op(
                "Api_LiveFeed",
                p,
                ("200", stream),
                params=live_params,
                errors=(*e400, 429),
                description="Server-Sent Events: replays rows after `after` / Last-Event-ID, "
                "then streams `rows` events, `: keepalive` every 15 s. It does not end. "
                "429 when the server already serves its cap of live subscriptions.",
            )
        },
        "/api/live": {
            "get": _op(
                "Api_LiveFeedMany",
                d,
                ("200", stream),
                params=[
                    {
                        "name": "dataset",
                        "in": "query",
                        "required": True,
                        "schema": array(UUID, 100) | {"minItems": 1},
                        "style": "form",
                        "explode": True,
                    },
                    _query("cursor", {"type": "string", "pattern": r"^\d+(\.\d+)*$"}, cursor_text),
                    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": STR},
                ],
                errors=(400, 401, 429),
                description="One Server-Sent Events stream for several datasets (the "
                "dashboard's): each event's data names its dataset. It does not end. "
                "429 when the server already serves its cap of live subscriptions.",
            )
        },
        "/api/datasets/{datasetId}/series": {
            "get": _op("Api_Series", d, ("200", obj), params=series_params, errors=e400)
        },
        "/api/dashboards": {
            "get": _op("Api_ListDashboards", d, ("200", obj)),
            "post": _op(
                "Api_CreateDashboard", d, ("201", obj), body=ref("Dashboard"), errors=(400, 401)
            ),
        },
        "/api/dashboards/{dashboardId}": {
            "get": _op("Api_GetDashboard", d, ("200", obj), params=board, errors=e404),
            "put": _op(
                "Api_ReplaceDashboard",
                d,
                ("200", obj),
                params=board,
                body=ref("Dashboard"),
                errors=e400,
            ),
            "delete": _op("Api_DeleteDashboard", d, ("204", _OK_EMPTY), params=board, errors=e404),
        },
        "/metrics": {"get": _op("Metrics", p, ("200", text))},
        "/healthz": {
            "get": _op(
                "Healthz",
                p,
                ("200", _json_body(ANY_OBJECT, "The server answers.")),
                errors=(),
                security=[],
            )
        },
        "/openapi.json": {"get": _op("OpenAPI", p, ("200", obj))},
    }


def _access_paths() -> dict[str, Schema]:
    """Scoped tokens, ``/api/me`` and read-only dashboard links."""
    tag = "access"
    grant = {
        "type": "object",
        "properties": {
            "id": STR,
            "kind": {"type": "string", "enum": ["token", "link"]},
            "role": {"type": "string", "enum": ["viewer", "contributor", "member", "admin"]},
            "name": STR,
            "datasets": {"type": "array", "items": STR, "nullable": True},
            "dashboard": {"type": "string", "nullable": True},
            "createdAt": {"type": "number", "nullable": True},
            "expiresAt": {"type": "number", "nullable": True},
            "lastUsedAt": {"type": "number", "nullable": True},
            "revokedAt": {"type": "number", "nullable": True},
            "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
        },
    }
    expires = {
        "oneOf": [
            {"type": "number", "exclusiveMinimum": True, "minimum": 0},
            {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhdwSMHDW]?\s*$"},
        ],
        "description": "Seconds, or a duration such as 90m, 12h, 30d, 8w.",
    }
    create_token = {
        "type": "object",
        "required": ["role"],
        "additionalProperties": False,
        "properties": {
            "role": grant["properties"]["role"],  # type: ignore[index]
            "datasets": {"type": "array", "items": STR, "minItems": 1, "maxItems": 100},
            "name": {"type": "string", "maxLength": 200},
            "expiresIn": expires,
        },
    }
    create_link = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "maxLength": 200}, "expiresIn": expires},
    }
    secret = {"type": "string", "description": "The secret: shown this once, kept hashed."}
    created = {"allOf": [grant, {"type": "object", "properties": {"token": secret}}]}
    link = {
        "allOf": [
            grant,
            {
                "type": "object",
                "properties": {"token": secret, "url": STR, "kioskUrl": STR},
            },
        ]
    }
    listed = _json_body(_value_list(grant), "The grants; never their secrets.")
    board = _path_param("dashboardId", "The dashboard id.", uuid=False)
    return {
        "/api/me": {
            "get": _op(
                "Api_Me",
                tag,
                ("200", _json_body(ANY_OBJECT, "The caller's grant id, role and scope.")),
            )
        },
        "/api/tokens": {
            "get": _op(
                "Api_ListTokens",
                tag,
                ("200", listed),
                params=[_query("all", {"type": "boolean"}, "Also revoked ones.")],
            ),
            "post": _op(
                "Api_CreateToken",
                tag,
                ("201", _json_body(created, "The new token (`token` is shown only now).")),
                body=create_token,
                errors=(400, 401),
            ),
        },
        "/api/tokens/{tokenId}": {
            "delete": _op(
                "Api_RevokeToken",
                tag,
                ("204", _OK_EMPTY),
                params=[_path_param("tokenId", "The token id.", uuid=False)],
                errors=(400, 401, 404),
                description="Revokes the token at once; its open live feeds end within seconds.",
            )
        },
        "/api/dashboards/{dashboardId}/links": {
            "get": _op("Api_ListLinks", tag, ("200", listed), params=[board], errors=(401, 404)),
            "post": _op(
                "Api_CreateLink",
                tag,
                ("201", _json_body(link, "The read-only link (`token` is shown only now).")),
                params=[board],
                body=create_link,
                errors=(400, 401, 404),
            ),
        },
        "/api/dashboards/{dashboardId}/links/{linkId}": {
            "delete": _op(
                "Api_RevokeLink",
                tag,
                ("204", _OK_EMPTY),
                params=[board, _path_param("linkId", "The link id.", uuid=False)],
                errors=(401, 404),
                description="Revokes the link; its open live feeds end within seconds.",
            )
        },
    }


def _forward_paths() -> dict[str, Schema]:
    """``/api/datasets/{id}/forward``: the relay's configuration (member role to change)."""
    text = {"type": "string", "minLength": 1, "maxLength": 4096}
    body: Schema = {
        "type": "object",
        "required": ["target"],
        "additionalProperties": False,
        "properties": {
            "target": text | {"description": "A Push URL or a REST table's rows URL."},
            "table": text | {"description": "The local table (default: the only one)."},
            "token": text | {"description": "Bearer token for the target (never shown again)."},
            "tenantId": text,
            "clientId": text,
            "clientSecret": text | {"description": "Entra ID secret (never shown again)."},
            "timeScale": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
        },
    }
    answer = _json_body(ANY_OBJECT, "The forward (null when none) and its state.")
    tag = "pbistream"
    return {
        "/api/datasets/{datasetId}/forward": {
            "get": _op(
                "Api_GetForward", tag, ("200", answer), params=[_DATASET], errors=(401, 404)
            ),
            "put": _op(
                "Api_SetForward",
                tag,
                ("200", answer),
                params=[_DATASET],
                body=body,
                errors=(400, 401, 404),
                description="Forward the rows the dataset stores from now on to `target`, "
                "through `pbistream serve`'s forwarder (spooled, paced, exactly once where "
                "sequence numbers are honoured). Replacing a forward keeps its position.",
            ),
            "delete": _op(
                "Api_StopForward", tag, ("200", answer), params=[_DATASET], errors=(401, 404)
            ),
        }
    }


def _alert_paths() -> dict[str, Schema]:
    """``/api/alerts``: tile alert rules and their notification history."""
    a = "alerts"
    number_or_text = {"oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
    seconds = {"type": "number", "minimum": 0}
    rule = {
        "type": "object",
        "properties": {
            "dataset": STR,
            "table": STR,
            "field": STR,
            "op": {"type": "string", "enum": [">", ">=", "<", "<=", "=", "!="], "nullable": True},
            "threshold": number_or_text,
            "category": {"type": "string", "nullable": True},
            "silenceSeconds": {"type": "number", "minimum": 1, "nullable": True},
            "minIntervalSeconds": seconds,
            "webhook": {"type": "string", "nullable": True},
            "format": {"type": "string", "enum": ["json", "teams", "slack"]},
            "name": STR,
            "enabled": {"type": "boolean"},
        },
        "required": ["dataset", "field"],
    }
    rule_id = [_path_param("ruleId", "The alert rule id.")]
    created = _json_body(
        ANY_OBJECT, "The rule with its `id` and, this once, the webhook signing `secret`."
    )
    one = _json_body(ANY_OBJECT, "The rule, with `firing` (its condition holds now).")
    history_params = [
        _query("after", {"type": "integer", "minimum": 0}, "Only events with a larger id."),
        _query("rule", STR, "Only this rule's events."),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "At most this many."),
    ]
    e400 = (400, 401, 404)
    return {
        "/api/alerts": {
            "get": _op(
                "Alerts_List",
                a,
                ("200", _json_body(_value_list(ANY_OBJECT), "Every rule and its state.")),
                params=[_query("dataset", STR, "Only this dataset's rules.")],
            ),
            "post": _op("Alerts_Create", a, ("201", created), body=rule, errors=e400),
        },
        "/api/alerts/events": {
            "get": _op(
                "Alerts_History",
                a,
                ("200", _json_body(_value_list(ANY_OBJECT), "Notifications, newest first.")),
                params=history_params,
                errors=(400, 401),
            )
        },
        "/api/alerts/{ruleId}": {
            "get": _op("Alerts_Get", a, ("200", one), params=rule_id, errors=(401, 404)),
            "put": _op("Alerts_Replace", a, ("200", one), params=rule_id, body=rule, errors=e400),
            "patch": _op(
                "Alerts_Update", a, ("200", one), params=rule_id, body=ANY_OBJECT, errors=e400
            ),
            "delete": _op(
                "Alerts_Delete", a, ("204", _OK_EMPTY), params=rule_id, errors=(401, 404)
            ),
        },
    }


def _surface_paths(prefix: str) -> dict[str, Schema]:
    """The rest of the Power BI surface clients call (:mod:`pbistream.server.powerbi`)."""
    group = [_GROUP] if "{groupId}" in prefix else []
    g = "InGroup" if group else ""
    base = [*group, _DATASET]
    board = [*group, _path_param("dashboardId", "The dashboard id.", uuid=False)]
    tile = [*board, _path_param("tileId", "The tile id.", uuid=False)]
    refresh_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "notifyOption": {
                "type": "string",
                "enum": ["MailOnFailure", "MailOnCompletion", "NoNotification"],
            },
            "retryCount": {"type": "integer"},
            "type": STR,
            "commitMode": STR,
            "maxParallelism": {"type": "integer"},
            "applyRefreshPolicy": {"type": "boolean"},
            "effectiveDate": STR,
            "objects": {"type": "array", "items": ANY_OBJECT},
            "timeout": STR,
        },
    }
    refresh = {
        "type": "object",
        "properties": {
            "requestId": STR,
            "id": {"type": "integer"},
            "refreshType": STR,
            "startTime": STR,
            "endTime": STR,
            "status": STR,
        },
    }
    top = _query(
        "$top", {"type": "integer", "minimum": 1, "maximum": 999_999_999}, "At most this many."
    )
    update_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "targetStorageMode": {"type": "string", "enum": ["Abf", "PremiumFiles"]},
            "queryScaleOutSettings": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "autoSyncReadOnlyReplicas": {"type": "boolean"},
                    "maxReadOnlyReplicas": {"type": "integer", "minimum": -1, "maximum": 64},
                },
            },
        },
    }
    dashboard = {
        "type": "object",
        "properties": {
            "id": STR,
            "displayName": STR,
            "isReadOnly": {"type": "boolean"},
            "webUrl": STR,
            "embedUrl": STR,
        },
    }
    tile_schema = {
        "type": "object",
        "properties": {
            "id": STR,
            "title": STR,
            "embedUrl": STR,
            "embedData": STR,
            "rowSpan": {"type": "integer"},
            "colSpan": {"type": "integer"},
            "datasetId": STR,
        },
    }
    add_body = {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100}},
    }
    tag, boards = "Power BI surface", "Dashboards"
    return {
        f"{prefix}/datasets/{{datasetId}}/refreshes": {
            "post": _op(
                f"Datasets_RefreshDataset{g}",
                tag,
                ("202", {"description": "Accepted (push_refresh=accept only)."}),
                params=base,
                errors=(400, 401, 404),
                description="A push dataset is not refreshable: 400 InvalidRequest unless "
                "the server runs with push_refresh=accept. The body is optional.",
                requestBody={"required": False, "content": {JSON: {"schema": refresh_body}}},
            ),
            "get": _op(
                f"Datasets_GetRefreshHistory{g}",
                tag,
                ("200", _json_body(_value_list(refresh), "Newest first.")),
                params=[*base, top],
                errors=(400, 401, 404),
            ),
        },
        f"{prefix}/datasets/{{datasetId}}/datasources": {
            "get": _op(
                f"Datasets_GetDatasources{g}",
                tag,
                ("200", _json_body(_value_list(ANY_OBJECT), "None for a push dataset.")),
                params=base,
                errors=(401, 404),
            ),
        },
        f"{prefix}/datasets/{{datasetId}}": {
            "patch": _op(
                f"Datasets_UpdateDataset{g}",
                tag,
                ("200", _OK_EMPTY),
                params=base,
                body=update_body,
                errors=(400, 401, 404),
                description="Valid bodies are accepted and change nothing (one storage mode).",
            ),
        },
        f"{prefix}/dashboards": {
            "get": _op(
                f"Dashboards_GetDashboards{g}",
                boards,
                ("200", _json_body(_value_list(dashboard), "The workspace's dashboards.")),
                params=group,
            ),
            "post": _op(
                f"Dashboards_AddDashboard{g}",
                boards,
                ("200", _json_body(dashboard, "The new empty dashboard.")),
                params=group,
                body=add_body,
                errors=(400, 401),
            ),
        },
        f"{prefix}/dashboards/{{dashboardId}}": {
            "get": _op(
                f"Dashboards_GetDashboard{g}",
                boards,
                ("200", _json_body(dashboard, "The dashboard.")),
                params=board,
                errors=(401, 404),
            ),
        },
        f"{prefix}/dashboards/{{dashboardId}}/tiles": {
            "get": _op(
                f"Dashboards_GetTiles{g}",
                boards,
                ("200", _json_body(_value_list(tile_schema), "The dashboard's tiles.")),
                params=board,
                errors=(401, 404),
            ),
        },
        f"{prefix}/dashboards/{{dashboardId}}/tiles/{{tileId}}": {
            "get": _op(
                f"Dashboards_GetTile{g}",
                boards,
                ("200", _json_body(tile_schema, "The tile.")),
                params=tile,
                errors=(401, 404),
            ),
        },
    }


def _with_roles(paths: dict[str, Schema]) -> dict[str, Schema]:
    """State each operation's least role, from THE role table (:mod:`pbistream.server.roles`)."""
    for template, operations in paths.items():
        concrete = re.sub(r"\{[^}]+\}", "x", template)
        for method, op in operations.items():
            role = role_name(required_role(method.upper(), concrete))
            op["x-pbistream-role"] = role
            said = "Public: no token needed." if role == "public" else f"Needs the {role} role."
            op["description"] = f"{op['description']} {said}" if op.get("description") else said
            if role != "public":
                op["responses"].setdefault("403", _error(f"The token's role is below {role}."))
    return paths


def openapi_document(server_url: str) -> dict[str, Any]:
    """The OpenAPI document, with ``server_url`` as its only server.

    Args:
        server_url: The base URL clients reach this server at.
    """
    paths: dict[str, Schema] = {}
    paths |= _rest_paths("/v1.0/myorg", "Push datasets")
    paths |= _rest_paths("/v1.0/myorg/groups/{groupId}", "Push datasets in a workspace")
    paths |= _groups_paths()
    paths |= _push_url_path()
    paths |= _api_paths()
    paths |= _alert_paths()
    for prefix in ("/v1.0/myorg", "/v1.0/myorg/groups/{groupId}"):
        for path, item in _surface_paths(prefix).items():
            paths[path] = paths.get(path, {}) | item
    paths |= _execute_queries_path("/v1.0/myorg", "Push datasets")
    paths |= _execute_queries_path("/v1.0/myorg/groups/{groupId}", "Push datasets in a workspace")
    paths |= _forward_paths()
    paths |= _access_paths()
    _with_roles(paths)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pbistream",
            "version": "0.1.0",
            "description": (
                "A self-hosted server speaking the Power BI push-dataset REST API "
                "(also under /beta/myorg), the streaming Push URL, and pbistream's own "
                "/api endpoints. Errors are Power BI-shaped: "
                '{"error": {"code": "...", "message": "..."}}.'
            ),
        },
        "servers": [{"url": server_url.rstrip("/")}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": components(),
    }


async def openapi_endpoint(request: Request) -> Response:
    """``GET /openapi.json``: the document, naming this server as seen by the caller."""
    body = orjson.dumps(openapi_document(str(request.base_url)))
    return Response(body, media_type=JSON)


routes: list[BaseRoute] = [Route("/openapi.json", openapi_endpoint, methods=["GET"])]
