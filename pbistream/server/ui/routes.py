"""The browser dashboards: login, the UI, dashboard documents and downsampled series.

One concept per module:

* :mod:`~pbistream.server.ui.pages`: ``/login``, the ``/ui/`` shell, ``/static`` assets.
* :mod:`~pbistream.server.ui.dashboards`: ``/api/dashboards`` CRUD.
* :mod:`~pbistream.server.ui.tiles`: what a valid dashboard document is.
* :mod:`~pbistream.server.ui.series`: ``/api/datasets/{id}/series`` (server-side downsampling).
* :mod:`~pbistream.server.ui.live`: ``/api/live``, one live feed for many datasets.

The server core wires :data:`routes` into the app and lets :data:`PUBLIC_PATHS` past
the auth middleware (those pages answer a friendly sign-in hint themselves).
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from pbistream.server.ui import dashboards as ui_dashboards
from pbistream.server.ui import live as ui_live
from pbistream.server.ui import pages as ui_pages
from pbistream.server.ui import series as ui_series

__all__ = ["PUBLIC_PATHS", "routes"]

PUBLIC_PATHS = ui_pages.PUBLIC_PATHS

routes: list[BaseRoute] = [
    *ui_pages.routes,
    *ui_dashboards.routes,
    *ui_series.routes,
    *ui_live.routes,
]
