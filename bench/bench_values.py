"""Benchmark the value rules on numeric rows: ``python bench/bench_values.py [--rows 200000]``.

Numbers sent as text (``"21.5"``, what ``Import-Csv`` hands ``Add-PowerBIRow``) are
converted by default (``text_numbers``). This measures, on one core, rows/s of
``RowRules.normalize_rows`` over 4 numeric columns (2 Int64, 2 Double):

(a) JSON numbers, strict rules (``text_numbers=False``: the rules before conversion);
(b) JSON numbers, converting rules (the default: must cost nothing extra);
(c) the same values as text, converting rules (the CSV case);
(d) the obvious alternative for (c): ``int()``/``float()`` on every cell, no checks;
(e) the ideal: a plain ``dict(row)`` copy (no rule at all).

Best of 7 runs each. Prints a table and writes ``bench/results/values.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pbistream.values import DataType, RowRules

RESULTS = Path(__file__).parent / "results" / "values.json"
TYPES = {"a": DataType.INT64, "b": DataType.DOUBLE, "c": DataType.INT64, "d": DataType.DOUBLE}


def _best(work: Callable[[], Any], runs: int = 7) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    count = parser.parse_args().rows
    numbers = [{"a": i, "b": i * 0.5, "c": -i, "d": i / 3} for i in range(count)]
    texts = [{k: str(v) for k, v in row.items()} for row in numbers]
    strict = RowRules(TYPES, text_numbers=False)
    converting = RowRules(TYPES)
    casts = {"a": int, "b": float, "c": int, "d": float}

    def naive_casts() -> list[dict[str, Any]]:
        return [{k: casts[k](v) for k, v in row.items()} for row in texts]

    good, errors = converting.normalize_rows(texts)
    assert not errors and good == converting.normalize_rows(numbers)[0]
    seconds = {
        "(a) numbers, strict rules": _best(lambda: strict.normalize_rows(numbers)),
        "(b) numbers, converting rules (default)": _best(
            lambda: converting.normalize_rows(numbers)
        ),
        "(c) text, converting rules": _best(lambda: converting.normalize_rows(texts)),
        "(d) text, bare int()/float() casts": _best(naive_casts),
        "(e) ideal: dict(row) copy": _best(lambda: [dict(row) for row in numbers]),
    }
    rates = {name: count / s for name, s in seconds.items()}
    where = f"{platform.machine()}, Python {platform.python_version()}"
    print(f"{count:,} rows x 4 numeric columns, best of 7, one core ({where})")
    for name, rate in rates.items():
        print(f"  {name:42} {rate:12,.0f} rows/s")
    b, a = rates["(b) numbers, converting rules (default)"], rates["(a) numbers, strict rules"]
    c, d = rates["(c) text, converting rules"], rates["(d) text, bare int()/float() casts"]
    print(f"  default vs strict on numbers: {b / a:.2f}x; text vs bare casts: {c / d:.2f}x")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": count, "rows_per_second": rates}, indent=2) + "\n")


if __name__ == "__main__":
    main()
