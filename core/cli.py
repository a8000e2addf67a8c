"""`./stackshift`: plan and run upgrades of compose stacks (and more commands, added per feature).

Heavy imports (Prefect) happen inside the commands that need them, so light commands stay fast.
"""
from __future__ import annotations

import argparse
import json
import sys


def _upgrade(args: argparse.Namespace) -> int:
    from core.errors import UpgradeError
    from flows.upgrade import upgrade

    try:
        result = upgrade(environment=args.environment, target=args.target, dry_run=args.dry_run,
                         accept_migration_risk=args.accept_migration_risk)
    except UpgradeError as exc:
        print(f"stackshift: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _plan(args: argparse.Namespace) -> int:
    args.dry_run = True
    return _upgrade(args)


def _env_sync(args: argparse.Namespace) -> int:
    """Three-way merge of an env file onto a new template (no Prefect import: this command stays fast)."""
    from pathlib import Path

    from core import envfile, envmerge
    from core.errors import UpgradeError

    try:
        texts = {label: envmerge.read_env_file(path, label) for label, path in (
            ("env file", args.env_file), ("old template", args.old_template), ("new template", args.new_template))}
        result = envmerge.merge(envmerge.parse(texts["env file"], args.env_file),
                                envmerge.parse(texts["old template"], args.old_template),
                                envmerge.parse(texts["new template"], args.new_template))
        if args.compose_file:
            envmerge.check_compose(result.text, Path(args.compose_file))
        changed = result.text != texts["env file"]
        backup = None
        if changed and not args.dry_run:
            backup = envfile.backup(Path(args.env_file))
            envfile.write_atomic(Path(args.env_file), result.text)
    except UpgradeError as exc:
        print(f"stackshift env-sync: {exc}", file=sys.stderr)
        return 2
    counts = result.counts()
    if args.json:
        print(json.dumps({"changed": changed, "written": bool(changed and not args.dry_run),
                          "backup": str(backup) if backup else None, "counts": counts,
                          "keys": {k: v for k, v in result.by_category.items() if v}}, indent=2))
    else:
        rows = envmerge.masked_changes(result, frozenset(args.secret_key or []))
        for r in rows:
            print(f"{r['category']:13s} {r['key']}: {r['before']} -> {r['after']}")
        verb = "would write" if args.dry_run else "wrote"
        print(f"{verb if changed else 'no change to'} {args.env_file}" + (f" (backup {backup})" if backup else "")
              + ": " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    return 0


def _analyze_migrations(args: argparse.Namespace) -> int:
    """Rules on a migration's SQL; with --dsn, live sizes and a forecast calibrated on that server."""
    from pathlib import Path

    from core import migcheck, report
    from core.errors import SqlFileUnreadable, UpgradeError

    conn = None
    try:
        try:
            text = Path(args.sql).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SqlFileUnreadable(args.sql, exc.strerror if isinstance(exc, OSError) else "not UTF-8") from None
        catalog = rates = None
        if args.dsn:
            from core import db, pgcatalog

            if db.dsn_has_password(args.dsn):
                print("stackshift analyze-migrations: warning: the DSN carries a password, which other users can "
                      "see in the process list; prefer PGPASSWORD or ~/.pgpass", file=sys.stderr)
            conn = db.connect_dsn(args.dsn)
            catalog = pgcatalog.LiveCatalog(conn)
            if not args.no_probe:
                rates = pgcatalog.probe(conn)
        result = migcheck.analyze(text, catalog, rates)
    except UpgradeError as exc:
        print(f"stackshift analyze-migrations: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        if conn is not None:
            conn.close()
    reasons = migcheck.gate(result, args.max_lock_seconds)
    if args.json:
        print(json.dumps(result.to_dict() | {"gate": reasons}, indent=2))
    else:
        print(report.migration_markdown(result, f"Migration pre-flight: {args.sql}", reasons), end="")
    return 3 if reasons else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stackshift",
        description="Safe, reviewable, reversible upgrades of docker-compose stacks with an Alembic-migrated "
                    "PostgreSQL. Environments are Prefect blocks (stack-environment/<name>); runs and their "
                    "artifacts show in the Prefect UI (http://127.0.0.1:4200 in the lab).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, helptext in (
        ("upgrade", _upgrade, "back up, migrate once, cut over, verify; roll back on failure"),
        ("plan", _plan, "pre-flight and plan only (a dry run): publishes the plan and env diff, changes nothing"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--environment", "-e", required=True, help="stack-environment block name, e.g. staging")
        p.add_argument("--target", "-t", required=True, help="release to deploy: tag, branch or commit, e.g. v2.0.0")
        if name == "upgrade":
            p.add_argument("--accept-migration-risk", action="store_true",
                           help="go ahead despite data loss or a long lock-hold in the migration report (read it "
                                "first)")
        p.set_defaults(fn=fn, dry_run=False, accept_migration_risk=False)
    p = sub.add_parser("env-sync", help="three-way merge of an env file onto a new template",
                       description="Merge PATH (made from --old-template) onto --new-template: stale defaults move, "
                                   "customizations and your own keys stay. A backup goes to env-backup/ first; the "
                                   "write is atomic and keeps mode, owner and symlinks. Secret values are never shown.")
    p.add_argument("--env-file", required=True, metavar="PATH", help="the operator's .env")
    p.add_argument("--old-template", required=True, metavar="PATH", help=".env.example the .env was made from")
    p.add_argument("--new-template", required=True, metavar="PATH", help=".env.example of the target release")
    p.add_argument("--compose-file", metavar="PATH", help="check the result with `docker compose config` first")
    p.add_argument("--secret-key", action="append", metavar="KEY", help="another key whose value is secret")
    p.add_argument("--dry-run", action="store_true", help="report only; write nothing")
    p.add_argument("--json", action="store_true", help="machine-readable report (key names only)")
    p.set_defaults(fn=_env_sync)
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
    p.add_argument("--max-lock-seconds", type=float, metavar="S", help="exit 3 when writes to a table would be "
                                                                        "blocked longer than this")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(fn=_analyze_migrations)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
