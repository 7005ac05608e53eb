"""Access grants: API tokens and dashboard links, minted, hashed and timed (pure, stdlib only).

A grant is what a secret gives its holder: a role, optionally limited to some datasets
or to one dashboard, until it expires or is revoked. The secret is shown once, when it
is minted; storage keeps only its SHA-256 (:func:`secret_hash`). A token carries 256
random bits, so a plain hash is enough: nobody can guess or brute-force it back.

Secrets say what they are by their prefix, so one pasted into a chat or a log is easy
to recognise and to scan for:

* ``pbist_...``: an API token (``Authorization: Bearer``, ``/login?token=``);
* ``pbisl_...``: a read-only dashboard link.

Both the server and the offline ``pbistream token rotate`` use this module, so it
imports nothing of the server.
"""

from __future__ import annotations

import hashlib
import re
import secrets

__all__ = [
    "KIND_LINK",
    "KIND_TOKEN",
    "LINK_PREFIX",
    "SERVER_GRANT_ID",
    "SERVER_TOKEN_HASH_KEY",
    "TOKEN_PREFIX",
    "mint_secret",
    "new_grant_id",
    "parse_duration",
    "secret_hash",
]

KIND_TOKEN = "token"  # noqa: S105 (a kind's name, not a secret)
KIND_LINK = "link"
TOKEN_PREFIX = "pbist_"  # noqa: S105
LINK_PREFIX = "pbisl_"
_PREFIXES = {KIND_TOKEN: TOKEN_PREFIX, KIND_LINK: LINK_PREFIX}
#: The id under which the server's own token (the first admin token) is listed.
SERVER_GRANT_ID = "server"
#: Storage meta key holding the SHA-256 of the server's token (never the token).
SERVER_TOKEN_HASH_KEY = "api_token_sha256"  # noqa: S105

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: The longest expiry one can ask for (ten years): beyond that, say "no expiry".
MAX_DURATION_SECONDS = 10 * 365 * 86400


def mint_secret(kind: str = KIND_TOKEN) -> str:
    """A new secret of this kind: its prefix, then 256 random bits (43 URL-safe characters)."""
    return _PREFIXES[kind] + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """What storage keeps of a secret: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_grant_id() -> str:
    """A short, public id for a grant (what ``token list`` shows and ``revoke`` takes)."""
    return secrets.token_hex(6)


def parse_duration(text: str | int | float) -> float:
    """``"30d"`` → seconds. Units: s, m, h, d, w; a bare number is seconds.

    Raises:
        ValueError: Not a positive duration up to ten years; the message says the form.
    """
    if isinstance(text, bool):
        raise ValueError(f"expiry must be a duration such as 3600, 90m, 12h, 30d, not {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        found = _DURATION.match(str(text))
        if found is None:
            raise ValueError(
                f"expiry must be a duration such as 3600, 90m, 12h, 30d or 8w, not {text!r}"
            )
        seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2).lower()]
    if not 0 < seconds <= MAX_DURATION_SECONDS:
        raise ValueError(f"expiry must be more than 0 seconds and at most 10 years, not {text!r}")
    return seconds
