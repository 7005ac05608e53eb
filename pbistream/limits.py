"""The documented Power BI push and streaming limits: one table, read by everyone.

The client's pacing, the server's enforcement and ``docs/limits.md`` all read the
entries below, so a limit is changed in exactly one place. Each entry names the
Microsoft page it comes from (see ``../shared/reference/powerbi-push-api.md`` §3).
"""

from __future__ import annotations

from dataclasses import dataclass

_S3 = "https://learn.microsoft.com/en-us/power-bi/developer/embedded/push-datasets-limitations"
_S6 = "https://learn.microsoft.com/en-us/power-bi/developer/automation/api-dataset-properties"
_S7 = (
    "https://learn.microsoft.com/en-us/power-bi/developer/automation/"
    "api-automatic-retention-policy-for-real-time-data"
)
_S8 = "https://learn.microsoft.com/en-us/power-bi/connect-data/service-real-time-streaming"
_S2 = "https://learn.microsoft.com/en-us/rest/api/power-bi/push-datasets/datasets-post-dataset"
_EXECUTE_QUERIES = "https://learn.microsoft.com/en-us/rest/api/power-bi/datasets/execute-queries"


@dataclass(frozen=True, slots=True)
class Limit:
    """One documented service limit.

    Attributes:
        name: Stable identifier, used in settings, metrics and docs.
        value: The documented number.
        unit: What ``value`` counts ("rows", "requests", "bytes", ...).
        window_seconds: The time window a rate applies to, or ``None`` for a cap.
        scope: What the limit is counted per ("dataset", "table", "request", ...).
        source: The documentation page that states it.
        help: One sentence for humans.
    """

    name: str
    value: int
    unit: str
    window_seconds: float | None
    scope: str
    source: str
    help: str


MAX_ROWS_PER_POST = Limit(
    "max_rows_per_post",
    10_000,
    "rows",
    None,
    "request",
    _S3,
    "At most 10,000 rows in a single POST rows request.",
)
POSTS_PER_MINUTE = Limit(
    "posts_per_minute",
    120,
    "requests",
    60.0,
    "dataset",
    _S3,
    "At most 120 POST rows requests a minute per dataset.",
)
POSTS_PER_HOUR_LARGE_TABLE = Limit(
    "posts_per_hour_large_table",
    120,
    "requests",
    3600.0,
    "dataset",
    _S3,
    "Once a table holds 250,000 rows, at most 120 POST rows requests an hour per dataset.",
)
LARGE_TABLE_ROWS = Limit(
    "large_table_rows",
    250_000,
    "rows",
    None,
    "table",
    _S3,
    "The table size from which the hourly POST limit applies.",
)
ROWS_PER_HOUR = Limit(
    "rows_per_hour",
    1_000_000,
    "rows",
    3600.0,
    "dataset",
    _S3,
    "At most 1,000,000 rows added an hour per dataset.",
)
MAX_PENDING_REQUESTS = Limit(
    "max_pending_requests",
    5,
    "requests",
    None,
    "dataset",
    _S3,
    "At most 5 POST rows requests in flight at once per dataset.",
)
MAX_TABLES = Limit(
    "max_tables", 75, "tables", None, "dataset", _S3, "At most 75 tables in a dataset."
)
MAX_COLUMNS = Limit(
    "max_columns", 75, "columns", None, "table", _S3, "At most 75 columns in a table."
)
MAX_RELATIONSHIPS = Limit(
    "max_relationships",
    75,
    "relationships",
    None,
    "dataset",
    _S3,
    "At most 75 relationships in a dataset.",
)
MAX_PUSH_BODY_BYTES = Limit(
    "max_push_body_bytes",
    16 * 1024 * 1024,
    "bytes",
    None,
    "request",
    _S8,
    "A push request body may be at most 16 MB.",
)
MAX_STREAMING_BODY_BYTES = Limit(
    "max_streaming_body_bytes",
    15 * 1024,
    "bytes",
    None,
    "request",
    _S8,
    "A request to a Streaming-only dataset may be at most 15 KB.",
)
MAX_STRING_CHARS = Limit(
    "max_string_chars",
    4_000,
    "characters",
    None,
    "value",
    _S3,
    "A String value may be at most 4,000 characters.",
)
FIFO_MIN_ROWS = Limit(
    "fifo_min_rows",
    200_000,
    "rows",
    None,
    "table",
    _S7,
    "basicFIFO retention trims a table back to its newest 200,000 rows.",
)
FIFO_MAX_ROWS = Limit(
    "fifo_max_rows",
    210_000,
    "rows",
    None,
    "table",
    _S7,
    "basicFIFO retention lets a table grow to 210,000 rows before it trims.",
)
NONE_RETENTION_MAX_ROWS = Limit(
    "none_retention_max_rows",
    5_000_000,
    "rows",
    None,
    "table",
    _S3,
    "With retention None a table stops accepting rows at 5,000,000.",
)
STREAMING_CACHE_SECONDS = Limit(
    "streaming_cache_seconds",
    3600,
    "seconds",
    None,
    "dataset",
    _S8,
    "A Streaming-only dataset keeps rows for tiles for 60 minutes.",
)
MAX_TABLE_NAME_CHARS = Limit(
    "max_table_name_chars",
    100,
    "characters",
    None,
    "table",
    _S6,
    "A table name is 1 to 100 characters.",
)
MAX_DATASET_NAME_CHARS = Limit(
    "max_dataset_name_chars",
    256,
    "characters",
    None,
    "dataset",
    _S2,
    "A dataset name is 1 to 256 characters (Power BI documents no maximum; pbistream's choice).",
)
MAX_COLUMN_NAME_CHARS = Limit(
    "max_column_name_chars",
    256,
    "characters",
    None,
    "column",
    _S2,
    "A column or measure name is 1 to 256 characters (Power BI documents no maximum; "
    "pbistream's choice).",
)

QUERIES_PER_CALL = Limit(
    "queries_per_call",
    1,
    "queries",
    None,
    "request",
    _EXECUTE_QUERIES,
    "executeQueries runs one query per call.",
)
TABLES_PER_QUERY = Limit(
    "tables_per_query",
    1,
    "tables",
    None,
    "query",
    _EXECUTE_QUERIES,
    "executeQueries answers one table per query (one EVALUATE).",
)
QUERY_MAX_ROWS = Limit(
    "query_max_rows",
    100_000,
    "rows",
    None,
    "query",
    _EXECUTE_QUERIES,
    "At most 100,000 rows in an executeQueries result.",
)
QUERY_MAX_VALUES = Limit(
    "query_max_values",
    1_000_000,
    "values",
    None,
    "query",
    _EXECUTE_QUERIES,
    "At most 1,000,000 values (rows x columns) in an executeQueries result.",
)
QUERY_MAX_BYTES = Limit(
    "query_max_bytes",
    15 * 1024 * 1024,
    "bytes",
    None,
    "query",
    _EXECUTE_QUERIES,
    "At most 15 MB of data in an executeQueries result; the row that crosses it is the last.",
)
QUERIES_PER_MINUTE = Limit(
    "queries_per_minute",
    120,
    "requests",
    60.0,
    "user",
    _EXECUTE_QUERIES,
    "At most 120 executeQueries requests a minute per user, whatever the dataset.",
)

#: Every limit, in the order the docs list them.
LIMITS: tuple[Limit, ...] = (
    MAX_ROWS_PER_POST,
    POSTS_PER_MINUTE,
    POSTS_PER_HOUR_LARGE_TABLE,
    LARGE_TABLE_ROWS,
    ROWS_PER_HOUR,
    MAX_PENDING_REQUESTS,
    MAX_TABLES,
    MAX_COLUMNS,
    MAX_RELATIONSHIPS,
    MAX_PUSH_BODY_BYTES,
    MAX_STREAMING_BODY_BYTES,
    MAX_STRING_CHARS,
    FIFO_MIN_ROWS,
    FIFO_MAX_ROWS,
    NONE_RETENTION_MAX_ROWS,
    STREAMING_CACHE_SECONDS,
    MAX_TABLE_NAME_CHARS,
    MAX_DATASET_NAME_CHARS,
    MAX_COLUMN_NAME_CHARS,
    QUERIES_PER_CALL,
    TABLES_PER_QUERY,
    QUERY_MAX_ROWS,
    QUERY_MAX_VALUES,
    QUERY_MAX_BYTES,
    QUERIES_PER_MINUTE,
)

BY_NAME: dict[str, Limit] = {limit.name: limit for limit in LIMITS}
