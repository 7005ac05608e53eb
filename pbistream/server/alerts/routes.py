"""``/api/alerts``: create, list, read, edit and delete rules; the notification history.

``POST /api/alerts`` answers 201 with the rule, including its ``id`` and, this once,
the ``secret`` that signs its webhook bodies. ``GET /api/alerts/events`` lists the
notifications newest first (``?after=ID`` for the ones since the last look: the UI's
badge).

A token limited to some datasets reaches only their rules and notifications: another
dataset's rule answers 404, as if it did not exist (its webhook URL is often a secret).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.server.alerts.rules import AlertRule, RuleError, parse_rule, rule_from_stored
from pbistream.server.alerts.service import AlertService
from pbistream.server.auth import principal_of
from pbistream.server.errors import BadRequest, EntityNotFound
from pbistream.server.ui.http import api_endpoint, json_response, read_json_body
from pbistream.storage.base import Storage

__all__ = ["MAX_BODY_BYTES", "MAX_RULES", "routes"]

MAX_BODY_BYTES = 16 * 1024
#: Rules one server keeps at most (1,000 on one dataset cost little: see BENCHMARKS.md).
MAX_RULES = 10_000
MAX_EVENTS_PAGE = 500


def _service(request: Request) -> AlertService:
    service: AlertService = request.app.state.alerts
    return service


def _rule_json(
    service: AlertService, rule: AlertRule, *, with_secret: bool = False
) -> dict[str, Any]:
    return {**rule.to_json(with_secret=with_secret), **service.state(rule.id)}


def _visible(request: Request) -> Callable[[str], bool]:
    """Whether the caller may reach a dataset (a scoped token only its own)."""
    principal = principal_of(request)
    if principal is None:
        return lambda _dataset: True
    return principal.allows_dataset


def _out_of_scope(dataset_id: str) -> EntityNotFound:
    return EntityNotFound(
        f"Dataset {dataset_id} was not found, or not within this token's datasets."
    )


async def _parse(request: Request, body: Any, previous: AlertRule | None) -> AlertRule:
    storage: Storage = request.app.state.storage
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object describing the rule.")
    dataset_id = body.get("dataset", previous.dataset if previous else None)
    if not isinstance(dataset_id, str) or not dataset_id:
        raise BadRequest("'dataset' (the dataset id) is required.", code="InvalidAlertRule")
    if not _visible(request)(dataset_id):
        raise _out_of_scope(dataset_id)
    dataset = await run_in_threadpool(storage.get_dataset, dataset_id)
    if dataset is None:
        raise EntityNotFound(f"Dataset {dataset_id} was not found.")
    if body.get("table") in (None, "") and len(dataset.tables) == 1:
        body = {**body, "table": dataset.tables[0].name}
    table = next((t for t in dataset.tables if t.name == body.get("table")), None)
    if table is None:
        names = ", ".join(t.name for t in dataset.tables)
        raise BadRequest(
            f"Dataset {dataset.name!r} has no table {body.get('table')!r} (it has: {names}).",
            code="InvalidAlertRule",
        )
    columns = {c.name: c.data_type.value for c in table.columns}
    try:
        return parse_rule(body, columns=columns, dataset=dataset_id, previous=previous)
    except RuleError as exc:
        raise BadRequest(str(exc), code="InvalidAlertRule") from None


async def _existing(request: Request) -> AlertRule:
    storage: Storage = request.app.state.storage
    rule_id = request.path_params["rule_id"]
    for doc in await run_in_threadpool(storage.list_alert_rules):
        if doc.get("id") == rule_id and _visible(request)(str(doc.get("dataset", ""))):
            return rule_from_stored(doc)
    raise EntityNotFound(f"No alert rule with id {rule_id!r}.")


@api_endpoint
async def collection(request: Request) -> Response:
    """``GET /api/alerts`` lists rules (``?dataset=ID`` filters); ``POST`` creates one (201)."""
    storage: Storage = request.app.state.storage
    service = _service(request)
    if request.method == "GET":
        wanted = request.query_params.get("dataset")
        visible = _visible(request)
        docs = await run_in_threadpool(storage.list_alert_rules)
        rules = [rule_from_stored(d) for d in docs]
        rules = [r for r in rules if visible(r.dataset) and (not wanted or r.dataset == wanted)]
        return json_response({"value": [_rule_json(service, r) for r in rules]})
    body = await read_json_body(request, MAX_BODY_BYTES)
    rule = await _parse(request, body, None)
    if len(await run_in_threadpool(storage.list_alert_rules)) >= MAX_RULES:
        raise BadRequest(
            f"At most {MAX_RULES:,} alert rules; delete one first.", code="TooManyAlertRules"
        )
    await run_in_threadpool(storage.save_alert_rule, rule.stored_json())
    service.reload()
    return json_response(_rule_json(service, rule, with_secret=True), status_code=201)


@api_endpoint
async def item(request: Request) -> Response:
    """``GET``, ``PUT`` (replace), ``PATCH`` (change some properties) or ``DELETE`` a rule."""
    storage: Storage = request.app.state.storage
    service = _service(request)
    rule = await _existing(request)
    if request.method == "GET":
        return json_response(_rule_json(service, rule))
    if request.method == "DELETE":
        await run_in_threadpool(storage.delete_alert_rule, rule.id)
        service.reload()
        return Response(status_code=204)
    body = await read_json_body(request, MAX_BODY_BYTES)
    if request.method == "PATCH" and isinstance(body, dict):
        current = rule.to_json()
        for derived in ("kind", "condition", "createdAt", "updatedAt", "id"):
            current.pop(derived, None)
        if "silenceSeconds" in body and body["silenceSeconds"] is not None:
            current.update(op=None, threshold=None)
        if body.get("op") is not None:
            current["silenceSeconds"] = None
        body = {**current, **body}
    changed = await _parse(request, body, rule)
    await run_in_threadpool(storage.save_alert_rule, changed.stored_json())
    service.reload()
    return json_response(_rule_json(service, changed))


@api_endpoint
async def events(request: Request) -> Response:
    """``GET /api/alerts/events[?after=ID][&rule=ID][&limit=N]``: notifications, newest first."""
    storage: Storage = request.app.state.storage
    query = request.query_params
    try:
        after = int(query["after"]) if query.get("after") else None
        limit = int(query.get("limit", "100"))
    except ValueError:
        raise BadRequest("'after' and 'limit' must be whole numbers.") from None
    if after is not None and not 0 <= after < 2**63:
        raise BadRequest("'after' must be an event id: a whole number from 0 to 2**63-1.")
    if not 1 <= limit <= MAX_EVENTS_PAGE:
        raise BadRequest(f"'limit' must be from 1 to {MAX_EVENTS_PAGE}.")
    visible = _visible(request)
    principal = principal_of(request)
    limited = principal is not None and principal.limited
    # A scoped token's page is cut from the newest MAX_EVENTS_PAGE, then filtered.
    fetch = MAX_EVENTS_PAGE if limited else limit
    found = await run_in_threadpool(
        lambda: storage.list_alert_events(rule_id=query.get("rule"), after_id=after, limit=fetch)
    )
    found = [e for e in found if visible(str(e.payload.get("dataset", "")))][:limit]
    return json_response(
        {
            "value": [
                {
                    **e.payload,
                    "event": e.id,
                    "state": e.kind,
                    "delivery": e.delivery,
                    "attempts": e.attempts,
                    "lastError": e.last_error,
                }
                for e in found
            ]
        }
    )


routes: list[BaseRoute] = [
    Route("/api/alerts", collection, methods=["GET", "POST"]),
    Route("/api/alerts/events", events, methods=["GET"]),
    Route("/api/alerts/{rule_id}", item, methods=["GET", "PUT", "PATCH", "DELETE"]),
]
