"""Every error pbistream raises, in one tree users can catch at the level they need.

::

    PbiStreamError                  anything pbistream raises on purpose
    ├── ValidationError             a row broke a column rule (names row, field, rule)
    ├── SchemaError                 a dataset/table definition is not valid
    ├── ConfigError                 a setting, option or missing extra
    ├── SpoolError                  the on-disk spool cannot be used
    │   └── SpoolFullError          the spool reached its size cap
    ├── BufferFullError             the in-memory buffer stayed full past the timeout
    ├── ClientClosedError           push() after close()
    └── PushError                   a push could not be delivered
        ├── AuthError               401/403: wrong key or token
        ├── RateLimitedError        429, with ``retry_after`` seconds
        ├── PushHTTPStatusError     any other unexpected status, with ``status`` and ``body``
        └── UndeliveredRowsError    close() ended with rows undelivered and no spool to
                                    keep them (``rows``; ``path``: the unsent-rows file)

Server-side errors (Power BI-shaped bodies) live in ``pbistream.server.errors``.
"""

from __future__ import annotations

from pbistream.values import RowError

__all__ = [
    "AuthError",
    "BufferFullError",
    "ClientClosedError",
    "ConfigError",
    "PbiStreamError",
    "PushError",
    "PushHTTPStatusError",
    "RateLimitedError",
    "SchemaError",
    "SpoolError",
    "SpoolFullError",
    "UndeliveredRowsError",
    "ValidationError",
]


class PbiStreamError(Exception):
    """The base of every error pbistream raises on purpose."""


class ValidationError(PbiStreamError):
    """One or more rows broke a column rule; ``errors`` names each row, field and rule."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        first = str(errors[0]) if errors else "no rows"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


class SchemaError(PbiStreamError):
    """A dataset or table definition is not valid."""


class ConfigError(PbiStreamError):
    """A setting or option is wrong, or an optional extra is not installed."""


class SpoolError(PbiStreamError):
    """The on-disk spool cannot be opened or written."""


class SpoolFullError(SpoolError):
    """The spool reached its size cap and its policy is to refuse new rows."""


class BufferFullError(PbiStreamError):
    """The in-memory buffer stayed full for longer than the push timeout."""


class ClientClosedError(PbiStreamError):
    """The client was used after close()."""


class PushError(PbiStreamError):
    """A batch could not be delivered."""


class AuthError(PushError):
    """The server refused the key or token (401 or 403)."""


class RateLimitedError(PushError):
    """The server answered 429; ``retry_after`` is its Retry-After in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PushHTTPStatusError(PushError):
    """The server answered an unexpected status; ``status`` and ``body`` say what."""

    def __init__(self, message: str, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def require_extra(module: str, extra: str) -> None:
    """Raise ConfigError naming the pip command when an optional dependency is missing.

    The module is imported (not merely looked up), so a broken install is caught
    here too, with the same one-line advice instead of a traceback later.

    Raises:
        ConfigError: ``module`` cannot be imported.
    """
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"this needs the {extra!r} extra: pip install 'pbistream[{extra}]'"
        ) from None


class UndeliveredRowsError(PushError):
    """``close()`` (or leaving a ``with`` block) ended with rows not delivered, no spool.

    Attributes:
        rows: How many rows were not delivered.
        path: The JSON Lines file they were written to (one row a line, ready for
            ``pbistream push URL --file PATH``), or ``None`` if it could not be written.
    """

    def __init__(self, message: str, rows: int, path: str | None) -> None:
        super().__init__(message)
        self.rows = rows
        self.path = path
