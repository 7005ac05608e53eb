"""Where batches go: a streaming dataset's Push URL, or a push dataset's REST endpoint.

Sinks play the role of httpx's transports: ``send(body, seq) -> Outcome`` and
``close()``, with async twins. They move bytes and translate answers; every
decision (retry, pacing, dead letter) is the engine's. A network failure becomes an
``Outcome`` with ``status=None``, never an exception.

The same sinks work against Power BI and against a pbistream server: only the base
URL differs.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from pbistream.client.engine import Outcome, ServerHints
from pbistream.encoding import BodyShape
from pbistream.exceptions import ConfigError
from pbistream.limits import MAX_PUSH_BODY_BYTES, MAX_STREAMING_BODY_BYTES
from pbistream.redact import Secret, redact_text, redact_url
from pbistream.schema import Table

__all__ = [
    "AsyncPushUrlSink",
    "AsyncRestApiSink",
    "PushUrlSink",
    "RemoteTable",
    "RestApiSink",
    "SinkBase",
    "parse_rest_url",
]

POWER_BI_API = "https://api.powerbi.com"


class _RedactingFilter(logging.Filter):
    """httpx logs every request's URL at INFO; a Push URL carries its key in the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact_text(str(record.msg))
        return True


logger = logging.getLogger("pbistream.client")
_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _RedactingFilter) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactingFilter())
SEQUENCE_HEADER = "X-PowerBI-PushData-SequenceNumber"
_USER_AGENT = "pbistream-client"


@dataclass(frozen=True, slots=True)
class RemoteTable:
    """What a server told us about the target table."""

    table: Table | None  # None when it does not list columns
    row_count: int = 0
    mode: str | None = None  # "Push", "Streaming" or "PushStreaming" when known


def parse_rest_url(url: str) -> tuple[str, str | None, str, str] | None:
    """``(base_url, group_id, dataset_id, table)`` from a PostRows URL, else ``None``."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if "tables" not in segments or "datasets" not in segments or "myorg" not in segments:
        return None
    try:
        dataset = segments[segments.index("datasets") + 1]
        table = segments[segments.index("tables") + 1]
    except IndexError:
        return None
    group = segments[segments.index("groups") + 1] if "groups" in segments else None
    return f"{parts.scheme}://{parts.netloc}", group, dataset, table


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_message(response: httpx.Response) -> str:
    """One line from any of Power BI's three error shapes, or the raw body."""
    text = response.text
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {text[:300]}".strip()
    if not isinstance(error, dict):
        return f"HTTP {response.status_code}: {text[:300]}"
    parts = [str(error.get("code") or ""), str(error.get("message") or "")]
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("message"):
            text = str(detail["message"])
            # pbistream's details repeat the message per row: say each thing once.
            if text.lower() not in parts[1].lower():
                parts.append(text)
    pbi = error.get("pbi.error")
    if isinstance(pbi, dict):
        for detail in pbi.get("details") or []:
            value = (detail.get("detail") or {}).get("value") if isinstance(detail, dict) else None
            if value:
                parts.append(str(value))
    message = ": ".join(p for p in parts if p)
    return f"HTTP {response.status_code} {message}".strip()


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def server_hints(headers: httpx.Headers) -> ServerHints | None:
    """A pbistream server's limit settings from an answer's ``X-PBIStream-*`` headers."""
    scale_text = headers.get("X-PBIStream-Time-Scale")
    limits_text = headers.get("X-PBIStream-Limits")
    mode = headers.get("X-PBIStream-Dataset-Mode")
    if scale_text is None and limits_text is None and mode is None:
        return None  # Power BI, or an older pbistream server
    try:
        scale: float | None = float(scale_text) if scale_text else None
    except ValueError:
        scale = None
    if scale is not None and not (0 < scale < float("inf")):
        scale = None
    limits = {"on": True, "off": False}.get((limits_text or "").strip().lower())
    return ServerHints(time_scale=scale, limits=limits, mode=mode or None)


def outcome_of(response: httpx.Response) -> Outcome:
    """Translate an HTTP answer into the engine's :class:`Outcome`."""
    status = response.status_code
    headers = response.headers
    hints = server_hints(headers)
    if 200 <= status < 300:
        return Outcome(
            status,
            ignored=_int_header(headers, "X-PBIStream-Rows-Ignored") or 0,
            sequence_last=_int_header(headers, "X-PBIStream-Sequence-Last"),
            hints=hints,
        )
    return Outcome(
        status,
        retry_after=parse_retry_after(headers.get("Retry-After")),
        message=error_message(response),
        hints=hints,
    )


def network_outcome(exc: Exception) -> Outcome:
    """A failed request (refused, reset, timed out) as an :class:`Outcome`."""
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ConnectError):
        try:
            url = exc.request.url
            port = url.port or (443 if url.scheme == "https" else 80)
            message = f"nothing answers at {url.host}:{port} ({message})"
        except RuntimeError:  # no request attached
            pass
    return Outcome(None, message=redact_url(message))


class SinkBase:
    """What every sink knows: the URL, the body shape, headers and its schema source.

    Attributes:
        url: Where rows are POSTed.
        shape: ``"array"`` (Push URL) or ``"rows"`` (REST ``{"rows": [...]}``).
        default_max_bytes: The documented body limit for this kind of target.
        label: A redacted name for logs.
    """

    url: str
    shape: BodyShape
    default_max_bytes: int
    label: str
    _schema_urls: tuple[str, ...] = ()
    #: The HTTP status with which the server refused the credential when asked for the
    #: table's columns (401/403), for callers that explain it (the CLI), else ``None``.
    schema_refused: int | None = None
    _table_name: str | None = None
    _auth: httpx.Auth | None = None
    _timeout: float = 30.0

    def _open(self) -> None:
        """Create the HTTP client (the sync or async mixin's)."""
        raise NotImplementedError

    def _schema_headers(self) -> dict[str, str]:
        return {}

    def _schema_from(self, url: str, response: httpx.Response) -> RemoteTable | None:
        """The table a schema URL's answer describes, or ``None`` (and why, in the log)."""
        if response.status_code in (401, 403):
            self.schema_refused = response.status_code
            logger.warning(
                "%s: the server refused the credential when asked for the table's columns "
                "(HTTP %d at %s); rows are checked by value only",
                self.label,
                response.status_code,
                redact_url(url),
            )
            return None
        if response.status_code != 200:
            return None
        try:
            return self._parse_schema(url, response.json())
        except ValueError:
            return None

    def _headers(self, seq: int | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        if seq is not None:
            headers[SEQUENCE_HEADER] = str(seq)
        return headers

    def _parse_schema(self, url: str, data: Any) -> RemoteTable | None:
        """Read a table from ``GET /api/datasets/{id}`` (pbistream) or ``.../tables``."""
        if not isinstance(data, dict):
            return None
        tables = data.get("tables") if "tables" in data else data.get("value")
        if not isinstance(tables, list) or not tables:
            return None
        wanted = self._table_name
        chosen = next(
            (
                t
                for t in tables
                if isinstance(t, dict) and (wanted is None or t.get("name") == wanted)
            ),
            None,
        )
        if chosen is None or not chosen.get("columns"):
            return None
        try:
            table = Table.from_json(chosen)
        except (KeyError, ValueError, TypeError):
            return None
        mode = data.get("defaultMode")
        return RemoteTable(table, int(chosen.get("rowCount") or 0), str(mode) if mode else None)


class _PushUrlBase(SinkBase):
    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"not a Push URL: {redact_url(url)!r}")
        self.url = url
        self.shape = "array"
        self.default_max_bytes = MAX_STREAMING_BODY_BYTES.value
        self.label = redact_url(url)
        self._timeout = timeout
        self._token = Secret(token) if token else None
        # /beta/{workspace}/datasets/{id}/rows: a pbistream server describes the dataset
        # at /api/datasets/{id} to holders of its token (Power BI has no such page).
        segments = [s for s in parts.path.split("/") if s]
        if self._token and "datasets" in segments:
            index = segments.index("datasets")
            if index + 1 < len(segments):
                self._schema_urls = (
                    f"{parts.scheme}://{parts.netloc}/api/datasets/{segments[index + 1]}",
                )
        self._open()

    def _schema_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.reveal()}"} if self._token else {}


class _RestBase(SinkBase):
    def __init__(
        self,
        dataset_id: str,
        table: str,
        *,
        auth: httpx.Auth | str | None = None,
        base_url: str = POWER_BI_API,
        group_id: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not dataset_id or not table:
            raise ConfigError("a REST target needs a dataset id and a table name")
        root = base_url.rstrip("/") + "/v1.0/myorg" + (f"/groups/{group_id}" if group_id else "")
        dataset = f"{root}/datasets/{dataset_id}"
        self.url = f"{dataset}/tables/{table}/rows"
        self.shape = "rows"
        self.default_max_bytes = MAX_PUSH_BODY_BYTES.value
        self.label = f"dataset {dataset_id} table {table!r}"
        self._timeout = timeout
        self._table_name = table
        self._auth = _BearerAuth(auth) if isinstance(auth, str) else auth
        # Ours answers with columns and row counts; Power BI's GetTables may list names only.
        parts = urlsplit(base_url)
        self._schema_urls = (
            f"{parts.scheme}://{parts.netloc}/api/datasets/{dataset_id}",
            f"{dataset}/tables",
        )
        self._open()


class _BearerAuth(httpx.Auth):
    """A fixed bearer token (a pbistream server's token, or one you obtained yourself)."""

    def __init__(self, token: str) -> None:
        self._token = Secret(token)

    def auth_flow(self, request: httpx.Request) -> Any:
        """Add the Authorization header."""
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        yield request


class _SyncMixin(SinkBase):
    _client: httpx.Client

    def _open(self) -> None:
        self._client = httpx.Client(timeout=self._timeout, auth=self._auth)

    def send(self, body: bytes, seq: int | None) -> Outcome:
        """POST one body; never raises for network errors."""
        try:
            response = self._client.post(self.url, content=body, headers=self._headers(seq))
        except httpx.HTTPError as exc:
            return network_outcome(exc)
        return outcome_of(response)

    def fetch_table(self) -> RemoteTable | None:
        """Ask the server for the table's columns; ``None`` when it cannot tell."""
        for url in self._schema_urls:
            try:
                response = self._client.get(url, headers=self._schema_headers())
            except httpx.HTTPError:
                continue
            found = self._schema_from(url, response)
            if found is not None:
                return found
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


class _AsyncMixin(SinkBase):
    _client: httpx.AsyncClient

    def _open(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._timeout, auth=self._auth)

    async def send(self, body: bytes, seq: int | None) -> Outcome:
        """POST one body; never raises for network errors."""
        try:
            response = await self._client.post(self.url, content=body, headers=self._headers(seq))
        except httpx.HTTPError as exc:
            return network_outcome(exc)
        return outcome_of(response)

    async def fetch_table(self) -> RemoteTable | None:
        """Ask the server for the table's columns; ``None`` when it cannot tell."""
        for url in self._schema_urls:
            try:
                response = await self._client.get(url, headers=self._schema_headers())
            except httpx.HTTPError:
                continue
            found = self._schema_from(url, response)
            if found is not None:
                return found
        return None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class PushUrlSink(_PushUrlBase, _SyncMixin):
    """A streaming dataset's Push URL (``...?key=...``): a bare JSON array per request.

    Args:
        url: The Push URL from "API info" (Power BI or ``pbistream dataset create``).
        token: A pbistream server's token, to read the table's schema from it.
        timeout: Seconds per request.
    """


class AsyncPushUrlSink(_PushUrlBase, _AsyncMixin):
    """The async twin of :class:`PushUrlSink`."""


class RestApiSink(_RestBase, _SyncMixin):
    """A push dataset's table through the REST API: ``{"rows": [...]}`` per request.

    Args:
        dataset_id: The dataset's id.
        table: The table's name (case-sensitive).
        auth: An :class:`httpx.Auth` (e.g. :class:`~pbistream.client.auth.EntraAuth`)
            or a bearer token string.
        base_url: ``https://api.powerbi.com``, or a pbistream server's URL.
        group_id: The workspace id (service principals must use one).
        timeout: Seconds per request.
    """


class AsyncRestApiSink(_RestBase, _AsyncMixin):
    """The async twin of :class:`RestApiSink`."""
