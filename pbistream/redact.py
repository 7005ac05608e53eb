"""Secrets that never reach a log: a masked type and URL redaction.

Push keys travel in URLs (``?key=...``) and tokens in headers; every log line and
error message that may hold one goes through :func:`redact_url` or :func:`redact_text`.
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import unquote_plus

__all__ = ["Secret", "constant_time_equal", "new_secret", "redact_text", "redact_url"]


class Secret:
    """A string whose repr and str are masked; call :meth:`reveal` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and constant_time_equal(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe secret (``nbytes`` of entropy)."""
    return secrets.token_urlsafe(nbytes)


def constant_time_equal(a: str | None, b: str | None) -> bool:
    """Compare two secrets without leaking their contents through timing."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# key=..., token=..., sig=..., code=... in query strings; Bearer tokens in text.
# Every name=value pair in a query string; the name is percent-decoded before it is
# compared, because servers decode it too (``tok%65n=`` is ``token=``).
_QUERY_PAIR = re.compile(r"([?&;])([^=&#\s\"'?;]+)=([^&#\s\"';]*)")
_SECRET_NAMES = frozenset({"key", "token", "sig", "code", "access_token", "client_secret"})
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/=]+")
MASK = "REDACTED"


def redact_url(url: str) -> str:
    """Return ``url`` with secret query values replaced by ``REDACTED``."""
    return _QUERY_PAIR.sub(_mask_secret_pair, url)


def _mask_secret_pair(match: re.Match[str]) -> str:
    sep, name, _value = match.groups()
    if unquote_plus(name).strip().lower() in _SECRET_NAMES:
        return f"{sep}{name}={MASK}"
    return match.group(0)


def redact_text(text: str) -> str:
    """Redact URLs' secret query values and Bearer tokens anywhere in ``text``."""
    return _BEARER.sub(r"\g<1>" + MASK, redact_url(text))
