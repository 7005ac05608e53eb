"""pbistream: push live rows to Power BI without losing one, or serve the same API yourself.

The public API is what ``__all__`` lists; everything else is private or lives in a
subpackage (``pbistream.server``, ``pbistream.storage``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from pbistream.client import (
    AsyncClient,
    BatchOptions,
    BufferOptions,
    Client,
    PacingOptions,
    RetryOptions,
)
from pbistream.exceptions import (
    AuthError,
    BufferFullError,
    ClientClosedError,
    ConfigError,
    PbiStreamError,
    PushError,
    PushHTTPStatusError,
    RateLimitedError,
    SchemaError,
    SpoolError,
    SpoolFullError,
    UndeliveredRowsError,
    ValidationError,
)
from pbistream.schema import Column, Dataset, Mode, Retention, Schema, Table
from pbistream.values import DataType, RowError

try:
    __version__ = version("pbistream")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = [
    "AsyncClient",
    "AuthError",
    "BatchOptions",
    "BufferFullError",
    "BufferOptions",
    "Client",
    "ClientClosedError",
    "Column",
    "ConfigError",
    "DataType",
    "Dataset",
    "Mode",
    "PacingOptions",
    "PbiStreamError",
    "PushError",
    "PushHTTPStatusError",
    "RateLimitedError",
    "Retention",
    "RetryOptions",
    "RowError",
    "Schema",
    "SchemaError",
    "SpoolError",
    "SpoolFullError",
    "Table",
    "UndeliveredRowsError",
    "ValidationError",
    "__version__",
]
