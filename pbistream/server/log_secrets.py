"""The secrets one request's log lines must mask, wherever a malformed URL put them.

Pattern-based redaction (:func:`pbistream.redact.redact_url`) needs a ``key=`` before
a value. A handler that knows the real secret (the Push URL handler knows the
dataset's push key) notes it here, in the request's ``scope["state"]``; the access
log and the error log then mask its every occurrence (:func:`pbistream.redact.mask_known`),
along with the server's API token.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["remember_secret", "request_secrets"]

# Where a request's handler leaves the secrets its log lines must mask (scope["state"]).
_SECRETS_STATE = "pbistream_secrets"


def remember_secret(scope: MutableMapping[str, Any], secret: str) -> None:
    """Note a secret this request may carry (a push key), for its log lines to mask."""
    state = scope.setdefault("state", {})
    state.setdefault(_SECRETS_STATE, []).append(secret)


def request_secrets(scope: Mapping[str, Any]) -> list[str]:
    """The secrets to mask in this request's log lines: the API token and any remembered."""
    found: list[str] = list(scope.get("state", {}).get(_SECRETS_STATE, ()))
    app = scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    token = getattr(settings, "token", None)
    if isinstance(token, str) and token:
        found.append(token)
    return found
