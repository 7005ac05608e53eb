"""The server's settings: one table of names, defaults and help, read from three places.

Precedence, highest first: a ``pbistream serve`` flag, a ``PBISTREAM_<NAME>``
environment variable (``PBISTREAM_TIME_SCALE=60``), then the default below. Every
value is cast with a clear error naming the setting and where it came from.

The Power BI limits default to :mod:`pbistream.limits`; they can be overridden
only through :class:`Settings` (tests use small FIFO numbers, for example), never
by editing the table.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pbistream import limits as documented
from pbistream.exceptions import ConfigError

__all__ = ["SETTINGS", "AuthMode", "Setting", "Settings", "UnknownFields"]

UnknownFields = Literal["404", "400", "ignore"]
#: ``token``: only this server's token; ``any``: any non-empty Bearer token on the
#: Power BI REST API (an emulator for code that gets Entra ID tokens through msal).
AuthMode = Literal["token", "any"]


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("on", "true", "1", "yes"):
        return True
    if lowered in ("off", "false", "0", "no"):
        return False
    raise ValueError("use on or off")


def _unknown_fields(text: str) -> str:
    value = text.strip().lower()
    if value not in ("404", "400", "ignore"):
        raise ValueError("use 404, 400 or ignore")
    return value


def _auth_mode(text: str) -> str:
    value = text.strip().lower()
    if value not in ("token", "any"):
        raise ValueError("use token or any")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be between 0 and 65535")
    return value


def _optional_str(text: str) -> str | None:
    return text or None


def _choice(*allowed: str) -> Callable[[str], str]:
    """A cast that accepts one of ``allowed`` (case-insensitive)."""

    def cast(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError("use " + " or ".join(allowed))
        return value

    return cast


def _status(*allowed: int) -> Callable[[str], int]:
    """A cast that accepts one of the HTTP statuses ``allowed``."""

    def cast(text: str) -> int:
        value = int(text)
        if value not in allowed:
            raise ValueError("use " + " or ".join(str(a) for a in allowed))
        return value

    return cast


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table: its name, how to read it from text, and help."""

    name: str
    cast: Callable[[str], Any]
    help: str

    @property
    def env_var(self) -> str:
        """The environment variable that sets it."""
        return "PBISTREAM_" + self.name.upper()


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything ``pbistream serve`` can be told. Frozen: build a new one to change it.

    Time windows are divided by ``time_scale`` (60 makes a "minute" last one second).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: str = "pbistream-data"
    storage: str | None = None
    # repr=False: the token must never reach a log line through a repr.
    token: str | None = field(default=None, repr=False)
    auth: AuthMode = "token"
    public_url: str | None = None
    limits: bool = True
    time_scale: float = 1.0
    unknown_fields: UnknownFields = "404"
    rest_unknown_fields: UnknownFields = "400"
    deprecation: bool = False
    housekeeping_seconds: float = 60.0
    log_level: str = "info"
    max_rows_per_post: int = documented.MAX_ROWS_PER_POST.value
    posts_per_minute: int = documented.POSTS_PER_MINUTE.value
    posts_per_hour_large_table: int = documented.POSTS_PER_HOUR_LARGE_TABLE.value
    large_table_rows: int = documented.LARGE_TABLE_ROWS.value
    rows_per_hour: int = documented.ROWS_PER_HOUR.value
    max_pending_requests: int = documented.MAX_PENDING_REQUESTS.value
    max_tables: int = documented.MAX_TABLES.value
    max_columns: int = documented.MAX_COLUMNS.value
    max_relationships: int = documented.MAX_RELATIONSHIPS.value
    max_push_body_bytes: int = documented.MAX_PUSH_BODY_BYTES.value
    max_streaming_body_bytes: int = documented.MAX_STREAMING_BODY_BYTES.value
    fifo_min_rows: int = documented.FIFO_MIN_ROWS.value
    fifo_max_rows: int = documented.FIFO_MAX_ROWS.value
    none_retention_max_rows: int = documented.NONE_RETENTION_MAX_ROWS.value
    streaming_cache_seconds: float = float(documented.STREAMING_CACHE_SECONDS.value)
    # Fidelity choices where Power BI's behaviour is undocumented or uncertain: each
    # default follows the evidence in docs/compatibility.md ("Open questions").
    text_numbers: Literal["convert", "refuse"] = "convert"
    sequence_numbers: Literal["dedupe", "ignore"] = "dedupe"
    push_refresh: Literal["refuse", "accept"] = "refuse"
    rows_per_post_status: int = 400
    push_key_status: int = 403
    deprecation_status: int = 400
    create_status: int = 201
    query_max_rows: int = documented.QUERY_MAX_ROWS.value
    query_max_values: int = documented.QUERY_MAX_VALUES.value
    query_max_bytes: int = documented.QUERY_MAX_BYTES.value
    queries_per_minute: int = documented.QUERIES_PER_MINUTE.value
    forwards: bool = True
    # Connection protection (docs/server.md, "Running it on a network"); not time-scaled.
    max_connections: int = 1000
    header_timeout_seconds: float = 5.0
    idle_timeout_seconds: float = 5.0
    log_repeat_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.fifo_min_rows > self.fifo_max_rows:
            raise ConfigError("fifo_min_rows must not be above fifo_max_rows")
        if not self.time_scale > 0:
            raise ConfigError("time_scale must be a positive number")

    def scaled(self, seconds: float) -> float:
        """A documented time window in this server's seconds (divided by time_scale)."""
        return seconds / self.time_scale

    @property
    def storage_url(self) -> str:
        """What to hand ``open_storage``: ``--storage`` if given, else the data dir."""
        return self.storage or self.data_dir

    @classmethod
    def from_sources(
        cls, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from CLI flags (highest), ``PBISTREAM_*`` variables, then defaults.

        Args:
            flags: Values given on the command line; ``None`` values mean "not given".
                Every value is checked with the same cast as an environment value.
            environ: The environment to read (``os.environ`` when omitted).

        Raises:
            ConfigError: A value cannot be read, naming the setting and its source.
        """
        environ = os.environ if environ is None else environ
        flags = flags or {}
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw: Any = flags.get(setting.name)
            source = f"--{setting.name.replace('_', '-')}"
            if raw is None and setting.env_var in environ:
                raw, source = environ[setting.env_var], setting.env_var
            if raw is None:
                continue
            # Flags arrive typed by click, variables as text: check both with one cast.
            text = raw if isinstance(raw, str) else str(raw)
            try:
                values[setting.name] = setting.cast(text)
            except ValueError as exc:
                raise ConfigError(f"{source}={text!r} is not valid: {exc}") from None
        unknown = set(flags) - {s.name for s in SETTINGS}
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


_LIMIT_HELP = {limit.name: limit.help for limit in documented.LIMITS}

#: Every setting: its name (the dataclass field), how to read it, and what it does.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "host",
        str,
        "Address to listen on. 127.0.0.1 keeps the server private to this machine; "
        "use 0.0.0.0 only behind a firewall or proxy you trust.",
    ),
    Setting("port", _port, "TCP port to listen on (0 picks a free one)."),
    Setting("data_dir", str, "Directory for the SQLite database and server metadata."),
    Setting(
        "storage",
        _optional_str,
        "Storage URL: postgresql://... for PostgreSQL; default SQLite under --data-dir.",
    ),
    Setting(
        "token",
        _optional_str,
        "API token for the REST API and dashboard; generated at first start if not given.",
    ),
    Setting(
        "auth",
        _auth_mode,
        "Who may call the Power BI REST API: token (only this server's token) or any (any "
        "non-empty Bearer token, e.g. an Entra ID token from msal; /api, /metrics and the "
        "dashboard still need the real token).",
    ),
    Setting(
        "public_url",
        _optional_str,
        "Base URL used in Push URLs (default: the URL the request came in on).",
    ),
    Setting("limits", _bool, "Enforce the documented Power BI limits (on|off)."),
    Setting(
        "time_scale", _positive_float, "Divide every time window by this (60: a minute is 1 s)."
    ),
    Setting(
        "unknown_fields",
        _unknown_fields,
        "Push URL answer to a field that is not a column: 404 (as the seed), 400 or ignore.",
    ),
    Setting(
        "rest_unknown_fields",
        _unknown_fields,
        "v1.0 PostRows answer to a field that is not a column: 400, 404 or ignore.",
    ),
    Setting(
        "deprecation",
        _bool,
        "Refuse to create Streaming/PushStreaming datasets with FeatureDeprecatedError.",
    ),
    Setting(
        "housekeeping_seconds",
        _positive_float,
        "How often the streaming cache is purged (divided by time_scale).",
    ),
    Setting("log_level", str, "Log level: debug, info, warning or error."),
    *(
        Setting(name, _positive_int, _LIMIT_HELP[name])
        for name in (
            "max_rows_per_post",
            "posts_per_minute",
            "posts_per_hour_large_table",
            "large_table_rows",
            "rows_per_hour",
            "max_pending_requests",
            "max_tables",
            "max_columns",
            "max_relationships",
            "max_push_body_bytes",
            "max_streaming_body_bytes",
            "fifo_min_rows",
            "fifo_max_rows",
            "none_retention_max_rows",
        )
    ),
    Setting(
        "streaming_cache_seconds",
        _positive_float,
        _LIMIT_HELP["streaming_cache_seconds"] + " (divided by time_scale)",
    ),
    Setting(
        "text_numbers",
        _choice("convert", "refuse"),
        'Numbers sent as text ("5", "21.5") into Int64/Double/Decimal columns: convert '
        "them, as Power BI does (Add-PowerBIRow with Import-Csv relies on it), or refuse "
        "them with the row/column/rule 400.",
    ),
    Setting(
        "sequence_numbers",
        _choice("dedupe", "ignore"),
        "X-PowerBI-PushData-SequenceNumber: dedupe (a request numbered at or below the "
        "table's last one is not stored again) or ignore the header.",
    ),
    Setting(
        "push_refresh",
        _choice("refuse", "accept"),
        "POST .../refreshes on a push dataset: refuse (400, as its isRefreshable is false) "
        "or accept (202, recorded as a completed refresh that changes nothing).",
    ),
    Setting(
        "rows_per_post_status",
        _status(400, 413),
        "Status for more than max_rows_per_post rows in one POST: 400 or 413.",
    ),
    Setting(
        "push_key_status",
        _status(403, 401),
        "Status for a Push URL with a missing or wrong key: 403 or 401.",
    ),
    Setting(
        "deprecation_status",
        _status(400, 403),
        "Status of FeatureDeprecatedError when --deprecation is on: 400 or 403.",
    ),
    Setting(
        "create_status",
        _status(201, 202),
        "Status of a successful PostDataset: 201 Created or 202 Accepted (both documented).",
    ),
    Setting(
        "forwards",
        _bool,
        "Run the datasets' forwards (the relay) in this process (on|off). With several "
        "replicas on one database, leave it on in exactly one.",
    ),
    *(
        Setting(name, _positive_int, _LIMIT_HELP[name])
        for name in ("query_max_rows", "query_max_values", "query_max_bytes", "queries_per_minute")
    ),
    Setting(
        "max_connections",
        _positive_int,
        "Open connections at once; one more is answered 503 and closed. Lowered to the "
        "open-file limit minus 64 (the soft limit is raised to the hard one at start).",
    ),
    Setting(
        "header_timeout_seconds",
        _positive_float,
        "Seconds a connection has to send a request's headers (after connecting or after "
        "its previous response); then it is closed (408 if it sent part of a request).",
    ),
    Setting(
        "idle_timeout_seconds",
        _positive_float,
        "Seconds an idle keep-alive connection stays open between requests.",
    ),
    Setting(
        "log_repeat_seconds",
        _positive_float,
        "Repeats of the same log line within this many seconds are counted, not written.",
    ),
)
