"""The online preparation of an int→bigint primary key widening (issue 21) on a scratch PostgreSQL 15, against the
same statement run as it is today (a rewrite under ACCESS EXCLUSIVE, all of it downtime).

Per size: one seeded database (`events`: serial primary key, an indexed foreign-key-like column, a payload),
copied for each round. The direct way: the app's `ALTER TABLE events ALTER COLUMN id TYPE BIGINT`, timed (the
lock is held for all of it). The online way: the preparation (setup, batched backfill, CONCURRENTLY index, swap),
timed, with a writer going through short transactions meanwhile (latency p50/p99, errors), then the app's
statement, timed. Prints one line per round and the medians.

    .venv/bin/python -m bench.online_widen --rows 1000000 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

import psycopg
from psycopg import sql

from core.migrations import pgcatalog
from core.migrations.online import OnlineSettings, plan, reader, runner
from core.migrations.sqlrules import analyse
from lab.pg import scratch_server

APP = "ALTER TABLE events ALTER COLUMN id TYPE BIGINT"
SEED = """
CREATE TABLE events (id serial PRIMARY KEY, account_id integer NOT NULL, total_tokens integer NOT NULL,
                     payload text NOT NULL);
INSERT INTO events (account_id, total_tokens, payload)
    SELECT g % 1000, g, repeat('x', 100) FROM generate_series(1, {rows}) g;
CREATE INDEX ix_events_account_id ON events (account_id);
"""


def _timed(conn: psycopg.Connection, statement: str) -> float:
    start = time.monotonic()
    conn.execute(statement)
    return time.monotonic() - start


class Writer(threading.Thread):
    def __init__(self, connect) -> None:
        super().__init__()
        self.connect, self.stop, self.errors = connect, threading.Event(), 0
        self.latencies: list[float] = []

    def run(self) -> None:
        with self.connect() as conn:
            n = 0
            while not self.stop.is_set():
                n += 1
                start = time.monotonic()
                try:
                    if n % 2:
                        conn.execute("INSERT INTO events (account_id, total_tokens, payload) VALUES (1, 1, 'w')",
                                     prepare=False)
                    else:
                        conn.execute("UPDATE events SET total_tokens = total_tokens + 1 WHERE id = %s", (n * 37,),
                                     prepare=False)
                except psycopg.Error:
                    self.errors += 1
                self.latencies.append(time.monotonic() - start)
                time.sleep(0.005)


def _online(connect, settings: OnlineSettings) -> tuple[float, float, Writer]:
    with connect() as conn:
        catalog = pgcatalog.LiveCatalog(conn)
        [v] = plan(analyse(APP, catalog), lambda t, c: reader.read_shape(conn, t, c), settings,
                   catalog.server_version_num).verdicts
        assert v.preparation is not None, v.reason
        writer = Writer(connect)
        writer.start()
        start = time.monotonic()
        try:
            runner.prepare(conn, v.preparation, settings)
        finally:
            writer.stop.set()
            writer.join()
        prep = time.monotonic() - start
        return prep, _timed(conn, APP), writer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-rows", type=int, default=10_000)
    p.add_argument("--pause", type=float, default=0.0)
    args = p.parse_args()
    settings = OnlineSettings(batch_rows=args.batch_rows, pause_seconds=args.pause)
    with scratch_server(name_prefix="stackshift-bench-online", shm="512m") as s:
        def connect(db: str) -> psycopg.Connection:
            return psycopg.connect(host="127.0.0.1", port=s.port, user=s.user, password=s.password, dbname=db,
                                   autocommit=True)
        with connect("app") as conn:
            conn.execute(sql.SQL(SEED).format(rows=sql.Literal(args.rows)))
            conn.execute("VACUUM ANALYZE events")
        direct, prep, app, p50, p99, errors = [], [], [], [], [], 0
        for r in range(args.rounds):
            for db in ("direct", "online"):
                with connect("postgres") as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {db}")
                    admin.execute(f"CREATE DATABASE {db} TEMPLATE app")
            with connect("direct") as conn:
                direct.append(_timed(conn, APP))
            seconds, statement, writer = _online(lambda: connect("online"), settings)
            prep.append(seconds)
            app.append(statement)
            lat = sorted(writer.latencies)
            p50.append(lat[len(lat) // 2] * 1000)
            p99.append(lat[int(len(lat) * 0.99)] * 1000)
            errors += writer.errors
            print(f"round {r + 1}: direct ALTER {direct[-1]:.2f} s | preparation {seconds:.1f} s (writes p50 "
                  f"{p50[-1]:.1f} ms, p99 {p99[-1]:.1f} ms, {writer.errors} errors of {len(lat)}), then the app's "
                  f"ALTER {statement * 1000:.1f} ms", flush=True)
        med = statistics.median
        print(f"{args.rows:,} rows, medians of {args.rounds}: direct ALTER (all downtime) {med(direct):.2f} s; "
              f"online: preparation {med(prep):.1f} s while serving (writes p50 {med(p50):.1f} ms, p99 "
              f"{med(p99):.1f} ms, {errors} errors), the app's ALTER {med(app) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
