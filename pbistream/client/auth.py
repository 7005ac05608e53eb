"""Microsoft Entra ID sign-in for the Power BI REST API, as an ``httpx.Auth``.

Two layers, so each is simple and testable on its own:

* :class:`BearerTokenAuth` -- an ``httpx.Auth`` that asks a *token provider* for a
  token, caches it until shortly before it expires, and on a 401 fetches a fresh one
  once and repeats the request. One lock makes concurrent requests share a refresh.
* :class:`MsalTokenProvider` -- tokens from msal (the ``entra`` extra): a service
  principal with a client secret or a certificate (``acquire_token_for_client``), or
  the device-code flow for people (``acquire_token_silent`` first, so a signed-in user
  is asked only once per process, or never with a persistent msal token cache).

The scope is ``https://analysis.windows.net/powerbi/api/.default``. Service principals
cannot use "My workspace": give the REST target a ``group_id``.

Example::

    auth = EntraAuth.service_principal(tenant_id, client_id, client_secret=secret)
    client = pbistream.Client(
        f"https://api.powerbi.com/v1.0/myorg/groups/{group}/datasets/{ds}/tables/T/rows",
        auth=auth,
    )
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, Protocol

import httpx

from pbistream.exceptions import AuthError, ConfigError, require_extra
from pbistream.redact import Secret

__all__ = [
    "POWER_BI_SCOPE",
    "BearerTokenAuth",
    "EntraAuth",
    "MsalTokenProvider",
    "Token",
    "TokenProvider",
]

POWER_BI_SCOPE = "https://analysis.windows.net/powerbi/api/.default"
AUTHORITY_HOST = "https://login.microsoftonline.com"
# Refresh this long before expiry, so a request never leaves with a token that dies
# on the way (and clock skew between us and Entra ID does not matter).
_REFRESH_MARGIN_SECONDS = 300.0


class Token:
    """An access token (masked in reprs) and when it expires (epoch seconds)."""

    __slots__ = ("expires_at", "value")

    def __init__(self, value: str, expires_at: float) -> None:
        self.value = Secret(value)
        self.expires_at = expires_at

    def __repr__(self) -> str:
        return f"Token(value={self.value!r}, expires_at={self.expires_at})"


class TokenProvider(Protocol):
    """Anything that can produce an access token."""

    def get_token(self, *, force_refresh: bool = False) -> Token:
        """Return a valid token; ``force_refresh`` bypasses any cache.

        Raises:
            AuthError: No token could be obtained.
        """
        ...


class BearerTokenAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <token>`` from a provider; refreshes before expiry and on 401.

    Args:
        provider: Where tokens come from.
        clock: Wall-clock seconds (inject one in tests).
    """

    def __init__(self, provider: TokenProvider, *, clock: Callable[[], float] = time.time) -> None:
        self.provider = provider
        self._clock = clock
        self._token: Token | None = None
        self._lock = threading.Lock()

    def _current(self, *, stale: Token | None = None) -> Token:
        with self._lock:
            token = self._token
            if (
                token is not None
                and token is not stale
                and token.expires_at - _REFRESH_MARGIN_SECONDS > self._clock()
            ):
                return token
            # A 401 means the cached token is bad even if it looks fresh.
            token = self.provider.get_token(force_refresh=stale is not None)
            self._token = token
            return token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send with the current token; on a 401 refresh once and send again."""
        token = self._current()
        request.headers["Authorization"] = f"Bearer {token.value.reveal()}"
        response = yield request
        if response.status_code == 401:
            fresh = self._current(stale=token)
            request.headers["Authorization"] = f"Bearer {fresh.value.reveal()}"
            yield request


class MsalTokenProvider:
    """Tokens from msal: service principal (secret or certificate) or device code.

    Build it with :meth:`EntraAuth.service_principal` or :meth:`EntraAuth.device_code`.

    Args:
        app: An msal ``ConfidentialClientApplication`` or ``PublicClientApplication``.
        scopes: The scopes to ask for.
        on_device_code: For a public app: shown the sign-in instructions (default: print
            to stderr).
        clock: Wall-clock seconds.
    """

    def __init__(
        self,
        app: Any,
        *,
        scopes: tuple[str, ...] = (POWER_BI_SCOPE,),
        on_device_code: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.scopes = list(scopes)
        self._on_device_code = on_device_code or _print_to_stderr
        self._clock = clock

    def get_token(self, *, force_refresh: bool = False) -> Token:
        """Acquire a token through msal (its cache first, unless ``force_refresh``).

        Raises:
            AuthError: Entra ID refused (the message carries its error description).
        """
        if hasattr(self.app, "acquire_token_for_client"):
            if force_refresh:
                # msal refuses force_refresh for client credentials: drop its cached
                # app tokens instead, so the next call asks Entra ID again.
                self.app.remove_tokens_for_client()
            result = self.app.acquire_token_for_client(self.scopes)
        else:
            result = None
            accounts = self.app.get_accounts()
            if accounts:
                result = self.app.acquire_token_silent(
                    self.scopes, account=accounts[0], force_refresh=force_refresh
                )
            if not result:
                flow = self.app.initiate_device_flow(scopes=self.scopes)
                if "user_code" not in flow:
                    raise AuthError(f"device code sign-in could not start: {_describe(flow)}")
                self._on_device_code(str(flow.get("message", "")))
                result = self.app.acquire_token_by_device_flow(flow)
        if not result or "access_token" not in result:
            raise AuthError(f"Entra ID refused the sign-in: {_describe(result or {})}")
        return Token(str(result["access_token"]), self._clock() + float(result["expires_in"]))


class EntraAuth(BearerTokenAuth):
    """:class:`BearerTokenAuth` over msal, with constructors for the usual sign-ins."""

    @classmethod
    def service_principal(
        cls,
        tenant_id: str,
        client_id: str,
        *,
        client_secret: str | None = None,
        certificate: Mapping[str, str] | None = None,
        authority_host: str = AUTHORITY_HOST,
        msal_options: Mapping[str, Any] | None = None,
    ) -> EntraAuth:
        """Sign in as an app registration (client credentials).

        Args:
            tenant_id: The directory (tenant) id.
            client_id: The application (client) id.
            client_secret: A client secret, or
            certificate: msal's certificate credential:
                ``{"private_key": PEM, "thumbprint": HEX}`` (optionally ``"public_certificate"``).
            authority_host: Another cloud's login host (sovereign clouds).
            msal_options: Extra keyword arguments for msal's application.

        Raises:
            ConfigError: The ``entra`` extra is missing, or no (or both) credentials.
        """
        if (client_secret is None) == (certificate is None):
            raise ConfigError("give exactly one of client_secret or certificate")
        msal = _import_msal()
        credential: Any = client_secret if client_secret is not None else dict(certificate or {})
        app = msal.ConfidentialClientApplication(
            client_id,
            client_credential=credential,
            authority=f"{authority_host.rstrip('/')}/{tenant_id}",
            **dict(msal_options or {}),
        )
        return cls(MsalTokenProvider(app))

    @classmethod
    def device_code(
        cls,
        client_id: str,
        *,
        tenant_id: str = "organizations",
        on_device_code: Callable[[str], Any] | None = None,
        authority_host: str = AUTHORITY_HOST,
        msal_options: Mapping[str, Any] | None = None,
    ) -> EntraAuth:
        """Sign in as a person with the device-code flow (for CLIs and headless boxes).

        Args:
            client_id: A public client app registration's id.
            tenant_id: The tenant, or ``organizations``.
            on_device_code: Shown the "open this page and enter this code" message.
            authority_host: Another cloud's login host.
            msal_options: Extra keyword arguments for msal's application (e.g. a
                persistent ``token_cache``).

        Raises:
            ConfigError: The ``entra`` extra is missing.
        """
        msal = _import_msal()
        app = msal.PublicClientApplication(
            client_id,
            authority=f"{authority_host.rstrip('/')}/{tenant_id}",
            **dict(msal_options or {}),
        )
        return cls(MsalTokenProvider(app, on_device_code=on_device_code))


def _import_msal() -> Any:
    require_extra("msal", "entra")
    import msal

    return msal


def _describe(result: Mapping[str, Any]) -> str:
    error = result.get("error") or "unknown error"
    description = str(result.get("error_description") or "").splitlines()
    return f"{error}: {description[0]}" if description else str(error)


def _print_to_stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)
