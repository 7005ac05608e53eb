"""executeQueries (DAX) over 1,000,000 rows, side by side with the same SQL run directly.

One command: ``python bench/bench_dax.py [--rows 1000000] [--repeat 5] [--postgres URL]``.

For SQLite and for PostgreSQL (skipped with a note when it cannot be reached):

1. Loads ``--rows`` rows (Region, Product, Amount, Qty, Sold) into a fresh storage.
2. Times ``SUMMARIZECOLUMNS('Sales'[Region], "Total", SUM('Sales'[Amount]), "Qty",
   SUM('Sales'[Qty]))`` (best of ``--repeat``):

   - **first query**: executeQueries over HTTP on loopback, the first time (it
     builds the table's typed copy, storage/_dax_columns.py);
   - **executeQueries**: the same, warm;
   - **+10k rows**: one query after 10,000 more rows arrived (copies just those);
   - **execute_plan**: the storage method the endpoint calls (no HTTP);
   - **SQL on JSON**: the same query as SQL straight over the stored JSON rows, run
     on the database connection (the obvious alternative: no DAX, no server);
   - **SQL on typed**: the SQL over the typed copy, run directly: the ideal for this
     layout (what is left is the server's own overhead).

Prints a table with the ratios and writes ``bench/results/dax.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pbistream.dax import plan_dax
from pbistream.dax.sql import POSTGRES, SQLITE, compile_plan
from pbistream.schema import Column, Dataset, Mode, Retention, Table
from pbistream.server.settings import Settings
from pbistream.storage.base import Storage
from pbistream.testing import serve_in_thread
from pbistream.values import DataType

RESULTS = Path(__file__).parent / "results" / "dax.json"
QUERY = (
    "EVALUATE SUMMARIZECOLUMNS('Sales'[Region], "
    "\"Total\", SUM('Sales'[Amount]), \"Qty\", SUM('Sales'[Qty]))"
)
TABLE = Table(
    "Sales",
    (
        Column("Region", DataType.STRING),
        Column("Product", DataType.STRING),
        Column("Amount", DataType.DOUBLE),
        Column("Qty", DataType.INT64),
        Column("Sold", DataType.DATETIME),
    ),
)
BATCH = 10_000


def make_rows(start: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    regions = [f"Region {i}" for i in range(20)]
    return [
        {
            "Region": regions[i % 20],
            "Product": f"P{rng.randrange(500)}",
            "Amount": round(rng.uniform(0, 1000), 2),
            "Qty": rng.randrange(100),
            "Sold": f"2026-01-{1 + i % 28:02d}T10:00:00.000Z",
        }
        for i in range(start, start + count)
    ]


def load(storage: Storage, rows: int) -> Dataset:
    dataset = Dataset(
        id=secrets.token_hex(8),
        name="bench",
        mode=Mode.PUSH,
        retention=Retention.NONE,
        tables=[TABLE],
        group_id=None,
        push_key=None,
        created_at=time.time(),
    )
    storage.create_dataset(dataset)
    rng = random.Random(1)
    started = time.perf_counter()
    for start in range(0, rows, BATCH):
        batch = make_rows(start, min(BATCH, rows - start), rng)
        storage.insert_rows(dataset.id, "Sales", batch, received_at=time.time())
    print(f"  loaded {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    return dataset


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm the page cache and the statement caches
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def run_backend(
    name: str, storage: Any, direct: Callable[[str, list[Any]], Any], dataset: Dataset, repeat: int
) -> dict[str, Any]:
    plan, _ = plan_dax(QUERY, dataset.tables)
    dialect = SQLITE if name == "sqlite" else POSTGRES
    json_sql, json_params = compile_plan(plan, dataset.id, dialect, limit=100_001)
    settings = Settings(
        host="127.0.0.1", port=0, token=secrets.token_urlsafe(16), data_dir=tempfile.mkdtemp()
    )
    out: dict[str, Any] = {"backend": name}
    with serve_in_thread(settings, storage=storage) as server, server.client(timeout=300) as client:
        url = f"/v1.0/myorg/datasets/{dataset.id}/executeQueries"

        def http() -> Any:
            response = client.post(url, json={"queries": [{"query": QUERY}]})
            response.raise_for_status()
            return response.json()["results"][0]["tables"][0]["rows"]

        started = time.perf_counter()
        http()
        out["first_query_s"] = time.perf_counter() - started  # builds the typed copy
        out["executeQueries_s"], rows = best(http, repeat)
        more = make_rows(0, BATCH, random.Random(2))
        storage.insert_rows(dataset.id, "Sales", more, received_at=time.time())
        started = time.perf_counter()
        http()
        out["after_10k_inserts_s"] = time.perf_counter() - started  # copies the new rows
    out["execute_plan_s"], _ = best(
        lambda: storage.execute_plan(dataset.id, plan, max_rows=100_001), repeat
    )
    # The obvious alternative: the same query as SQL straight over the JSON rows.
    out["json_sql_s"], direct_rows = best(lambda: direct(json_sql, json_params), repeat)
    # The ideal this layout allows: the same SQL over the typed copy, run directly.
    sources = storage._sync_dax_columns(dataset.id, plan)
    typed_sql, typed_params = compile_plan(
        plan, dataset.id, dialect, limit=100_001, sources=sources
    )
    out["typed_sql_s"], _ = best(lambda: direct(typed_sql, typed_params), repeat)
    assert len(rows) == len(direct_rows) == 20, (len(rows), len(direct_rows))
    out["groups"] = len(rows)
    return out


def bench_sqlite(rows: int, repeat: int) -> dict[str, Any]:
    import sqlite3

    from pbistream.storage.sqlite import SQLiteStorage

    with tempfile.TemporaryDirectory() as tmp:
        storage = SQLiteStorage(Path(tmp) / "bench.db")
        try:
            dataset = load(storage, rows)
            conn = sqlite3.connect(Path(tmp) / "bench.db")
            return run_backend(
                "sqlite",
                storage,
                lambda sql, params: conn.execute(sql, params).fetchall(),
                dataset,
                repeat,
            )
        finally:
            storage.close()


def bench_postgres(url: str, rows: int, repeat: int) -> dict[str, Any] | str:
    try:
        import psycopg
        from psycopg import sql as pgsql

        from pbistream.storage.postgres import PostgresStorage

        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:  # not installed, or not reachable: say so and go on
        return f"skipped: PostgreSQL not reachable at {url} ({exc!s:.80})"
    schema = f"bench_dax_{secrets.token_hex(4)}"
    storage = PostgresStorage(url, schema=schema)
    conn = psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}")
    try:
        dataset = load(storage, rows)
        conn.execute("ANALYZE rows")
        return run_backend(
            "postgres",
            storage,
            lambda sql, params: conn.execute(sql.replace("?", "%s"), params).fetchall(),
            dataset,
            repeat,
        )
    finally:
        storage.close()
        conn.execute(pgsql.SQL("DROP SCHEMA {} CASCADE").format(pgsql.Identifier(schema)))
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "PBISTREAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    print(f"SUMMARIZECOLUMNS, one group, two SUMs, over {args.rows:,} rows", flush=True)
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    print("SQLite:", flush=True)
    results.append(bench_sqlite(args.rows, args.repeat))
    print("PostgreSQL:", flush=True)
    pg = bench_postgres(args.postgres, args.rows, args.repeat)
    if isinstance(pg, str):
        notes.append(pg)
        print(f"  {pg}")
    else:
        results.append(pg)
    print()
    header = (
        "backend",
        "first query",
        "executeQueries",
        "+10k rows",
        "execute_plan",
        "SQL on JSON",
        "SQL on typed",
        "vs JSON",
        "vs typed",
    )
    print("{:<9} {:>12} {:>15} {:>10} {:>13} {:>12} {:>13} {:>8} {:>9}".format(*header))
    for r in results:
        r["json_sql_over_endpoint"] = r["json_sql_s"] / r["executeQueries_s"]
        r["endpoint_over_typed_sql"] = r["executeQueries_s"] / r["typed_sql_s"]
        ms = [
            r[k] * 1000
            for k in (
                "first_query_s",
                "executeQueries_s",
                "after_10k_inserts_s",
                "execute_plan_s",
                "json_sql_s",
                "typed_sql_s",
            )
        ]
        line = "{:<9} {:>9.0f} ms {:>12.0f} ms {:>7.0f} ms {:>10.0f} ms {:>9.0f} ms {:>10.0f} ms"
        print(
            line.format(r["backend"], *ms)
            + f" {r['json_sql_over_endpoint']:>7.1f}x {r['endpoint_over_typed_sql']:>8.2f}x"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "rows": args.rows,
                "query": QUERY,
                "results": results,
                "notes": notes,
                "machine": {
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
