"""Access grants (API tokens, dashboard links) in both SQL backends: one table, six methods.

Only the SHA-256 of a grant's secret is stored (:mod:`pbistream.grants`), in a unique
column that is also the lookup key: finding a grant by its hash reveals nothing a
timing probe could use, since the hash of a 256-bit random secret cannot be steered.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import orjson

from pbistream.storage.base import Grant

__all__ = ["GrantRecords", "grants_schema"]

_COLUMNS = (
    "id, kind, role, secret_hash, name, datasets, dashboard_id, "
    "created_at, expires_at, last_used_at, revoked_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM access_grants"  # noqa: S608


def grants_schema(real: str) -> str:
    """The ``access_grants`` table in one backend's float type (``IF NOT EXISTS``: safe to rerun).

    It is run at every start, so a data dir created before grants existed gains the
    table without a schema version bump.
    """
    return f"""
CREATE TABLE IF NOT EXISTS access_grants (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    datasets TEXT,
    dashboard_id TEXT,
    created_at {real} NOT NULL,
    expires_at {real},
    last_used_at {real},
    revoked_at {real}
);
"""


def _grant(record: Iterable[Any]) -> Grant:
    (gid, kind, role, digest, name, datasets, dashboard, created, expires, used, revoked) = record
    return Grant(
        id=str(gid),
        kind=str(kind),
        role=str(role),
        secret_hash=str(digest),
        name=str(name),
        datasets=tuple(orjson.loads(datasets)) if datasets is not None else None,
        dashboard_id=dashboard,
        created_at=float(created),
        expires_at=None if expires is None else float(expires),
        last_used_at=None if used is None else float(used),
        revoked_at=None if revoked is None else float(revoked),
    )


class GrantRecords:
    """The grant methods of :class:`~pbistream.storage.base.Storage`, for ``SQLStorage``."""

    def _writing(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _exec(self, conn: Any, query: str, params: Iterable[Any] = ()) -> Any:
        raise NotImplementedError

    def save_grant(self, grant: Grant) -> None:
        """Store a new grant (its id and secret hash are new)."""
        datasets = None if grant.datasets is None else orjson.dumps(list(grant.datasets)).decode()
        with self._writing() as conn:
            self._exec(
                conn,
                f"INSERT INTO access_grants ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    grant.id,
                    grant.kind,
                    grant.role,
                    grant.secret_hash,
                    grant.name,
                    datasets,
                    grant.dashboard_id,
                    grant.created_at,
                    grant.expires_at,
                    grant.last_used_at,
                    grant.revoked_at,
                ),
            )

    def _one(self, where: str, value: str) -> Grant | None:
        with self._reading() as conn:
            record = self._exec(conn, f"{_SELECT} WHERE {where} = ?", (value,)).fetchone()
        return _grant(record) if record else None

    def get_grant(self, grant_id: str) -> Grant | None:
        """The grant with this id (revoked ones too), or None."""
        return self._one("id", grant_id)

    def find_grant(self, secret_hash: str) -> Grant | None:
        """The grant whose secret has this hash (revoked ones too), or None."""
        return self._one("secret_hash", secret_hash)

    def list_grants(self) -> list[Grant]:
        """Every grant, revoked ones too, oldest first."""
        with self._reading() as conn:
            found = self._exec(conn, f"{_SELECT} ORDER BY created_at, id").fetchall()
        return [_grant(r) for r in found]

    def revoke_grant(self, grant_id: str, revoked_at: float) -> bool:
        """Mark a grant revoked; False if there is none or it was already revoked."""
        with self._writing() as conn:
            done = self._exec(
                conn,
                "UPDATE access_grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (revoked_at, grant_id),
            )
            return int(done.rowcount) > 0

    def touch_grant(self, grant_id: str, used_at: float) -> None:
        """Record when a grant last signed a request in."""
        with self._writing() as conn:
            self._exec(
                conn,
                "UPDATE access_grants SET last_used_at = ? WHERE id = ?",
                (used_at, grant_id),
            )
