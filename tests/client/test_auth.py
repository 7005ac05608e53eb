"""Entra ID sign-in: msal against a faithful local token endpoint, and the httpx.Auth layer."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from client_helpers import FIELDS
from fake_entra import FakeEntra, self_signed

from pbistream import AuthError, Client
from pbistream.client.auth import BearerTokenAuth, EntraAuth, MsalTokenProvider, Token
from pbistream.testing import RunningServer


@pytest.fixture(scope="module")
def entra() -> Iterator[FakeEntra]:
    fake = FakeEntra()
    yield fake
    fake.close()


def options(entra: FakeEntra) -> dict[str, object]:
    import requests

    # msal's own HTTP stack (requests), trusting the fake's self-signed certificate;
    # trust_env=False, or REQUESTS_CA_BUNDLE would override `verify`.
    session = requests.Session()
    session.verify = entra.ca_file
    session.trust_env = False
    # instance_discovery=False: msal would otherwise ask login.microsoftonline.com
    # which authorities exist.
    return {"http_client": session, "instance_discovery": False}


def test_service_principal_secret_is_cached_and_refreshed(entra: FakeEntra) -> None:
    entra.secrets["app-secret"] = "s3cret"
    auth = EntraAuth.service_principal(
        entra.tenant,
        "app-secret",
        client_secret="s3cret",
        authority_host=entra.url,
        msal_options=options(entra),
    )
    provider = auth.provider
    assert isinstance(provider, MsalTokenProvider)
    first = provider.get_token()
    assert first.value.reveal() == entra.issued[-1]["token"]
    assert "eyFAKE" not in repr(first)
    issued = len(entra.issued)
    assert provider.get_token().value == first.value  # msal's cache
    assert len(entra.issued) == issued
    fresh = provider.get_token(force_refresh=True)
    assert len(entra.issued) == issued + 1 and fresh.value != first.value


def test_wrong_secret_is_an_auth_error_with_entra_s_reason(entra: FakeEntra) -> None:
    entra.secrets["app-wrong"] = "right"
    auth = EntraAuth.service_principal(
        entra.tenant,
        "app-wrong",
        client_secret="wrong",
        authority_host=entra.url,
        msal_options=options(entra),
    )
    with pytest.raises(AuthError, match="invalid_client: AADSTS7000215"):
        auth.provider.get_token()  # type: ignore[attr-defined]


def test_service_principal_certificate(entra: FakeEntra) -> None:
    from cryptography.hazmat.primitives import hashes

    key_pem, _, cert = self_signed("pbistream-test-app")
    entra.certificates["app-cert"] = cert
    auth = EntraAuth.service_principal(
        entra.tenant,
        "app-cert",
        certificate={
            "private_key": key_pem.decode(),
            "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),
        },
        authority_host=entra.url,
        msal_options=options(entra),
    )
    token = auth.provider.get_token()  # type: ignore[attr-defined]
    assert entra.issued[-1] == {
        "client_id": "app-cert",
        "grant": "client_credentials",
        "token": token.value.reveal(),
    }


def test_device_code_signs_in_once_then_uses_the_cache(entra: FakeEntra) -> None:
    entra.public_clients.add("app-public")
    shown: list[str] = []

    def user_follows_the_instructions(message: str) -> None:
        shown.append(message)
        entra.approve(message.split("enter the code ")[1].split()[0])

    auth = EntraAuth.device_code(
        "app-public",
        tenant_id=entra.tenant,
        on_device_code=user_follows_the_instructions,
        authority_host=entra.url,
        msal_options=options(entra),
    )
    provider = auth.provider
    first = provider.get_token()  # type: ignore[attr-defined]
    assert len(shown) == 1 and "https://microsoft.com/devicelogin" in shown[0]
    second = provider.get_token()  # type: ignore[attr-defined]
    assert len(shown) == 1 and second.value == first.value
    provider.get_token(force_refresh=True)  # type: ignore[attr-defined]
    assert len(shown) == 1 and entra.issued[-1]["grant"] == "refresh_token"


class Provider:
    """A token provider double: hands out the tokens it is given, in order."""

    def __init__(self, *tokens: str, lifetime: float = 3600.0) -> None:
        self.tokens = list(tokens)
        self.calls: list[bool] = []
        self.lifetime = lifetime
        self.now = 1_000_000.0

    def get_token(self, *, force_refresh: bool = False) -> Token:
        self.calls.append(force_refresh)
        return Token(self.tokens.pop(0), self.now + self.lifetime)


def test_bearer_auth_refreshes_on_401_against_the_real_server(fast_server: RunningServer) -> None:
    dataset = fast_server.create_dataset(FIELDS, mode="Push", table="T")
    provider = Provider("expired-or-revoked", fast_server.token)
    auth = BearerTokenAuth(provider, clock=lambda: provider.now)
    url = f"{fast_server.url}/v1.0/myorg/datasets/{dataset['id']}/tables/T/rows"
    with Client(url, auth=auth, schema=None) as client:
        client.push({"n": 1})
    assert fast_server.count_rows(dataset["id"], "T") == 1
    assert provider.calls == [False, True]


def test_bearer_auth_refreshes_before_expiry() -> None:
    provider = Provider("a", "b", "c", lifetime=600.0)
    clock = [provider.now]
    auth = BearerTokenAuth(provider, clock=lambda: clock[0])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200)

    with httpx.Client(auth=auth, transport=httpx.MockTransport(handler)) as http:
        http.get("https://api.example/x")
        clock[0] += 200  # 400 s left: still good
        http.get("https://api.example/x")
        clock[0] += 150  # 250 s left: inside the 5-minute margin, refresh
        http.get("https://api.example/x")
    assert seen == ["Bearer a", "Bearer a", "Bearer b"]


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pbistream.exceptions import ConfigError

    # None in sys.modules makes `import msal` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "msal", None)
    with pytest.raises(ConfigError, match=r"pip install 'pbistream\[entra\]'"):
        EntraAuth.service_principal("t", "c", client_secret="s")
