"""Where the server keeps datasets and rows: :func:`open_storage` picks the backend.

============================================  ==========================================
target                                        backend
============================================  ==========================================
a directory (``./data``)                      SQLite file ``DIR/pbistream.db`` (default)
``sqlite:///path/to/file.db``                 SQLite file at that path
``postgresql://...`` / ``postgres://...``     PostgreSQL (``pip install 'pbistream[postgres]'``)
============================================  ==========================================
"""

from __future__ import annotations

from pathlib import Path

from pbistream.exceptions import ConfigError, require_extra
from pbistream.storage.base import Dashboard, InsertResult, Storage, StoredRow

__all__ = ["Dashboard", "InsertResult", "Storage", "StoredRow", "open_storage"]

#: The SQLite file's name inside a data directory.
SQLITE_FILENAME = "pbistream.db"


def open_storage(target: str | Path) -> Storage:
    """Open (creating if needed) the storage a data directory or URL names.

    Args:
        target: A directory, ``sqlite:///path/file.db``, or a PostgreSQL URL.

    Raises:
        ConfigError: An unknown URL scheme, a path that is not a directory, or the
            PostgreSQL backend without its extra installed.
    """
    text = str(target)
    scheme, sep, rest = text.partition("://")
    if not sep or len(scheme) < 2:  # a plain path (or a Windows drive letter)
        directory = Path(text)
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"data dir {text!r} is a file; give a directory or sqlite:///{text}")
        from pbistream.storage.sqlite import SQLiteStorage

        return SQLiteStorage(directory / SQLITE_FILENAME)
    scheme = scheme.lower()
    if scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db (SQLAlchemy's spelling).
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise ConfigError("sqlite:// URL has no file path; use sqlite:///path/to/file.db")
        from pbistream.storage.sqlite import SQLiteStorage

        return SQLiteStorage(Path(path))
    if scheme in ("postgresql", "postgres"):
        # Fails here, at the point of use, with the exact pip command to run.
        require_extra("psycopg", "postgres")
        require_extra("psycopg_pool", "postgres")
        from pbistream.storage.postgres import PostgresStorage

        store: Storage = PostgresStorage(text)
        return store
    raise ConfigError(
        # Name only the scheme: the rest of a URL may carry a password.
        f"unknown storage URL scheme {scheme!r}; "
        "use a directory, sqlite:///file.db or postgresql://..."
    )
