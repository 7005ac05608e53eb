"""The dashboard document the web UI saves: its shape, its limits and its checking.

A dashboard is ``{"name": str, "tiles": [tile, ...]}``. Every tile is bound to one table
of one dataset and placed on a 12-column grid. The server checks a dashboard fully
before saving it, so the browser never has to cope with a tile it cannot draw; each
message names the tile and the property at fault, e.g.
``tiles[2].fields[0]: 'temp' is not a column of table 'RealTimeData'``. Overlapping tiles
are not an error: later tiles move down until they fit (:func:`settle`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from pbistream.schema import Dataset
from pbistream.values import DataType

__all__ = [
    "GRID_COLUMNS",
    "MAX_TILES",
    "TILE_TYPES",
    "DashboardError",
    "settle",
    "validate_dashboard",
]

TILE_TYPES = ("card", "line", "bar", "column", "gauge", "table")
#: The grid is 12 columns wide; rows are as tall as the CSS says (about 80 px).
GRID_COLUMNS = 12
MAX_GRID_ROWS = 200
MAX_TILE_HEIGHT = 12
MAX_TILES = 60
MAX_NAME_CHARS = 100
MAX_TITLE_CHARS = 200
MAX_THRESHOLDS = 10
MAX_TABLE_ROWS = 100
#: A line chart shows from 10 seconds up to 7 days.
WINDOW_RANGE = (10, 7 * 24 * 3600)
_FIELD_COUNT = {
    "card": (1, 1),
    "gauge": (1, 1),
    "line": (1, 10),
    "bar": (1, 10),
    "column": (1, 10),
    "table": (1, 20),
}
_NUMERIC = {DataType.INT64, DataType.DOUBLE, DataType.DECIMAL}
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_COMMON = {"id", "type", "title", "datasetId", "table", "fields", "x", "y", "w", "h"}
_EXTRA = {
    "card": {"thresholds", "decimals", "unit"},
    "gauge": {"min", "max", "target", "thresholds", "decimals", "unit"},
    "line": {"windowSeconds", "timeField"},
    "bar": {"axis"},
    "column": {"axis"},
    "table": {"rows"},
}


class DashboardError(ValueError):
    """A dashboard document broke a rule; the message names where."""


DatasetLookup = Callable[[str], Dataset | None]


def validate_dashboard(body: Any, lookup: DatasetLookup) -> tuple[str, list[dict[str, Any]]]:
    """Check a dashboard document and return its name and normalised tiles.

    Args:
        body: The parsed JSON body.
        lookup: Finds a dataset by id (to check tables and fields exist).

    Returns:
        ``(name, tiles)`` with defaults filled in.

    Raises:
        DashboardError: The first rule broken, naming the tile and property.
    """
    if not isinstance(body, dict):
        raise DashboardError("The body must be a JSON object with 'name' and 'tiles'.")
    unknown = set(body) - {"name", "tiles", "id", "createdAt", "updatedAt"}
    if unknown:
        raise DashboardError(f"Unknown property {sorted(unknown)[0]!r}; use 'name' and 'tiles'.")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise DashboardError(f"'name' must be text of 1 to {MAX_NAME_CHARS} characters.")
    tiles = body.get("tiles", [])
    if not isinstance(tiles, list):
        raise DashboardError("'tiles' must be a list.")
    if len(tiles) > MAX_TILES:
        raise DashboardError(f"'tiles' holds {len(tiles)} tiles; at most {MAX_TILES} allowed.")
    datasets: dict[str, Dataset | None] = {}
    seen: set[str] = set()
    out = []
    for index, tile in enumerate(tiles):
        checked = _validate_tile(f"tiles[{index}]", tile, datasets, lookup)
        if checked["id"] in seen:
            raise DashboardError(f"tiles[{index}].id: {checked['id']!r} is used twice.")
        seen.add(checked["id"])
        out.append(checked)
    return name.strip(), settle(out)


def settle(tiles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Move tiles down until none overlaps an earlier one in the list.

    Tiles keep their column and order; an earlier tile keeps its place, so the UI puts
    a tile the user just dragged first and the tiles it landed on make room below it.

    Args:
        tiles: Checked tiles (``x``, ``y``, ``w``, ``h`` in grid cells).

    Returns:
        The same tiles, with ``y`` changed where they overlapped.
    """
    taken: set[tuple[int, int]] = set()
    for tile in tiles:
        columns = range(tile["x"], tile["x"] + tile["w"])
        while any(
            (c, r) in taken for c in columns for r in range(tile["y"], tile["y"] + tile["h"])
        ):
            tile["y"] += 1
        taken.update((c, r) for c in columns for r in range(tile["y"], tile["y"] + tile["h"]))
    return tiles


def _validate_tile(
    where: str,
    tile: Any,
    datasets: dict[str, Dataset | None],
    lookup: DatasetLookup,
) -> dict[str, Any]:
    if not isinstance(tile, dict):
        raise DashboardError(f"{where}: a tile must be a JSON object.")
    kind = tile.get("type")
    if kind not in TILE_TYPES:
        raise DashboardError(f"{where}.type: must be one of {', '.join(TILE_TYPES)}.")
    unknown = set(tile) - _COMMON - _EXTRA[kind]
    if unknown:
        raise DashboardError(f"{where}: unknown property {sorted(unknown)[0]!r} for a {kind} tile.")
    out: dict[str, Any] = {"type": kind}
    out["id"] = tile.get("id")
    if not isinstance(out["id"], str) or not _ID.match(out["id"]):
        raise DashboardError(f"{where}.id: must be 1-64 letters, digits, '-' or '_'.")
    title = tile.get("title", "")
    if not isinstance(title, str) or len(title) > MAX_TITLE_CHARS:
        raise DashboardError(
            f"{where}.title: must be text of at most {MAX_TITLE_CHARS} characters."
        )
    out["title"] = title
    out.update(_place(where, tile))
    dataset_id = tile.get("datasetId")
    if not isinstance(dataset_id, str) or not dataset_id:
        raise DashboardError(f"{where}.datasetId: must be a dataset id.")
    if dataset_id not in datasets:
        datasets[dataset_id] = lookup(dataset_id)
    dataset = datasets[dataset_id]
    if dataset is None:
        raise DashboardError(f"{where}.datasetId: no dataset with id {dataset_id!r}.")
    table = dataset.table(str(tile.get("table", "")))
    if table is None:
        names = ", ".join(repr(t.name) for t in dataset.tables)
        raise DashboardError(
            f"{where}.table: dataset {dataset.name!r} has no table {tile.get('table')!r} "
            f"(it has {names})."
        )
    out["datasetId"], out["table"] = dataset_id, table.name
    fields = tile.get("fields")
    low, high = _FIELD_COUNT[kind]
    if not isinstance(fields, list) or not low <= len(fields) <= high:
        count = "exactly 1 field" if high == 1 else f"{low} to {high} fields"
        raise DashboardError(f"{where}.fields: a {kind} tile shows {count}.")
    for position, name in enumerate(fields):
        column = table.column(name) if isinstance(name, str) else None
        if column is None:
            raise DashboardError(
                f"{where}.fields[{position}]: {name!r} is not a column of table {table.name!r}."
            )
        if kind in ("line", "bar", "column", "gauge") and column.data_type not in _NUMERIC:
            raise DashboardError(
                f"{where}.fields[{position}]: a {kind} tile plots numbers; {name!r} is "
                f"{column.data_type.value}."
            )
    out["fields"] = list(fields)
    out.update(_EXTRA_CHECKS[kind](where, tile, {c.name: c.data_type for c in table.columns}))
    return out


def _int_in(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DashboardError(f"{where}: must be a whole number from {low} to {high}.")
    return value


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DashboardError(f"{where}: must be a finite number.")
    return float(value)


def _place(where: str, tile: Mapping[str, Any]) -> dict[str, int]:
    w = _int_in(f"{where}.w", tile.get("w", 4), 1, GRID_COLUMNS)
    x = _int_in(f"{where}.x", tile.get("x", 0), 0, GRID_COLUMNS - w)
    h = _int_in(f"{where}.h", tile.get("h", 3), 1, MAX_TILE_HEIGHT)
    y = _int_in(f"{where}.y", tile.get("y", 0), 0, MAX_GRID_ROWS)
    return {"x": x, "y": y, "w": w, "h": h}


def _thresholds(where: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_THRESHOLDS:
        raise DashboardError(f"{where}: must be a list of at most {MAX_THRESHOLDS} thresholds.")
    out = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, dict) or set(item) - {"value", "color"}:
            raise DashboardError(f"{here}: must be {{'value': number, 'color': '#rrggbb'}}.")
        color = item.get("color")
        if not isinstance(color, str) or not _COLOR.match(color):
            raise DashboardError(f"{here}.color: must be a colour like '#d13438'.")
        out.append({"value": _number(f"{here}.value", item.get("value")), "color": color})
    return sorted(out, key=lambda t: t["value"])


def _display(where: str, tile: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "thresholds": _thresholds(f"{where}.thresholds", tile.get("thresholds", []))
    }
    out["decimals"] = _int_in(f"{where}.decimals", tile.get("decimals", 2), 0, 10)
    unit = tile.get("unit", "")
    if not isinstance(unit, str) or len(unit) > 20:
        raise DashboardError(f"{where}.unit: must be text of at most 20 characters.")
    out["unit"] = unit
    return out


def _card(where: str, tile: Mapping[str, Any], columns: dict[str, DataType]) -> dict[str, Any]:
    return _display(where, tile)


def _gauge(where: str, tile: Mapping[str, Any], columns: dict[str, DataType]) -> dict[str, Any]:
    out = _display(where, tile)
    low = _number(f"{where}.min", tile.get("min", 0))
    high = _number(f"{where}.max", tile.get("max", 100))
    if not low < high:
        raise DashboardError(f"{where}.max: must be greater than min ({low:g}).")
    out["min"], out["max"] = low, high
    if tile.get("target") is not None:
        target = _number(f"{where}.target", tile["target"])
        if not low <= target <= high:
            raise DashboardError(f"{where}.target: must lie between min and max.")
        out["target"] = target
    return out


def _line(where: str, tile: Mapping[str, Any], columns: dict[str, DataType]) -> dict[str, Any]:
    seconds = _int_in(f"{where}.windowSeconds", tile.get("windowSeconds", 300), *WINDOW_RANGE)
    out: dict[str, Any] = {"windowSeconds": seconds}
    time_field = tile.get("timeField")
    if time_field is not None and time_field != "":
        if not isinstance(time_field, str) or columns.get(time_field) is not DataType.DATETIME:
            raise DashboardError(
                f"{where}.timeField: {time_field!r} is not a DateTime column of the tile's table."
            )
        out["timeField"] = time_field
    return out


def _bars(where: str, tile: Mapping[str, Any], columns: dict[str, DataType]) -> dict[str, Any]:
    axis = tile.get("axis")
    if axis is None or axis == "":
        return {}
    if not isinstance(axis, str) or axis not in columns:
        raise DashboardError(f"{where}.axis: {axis!r} is not a column of the tile's table.")
    return {"axis": axis}


def _rows(where: str, tile: Mapping[str, Any], columns: dict[str, DataType]) -> dict[str, Any]:
    return {"rows": _int_in(f"{where}.rows", tile.get("rows", 10), 1, MAX_TABLE_ROWS)}


_EXTRA_CHECKS: dict[
    str, Callable[[str, Mapping[str, Any], dict[str, DataType]], dict[str, Any]]
] = {
    "card": _card,
    "gauge": _gauge,
    "line": _line,
    "bar": _bars,
    "column": _bars,
    "table": _rows,
}
