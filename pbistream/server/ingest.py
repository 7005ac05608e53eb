"""The one ingest path: the Push URL and v1.0 PostRows both end here.

For each request, in order: count it against the request limits (429), read the
body within its size limit (413, or 400 for a Streaming-only dataset over 15 KB),
parse the JSON (400), check the shape and the rows-per-POST limit (400), reserve
the rows against the hourly quota (429) and the table's capacity (400), validate
every row with ``Table.rules()`` (400 naming row, column and rule; 404 for an
unknown field on the Push URL, as the seed says), then store the rows in one
committed transaction with the sequence number and publish them to the live feed.
The 200 goes out only after the commit. A refused request stores nothing.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, Literal, TypeVar

import anyio.to_thread
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from pbistream.limits import MAX_ROWS_PER_POST
from pbistream.schema import Dataset, Mode, Retention, Table
from pbistream.server.body_scan import (
    count_rows_past,
    find_non_finite,
    locate,
    parse_rows_in_pieces,
)
from pbistream.server.errors import (
    ApiError,
    BadRequest,
    EntityNotFound,
    InvalidRequest,
    ItemNotFound,
    PayloadTooLarge,
)
from pbistream.server.gc_pause import gc_paused
from pbistream.server.sequence import SEQUENCE_HEADER, ignored_headers, sequence_number
from pbistream.server.settings import Settings, UnknownFields
from pbistream.server.throttle import Throttle
from pbistream.storage.base import InsertResult, Storage, StoredRow
from pbistream.values import RowError

__all__ = ["SEQUENCE_HEADER", "ingest", "normalize_or_refuse", "read_body"]

logger = logging.getLogger("pbistream.server")
T = TypeVar("T")

_MAX_DETAILS = 20
# orjson refuses JSON nested deeper than this ("depth limit exceeded").
_MAX_JSON_DEPTH = 1024
# An over-cap body's rows are counted exactly up to this many times the cap (the scan
# is cheap there); past it the answer says "more than" and the scan stops.
_EXACT_COUNT_FACTOR = 10
# From this body size on, the body is parsed in pieces and the cyclic garbage
# collector is paused while the request builds its rows (see gc_pause): one parse of
# the whole body, or a full collection over millions of fresh row dicts, holds the
# GIL for half a second and stalls the event loop.
_GC_PAUSE_BYTES = 1024 * 1024
# Rows per live-feed batch when a big POST is published: what a POST may hold with
# limits on, so only a limits-off POST is ever split.
_PUBLISH_CHUNK_ROWS = MAX_ROWS_PER_POST.value
# Over-limit bodies are read and thrown away (up to this much past the limit) so the
# client sees the 413 instead of a connection reset while it is still sending.
_DRAIN_BYTES = 32 * 1024 * 1024


async def read_body(request: Request, limit: int, too_large: ApiError) -> bytes:
    """Read the request body, refusing it once it passes ``limit`` bytes.

    Content-Length is checked first; the limit is also enforced while reading, so a
    body without (or lying about) Content-Length is never buffered past the limit.

    Raises:
        ApiError: ``too_large`` when the body is over the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadRequest(f"Content-Length {declared!r} is not a number") from None
        if length > limit + _DRAIN_BYTES:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    over = False
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                over = True
                if size > limit + _DRAIN_BYTES:
                    break
                continue
            chunks.append(chunk)
    except ClientDisconnect:
        # Not a server error: the client went away mid-body; nothing is stored.
        raise BadRequest("The client disconnected before the whole body arrived.") from None
    if over:
        raise too_large
    return b"".join(chunks)


Shape = Literal["array", "rows", "push"]


def _invalid_json(body: bytes, exc: orjson.JSONDecodeError) -> ApiError:
    """The 400 for a body orjson refused; NaN/Infinity get the row and field named."""
    if "depth limit" in str(exc) or "recursion" in str(exc):
        row, field = locate(body, exc.pos)
        where = "The request body" if row is None else f"Row {row}"
        if row is not None and field:
            where += f", column {field!r}"
        return BadRequest(
            f"{where}: not valid JSON here, nested deeper than {_MAX_JSON_DEPTH:,} levels "
            f"(at char {exc.pos:,}); a column holds one value, not nested arrays or objects. "
            "Nothing was stored."
        )
    found = find_non_finite(body)
    if found is None or not found.char_pos <= exc.pos <= found.char_pos + 1:
        return BadRequest(f"The request body is not valid JSON: {exc}")
    rule = (
        f"{found.text} is not valid JSON (JSON has no NaN or Infinity; Python's json.dumps "
        "writes them for float('nan') and float('inf')). Send null for a missing value, or "
        "leave the field out"
    )
    if found.row is None:
        return BadRequest(f"The request body holds {rule}.")
    where = f"Row {found.row}" + (f", column {found.field!r}" if found.field else "")
    message = f"{where}: {rule}. Nothing was stored."
    code = "nan" if found.text == "NaN" else "infinity"
    return InvalidRequest(
        message, details=[{"code": code, "message": message, "target": f"rows[{found.row}]"}]
    )


def _parse(body: bytes, shape: Shape, throttle: Throttle | None = None) -> list[Any]:
    """Parse the JSON and return the list of rows (not yet validated).

    With ``throttle`` (limits on), a body holding more rows than a POST may is refused
    before it is parsed, so its rows are never built in memory.
    """
    if not body.strip():
        raise BadRequest("The request body is empty; send a JSON array of row objects.")
    if throttle is not None and throttle.settings.limits:
        max_rows = throttle.settings.max_rows_per_post
        exact_up_to = max_rows * _EXACT_COUNT_FACTOR
        over = count_rows_past(body, max_rows, exact_up_to=exact_up_to)
        if over is not None:
            throttle.check_rows_per_post(over, more_than=over > exact_up_to)
    if len(body) >= _GC_PAUSE_BYTES:
        # Piece by piece, so the event loop gets the GIL between pieces.
        pieces = parse_rows_in_pieces(body, rows_object=shape != "array")
        if pieces is not None:
            return pieces
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid_json(body, exc) from None
    if isinstance(data, list):
        return data
    # A Push URL of a push or hybrid dataset also takes PostRows' {"rows": [...]} (a
    # public 2019 report shows Power BI accepting it there); any other object is the
    # seed's 400 ("Did not encounter start array token").
    if shape == "push" and isinstance(data, dict) and "rows" in data:
        shape = "rows"
    if shape == "rows" and isinstance(data, dict):
        unknown = sorted(set(data) - {"rows"})
        if unknown:
            raise BadRequest(
                "Bad Request",
                details=[
                    {
                        "message": f"The property '{unknown[0]}' does not exist on type "
                        "'Microsoft.PowerBI.ServiceContracts.Api.PostRowsRequest'. Make sure "
                        "to only use property names that are defined by the type.",
                        "target": "requestMessage",
                    }
                ],
            )
        rows = data.get("rows")
        if not isinstance(rows, list):
            raise BadRequest('The body must be {"rows": [ {row}, ... ]} (an array of objects).')
        return rows
    kind = "an object" if isinstance(data, dict) else type(data).__name__
    expected = {
        "array": "a JSON array of row objects, e.g. [{...}] (Did not encounter start array token)",
        "push": 'a JSON array of row objects, e.g. [{...}], or {"rows": [{...}]} '
        "(Did not encounter start array token)",
        "rows": '{"rows": [ {row}, ... ]} or a JSON array of row objects',
    }[shape]
    raise BadRequest(f"The body must be {expected}; got {kind}.")


def _row_error_response(errors: list[RowError], unknown: UnknownFields) -> ApiError:
    first = errors[0]
    text = str(first)
    message = text[:1].upper() + text[1:]
    if len(errors) > 1:
        message += f" (and {len(errors) - 1:,} more rows refused; nothing was stored)"
    details = [
        {"code": e.rule, "message": str(e), "target": f"rows[{e.row}]"}
        for e in errors[:_MAX_DETAILS]
    ]
    if first.rule == "unknown_column" and unknown == "404":
        return ItemNotFound(message, details=details)
    return InvalidRequest(message, details=details)


def normalize_or_refuse(
    table: Table, rows: list[Any], unknown: UnknownFields, *, text_numbers: bool = True
) -> list[dict[str, Any]]:
    """Every row normalised by the table's value rules, or an error naming the first bad one.

    ``text_numbers`` converts numbers sent as text (the ``text_numbers`` setting).

    Raises:
        ApiError: 400 (or 404 for an unknown field when ``unknown`` is "404").
    """
    rules = table.rules(
        unknown="ignore" if unknown == "ignore" else "error", text_numbers=text_numbers
    )
    good, errors = rules.normalize_rows(rows)
    if errors:
        raise _row_error_response(errors, unknown)
    return good


def _normalize_and_store(
    storage: Storage,
    dataset: Dataset,
    table: Table,
    rows: list[Any],
    unknown: UnknownFields,
    sequence_number: int | None,
    fifo: tuple[int, int] | None,
    text_numbers: bool = True,
) -> tuple[InsertResult, list[dict[str, Any]], float]:
    """Validate every row, then insert them all in one transaction (worker thread)."""
    good = normalize_or_refuse(table, rows, unknown, text_numbers=text_numbers)
    # The parsed rows are not needed past here: free them before the insert (a
    # million-row POST holds a few hundred MB of them). The list is this request's own.
    rows.clear()
    received_at = time.time()
    try:
        result = storage.insert_rows(
            dataset.id,
            table.name,
            good,
            received_at=received_at,
            sequence_number=sequence_number,
            fifo=fifo,
        )
    except KeyError:  # the dataset was deleted while this request was being read
        raise EntityNotFound(f"Dataset {dataset.id} was not found.") from None
    return result, good, received_at


# --- sequence-number semantics (the ``sequence_numbers`` setting) -------------------------
# Kept apart so that work on the sequence-number path itself merges cleanly: the one
# decision here is whether the header takes part at all.
def _sequence_hook(request: Request, settings: Settings) -> int | None:
    """The request's sequence number, or ``None`` when the header is to be ignored."""
    if settings.sequence_numbers == "ignore":
        return None
    return sequence_number(request)  # range-checked: a 400 names the header and its range


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value


async def ingest(
    request: Request,
    dataset: Dataset,
    table: Table,
    *,
    shape: Shape,
    unknown: UnknownFields,
) -> Response:
    """Validate and store one POST of rows; answer 200 only after the commit.

    Args:
        request: The incoming request (its body is read here).
        dataset: The dataset posted to.
        table: The table that receives the rows.
        shape: ``"array"`` (a Streaming dataset's Push URL: a bare array), ``"push"`` (a
            push or hybrid dataset's Push URL: a bare array or ``{"rows": [...]}``) or
            ``"rows"`` (v1.0: ``{"rows": [...]}`` or a bare array).
        unknown: What a field that is not a column gets: 404, 400 or ignored.

    Raises:
        ApiError: The request is refused; nothing was stored.
    """
    # A big body pauses the garbage collector from its parse to its live publish.
    with ExitStack() as pause:
        return await _ingest(request, dataset, table, shape, unknown, pause)


async def _ingest(
    request: Request,
    dataset: Dataset,
    table: Table,
    shape: Shape,
    unknown: UnknownFields,
    pause: ExitStack,
) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    storage: Storage = state.storage
    throttle: Throttle = state.throttle
    number = _sequence_hook(request, settings)
    if settings.limits and throttle.known_row_count(dataset.id, table.name) is None:
        held = await anyio.to_thread.run_sync(storage.count_rows, dataset.id, table.name)
        throttle.set_row_count(dataset.id, table.name, held)
    streaming_only = dataset.mode is Mode.STREAMING
    # The 250,000-row rule is one of the push limits: a Streaming-only dataset keeps its
    # rows only in the one-hour cache, however many that holds.
    large_table = not streaming_only and throttle.is_large(dataset.id)
    await _off_loop_if_shared(throttle, throttle.admit, dataset.id, large_table=large_table)
    reservation = None
    try:
        if streaming_only and settings.limits:
            limit = settings.max_streaming_body_bytes
            too_large: ApiError = InvalidRequest(
                f"A Streaming dataset accepts request bodies of at most {limit:,} bytes "
                "(15 KB); send fewer rows per request."
            )
        else:
            limit = settings.max_push_body_bytes
            too_large = PayloadTooLarge(f"The request body is larger than {limit:,} bytes.")
        body = await read_body(request, limit, too_large)
        pause.enter_context(gc_paused(len(body) >= _GC_PAUSE_BYTES))
        # The row cap is checked on the raw bytes first: an over-cap body is never built.
        if len(body) < 65536:
            rows = _parse(body, shape, throttle)
        else:
            rows = await _parse_in_thread(body, shape, throttle)
        throttle.check_rows_per_post(len(rows))
        if not rows:
            return Response(status_code=200, headers=limit_headers(settings, dataset))
        reservation = await _off_loop_if_shared(
            throttle, throttle.reserve_rows, dataset.id, len(rows), hourly=not streaming_only
        )
        fifo = None
        if dataset.retention is Retention.BASIC_FIFO:
            fifo = (settings.fifo_min_rows, settings.fifo_max_rows)
        elif not streaming_only:  # the streaming cache expires instead of filling up
            known = throttle.known_row_count(dataset.id, table.name)
            throttle.check_capacity(table.name, known or 0, len(rows))
        result, good, received_at = await anyio.to_thread.run_sync(
            _normalize_and_store,
            storage,
            dataset,
            table,
            rows,
            unknown,
            number,
            fifo,
            settings.text_numbers == "convert",
        )
    except BaseException:
        await _off_loop_if_shared(throttle, throttle.unreserve_rows, dataset.id, reservation)
        raise
    finally:
        await _off_loop_if_shared(throttle, throttle.release, dataset.id)
    if result.duplicate:
        await _off_loop_if_shared(throttle, throttle.unreserve_rows, dataset.id, reservation)
        metrics = getattr(state, "metrics", None)
        if metrics is not None:
            metrics.rows_ignored(dataset.id, table.name, len(good))
    throttle.set_row_count(dataset.id, table.name, result.row_count)
    if result.stored and result.first_id is not None:
        await _publish(request, dataset, table, good, result, received_at)
    headers = {**limit_headers(settings, dataset), **ignored_headers(result, len(good))}
    return Response(status_code=200, headers=headers)


async def _off_loop_if_shared(
    throttle: Throttle, method: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    # Limits shared by replicas live in PostgreSQL: each check is a database round trip,
    # which must not stall the event loop (and every live feed on it). In-memory checks
    # take microseconds and stay on the loop, where they need no locking.
    if throttle.shared is None:
        return method(*args, **kwargs)
    return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))


async def _parse_in_thread(body: bytes, shape: Shape, throttle: Throttle) -> list[Any]:
    # Large bodies are parsed off the event loop so live feeds keep flowing meanwhile.
    return await anyio.to_thread.run_sync(_parse, body, shape, throttle)


async def _publish(
    request: Request,
    dataset: Dataset,
    table: Table,
    good: list[dict[str, Any]],
    result: InsertResult,
    received_at: float,
) -> None:
    state = request.app.state
    metrics = getattr(state, "metrics", None)
    if metrics is not None:
        await _maybe_await(metrics.rows_ingested(result.stored))
    alerts = getattr(state, "alerts", None)
    if alerts is not None and result.first_id is not None:
        # Queued for the alerts thread (only if a rule watches this table): never waits.
        alerts.observe(
            dataset.id, table.name, good[len(good) - result.stored :], result.first_id, received_at
        )
    hub = getattr(state, "hub", None)
    # Building 10,000 StoredRows costs more than parsing them: skip it when nobody
    # listens. A feed that subscribes later replays these committed rows from storage.
    if hub is None or result.first_id is None or not getattr(hub, "subscriber_count", 1):
        return
    # Ids are consecutive within one insert; the stored rows are the last `stored` ones.
    stored_rows = good[len(good) - result.stored :]
    first = result.first_id
    try:
        if len(stored_rows) <= _PUBLISH_CHUNK_ROWS:  # the common case: no thread hop
            rows = _stored_rows(stored_rows, 0, first, received_at, table.name)
            await _maybe_await(hub.publish(dataset.id, table.name, rows))
            return
        # A big POST (limits off: up to millions of rows) is published in chunks, each
        # built off the loop: one giant batch made one giant SSE event on the loop and
        # stalled every other request for seconds. A feed that falls behind the chunks
        # is cut off by the hub and catches up from storage, page by page.
        for start in range(0, len(stored_rows), _PUBLISH_CHUNK_ROWS):
            if not hub.subscriber_count:
                return  # everyone left (or lagged): the rest would be built for nobody
            rows = await anyio.to_thread.run_sync(
                _stored_rows, stored_rows, start, first, received_at, table.name
            )
            await _maybe_await(hub.publish(dataset.id, table.name, rows))
    except Exception:  # a live-feed hiccup must not turn a committed write into a 500
        logger.exception("live feed publish failed for dataset %s", dataset.id)


def _stored_rows(
    rows: list[dict[str, Any]], start: int, first_id: int, received_at: float, table: str
) -> list[StoredRow]:
    """Rows ``start`` to ``start + _PUBLISH_CHUNK_ROWS`` as the hub publishes them."""
    chunk = rows[start : start + _PUBLISH_CHUNK_ROWS]
    base = first_id + start
    return [StoredRow(base + i, received_at, table, data) for i, data in enumerate(chunk)]


def limit_headers(settings: Settings, dataset: Dataset) -> dict[str, str]:
    """What a client needs to pace itself for this server, on every rows answer.

    ``X-PBIStream-Time-Scale`` (its ``--time-scale``), ``X-PBIStream-Limits`` (``on`` or
    ``off``) and ``X-PBIStream-Dataset-Mode`` (only Push and PushStreaming datasets
    count rows an hour; only Push takes 16 MB bodies): so a client pointed at a
    test server set with ``--time-scale 60`` paces itself to match without being told.
    """
    return {
        "X-PBIStream-Time-Scale": repr(float(settings.time_scale)),
        "X-PBIStream-Limits": "on" if settings.limits else "off",
        "X-PBIStream-Dataset-Mode": dataset.mode.value,
    }
