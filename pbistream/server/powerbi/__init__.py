"""The rest of the Power BI REST surface that clients call, beyond push datasets.

Automation tools and client libraries call more than the push-dataset operations:
they refresh a dataset after pushing, read its refresh history and data sources,
patch its settings, and list or add dashboards. Each module here answers one family
with Power BI's shapes and status codes, decided from Microsoft's documentation; the
fidelity table in docs/compatibility.md says what Power BI does and what pbistream
does, with the source:

* :mod:`~pbistream.server.powerbi.refreshes`: Refresh Dataset, Get Refresh History.
* :mod:`~pbistream.server.powerbi.dataset_settings`: Update Dataset (PATCH), Get Datasources.
* :mod:`~pbistream.server.powerbi.dashboards`: Dashboards (list, get, add, tiles) over
  pbistream's own dashboards, the ones the web UI draws.

Every route is served under ``/v1.0/myorg``, ``/v1.0/myorg/groups/{groupId}`` and the
``/beta/myorg`` twins, like the push-dataset routes.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from pbistream.server.powerbi import dashboards, dataset_settings, refreshes

__all__ = ["ROOTS", "routes"]

#: The API roots every Power BI route is served under.
ROOTS = tuple(
    root
    for version in ("v1.0", "beta")
    for root in (f"/{version}/myorg", f"/{version}/myorg/groups/{{group_id}}")
)

routes: list[BaseRoute] = [
    route
    for root in ROOTS
    for module in (refreshes, dataset_settings, dashboards)
    for route in module.routes_under(root)
]
