"""`stackshift analyze-migrations`: what migration SQL will lock, rewrite and cost. It says what it is doing (on
stderr, one line per part with its duration, a live line on a terminal) while it reads, connects, probes and
analyses; the report (markdown, or `--json`) goes to stdout."""
from __future__ import annotations

import argparse
import json
import sys

from cli.live import Phases, ticking


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze-migrations", help="what migration SQL will lock, rewrite and cost",
                       description="Analyse migration SQL (e.g. `alembic upgrade A:B --sql`) with PostgreSQL's own "
                                   "parser: per statement the table, lock, rewrite/scan/none/data-loss, the MS rules "
                                   "and a safer alternative. With --dsn, live sizes and a duration forecast "
                                   "calibrated by a short probe on that server (a scratch table in a throw-away "
                                   "schema, dropped afterwards). Exit status: 0 fine, 2 bad input, 3 data loss or "
                                   "a lock-hold over --max-lock-seconds.")
    p.add_argument("--sql", required=True, metavar="FILE", help="the migration SQL")
    p.add_argument("--dsn", help="postgresql://user@host:port/db of the database to migrate (password in "
                                 "PGPASSWORD or ~/.pgpass, not here)")
    p.add_argument("--no-probe", action="store_true", help="with --dsn: sizes only, no probe, no durations")
    p.add_argument("--probe-seconds", type=float, default=3.0, metavar="S",
                   help="with --dsn: the probe's time budget (default 3; its first round always runs)")
    p.add_argument("--max-lock-seconds", type=float, metavar="S", help="exit 3 when writes to a table would be "
                                                                        "blocked longer than this")
    p.add_argument("--transaction-per-migration", action="store_true",
                   help="the migration commits after each revision (Alembic's transaction_per_migration=True in "
                        "env.py): lock holds and MS025 per revision, whatever BEGIN…COMMIT the SQL shows")
    p.add_argument("--online", action="store_true",
                   help="also say which statements the online preparation would prepare while the old version "
                        "serves, and which stay in the downtime, with the reason (with --dsn: on the live tables)")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(fn=analyze_migrations)


def analyze_migrations(args: argparse.Namespace) -> int:
    """Rules on a migration's SQL; with --dsn, live sizes and a forecast calibrated on that server."""
    from core import report
    from core.errors import UpgradeError
    from core.migrations import migcheck

    phases = Phases(sys.stderr, sys.stderr.isatty())
    try:
        with ticking(phases):
            result, online = _analyse(args, phases)
            phases.end()
    except UpgradeError as exc:
        phases.end("failed")
        print(f"stackshift analyze-migrations: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    reasons = migcheck.gate(result, args.max_lock_seconds)
    note = migcheck.at_load_note(result, args.max_lock_seconds)
    print(f"Finished in {phases.seconds:.1f} s", file=sys.stderr)
    extra = {} if online is None else {"online": [v.to_dict() for v in online.verdicts]}
    if args.json:
        print(json.dumps(result.to_dict() | {"gate": reasons, "uncertainty": note} | extra, indent=2))
    else:
        print(report.migration_markdown(result, f"Migration pre-flight: {args.sql}", reasons, note), end="")
        if online is not None:
            print("\n## Online preparation\n\n" + "".join(f"- {line}\n" for line in online.lines()), end="")
    return 3 if reasons else 0


def _analyse(args: argparse.Namespace, phases: Phases):
    from pathlib import Path

    from core.errors import SqlFileUnreadable
    from core.migrations import migcheck

    phases.begin(f"read {Path(args.sql).name}")
    try:
        text = Path(args.sql).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SqlFileUnreadable(args.sql, (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8") \
            from None
    conn = catalog = rates = None
    try:
        if args.dsn:
            from core.io import db
            from core.migrations import pgcatalog
            if db.dsn_has_password(args.dsn):
                phases.note("stackshift analyze-migrations: warning: the DSN carries a password, which other users "
                            "can see in the process list; prefer PGPASSWORD or ~/.pgpass")
            phases.begin("connect to the database")
            conn = db.connect_dsn(args.dsn)
            catalog = pgcatalog.LiveCatalog(conn)
            if not args.no_probe:
                phases.begin("probe the server's speed")
                phases.step(f"a scratch table in a throw-away schema, dropped afterwards; at most "
                            f"{args.probe_seconds:g} s")
                rates = pgcatalog.probe(conn, args.probe_seconds)
        phases.begin("analyse the statements")
        phases.step(f"{len(text.splitlines()):,} lines with PostgreSQL's parser"
                    + (", sizes from the live catalog" if catalog is not None else ""))
        result = migcheck.analyze(text, catalog, rates, per_revision=args.transaction_per_migration)
        return result, (_online(args, text, conn, catalog) if args.online else None)
    finally:
        if conn is not None:
            conn.close()


def _online(args: argparse.Namespace, text: str, conn, catalog):
    """The online planner's verdicts on the same SQL (on the live tables when connected)."""
    from core.migrations.online import plan, reader
    from core.migrations.sqlrules import analyse

    analysis = analyse(text, catalog, per_revision=args.transaction_per_migration)
    shapes = None if conn is None else (lambda table, column: reader.read_shape(conn, table, column))
    return plan(analysis, shapes, server_version_num=catalog.server_version_num if catalog is not None else None)
