"""``pbistream serve``: a self-hosted service that speaks the Power BI push API.

Build the app with :func:`create_app` from :class:`Settings` and a storage backend
(:func:`pbistream.storage.open_storage`). ``create_app`` is imported on first use, so
``pbistream.server.settings`` (and ``pbistream --help``) work without the ``server``
extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pbistream.server.settings import Settings

if TYPE_CHECKING:
    from pbistream.server.app import create_app

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from pbistream.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
