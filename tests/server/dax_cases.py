"""The rows the executeQueries tests push, and an independent computation of each DAX form.

The expectations are plain Python over the rows read back through ``/api`` (not the
DAX package, not SQL), so a wrong plan or wrong SQL shows as a mismatch.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]
FIELDS = {
    "Region": "Text",
    "Product": "Text",
    "Amount": "Number",
    "Qty": "Int64",
    "Price": "Decimal",
    "Sold": "DateTime",
    "Returned": "Boolean",
}


def make_rows(n: int = 150, seed: int = 9) -> list[Row]:
    """Seeded rows with some blanks (missing fields) in every column but Region."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for i in range(n):
        row: Row = {
            "Region": rng.choice(["East", "West", "North", "South"]),
            "Product": rng.choice(["Bike", "Helmet", "Lock", "Pump", "Bell"]),
            "Amount": round(rng.uniform(-50, 500), 2),
            "Qty": rng.randint(0, 12),
            "Price": round(rng.uniform(1, 99), 2),
            "Sold": f"2026-0{rng.randint(1, 9)}-{rng.randint(10, 28)}"
            f"T{rng.randint(10, 23)}:00:00.000Z",
            "Returned": rng.random() < 0.3,
        }
        for name in ("Product", "Amount", "Qty", "Price", "Sold", "Returned"):
            if rng.random() < 0.07 and i > 3:
                del row[name]
        rows.append(row)
    return rows


def shown(value: Any) -> Any:
    """A stored value as executeQueries answers it (DateTime without Z and .000)."""
    if isinstance(value, str) and len(value) == 24 and value.endswith("Z") and value[10] == "T":
        text = value[:-1]
        return text[:-4] if text.endswith(".000") else text
    return value


def qualified(row: Row) -> Row:
    return {f"Sales[{k}]": shown(v) for k, v in row.items() if v is not None}


def group_by(
    rows: list[Row], keys: list[str], measures: dict[str, Callable[[list[Row]], Any]]
) -> list[Row]:
    """SUMMARIZECOLUMNS: one row per existing key combination; all-blank measures dropped."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    out = []
    for key, members in groups.items():
        values = {f"[{name}]": fn(members) for name, fn in measures.items()}
        if measures and all(v is None for v in values.values()):
            continue
        result = {f"Sales[{k}]": shown(v) for k, v in zip(keys, key, strict=True) if v is not None}
        result.update({k: v for k, v in values.items() if v is not None})
        out.append(result)
    return out


def present(rows: list[Row], field: str) -> list[Any]:
    return [r[field] for r in rows if r.get(field) is not None]


def agg_sum(field: str) -> Callable[[list[Row]], Any]:
    return lambda rows: sum(present(rows, field)) if present(rows, field) else None


def agg_avg(field: str) -> Callable[[list[Row]], Any]:
    return lambda rows: (
        (sum(present(rows, field)) / len(present(rows, field))) if present(rows, field) else None
    )


def agg_min(field: str) -> Callable[[list[Row]], Any]:
    return lambda rows: shown(min(present(rows, field))) if present(rows, field) else None


def agg_max(field: str) -> Callable[[list[Row]], Any]:
    return lambda rows: shown(max(present(rows, field))) if present(rows, field) else None


def agg_count(field: str) -> Callable[[list[Row]], Any]:
    return lambda rows: len(present(rows, field)) or None


def agg_countrows(rows: list[Row]) -> Any:
    return len(rows) or None


def agg_distinctcount(field: str) -> Callable[[list[Row]], Any]:
    return lambda rows: len({r.get(field) for r in rows}) or None


def top_with_ties(rows: list[Row], n: int, key: Callable[[Row], Any]) -> list[Row]:
    """DAX TOPN, descending: the n first rows and every row tied with the n-th."""
    ranked = sorted(rows, key=key, reverse=True)
    if len(ranked) <= n:
        return ranked
    cut = key(ranked[n - 1])
    return [r for r in ranked if key(r) >= cut]


def blank_low(value: Any) -> tuple[int, Any]:
    """Sort key where BLANK is the smallest value, as in DAX."""
    return (0, 0) if value is None else (1, value)
