"""The browser dashboards: login, the UI shell, dashboard documents, series and the live feed.

:mod:`~pbistream.server.ui.routes` lists the routes the app mounts.
"""
