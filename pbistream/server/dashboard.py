"""The browser dashboards: login, UI pages, dashboard CRUD and the downsampled series.

The route list grows as the UI lands; the server core wires :data:`routes` into the app.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
