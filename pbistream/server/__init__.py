"""``pbistream serve``: a self-hosted service that speaks the Power BI push API.

Build the app with :func:`create_app` from :class:`Settings` and a storage backend
(:func:`pbistream.storage.open_storage`).
"""

from __future__ import annotations

from pbistream.server.app import create_app
from pbistream.server.settings import Settings

__all__ = ["Settings", "create_app"]
