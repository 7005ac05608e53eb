"""A dataset's forward: its configuration (kept in storage) and its live state.

Shared by the two halves of the relay, which never import each other:

* the server (``pbistream.server.forward_api``) writes a :class:`ForwardConfig` into
  storage when a member asks for it (``PUT /api/datasets/{id}/forward``), and shows
  the :class:`ForwardState` it finds in the :class:`ForwardStates` board;
* the forwarder (``pbistream.feeds.forward``, started by ``pbistream serve``) reads
  the configurations from storage, delivers the rows through the client, and posts
  its state on the same board, which the CLI hands to the app at start.

The configuration holds the upstream credentials (a bearer token, or an Entra ID
client secret). They are kept with the data, as the server's own API token is, and
never leave it: :meth:`ForwardConfig.public` (what the API, the UI and the CLI show)
says only whether one is set, and log lines carry :func:`~pbistream.redact.redact_url`
targets.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from pbistream.redact import redact_url

__all__ = [
    "META_PREFIX",
    "ForwardConfig",
    "ForwardConfigError",
    "ForwardState",
    "ForwardStates",
    "MetaStore",
    "clear_config",
    "load_config",
    "save_config",
]

# Storage meta key of a dataset's forward: ``forward:<dataset id>``; "" means none.
META_PREFIX = "forward:"
# Long enough for any real URL or credential, short enough that a body cannot bloat meta.
_MAX_TEXT = 4096


class MetaStore(Protocol):
    """The two storage methods the configuration needs (any ``Storage`` has them)."""

    def get_meta(self, key: str) -> str | None:
        """A stored value, or None."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Store a value."""
        ...


class ForwardConfigError(ValueError):
    """A forward configuration breaks a rule; the message names the field and the rule."""


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """Where one local dataset's rows go, and how to sign in there.

    Attributes:
        dataset_id: The local dataset.
        table: The local table whose rows are forwarded.
        target: A Push URL, a REST PostRows URL (``.../datasets/D/tables/T/rows``), or
            a pbistream server's.
        token: A bearer token for a REST target (a pbistream server's API token).
        tenant_id: Entra ID tenant, with ``client_id`` and ``client_secret``.
        client_id: Entra ID application (client) id.
        client_secret: Entra ID client secret.
        time_scale: Divide Power BI's rate windows by this (an upstream ``serve
            --time-scale``); 1 for Power BI itself.
        start_after: Rows with a larger id are forwarded (the newest id when set).
        generation: A new random id each time the configuration is saved, so the
            forwarder notices a change.
        created_at: When it was saved (epoch seconds).
    """

    dataset_id: str
    table: str
    target: str
    token: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    time_scale: float = 1.0
    start_after: int = 0
    generation: str = ""
    created_at: float = 0.0

    def __repr__(self) -> str:
        # Never the credentials, never a Push URL's key.
        return (
            f"ForwardConfig(dataset_id={self.dataset_id!r}, table={self.table!r}, "
            f"target={redact_url(self.target)!r}, auth={self.auth_kind!r})"
        )

    @property
    def auth_kind(self) -> str:
        """``"entra"``, ``"token"`` or ``"none"``."""
        if self.client_secret:
            return "entra"
        return "token" if self.token else "none"

    @classmethod
    def from_request(
        cls, dataset_id: str, table: str, body: Mapping[str, Any], *, start_after: int
    ) -> ForwardConfig:
        """Check a ``PUT /api/datasets/{id}/forward`` body and build the configuration.

        Raises:
            ForwardConfigError: A field is missing, of the wrong type or out of range.
        """
        known = {"target", "table", "token", "tenantId", "clientId", "clientSecret", "timeScale"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ForwardConfigError(
                f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(known))}"
            )
        target = _text(body, "target", required=True)
        assert target is not None
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ForwardConfigError(
                f"field 'target' must be an http(s) URL (a Push URL or a REST table's rows "
                f"URL), not {redact_url(target)!r}"
            )
        token = _text(body, "token")
        entra = {name: _text(body, name) for name in ("tenantId", "clientId", "clientSecret")}
        given = [name for name, value in entra.items() if value]
        if given and len(given) != 3:
            missing = [n for n in entra if n not in given]
            raise ForwardConfigError(
                f"Entra ID needs tenantId, clientId and clientSecret together; "
                f"{', '.join(missing)} missing"
            )
        if given and token:
            raise ForwardConfigError("give either 'token' or Entra ID (clientSecret), not both")
        scale = body.get("timeScale", 1.0)
        if (
            isinstance(scale, bool)
            or not isinstance(scale, int | float)
            or not math.isfinite(scale)
            or scale <= 0
        ):
            raise ForwardConfigError(f"field 'timeScale' must be a number above 0, not {scale!r}")
        return cls(
            dataset_id=dataset_id,
            table=table,
            target=target,
            token=token,
            tenant_id=entra["tenantId"],
            client_id=entra["clientId"],
            client_secret=entra["clientSecret"],
            time_scale=float(scale),
            start_after=start_after,
            generation=uuid.uuid4().hex,
            created_at=time.time(),
        )

    def public(self) -> dict[str, Any]:
        """What the API shows: no credential, and the target's secrets redacted."""
        return {
            "target": redact_url(self.target),
            "table": self.table,
            "auth": self.auth_kind,
            "tenantId": self.tenant_id,
            "clientId": self.client_id,
            "timeScale": self.time_scale,
            "startAfter": self.start_after,
            "createdAt": self.created_at,
        }

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ForwardConfig:
        """Read the stored form back."""
        return cls(**json.loads(text))


def _text(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ForwardConfigError(f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise ForwardConfigError(f"field {name!r} must be a string, not {type(value).__name__}")
    if len(value) > _MAX_TEXT:
        raise ForwardConfigError(f"field {name!r} is longer than {_MAX_TEXT:,} characters")
    return value


def load_config(storage: MetaStore, dataset_id: str) -> ForwardConfig | None:
    """The dataset's forward, or None when it has none (or it was turned off)."""
    text = storage.get_meta(META_PREFIX + dataset_id)
    if not text:
        return None
    try:
        return ForwardConfig.from_json(text)
    except (ValueError, TypeError):  # written by another version: treat as absent
        return None


def save_config(storage: MetaStore, config: ForwardConfig) -> None:
    """Keep (or replace) a dataset's forward."""
    storage.set_meta(META_PREFIX + config.dataset_id, config.to_json())


def clear_config(storage: MetaStore, dataset_id: str) -> bool:
    """Turn a dataset's forward off; False when it had none."""
    had = load_config(storage, dataset_id) is not None
    if had:
        storage.set_meta(META_PREFIX + dataset_id, "")
    return had


@dataclass(frozen=True, slots=True)
class ForwardState:
    """What a running forward reports (the API's ``forward.state``).

    Attributes:
        running: The forwarder is running for this configuration.
        generation: The configuration it runs.
        pending: Rows read from the dataset and not yet acknowledged upstream.
        delivered: Rows acknowledged upstream (since the forward was configured).
        dead_lettered: Rows the upstream refused for good (see the dead-letter file).
        upstream_posts: POST requests sent upstream by this process.
        rate_limited: 429 answers seen by this process.
        cursor: The id of the last local row handed to the spool.
        last_error: The most recent delivery error (redacted), or None.
        last_error_at: When it happened (epoch seconds).
        last_delivered_at: When rows were last acknowledged upstream.
        updated_at: When this state was posted.
    """

    running: bool = False
    generation: str = ""
    pending: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    upstream_posts: int = 0
    rate_limited: int = 0
    cursor: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_delivered_at: float | None = None
    updated_at: float = 0.0

    def to_api(self) -> dict[str, Any]:
        """The camelCase JSON the API answers."""
        return {
            "running": self.running,
            "pending": self.pending,
            "delivered": self.delivered,
            "deadLettered": self.dead_lettered,
            "upstreamPosts": self.upstream_posts,
            "rateLimited": self.rate_limited,
            "cursor": self.cursor,
            "lastError": self.last_error,
            "lastErrorAt": self.last_error_at,
            "lastDeliveredAt": self.last_delivered_at,
            "updatedAt": self.updated_at,
        }


class ForwardStates:
    """The board where forwarders post their state and the server reads it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ForwardState] = {}

    def post(self, dataset_id: str, **changes: Any) -> ForwardState:
        """Update some fields of a dataset's state; return the new state."""
        with self._lock:
            state = replace(
                self._states.get(dataset_id, ForwardState()), **changes, updated_at=time.time()
            )
            self._states[dataset_id] = state
            return state

    def get(self, dataset_id: str) -> ForwardState | None:
        """The dataset's last posted state, if any."""
        with self._lock:
            return self._states.get(dataset_id)

    def remove(self, dataset_id: str) -> None:
        """Forget a dataset's state (its forward stopped)."""
        with self._lock:
            self._states.pop(dataset_id, None)

    def snapshot(self) -> dict[str, ForwardState]:
        """Every posted state (for /metrics)."""
        with self._lock:
            return dict(self._states)
