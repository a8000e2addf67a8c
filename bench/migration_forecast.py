"""Benchmark: stackshift's calibrated forecast against the measured duration, on a real PostgreSQL 15 table of
5 million rows and more than 500 MB, for an int→bigint ALTER (a rewrite, with its primary key rebuilt) and a
plain CREATE INDEX.

Each round, in one run: the probe calibrates on the same server (as `analyze-migrations --dsn` does), the forecast is
made from the live catalog, then the statements run and are timed. The ALTER is undone (bigint→int, untimed)
between rounds. The ratio is measured / forecast point, the point being the geometric mean of the range.

Run: `.venv/bin/python -m bench.migration_forecast [--rows 5000000] [--rounds 3]` (after lab/setup).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

from core.migrations import migcheck

from core.migrations import pgcatalog
from lab.pg import scratch_server

ALTER = "ALTER TABLE big ALTER COLUMN total_tokens TYPE bigint"
INDEX = "CREATE INDEX big_account_idx ON big (account_id)"


def timed(conn, statement: str) -> float:
    t0 = time.perf_counter()
    conn.execute(statement)
    return time.perf_counter() - t0


def forecast(conn, statement: str) -> dict:
    catalog = pgcatalog.LiveCatalog(conn)
    rates = pgcatalog.probe(conn)
    [f] = migcheck.analyze(statement + ";", catalog, rates).statements
    return f.forecast_seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with scratch_server("stackshift-bench-pg") as server, server.connect() as conn:
        t0 = time.perf_counter()
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, account_id int NOT NULL, total_tokens int NOT NULL, "
                     "payload text NOT NULL)")
        conn.execute("INSERT INTO big SELECT g, (g::bigint * 7919) %% 100000, g %% 100000, "
                     "md5(g::text) || md5((g+1)::text) "
                     "FROM generate_series(1, %s) g", (args.rows,))
        conn.execute("VACUUM ANALYZE big")
        heap, total = conn.execute("SELECT pg_relation_size('big'), pg_total_relation_size('big')").fetchone()
        print(f"table: {args.rows:,} rows, heap {heap / 1e6:,.0f} MB, with indexes {total / 1e6:,.0f} MB "
              f"(built in {time.perf_counter() - t0:.0f} s)")
        assert heap >= 500e6, "the table must be at least 500 MB"
        results = {"alter int→bigint": [], "create index": []}
        for r in range(1, args.rounds + 1):
            for name, statement in (("alter int→bigint", ALTER), ("create index", INDEX)):
                fc = forecast(conn, statement)
                measured = timed(conn, statement)
                point = math.sqrt(fc["low"] * fc["high"])
                results[name].append((fc, point, measured))
                print(f"round {r} {name:17s} forecast {fc['low']:6.2f}–{fc['high']:6.2f} s (point {point:6.2f}) "
                      f"measured {measured:6.2f} s  ratio {measured / point:4.2f}"
                      f"{'' if fc['low'] <= measured <= fc['high'] else '  OUTSIDE RANGE'}")
            conn.execute("DROP INDEX big_account_idx")
            conn.execute("ALTER TABLE big ALTER COLUMN total_tokens TYPE int")
            conn.execute("VACUUM ANALYZE big")
        print()
        print("| statement | forecast point (median) | measured (median) | ratio measured/forecast (median) | "
              "inside range |")
        print("|---|---|---|---|---|")
        for name, rows in results.items():
            ratios = [m / p for _, p, m in rows]
            inside = sum(fc["low"] <= m <= fc["high"] for fc, _, m in rows)
            print(f"| {name} | {statistics.median(p for _, p, _ in rows):.2f} s | "
                  f"{statistics.median(m for *_, m in rows):.2f} s | {statistics.median(ratios):.2f} | "
                  f"{inside}/{len(rows)} |")


if __name__ == "__main__":
    main()
