"""From a secret (Bearer token, session cookie) to a :class:`Principal`, cached for seconds.

Every request with a credential is resolved here. The server's own token (the first
admin token) is compared in memory, so the ingest path never waits on storage for it;
scoped tokens and dashboard links are found by the SHA-256 of their secret and kept
in a small cache for :data:`CACHE_SECONDS`, so a grant revoked through another replica
(or by ``pbistream token rotate`` on the data dir) stops working within seconds, and one
revoked through this server stops at once.

The session cookie names the grant and its role, signed with a key derived from the
server token's hash: ``<grant id>.<role>.<hex HMAC>``. It is not the secret, and it is
checked against the grant on every request, so it dies with the grant.

Open live feeds are registered per grant (:meth:`Access.watch`): revoking a grant wakes
them and the auth middleware ends them; a feed also re-checks its grant every
:data:`CACHE_SECONDS`, which catches expiry and revocations made elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anyio
import anyio.to_thread

from pbistream.grants import (
    KIND_LINK,
    KIND_TOKEN,
    LINK_PREFIX,
    SERVER_GRANT_ID,
    SERVER_TOKEN_HASH_KEY,
    TOKEN_PREFIX,
    secret_hash,
)
from pbistream.redact import constant_time_equal
from pbistream.server.roles import Role
from pbistream.storage.base import Grant, Storage

__all__ = [
    "CACHE_SECONDS",
    "EMULATED",
    "SERVER",
    "Access",
    "Principal",
    "dashboard_datasets",
    "signed_session",
]

#: How long a resolved grant (or "no such grant") is trusted before storage is asked again.
CACHE_SECONDS = 2.0
#: A grant's last-used time is written at most this often.
TOUCH_SECONDS = 60.0
# Entries the cache holds at most (garbage tokens are cached too, as misses).
_CACHE_ENTRIES = 10_000
# A fixed label so the key is "for sessions", not a bare hash of the token's hash.
_COOKIE_LABEL = b"pbistream-session-v2"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as.

    Attributes:
        grant_id: The grant's id (``server`` for the server's own token).
        kind: ``token`` or ``link``.
        role: What it may do (:mod:`pbistream.server.roles`).
        name: The grant's name.
        datasets: The datasets it may reach, or None for all (lower-case ids).
        dashboard: A link's dashboard: the only one it may see.
        expires_at: When it stops working (epoch seconds), or None.
    """

    grant_id: str
    kind: str
    role: Role
    name: str = ""
    datasets: frozenset[str] | None = None
    dashboard: str | None = None
    expires_at: float | None = None

    @property
    def limited(self) -> bool:
        """True when it may reach only some datasets (a scoped token or a link)."""
        return self.datasets is not None

    def allows_dataset(self, dataset_id: str) -> bool:
        """True when this principal may reach the dataset."""
        return self.datasets is None or dataset_id.lower() in self.datasets

    def expired(self, now: float) -> bool:
        """True once its expiry has passed."""
        return self.expires_at is not None and now >= self.expires_at


#: The server's own token.
SERVER = Principal(SERVER_GRANT_ID, KIND_TOKEN, Role.ADMIN, "server token")
#: Any Bearer token on the REST API under ``auth = any`` (the emulator mode).
EMULATED = Principal("emulated", KIND_TOKEN, Role.ADMIN, "auth=any")


def dashboard_datasets(tiles: list[dict[str, object]]) -> frozenset[str]:
    """The datasets a dashboard's tiles show (lower-case ids)."""
    return frozenset(str(t.get("datasetId", "")).lower() for t in tiles if t.get("datasetId"))


def _cookie_key(server_hash: str) -> bytes:
    return hmac.new(server_hash.encode("ascii"), _COOKIE_LABEL, hashlib.sha256).digest()


def signed_session(server_hash: str, grant_id: str, role: Role) -> str:
    """The session cookie's value for a grant: ``id.role.signature``."""
    message = f"{grant_id}.{role.label}"
    signature = hmac.new(_cookie_key(server_hash), message.encode(), hashlib.sha256).hexdigest()
    return f"{message}.{signature}"


class Access:
    """Resolves credentials to principals for one app (``app.state.access``).

    Args:
        storage: Where grants and the server token's hash are kept.
        server_token: The token given in the settings (``--token``, PBISTREAM_TOKEN),
            or None when the one kept (hashed) in storage is in force.
        clock: Epoch seconds (injected by tests).
    """

    def __init__(
        self,
        storage: Storage,
        server_token: str | None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.storage = storage
        self._fixed_hash = secret_hash(server_token) if server_token else None
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._touched: dict[str, float] = {}
        self._stored_hash: tuple[float, str | None] = (-1e18, None)
        self._feeds: dict[str, set[anyio.Event]] = {}

    # --- the server token -----------------------------------------------------------------
    async def server_hash(self) -> str | None:
        """SHA-256 of the server's token: the configured one, else the one kept in storage."""
        if self._fixed_hash is not None:
            return self._fixed_hash
        at, value = self._stored_hash
        if time.monotonic() - at > CACHE_SECONDS:
            value = await anyio.to_thread.run_sync(self.storage.get_meta, SERVER_TOKEN_HASH_KEY)
            self._stored_hash = (time.monotonic(), value or None)
        return self._stored_hash[1]

    # --- resolving ------------------------------------------------------------------------
    async def from_secret(self, secret: str) -> Principal | None:
        """The principal a secret (Bearer token, ``/login?token=``) stands for, or None."""
        digest = secret_hash(secret)
        server = await self.server_hash()
        if server is not None and constant_time_equal(digest, server):
            return SERVER
        if not secret.startswith((TOKEN_PREFIX, LINK_PREFIX)):
            return None  # not one of ours: no storage read for a random string
        return await self._resolve("h:" + digest, lambda: self.storage.find_grant(digest))

    async def from_cookie(self, value: str) -> Principal | None:
        """The principal a session cookie stands for, or None (forged, revoked, expired)."""
        grant_id, _, rest = value.partition(".")
        role_label, _, _ = rest.partition(".")
        server = await self.server_hash()
        try:
            role = Role.parse(role_label)
        except ValueError:
            return None
        if server is None or not constant_time_equal(value, signed_session(server, grant_id, role)):
            return None
        if grant_id == SERVER_GRANT_ID:
            return SERVER if role is Role.ADMIN else None
        found = await self.by_id(grant_id)
        return found if found is not None and found.role is role else None

    async def by_id(self, grant_id: str) -> Principal | None:
        """The principal of a grant id while it works (cached), or None."""
        if grant_id == SERVER_GRANT_ID:
            return SERVER
        return await self._resolve("i:" + grant_id, lambda: self.storage.get_grant(grant_id))

    async def session_cookie(self, principal: Principal) -> str:
        """The cookie value that signs this principal in."""
        server = await self.server_hash()
        assert server is not None  # a principal was resolved, so a server token exists
        return signed_session(server, principal.grant_id, principal.role)

    async def _resolve(self, key: str, load: Callable[[], Grant | None]) -> Principal | None:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] <= CACHE_SECONDS:
            principal = cached[1]
        else:
            principal = await anyio.to_thread.run_sync(self._load, load)
            with self._lock:
                if len(self._cache) >= _CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[key] = (time.monotonic(), principal)
        if principal is None or principal.expired(now):
            return None
        await self._touch(principal.grant_id, now)
        return principal

    def _load(self, load: Callable[[], Grant | None]) -> Principal | None:
        grant = load()
        if grant is None or grant.revoked_at is not None:
            return None
        datasets = (
            frozenset(d.lower() for d in grant.datasets) if grant.datasets is not None else None
        )
        if grant.kind == KIND_LINK:
            # A link shows its dashboard's datasets as they are now (tiles may change).
            dashboard = self.storage.get_dashboard(grant.dashboard_id or "")
            if dashboard is None:
                return None
            datasets = dashboard_datasets(dashboard.tiles)
        try:
            role = Role.parse(grant.role)
        except ValueError:
            return None
        return Principal(
            grant.id, grant.kind, role, grant.name, datasets, grant.dashboard_id, grant.expires_at
        )

    async def _touch(self, grant_id: str, now: float) -> None:
        with self._lock:
            last = self._touched.get(grant_id)
            if last is not None and now - last < TOUCH_SECONDS:
                return
            self._touched[grant_id] = now
        await anyio.to_thread.run_sync(self.storage.touch_grant, grant_id, now)

    # --- revocation -----------------------------------------------------------------------
    def forget(self, grant_id: str | None = None) -> None:
        """Drop cached answers (all, after a revocation) and wake the grant's open feeds."""
        with self._lock:
            self._cache.clear()
            self._stored_hash = (-1e18, None)
            events = list(self._feeds.get(grant_id, ())) if grant_id else []
        for event in events:
            event.set()

    @contextlib.contextmanager
    def watch(self, grant_id: str) -> Iterator[anyio.Event]:
        """Register an open live feed of a grant; the event is set when it is revoked here."""
        event = anyio.Event()
        with self._lock:
            self._feeds.setdefault(grant_id, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                feeds = self._feeds.get(grant_id)
                if feeds is not None:
                    feeds.discard(event)
                    if not feeds:
                        del self._feeds[grant_id]

    def open_feeds(self, grant_id: str) -> int:
        """Live feeds open under a grant (for tests and ``/metrics``)."""
        with self._lock:
            return len(self._feeds.get(grant_id, ()))
