"""Line-chart data, downsampled on the server: ``GET /api/datasets/{id}/series``.

A line chart cannot show more points than it has pixels, so when a time window holds
more rows than the chart asked for, each field is reduced per time bucket to the
bucket's minimum and maximum (in time order). Unlike averaging, min/max keeps every
spike visible, and the browser never downloads or draws rows it could not show.

The x value is the row's arrival time (``received_at``, epoch seconds), the same
clock the live feed carries, or, with ``time=FIELD``, a DateTime column of the row (as
Power BI's line tile plots its axis field); rows pushed together in one request then
still spread out in time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.server.api import streaming_floor
from pbistream.server.errors import BadRequest, EntityNotFound
from pbistream.server.ui.http import api_endpoint, json_response
from pbistream.storage.base import Storage
from pbistream.values import DataType

__all__ = ["MAX_POINTS", "MAX_SCAN_ROWS", "MAX_SCAN_VALUES", "downsample_minmax", "routes"]

#: Most points a caller may ask for per field (a 4K-wide chart at 2 points per pixel).
MAX_POINTS = 8_000
#: Default window when ``since`` is not given.
DEFAULT_WINDOW_SECONDS = 300.0
#: Most rows one pass reads; past it ``truncated`` is true and the newest rows are drawn.
MAX_SCAN_ROWS = 1_000_000
#: Most values (rows x fields) one pass keeps before downsampling. A kept value costs
#: about 110 bytes, so 10 fields of 1,000,000 rows would hold over a gigabyte for one
#: request; this budget keeps it near 110 MB, and fewer rows are read per extra field.
MAX_SCAN_VALUES = 1_000_000
#: Scans one server runs at once; more wait their turn. Each may keep MAX_SCAN_VALUES
#: values, so this bounds the memory all of them hold together (and the machine's cores).
MAX_CONCURRENT_SCANS = 2
#: Most fields one chart may plot.
MAX_FIELDS = 10
_PAGE = 5_000
_PLOTTABLE = {DataType.INT64, DataType.DOUBLE, DataType.DECIMAL, DataType.BOOLEAN}

Point = tuple[float, float]


def downsample_minmax(points: Sequence[Point], max_points: int) -> list[Point]:
    """Reduce time-ordered points to at most ``max_points``, keeping each bucket's extremes.

    The time span is cut into ``max_points // 2`` equal buckets; each bucket contributes
    its minimum and its maximum point, in time order (one point when they coincide).

    Args:
        points: ``(t, value)`` pairs in ascending ``t``.
        max_points: The most points to return (at least 2).

    Returns:
        The points unchanged when they already fit, else the reduced list.
    """
    if len(points) <= max_points:
        return list(points)
    buckets = max(1, max_points // 2)
    start, end = points[0][0], points[-1][0]
    span = (end - start) or 1.0
    chosen: list[Point] = []
    current = -1
    low: Point = points[0]
    high: Point = points[0]
    for point in points:
        index = min(buckets - 1, int((point[0] - start) / span * buckets))
        if index != current:
            if current >= 0:
                chosen.extend(_bucket_extremes(low, high))
            current, low, high = index, point, point
        elif point[1] < low[1]:
            low = point
        elif point[1] > high[1]:
            high = point
    chosen.extend(_bucket_extremes(low, high))
    return chosen


def _bucket_extremes(low: Point, high: Point) -> list[Point]:
    if low is high:
        return [low]
    return [low, high] if low[0] <= high[0] else [high, low]


def _number(value: Any) -> float | None:
    """A plottable number, or None (nulls and text leave a gap rather than a fake zero)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be epoch seconds, got {raw!r}.") from None
    if not math.isfinite(value):
        raise BadRequest(f"'{name}' must be a finite number.")
    return value


def _points_param(request: Request) -> int:
    raw = request.query_params.get("points", "1000")
    # isascii(): str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not 2 <= int(raw) <= MAX_POINTS:
        raise BadRequest(f"'points' must be a whole number from 2 to {MAX_POINTS}.")
    return int(raw)


def _epoch(value: Any) -> float | None:
    """A stored DateTime (``YYYY-MM-DDTHH:MM:SS.fffZ``, UTC) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _row_budget(fields: list[str]) -> int:
    """Rows one pass may read: MAX_SCAN_ROWS, fewer when many fields share the value budget."""
    return max(1, min(MAX_SCAN_ROWS, MAX_SCAN_VALUES // max(1, len(fields))))


def _scan(
    storage: Storage,
    dataset_id: str,
    table: str,
    fields: list[str],
    window: tuple[float, float],
    time_field: str | None,
) -> tuple[dict[str, list[Point]], int, int | None, float | None]:
    """Read up to :func:`_row_budget` rows of the window, oldest first.

    Returns:
        The points per field, rows scanned, the last row id and its arrival time.
    """
    raw: dict[str, list[Point]] = {f: [] for f in fields}
    after: int | None = None
    scanned = 0
    last_id: int | None = None
    last_at: float | None = None
    budget = _row_budget(fields)
    while scanned < budget:
        limit = min(_PAGE, budget - scanned)
        page = storage.read_rows(
            dataset_id, table, after_id=after, since=window[0], until=window[1], limit=limit
        )
        for row in page:
            x = row.received_at if time_field is None else _epoch(row.data.get(time_field))
            if x is None:
                continue
            for name in fields:
                value = _number(row.data.get(name))
                if value is not None:
                    raw[name].append((x, value))
        scanned += len(page)
        if page:
            after = last_id = page[-1].id
            last_at = page[-1].received_at
        if len(page) < limit:
            break
    return raw, scanned, last_id, last_at


def _read_series(
    storage: Storage,
    dataset_id: str,
    table: str,
    fields: list[str],
    since: float,
    until: float,
    points: int,
    time_field: str | None = None,
) -> dict[str, Any]:
    raw, scanned, last_id, last_at = _scan(
        storage, dataset_id, table, fields, (since, until), time_field
    )
    truncated = scanned >= _row_budget(fields)
    if truncated and last_at is not None and last_at > since:
        # Too many rows: the oldest ones filled the budget. A chart wants the newest, so
        # scan again from where the same budget should reach the end of the window.
        start = max(since, until - (last_at - since))
        raw, scanned, last_id, _ = _scan(
            storage, dataset_id, table, fields, (start, until), time_field
        )
    if time_field is not None:
        # Rows arrive in id order; a device's own clock may not agree with it.
        for pts in raw.values():
            pts.sort(key=lambda p: p[0])
    series = {name: downsample_minmax(pts, points) for name, pts in raw.items()}
    return {
        "table": table,
        "time": time_field or "received_at",
        "since": since,
        "until": until,
        "rawCount": {name: len(pts) for name, pts in raw.items()},
        "downsampled": any(len(series[n]) < len(raw[n]) for n in fields),
        "truncated": truncated,
        "lastId": last_id,
        "series": {name: [list(p) for p in pts] for name, pts in series.items()},
    }


@api_endpoint
async def series(request: Request) -> Response:
    """``GET /api/datasets/{id}/series?table=&field=&since=&until=&points=[&time=]``.

    The window (``since``/``until``) selects rows by arrival time; ``time`` names a
    DateTime column to use as the x value instead of the arrival time.
    """
    storage: Storage = request.app.state.storage
    dataset_id = request.path_params["dataset_id"]
    dataset = await run_in_threadpool(storage.get_dataset, dataset_id)
    if dataset is None:
        raise EntityNotFound(f"No dataset with id {dataset_id!r}.")
    table_name = request.query_params.get("table") or (
        dataset.tables[0].name if len(dataset.tables) == 1 else ""
    )
    table = dataset.table(table_name)
    if table is None:
        raise BadRequest(f"'table': the dataset has no table {table_name!r}.")
    fields = list(dict.fromkeys(request.query_params.getlist("field")))
    if not 1 <= len(fields) <= MAX_FIELDS:
        raise BadRequest(f"Give 1 to {MAX_FIELDS} 'field' parameters.")
    for name in fields:
        column = table.column(name)
        if column is None or column.data_type not in _PLOTTABLE:
            raise BadRequest(
                f"'field': {name!r} is not a number or boolean column of table {table.name!r}."
            )
    until = _float_param(request, "until")
    until = time.time() if until is None else until
    since = _float_param(request, "since")
    since = until - DEFAULT_WINDOW_SECONDS if since is None else since
    if since > until:
        raise BadRequest("'since' must not be after 'until'.")
    # A Streaming-only dataset shows its 60-minute cache, never rows awaiting clean-up.
    floor = streaming_floor(dataset, request.app.state.settings.time_scale)
    if floor is not None:
        since = max(since, floor)
    points = _points_param(request)
    time_field = request.query_params.get("time") or None
    if time_field is not None:
        column = table.column(time_field)
        if column is None or column.data_type is not DataType.DATETIME:
            raise BadRequest(f"'time': {time_field!r} is not a DateTime column of {table.name!r}.")
    async with _scan_slots(request):
        body = await run_in_threadpool(
            _read_series, storage, dataset_id, table.name, fields, since, until, points, time_field
        )
    return json_response(body)


def _scan_slots(request: Request) -> anyio.Semaphore:
    """This app's MAX_CONCURRENT_SCANS slots (made on first use, on the event loop)."""
    slots: anyio.Semaphore | None = getattr(request.app.state, "series_scans", None)
    if slots is None:
        slots = anyio.Semaphore(MAX_CONCURRENT_SCANS)
        request.app.state.series_scans = slots
    return slots


routes: list[BaseRoute] = [Route("/api/datasets/{dataset_id}/series", series, methods=["GET"])]
