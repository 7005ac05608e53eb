"""``POST .../datasets/{id}/executeQueries``: Power BI's DAX read API, a thin adapter.

The request is checked here; the query is parsed and planned by
:mod:`pbistream.dax` and run by the storage (:meth:`Storage.execute_plan`), in one
SQL statement. The answer has Power BI's shape::

    {"results": [{"tables": [{"rows": [{"Sales[Region]": "East", "[Total]": 12.5}]}]}]}

Limits (reference §8, :mod:`pbistream.limits`): one query per call and a
well-formed body, else 400; a DAX error is 400 ``DatasetExecuteQueriesError``
naming the token and its position; more than one EVALUATE, more rows or values
than allowed, or more than 15 MB answer 200 with the rows that fit and an
``error`` beside them, as documented; 120 requests a minute per user, else 429.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.dax import DaxError, QueryPlan, plan_dax
from pbistream.schema import Dataset
from pbistream.server.auth import bearer_token
from pbistream.server.errors import BadRequest, DaxQueryFailed, PbiJSONResponse, TooManyRequests
from pbistream.server.rest import _dataset, _json_body, _run, _settings, _storage
from pbistream.server.settings import Settings
from pbistream.storage.base import QueryError

__all__ = ["QueryRate", "routes"]

_LIMIT_CODE = "DatasetExecuteQueriesError"


class QueryRate:
    """The sliding minute of executeQueries requests, per user (limits.QUERIES_PER_MINUTE).

    Args:
        clock: Seconds, monotonic; injected by tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def admit(self, user: str, settings: Settings) -> None:
        """Count one request of ``user``, or raise 429 with the seconds to wait."""
        if not settings.limits:
            return
        now = self._clock()
        window = settings.scaled(60.0)
        seen = self._seen.setdefault(user, deque())
        while seen and seen[0] <= now - window:
            seen.popleft()
        if len(seen) >= settings.queries_per_minute:
            raise TooManyRequests(
                f"More than {settings.queries_per_minute} executeQueries requests in a minute "
                "for this user; retry later.",
                retry_after=seen[0] + window - now,
                reason="queries_per_minute",
            )
        seen.append(now)
        if len(self._seen) > 10_000:  # forget idle users rather than grow without bound
            for key in [k for k, v in self._seen.items() if not v or v[-1] <= now - window]:
                del self._seen[key]


def _user(request: Request) -> str:
    """Who is asking: a hash of the bearer token or session cookie (never the secret)."""
    secret = bearer_token(request) or request.cookies.get("pbistream_session", "")
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _check_request(body: Any) -> tuple[str, bool]:
    """The query text and includeNulls, or a 400 naming what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object with a 'queries' list.")
    queries = body.get("queries")
    if not isinstance(queries, list) or not queries:
        raise BadRequest('\'queries\' must be a list holding one {"query": "EVALUATE ..."}.')
    if len(queries) > 1:
        raise BadRequest(
            f"'queries' holds {len(queries)} queries; executeQueries runs one query per call."
        )
    first = queries[0]
    if not isinstance(first, dict) or not isinstance(first.get("query"), str):
        raise BadRequest("queries[0] must be an object with a 'query' string.")
    if not first["query"].strip():
        raise BadRequest("queries[0].query is empty; send a DAX query such as EVALUATE 'Table'.")
    settings = body.get("serializerSettings")
    include_nulls = False
    if settings is not None:
        if not isinstance(settings, dict):
            raise BadRequest("'serializerSettings' must be an object.")
        flag = settings.get("includeNulls", False)
        if flag is not None and not isinstance(flag, bool):
            raise BadRequest("'serializerSettings.includeNulls' must be true or false.")
        include_nulls = bool(flag)
    user = body.get("impersonatedUserName")
    if user is not None and not isinstance(user, str):
        raise BadRequest("'impersonatedUserName' must be a string (a UPN).")
    return first["query"], include_nulls


def _plan(text: str, dataset: Dataset) -> tuple[QueryPlan, int]:
    try:
        return plan_dax(text, dataset.tables)
    except DaxError as exc:
        raise DaxQueryFailed(str(exc)) from None


def _row_limit(plan: QueryPlan, settings: Settings) -> int:
    """Rows allowed: 100,000, or fewer when 1,000,000 values come first (wide results)."""
    width = max(1, len(plan.columns))
    return max(1, min(settings.query_max_rows, settings.query_max_values // width))


def _limit_error(message: str) -> dict[str, str]:
    return {"code": _LIMIT_CODE, "message": message}


async def execute_queries(request: Request) -> Response:
    """ExecuteQueries(InGroup): run one DAX query over the dataset's stored rows."""
    settings = _settings(request)
    rate: QueryRate = request.app.state.query_rate
    rate.admit(_user(request), settings)
    dataset = await _dataset(request)
    text, include_nulls = _check_request(await _json_body(request))
    plan, statements = await _run(_plan, text, dataset)
    allowed = _row_limit(plan, settings)
    try:
        records = await _run(
            lambda: _storage(request).execute_plan(dataset.id, plan, max_rows=allowed + 1)
        )
    except QueryError as exc:
        raise DaxQueryFailed(str(exc)) from None
    table: dict[str, Any] = {}
    rows, table_error = _rows(plan, records, allowed, include_nulls, settings.query_max_bytes)
    table["rows"] = rows
    if table_error is not None:
        table["error"] = table_error
    result: dict[str, Any] = {"tables": [table]}
    if statements > 1:
        result["error"] = _limit_error("More than one result table in a query")
    return PbiJSONResponse({"results": [result]})


def _rows(
    plan: QueryPlan,
    records: list[tuple[Any, ...]],
    allowed: int,
    include_nulls: bool,
    max_bytes: int,
) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    keys = [key for key, _ in plan.columns]
    rows: list[dict[str, Any]] = []
    size = 0
    for record in records[:allowed]:
        if include_nulls:
            row = dict(zip(keys, record, strict=True))
        else:
            row = {k: v for k, v in zip(keys, record, strict=True) if v is not None}
        if any(isinstance(v, float) and not math.isfinite(v) for v in row.values()):
            row = {
                k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in row.items()
            }
        rows.append(row)
        size += len(orjson.dumps(row)) + 1
        if size > max_bytes:
            # Documented: the row that crosses 15 MB is finished, nothing more is written.
            return rows, _limit_error(
                f"The query result is over {max_bytes:,} bytes; the rows after it are left out."
            )
    if len(records) > allowed:
        return rows, _limit_error(f"More than {allowed} rows in a query result")
    return rows, None


def _routes_under(root: str) -> list[BaseRoute]:
    return [
        Route(f"{root}/datasets/{{dataset_id}}/executeQueries", execute_queries, methods=["POST"])
    ]


# Also under /beta, like every push-dataset endpoint (rest.py), for old scripts.
routes: list[BaseRoute] = [
    route
    for version in ("v1.0", "beta")
    for root in (f"/{version}/myorg", f"/{version}/myorg/groups/{{group_id}}")
    for route in _routes_under(root)
]
