"""Secrets that never reach a log: a masked type and URL redaction.

Push keys travel in URLs (``?key=...``) and tokens in headers; every log line and
error message that may hold one goes through :func:`redact_url` or :func:`redact_text`.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable
from urllib.parse import quote, unquote_plus

__all__ = [
    "Secret",
    "constant_time_equal",
    "mask_known",
    "new_secret",
    "redact_text",
    "redact_url",
]


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
# A parameter name starts after any of ``? & ;`` (``?a=1?key=K`` is malformed, but the
# key is in it all the same) and is percent-decoded before it is compared, because
# servers decode it too (``tok%65n=`` is ``token=``). Only ``name=`` is consumed by
# the scan, so a name hidden inside another parameter's value is still found.
# Spaces may pad a name (``key =``: decoders strip them), so they do not end one.
_QUERY_NAME = re.compile(r"(?<=[?&;])([^=&#\r\n\"'?;]+)=")
# A secret's value runs to the next ``&``, ``#``, quote or whitespace: ``?`` and ``;``
# are masked with it (masking too much is safe; masking too little leaks).
_SECRET_VALUE = re.compile(r"[^&#\s\"']*")
_SECRET_NAMES = frozenset({"key", "token", "sig", "code", "access_token", "client_secret"})
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/=]+")
# Percent-encoding can hide a separator or the ``=`` (``%3Fkey%3D...``); a URL is
# decoded this many times over to look for secrets behind it.
_DECODE_ROUNDS = 3
MASK = "REDACTED"


def _is_secret_name(name: str) -> bool:
    return unquote_plus(name).strip().lower() in _SECRET_NAMES


def _mask_pairs(url: str) -> tuple[str, int]:
    """``url`` with every secret parameter's value masked, and how many were."""
    parts: list[str] = []
    done = 0  # url[:done] is already in parts
    masked = 0
    for match in _QUERY_NAME.finditer(url):
        if match.start() < done or not _is_secret_name(match.group(1)):
            continue
        value = _SECRET_VALUE.match(url, match.end())
        end = value.end() if value else match.end()
        parts.append(url[done : match.end()])
        parts.append(MASK)
        done = end
        masked += 1
    parts.append(url[done:])
    return "".join(parts), masked


def redact_url(url: str) -> str:
    """Return ``url`` with secret query values replaced by ``REDACTED``.

    This holds for malformed query strings too (``?a=1?key=K``, ``;key=K``, names or
    separators percent-encoded): when decoding reveals a secret the raw text hides,
    the decoded text is returned, masked.
    """
    redacted, masked = _mask_pairs(url)
    if "%" not in url and "+" not in url:
        return redacted
    decoded = url
    for _ in range(_DECODE_ROUNDS):
        step = unquote_plus(decoded)
        if step == decoded:
            break
        decoded = step
        candidate, found = _mask_pairs(decoded)
        if found > masked:
            return candidate
    return redacted


def redact_text(text: str) -> str:
    """Redact URLs' secret query values and Bearer tokens anywhere in ``text``."""
    return _BEARER.sub(r"\g<1>" + MASK, redact_url(text))


# Shorter strings are not masked wherever they appear: they would hit ordinary text.
_MIN_KNOWN_SECRET = 8


def mask_known(text: str, secrets: Iterable[str | None]) -> str:
    """Mask every occurrence of these exact secrets (and their percent-encoded forms).

    Pattern-based redaction needs a ``name=`` before a value; a server that knows the
    secret (a dataset's push key) masks it wherever a malformed URL put it.
    """
    for secret in secrets:
        if not secret or len(secret) < _MIN_KNOWN_SECRET:
            continue
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, MASK)
    return text
