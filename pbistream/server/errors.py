"""The server's wire format: Power BI-shaped JSON responses and the one error body.

Power BI sends three error shapes (reference §1.8); :func:`error_body` renders all
of them, and every error the server sends goes through it, so one test checks the
shape on every endpoint. Handlers raise an :class:`ApiError` subclass; the exception
handlers in :func:`exception_handlers` turn it (and Starlette's own 404/405, and any
unexpected exception) into a response. Messages are redacted: no key or token in them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pbistream.redact import mask_known, redact_text
from pbistream.server.log_secrets import request_secrets

__all__ = [
    "JSON_MEDIA_TYPE",
    "ApiError",
    "BadRequest",
    "DaxQueryFailed",
    "EntityNotFound",
    "FeatureDeprecated",
    "Forbidden",
    "InvalidRequest",
    "ItemNotFound",
    "NotAuthorized",
    "PayloadTooLarge",
    "PbiJSONResponse",
    "TooManyRequests",
    "error_body",
    "exception_handlers",
]

logger = logging.getLogger("pbistream.server")

#: What Power BI puts on every JSON body (reference §1.7, C12).
JSON_MEDIA_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true"


class PbiJSONResponse(Response):
    """A JSON response with Power BI's OData content type, serialised by orjson."""

    media_type = JSON_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        """Serialise ``content`` (orjson: fast, and it refuses NaN rather than emit it)."""
        return orjson.dumps(content)


def error_body(
    code: str,
    message: str | None = None,
    *,
    details: Sequence[Mapping[str, Any]] | None = None,
    pbi_error: bool = False,
    pbi_details: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Render Power BI's error body: ``{"error": {"code", "message"?, "details"?}}``.

    Args:
        code: The error code, e.g. ``BadRequest`` or ``PowerBIEntityNotFound``.
        message: Human text (redacted here, so a key cannot leak through it).
        details: OData details ``[{"code"?, "message", "target"?}]`` (shape b).
        pbi_error: Also add the ``pbi.error`` object (shape c), as Power BI does for 401.
        pbi_details: The ``pbi.error`` details (``[{"code", "detail": {"type", "value"}}]``).
    """
    error: dict[str, Any] = {"code": code}
    if message is not None:
        error["message"] = redact_text(message)
    if details:
        error["details"] = [
            {k: redact_text(v) if isinstance(v, str) else v for k, v in d.items()} for d in details
        ]
    if pbi_error:
        error["pbi.error"] = {
            "code": code,
            "parameters": {},
            "details": [
                {k: redact_text(v) if isinstance(v, str) else v for k, v in d.items()}
                for d in pbi_details
            ],
            "exceptionCulprit": 1,
        }
    return {"error": error}


class ApiError(Exception):
    """An error the server answers with a Power BI-shaped body; ``status`` says which."""

    status: int = 400
    code: str = "BadRequest"
    pbi_error: bool = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or self.code)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.headers = dict(headers or {})
        self._body = body

    def body(self) -> dict[str, Any]:
        """The JSON body to send."""
        if self._body is not None:
            return self._body
        return error_body(self.code, self.message, details=self.details, pbi_error=self.pbi_error)

    def response(self) -> PbiJSONResponse:
        """The whole response."""
        return PbiJSONResponse(self.body(), status_code=self.status, headers=self.headers)


class BadRequest(ApiError):
    """400 ``BadRequest``: the request is malformed (JSON, shape, unknown property)."""


class InvalidRequest(ApiError):
    """400 ``InvalidRequest``: well-formed, but the service refuses it."""

    code = "InvalidRequest"


class NotAuthorized(ApiError):
    """401 ``PowerBINotAuthorizedException`` with the ``pbi.error`` object (C6)."""

    status = 401
    code = "PowerBINotAuthorizedException"
    pbi_error = True


class Forbidden(ApiError):
    """403: a Push URL with a missing or wrong key."""

    status = 403
    code = "PowerBINotAuthorizedException"
    pbi_error = True


class EntityNotFound(ApiError):
    """404 ``PowerBIEntityNotFound``: no such dataset (or not in this workspace)."""

    status = 404
    code = "PowerBIEntityNotFound"


class ItemNotFound(ApiError):
    """404 ``ItemNotFound``: no such table, or a field that is not a column (the seed's 404)."""

    status = 404
    code = "ItemNotFound"


class PayloadTooLarge(ApiError):
    """413 ``RequestEntityTooLarge`` (C3 #9)."""

    status = 413
    code = "RequestEntityTooLarge"


class TooManyRequests(ApiError):
    """429 with an integer ``Retry-After`` header (reference §3.2)."""

    status = 429
    code = "TooManyRequests"

    def __init__(self, message: str, *, retry_after: float, reason: str) -> None:
        # Retry-After is whole seconds; round up so a client that obeys it is not refused.
        self.retry_after = max(1, math.ceil(retry_after))
        self.reason = reason
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})


class DaxQueryFailed(ApiError):
    """400 ``DatasetExecuteQueriesError``: a DAX query that cannot be run.

    Power BI puts the engine's text, ``Query (line, column) ...``, in a
    ``DetailsMessage`` detail of ``pbi.error``; the same text is the ``message``.
    """

    code = "DatasetExecuteQueriesError"
    pbi_error = True

    def body(self) -> dict[str, Any]:
        """The ``pbi.error`` body with the DAX message as its DetailsMessage."""
        text = redact_text(self.message or "")
        detail = {"code": "DetailsMessage", "detail": {"type": 1, "value": text}}
        return error_body(self.code, self.message, pbi_error=True, pbi_details=[detail])


class FeatureDeprecated(ApiError):
    """400 ``FeatureDeprecatedError`` with the body Power BI sent a user (§5, C7)."""

    code = "FeatureDeprecatedError"

    def body(self) -> dict[str, Any]:
        """The ``pbi.error`` body with the LearnMoreLink and message details."""
        link = (
            "https://learn.microsoft.com/en-us/power-bi/connect-data/"
            "service-real-time-streaming#types-of-real-time-semantic-models"
        )
        text = (
            "Creation of streaming dataset is deprecated. We recommend exploring "
            "Real-Time Intelligence in Microsoft Fabric."
        )
        return {
            "error": {
                "code": self.code,
                "pbi.error": {
                    "code": self.code,
                    "details": [
                        {"code": "LearnMoreLink", "detail": {"type": 0, "value": link}},
                        {"code": "FeatureDeprecatedMessage", "detail": {"type": 0, "value": text}},
                    ],
                    "exceptionCulprit": 1,
                },
            }
        }


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


_HTTP_CODES = {
    400: "BadRequest",
    401: "PowerBINotAuthorizedException",
    404: "PowerBIEntityNotFound",
    405: "MethodNotAllowed",
    413: "RequestEntityTooLarge",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "BadRequest" if exc.status_code < 500 else "Error")
    message = exc.detail
    if exc.status_code == 404:
        message = f"No endpoint at {request.method} {request.url.path}"
    return PbiJSONResponse(
        error_body(code, message), status_code=exc.status_code, headers=exc.headers
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug, not a user mistake: log it (redacted) and answer without internals.
    secrets = request_secrets(request.scope)
    logger.error(
        "unhandled error on %s %s: %s",
        request.method,
        mask_known(redact_text(str(request.url)), secrets),
        mask_known(redact_text(repr(exc)), secrets),
        exc_info=exc,
    )
    return PbiJSONResponse(
        error_body("InternalServerError", "The server hit an unexpected error."), status_code=500
    )


def exception_handlers() -> dict[Any, Any]:
    """Starlette's ``exception_handlers`` mapping for the app."""
    return {ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected}
