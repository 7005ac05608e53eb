"""What a limited principal (a token scoped to datasets, a dashboard link) may reach.

The role table (:mod:`pbistream.server.roles`) says whether a role may call a route;
this says whether a *limited* principal may call it on this dataset or dashboard:

* a path naming a dataset outside the scope answers 404, as if it did not exist;
* a path naming a dashboard answers 404 unless it is the link's own dashboard, or
  (for a scoped token) every dataset its tiles show is in scope;
* ``/api/live?dataset=...`` likewise for each dataset named;
* a listing (``GET /api/datasets``, ``GET /v1.0/myorg/datasets``, dashboards) is cut
  down to what the principal may see;
* a route whose handler checks the datasets itself (``scoped_by_handler``: alert
  rules, whose dataset is in the body) is left to it;
* any other write (one that names no dataset or dashboard, such as creating a
  dataset or a workspace) is refused with 403: a limited token cannot widen itself.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio.to_thread
import orjson
from starlette.requests import HTTPConnection

from pbistream.server.access.gate import Principal, dashboard_datasets
from pbistream.server.errors import EntityNotFound, Forbidden
from pbistream.server.roles import RuleMatch
from pbistream.storage.base import Storage

__all__ = ["Keep", "check_scope", "filter_listing"]

#: Decides whether a listed item (by its id) stays in a listing.
Keep = Callable[[str], bool]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _dashboard_allowed(principal: Principal, dashboard_id: str, storage: Storage) -> bool:
    if principal.kind == "link":
        return dashboard_id == principal.dashboard
    found = await anyio.to_thread.run_sync(storage.get_dashboard, dashboard_id)
    if found is None:
        return True  # let the handler answer its own 404
    return all(principal.allows_dataset(d) for d in dashboard_datasets(found.tiles))


async def _visible_dashboards(principal: Principal, storage: Storage) -> frozenset[str]:
    if principal.kind == "link":
        return frozenset({principal.dashboard or ""})
    boards = await anyio.to_thread.run_sync(storage.list_dashboards)
    return frozenset(
        b.id
        for b in boards
        if all(principal.allows_dataset(d) for d in dashboard_datasets(b.tiles))
    )


async def check_scope(
    principal: Principal, match: RuleMatch, connection: HTTPConnection, storage: Storage
) -> Keep | None:
    """Refuse what a limited principal may not reach; return a listing filter if needed.

    Raises:
        EntityNotFound: The path names a dataset or dashboard outside the scope.
        Forbidden: A write that names neither.
    """
    if not principal.limited or match.rule is None:
        return None
    rule = match.rule
    missing = EntityNotFound("Not found, or not within this token's datasets.")
    if match.dataset is not None and not principal.allows_dataset(match.dataset):
        raise missing
    if match.dashboard is not None and not await _dashboard_allowed(
        principal, match.dashboard, storage
    ):
        raise missing
    if rule.query_datasets is not None:
        named = connection.query_params.getlist(rule.query_datasets)
        if not all(principal.allows_dataset(d) for d in named):
            raise missing
    if rule.lists == "datasets":
        return principal.allows_dataset
    if rule.lists == "dashboards":
        return (await _visible_dashboards(principal, storage)).__contains__
    if rule.scoped_by_handler:
        return None
    names_nothing = match.dataset is None and match.dashboard is None
    if names_nothing and connection.scope.get("method", "GET") not in _SAFE_METHODS:
        raise Forbidden(
            "This token is limited to some datasets (or one dashboard); it cannot make "
            "a change that names none of them."
        )
    return None


def filter_listing(body: bytes, keep: Keep) -> bytes:
    """``{"value": [...]}`` with only the items whose ``id`` ``keep`` accepts.

    Anything else (an error body, another shape) passes unchanged.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict) or not isinstance(data.get("value"), list):
        return body
    data["value"] = [
        item for item in data["value"] if isinstance(item, dict) and keep(str(item.get("id", "")))
    ]
    if "@odata.count" in data:
        data["@odata.count"] = len(data["value"])
    return orjson.dumps(data)
