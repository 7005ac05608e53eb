"""executeQueries (DAX) over 1,000,000 rows, side by side with the same SQL run directly.

One command: ``python bench/bench_dax.py [--rows 1000000] [--repeat 5] [--postgres URL]``.

For SQLite and for PostgreSQL (skipped with a note when it cannot be reached):

1. Loads ``--rows`` rows (Region, Product, Amount, Qty, Sold) into a fresh storage.
2. Times ``SUMMARIZECOLUMNS('Sales'[Region], "Total", SUM('Sales'[Amount]), "Qty",
   SUM('Sales'[Qty]))`` four ways (best of ``--repeat``):

   - **executeQueries**: POST to a real server on loopback, answer parsed;
   - **execute_plan**: the storage method the endpoint calls (no HTTP);
   - **same SQL, direct**: the SQL the plan compiles to, run on the database
     connection (the obvious alternative: no DAX, no server);
   - **typed columns (ideal)**: the same GROUP BY over a table with real typed
     columns instead of JSON text, what a columnar/typed layout would allow.

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
    name: str,
    storage: Storage,
    direct: Callable[[str, list[Any]], Any],
    typed: Callable[[], Any],
    dataset: Dataset,
    repeat: int,
) -> dict[str, Any]:
    plan, _ = plan_dax(QUERY, dataset.tables)
    dialect = SQLITE if name == "sqlite" else POSTGRES
    sql, params = compile_plan(plan, dataset.id, dialect, limit=100_001)
    settings = Settings(
        host="127.0.0.1", port=0, token=secrets.token_urlsafe(16), data_dir=tempfile.mkdtemp()
    )
    out: dict[str, Any] = {"backend": name}
    with serve_in_thread(settings, storage=storage) as server, server.client(timeout=120) as client:
        url = f"/v1.0/myorg/datasets/{dataset.id}/executeQueries"

        def http() -> Any:
            response = client.post(url, json={"queries": [{"query": QUERY}]})
            response.raise_for_status()
            return response.json()["results"][0]["tables"][0]["rows"]

        out["executeQueries_s"], rows = best(http, repeat)
    out["execute_plan_s"], _ = best(
        lambda: storage.execute_plan(dataset.id, plan, max_rows=100_001), repeat
    )
    out["direct_sql_s"], direct_rows = best(lambda: direct(sql, params), repeat)
    out["typed_columns_s"], _ = best(typed, repeat)
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
            conn.execute(
                "CREATE TABLE typed AS SELECT json_extract(data, '$.Region') AS region, "
                "json_extract(data, '$.Amount') AS amount, json_extract(data, '$.Qty') AS qty "
                "FROM rows WHERE dataset_id = ?",
                (dataset.id,),
            )
            conn.commit()
            typed_sql = "SELECT region, SUM(amount), SUM(qty) FROM typed GROUP BY region"
            return run_backend(
                "sqlite",
                storage,
                lambda sql, params: conn.execute(sql, params).fetchall(),
                lambda: conn.execute(typed_sql).fetchall(),
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
        conn.execute(
            "CREATE TABLE typed AS SELECT data::jsonb ->> 'Region' AS region, "
            "(data::jsonb ->> 'Amount')::float8 AS amount, (data::jsonb ->> 'Qty')::bigint AS qty "
            "FROM rows WHERE dataset_id = %s",
            (dataset.id,),
        )
        conn.execute("ANALYZE typed")
        typed_sql = "SELECT region, SUM(amount), SUM(qty) FROM typed GROUP BY region"
        return run_backend(
            "postgres",
            storage,
            lambda sql, params: conn.execute(sql.replace("?", "%s"), params).fetchall(),
            lambda: conn.execute(typed_sql).fetchall(),
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
    print(
        f"{'backend':<10} {'executeQueries':>15} {'execute_plan':>13} {'same SQL':>10} "
        f"{'typed cols':>11} "
        f"{'HTTP/SQL':>9} {'SQL/typed':>10}"
    )
    for r in results:
        r["endpoint_over_sql"] = r["executeQueries_s"] / r["direct_sql_s"]
        r["json_over_typed"] = r["direct_sql_s"] / r["typed_columns_s"]
        print(
            f"{r['backend']:<10} {r['executeQueries_s'] * 1000:>12.0f} ms "
            f"{r['execute_plan_s'] * 1000:>10.0f} ms "
            f"{r['direct_sql_s'] * 1000:>7.0f} ms {r['typed_columns_s'] * 1000:>8.0f} ms "
            f"{r['endpoint_over_sql']:>8.2f}x {r['json_over_typed']:>9.1f}x"
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
