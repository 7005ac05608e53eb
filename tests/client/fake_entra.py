"""A faithful local stand-in for Microsoft Entra ID's v2.0 token endpoints, over HTTPS.

Entra ID cannot run here, so msal talks to this instead, through its own HTTP stack
(msal insists on an https authority: we serve a self-signed certificate and pass it
to msal as ``verify``). It follows the documented protocol:

* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (msal's tenant discovery);
* ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type`` ``client_credentials``
  (a ``client_secret``, or a ``client_assertion`` JWT signed by the app's certificate,
  checked against its public key, audience and ``x5t`` thumbprint),
  ``urn:ietf:params:oauth:grant-type:device_code`` (``authorization_pending`` until the
  user approves) and ``refresh_token``;
* ``POST /{tenant}/oauth2/v2.0/devicecode``;
* errors as ``{"error", "error_description", "error_codes"}`` with AADSTS codes.

``approve(user_code)`` plays the person who opens the page and types the code.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SCOPE = "https://analysis.windows.net/powerbi/api/.default"


def self_signed(
    common_name: str, *, ip: str | None = None
) -> tuple[bytes, bytes, x509.Certificate]:
    """A new RSA key and a self-signed certificate: ``(key_pem, cert_pem, cert)``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if ip is not None:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded body (without python-multipart, which the server does not need)."""
    from urllib.parse import parse_qsl

    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _error(status: int, error: str, description: str, code: int) -> JSONResponse:
    return JSONResponse(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": secrets.token_hex(16),
            "correlation_id": secrets.token_hex(16),
        },
        status_code=status,
    )


class FakeEntra:
    """The fake, running in a thread; register apps, then point msal at :attr:`url`."""

    def __init__(self, tenant: str = "contoso-tenant-id") -> None:
        self.tenant = tenant
        self.secrets: dict[str, str] = {}  # client_id -> secret
        self.certificates: dict[str, x509.Certificate] = {}  # client_id -> certificate
        self.public_clients: set[str] = set()
        self.issued: list[dict[str, str]] = []  # every access token, with its grant
        self._device: dict[str, dict[str, Any]] = {}  # device_code -> state
        self._refresh: dict[str, str] = {}  # refresh_token -> client_id
        self._dir = Path(tempfile.mkdtemp(prefix="fake-entra-"))
        key_pem, cert_pem, _ = self_signed("127.0.0.1", ip="127.0.0.1")
        (self._dir / "key.pem").write_bytes(key_pem)
        (self._dir / "cert.pem").write_bytes(cert_pem)
        self.ca_file = str(self._dir / "cert.pem")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        app = Starlette(
            routes=[
                Route("/{tenant}/v2.0/.well-known/openid-configuration", self._discovery),
                Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
                Route("/{tenant}/oauth2/v2.0/devicecode", self._devicecode, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            ssl_keyfile=str(self._dir / "key.pem"),
            ssl_certfile=self.ca_file,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake Entra ID did not start")
            time.sleep(0.02)

    def close(self) -> None:
        """Stop the server."""
        self._server.should_exit = True
        self._thread.join(10)

    def approve(self, user_code: str) -> None:
        """The user signs in on the verification page and enters ``user_code``."""
        for state in self._device.values():
            if state["user_code"] == user_code:
                state["approved"] = True
                return
        raise KeyError(user_code)

    # --- endpoints ---------------------------------------------------------------------

    async def _discovery(self, request: Request) -> JSONResponse:
        tenant = request.path_params["tenant"]
        base = f"{self.url}/{tenant}"
        return JSONResponse(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{self.url}/{self.tenant}/v2.0",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
            }
        )

    def _tokens(self, client_id: str, grant: str, *, user: bool) -> dict[str, Any]:
        access = f"eyFAKE.{secrets.token_urlsafe(24)}"
        self.issued.append({"client_id": client_id, "grant": grant, "token": access})
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": SCOPE,
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": access,
        }
        if user:
            refresh = secrets.token_urlsafe(24)
            self._refresh[refresh] = client_id
            now = int(time.time())
            claims = {
                "aud": client_id,
                "iss": f"{self.url}/{self.tenant}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "oid": "00000000-0000-0000-0000-0000000000aa",
                "sub": "fake-subject",
                "tid": self.tenant,
                "preferred_username": "ada@contoso.example",
                "name": "Ada",
            }
            body["refresh_token"] = refresh
            body["id_token"] = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
            body["client_info"] = _b64({"uid": claims["oid"], "utid": self.tenant})
            body["scope"] = f"{SCOPE} openid profile offline_access"
        return body

    async def _token(self, request: Request) -> JSONResponse:
        form = await _form(request)
        grant = str(form.get("grant_type", ""))
        client_id = str(form.get("client_id", ""))
        if grant == "client_credentials":
            return self._client_credentials(request, form, client_id)
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            state = self._device.get(str(form.get("device_code", "")))
            if state is None or state["client_id"] != client_id:
                return _error(400, "invalid_grant", "The device code is not valid.", 70000)
            if not state["approved"]:
                return _error(
                    400, "authorization_pending", "The user has not yet authenticated.", 70016
                )
            del self._device[str(form["device_code"])]
            return JSONResponse(self._tokens(client_id, "device_code", user=True))
        if grant == "refresh_token":
            owner = self._refresh.pop(str(form.get("refresh_token", "")), None)
            if owner != client_id:
                return _error(400, "invalid_grant", "The refresh token is not valid.", 9002313)
            return JSONResponse(self._tokens(client_id, "refresh_token", user=True))
        return _error(400, "unsupported_grant_type", f"grant_type {grant!r}.", 70003)

    def _client_credentials(self, request: Request, form: Any, client_id: str) -> JSONResponse:
        if " " in str(form.get("scope", "")) or not str(form.get("scope", "")).endswith(".default"):
            return _error(
                400, "invalid_scope", "client credentials need a /.default scope.", 1002012
            )
        if client_id in self.secrets:
            if not secrets.compare_digest(
                str(form.get("client_secret", "")), self.secrets[client_id]
            ):
                return _error(401, "invalid_client", "Invalid client secret provided.", 7000215)
        elif client_id in self.certificates:
            cert = self.certificates[client_id]
            assertion = str(form.get("client_assertion", ""))
            thumbprint = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA1())).rstrip(b"=")
            try:
                header = jwt.get_unverified_header(assertion)
                jwt.decode(
                    assertion,
                    cert.public_key(),  # type: ignore[arg-type]
                    algorithms=["RS256", "PS256"],
                    audience=f"{self.url}/{request.path_params['tenant']}/oauth2/v2.0/token",
                    issuer=client_id,
                )
            except jwt.PyJWTError as exc:
                return _error(401, "invalid_client", f"Client assertion is invalid: {exc}", 700027)
            # x5t: base64url of the SHA-1 thumbprint (msal keeps the '=' padding).
            if str(header.get("x5t", "")).rstrip("=").encode() != thumbprint:
                return _error(401, "invalid_client", "Unknown certificate thumbprint.", 700027)
        else:
            return _error(
                400, "unauthorized_client", f"Application {client_id!r} not found.", 700016
            )
        return JSONResponse(self._tokens(client_id, "client_credentials", user=False))

    async def _devicecode(self, request: Request) -> JSONResponse:
        form = await _form(request)
        client_id = str(form.get("client_id", ""))
        if client_id not in self.public_clients:
            return _error(
                400, "unauthorized_client", f"Application {client_id!r} not found.", 700016
            )
        device_code = secrets.token_urlsafe(32)
        user_code = secrets.token_hex(4).upper()
        self._device[device_code] = {
            "client_id": client_id,
            "user_code": user_code,
            "approved": False,
        }
        return JSONResponse(
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": "https://microsoft.com/devicelogin",
                "expires_in": 900,
                "interval": 1,
                "message": "To sign in, use a web browser to open the page https://"
                f"microsoft.com/devicelogin and enter the code {user_code} to authenticate.",
            }
        )
