"""`./stackshift`: plan and run upgrades of compose stacks (and more commands, added per feature).

Heavy imports (Prefect) happen inside the commands that need them, so light commands stay fast.
"""
from __future__ import annotations

import argparse
import json
import sys

from cli import init as init_verbs
from cli.version import version
from core.cutover import faults


def _upgrade(args: argparse.Namespace) -> int:
    import time

    from core.errors import UpgradeError
    from flows.upgrade import upgrade

    started = time.time()
    try:
        result = upgrade(environment=args.environment, target=args.target, dry_run=args.dry_run,
                         accept_migration_risk=args.accept_migration_risk,
                         accept_env_conflicts=args.accept_env_conflicts, force=args.force)
    except UpgradeError as exc:
        print(f"stackshift: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # not a condition stackshift names: say what it is, and what the journal says
        print(unexpected_failure(args.environment, exc, started), file=sys.stderr)
        return 1
    if result.get("already_at"):
        print(f"stackshift: {args.environment} is already at {args.target} (commit "
              f"{result['commit'][:12]}, the same images, database at {', '.join(result['revision']) or 'no revision'}"
              f"): nothing to do, nothing stopped, no backup taken. `--force` redeploys on purpose.", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


def prefect_failed(exc: BaseException) -> bool:
    """Whether the exception comes from Prefect or its HTTP client (the server went away, refused a call)."""
    return any(type(e).__module__.split(".")[0] in ("prefect", "httpx", "httpcore")
               for e in (exc, exc.__cause__, exc.__context__) if e is not None)


def unexpected_failure(environment: str, exc: BaseException, started: float, prefect_up: bool | None = None,
                       project_dir=None) -> str:
    """What to tell the operator about an exception stackshift does not name: the Prefect message only when Prefect
    failed; otherwise the exception as it is, the step and the stack's state per this run's journal, what to do."""
    if prefect_up is None:
        from tasks._common import api_reachable
        prefect_up = api_reachable()
    recover = f"`./stackshift recover -e {environment}`"
    if prefect_failed(exc) or not prefect_up:
        return (f"stackshift: the run could not be recorded in Prefect ({type(exc).__name__}: {exc}). The stack "
                f"itself is whole: its journal in the backup folder says how the run ended; {recover} gives the run "
                f"its final state once the server is back.")
    what = f"stackshift: the run failed with {type(exc).__name__}: {exc}"
    state = _journal_state(environment, started, project_dir, recover)
    return (f"{what}. {state} This is a condition stackshift does not name: fix the cause above (e.g. free disk "
            f"for `No space left on device`, permissions for `Permission denied`) and run again; report the message "
            f"so it gets its own error.")


def _journal_state(environment: str, started: float, project_dir, recover: str) -> str:
    """The stack's state per the journal this run wrote (none: it failed before its run folder was made)."""
    from pathlib import Path

    from core.cutover.journal import CLOSED, JOURNAL, Journal
    try:
        if project_dir is None:
            from flows.upgrade import load_environment
            cfg = load_environment(environment)
            project_dir = Path(cfg.backup.dir) / cfg.stack.project_name
        mine = [p for p in sorted(Path(project_dir).glob(f"*/{JOURNAL}")) if p.parent.stat().st_mtime >= started - 1]
        journal = Journal.load(mine[-1]) if mine else None
    except Exception as read_exc:  # the report must not fail on top of the failure
        return (f"Its journal could not be read ({type(read_exc).__name__}: {read_exc}); {recover} reads it and "
                f"puts the stack back if anything changed.")
    if journal is None:
        return "It failed before its run folder was made (pre-flight or the lock): nothing of the stack changed."
    step = journal.last
    at = f"at {step.phase} step {step.id!r} ({step.state})" if step else "before its first step"
    if journal.status in CLOSED:
        return (f"It stopped {at}; its journal {journal.path} says the run ended {journal.status}: "
                f"{journal.outcome or 'no outcome recorded'}.")
    return (f"It stopped {at}, and its journal {journal.path} is still open ({journal.status}): run {recover}, "
            f"which rolls the stack back or finishes the run, whichever is safe.")


def _plan(args: argparse.Namespace) -> int:
    args.dry_run = True
    return _upgrade(args)


def _recover(args: argparse.Namespace) -> int:
    """Finish or roll back an interrupted run of an environment, whichever is safe; prints what was done."""
    from core.errors import UpgradeError
    from flows.recover import recover

    try:
        result = recover(environment=args.environment)
    except UpgradeError as exc:
        print(f"stackshift: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not result:
        print(f"stackshift recover: no interrupted run of {args.environment!r}; nothing to do")
    for r in result:
        print(f"stackshift recover: run {r['run']}: {r['action']} ({r['reason']}): {r['outcome']}")
    return 0


def _verify_backup(args: argparse.Namespace) -> int:
    """The restore drill on an environment's newest backup (or --backup): exit 0 when it restores whole, 3 when not."""
    import os
    import socket
    from pathlib import Path

    from core.backup import drill
    from core.errors import BackupCheckFailed, UpgradeError
    from core.cutover.lock import StackLock, lock_path
    from core.stackio import StackIO
    from flows.upgrade import load_environment

    try:
        cfg = load_environment(args.environment)
        project_dir = Path(cfg.backup.dir) / cfg.stack.project_name
        bundles = drill.backups(project_dir)
        target = Path(args.backup) if args.backup else (bundles[-1] if bundles else None)
        if target is None:
            print(f"stackshift verify-backup: no backup of {args.environment!r} in {project_dir}", file=sys.stderr)
            return 2
        holder = {"run": "verify-backup", "host": socket.gethostname(), "pid": os.getpid()}
        with StackLock(lock_path(cfg.backup.dir, cfg.stack.project_name), holder):
            io_ = StackIO(cfg, cfg.stack.project_name)
            result = drill.restore_drill(io_, target, cfg.backup.dump_jobs or max(1, min(4, os.cpu_count() or 1)))
    except BackupCheckFailed as exc:
        print(f"stackshift verify-backup: {exc}", file=sys.stderr)
        return 3
    except UpgradeError as exc:
        print(f"stackshift: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _env_sync(args: argparse.Namespace) -> int:
    """Three-way merge of an env file onto a new template (no Prefect import: this command stays fast).

    Exit 0 when merged (or nothing to do), 2 on bad input or a refused result; nothing is written then.
    """
    from pathlib import Path

    from core.env import envfile

    from core.env import envmerge
    from core.errors import UpgradeError

    needs_compose = [flag for flag, on in (("--db-service", args.db_service), ("--slim", args.slim),
                                           ("--generate-missing-secrets", args.generate_missing_secrets)) if on]
    if needs_compose and not args.compose_file:
        print(f"stackshift env-sync: {needs_compose[0]} needs --compose-file (the target's layout is read from it)",
              file=sys.stderr)
        return 2
    secret_keys = frozenset(args.secret_key or [])
    try:
        texts = {label: envmerge.read_env_file(path, label) for label, path in (
            ("env file", args.env_file), ("old template", args.old_template), ("new template", args.new_template))}
        user = envmerge.parse(texts["env file"], args.env_file)
        envmerge.check_env(user, allow_empty=args.allow_empty_env)
        old = envmerge.parse(texts["old template"], args.old_template)
        new = envmerge.parse(texts["new template"], args.new_template)
        envmerge.check_templates(user, old, new)
        split = _env_sync_checked(args, user, old, new, secret_keys) if args.compose_file else None
        result = split.env if split else envmerge.merge(user, old, new)
        changed = result.text != texts["env file"]
        backup, copy_backups = None, {}
        if split and not args.dry_run:
            from core.env import envsplit
            project = Path(args.compose_file).resolve().parent
            envsplit.check_writable(Path(args.env_file), project, split)
            copy_backups = envsplit.write_copies(project, split)
        if changed and not args.dry_run:
            backup = envfile.replace_with_backup(Path(args.env_file), result.text)
    except UpgradeError as exc:
        print(f"stackshift env-sync: {exc}", file=sys.stderr)
        return 2
    _env_sync_report(args, result, changed, backup, secret_keys, split=split, copy_backups=copy_backups)
    return 0


def _env_sync_checked(args: argparse.Namespace, user, old, new, secret_keys: frozenset[str]):
    """The merge (`core.env.envsplit`), checked against --compose-file: compose accepts it and the services the
    target needs start."""
    from pathlib import Path

    from core.env import envcheck, envmerge, envsecrets, envsplit

    compose = Path(args.compose_file)
    options = envsplit.Options(old_dir=Path(args.old_template).resolve().parent, slim=args.slim,
                               generate_missing_secrets=args.generate_missing_secrets, secret_keys=secret_keys)
    split = envsplit.sync(compose, user, old, new, options)
    result = split.env
    secrets = envsecrets.secret_values(envmerge.parse(result.text).values | user.values, secret_keys)
    model = envcheck.read_model(compose.resolve().parent, [compose], result.text, secrets)
    envcheck.check_startable(result, args.env_file, model, args.db_service or envcheck.default_db_services(model),
                             accept=args.accept_conflicts, override="rerun with --accept-conflicts",
                             extra_secret_keys=secret_keys)
    return split


def _env_sync_report(args: argparse.Namespace, result, changed: bool, backup, secret_keys: frozenset[str], *,  # noqa: PLR0913
                     split=None, copy_backups=None) -> None:
    """Prints the merge: key names only with --json, else masked rows (see core.env.envsecrets) and notes."""
    from core.env import envmerge, envsplit
    counts = result.counts()
    rows = envmerge.masked_changes(result, secret_keys)
    hint = _compose_file_hint(args, result)
    if args.json:
        print(json.dumps({"changed": changed, "written": bool(changed and not args.dry_run),
                          "backup": str(backup) if backup else None, "counts": counts,
                          "keys": {k: v for k, v in result.by_category.items() if v},
                          "files": {r["key"]: r["file"] for r in rows if r["file"]},
                          "accepted_conflicts": [r["key"] for r in rows if r["note"].startswith("accepted:")],
                          "notes": result.notes + ([hint] if hint else [])}
                         | (envsplit.report(split, secret_keys, not args.dry_run, copy_backups) if split else {}),
                         indent=2))
        return
    for r in rows:
        where = f"  [{r['file']}]" if r["file"] else ""
        print(f"{r['category']:13s} {r['key']}: {r['before']} -> {r['after']}{where}")
        if r["note"]:
            print(f"{'':13s}   {r['note']}")
    for note in result.notes + ([hint] if hint else []):
        print(f"note: {note}")
    verb = "would write" if args.dry_run else "wrote"
    print(f"{verb if changed else 'no change to'} {args.env_file}" + (f" (backup {backup})" if backup else "")
          + ": " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    for line in envsplit.text_lines(split, secret_keys, args.dry_run) if split else ():
        print(line)


def _compose_file_hint(args: argparse.Namespace, result) -> str:
    """Without --compose-file, a COMPOSE_PROFILES the operator changed cannot be checked: say so."""
    change = result.change("COMPOSE_PROFILES")
    if args.compose_file or change is None or change.category not in (
            "conflict", "customized", "deleted_kept", "user_only", "removed_kept"):
        return ""
    return ("COMPOSE_PROFILES is yours, not the new template's: give --compose-file (the target's "
            "docker-compose.yaml) to check that the target still starts its database with it")


def _analyze_migrations(args: argparse.Namespace) -> int:
    """Rules on a migration's SQL; with --dsn, live sizes and a forecast calibrated on that server."""
    from pathlib import Path

    from core import report

    from core.migrations import migcheck
    from core.errors import SqlFileUnreadable, UpgradeError

    conn = None
    try:
        try:
            text = Path(args.sql).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SqlFileUnreadable(args.sql, exc.strerror if isinstance(exc, OSError) else "not UTF-8") from None
        catalog = rates = None
        if args.dsn:
            from core.io import db
            from core.migrations import pgcatalog
            if db.dsn_has_password(args.dsn):
                print("stackshift analyze-migrations: warning: the DSN carries a password, which other users can "
                      "see in the process list; prefer PGPASSWORD or ~/.pgpass", file=sys.stderr)
            conn = db.connect_dsn(args.dsn)
            catalog = pgcatalog.LiveCatalog(conn)
            if not args.no_probe:
                rates = pgcatalog.probe(conn, args.probe_seconds)
        result = migcheck.analyze(text, catalog, rates, per_revision=args.transaction_per_migration)
    except UpgradeError as exc:
        print(f"stackshift analyze-migrations: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        if conn is not None:
            conn.close()
    reasons = migcheck.gate(result, args.max_lock_seconds)
    note = migcheck.at_load_note(result, args.max_lock_seconds)
    if args.json:
        print(json.dumps(result.to_dict() | {"gate": reasons, "uncertainty": note}, indent=2))
    else:
        print(report.migration_markdown(result, f"Migration pre-flight: {args.sql}", reasons, note), end="")
    return 3 if reasons else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    faults.install_from_env()  # the fault-injection tests only: nothing without STACKSHIFT_INJECT_FAULT
    return args.fn(args)


def parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per verb, each calling its `_<verb>` function."""
    top = argparse.ArgumentParser(
        prog="stackshift",
        description="Safe, reviewable, reversible upgrades of docker-compose stacks with an Alembic-migrated "
                    "PostgreSQL. Environments are Prefect blocks (stack-environment/<name>); runs and their "
                    "artifacts show in the Prefect UI (http://127.0.0.1:4200 in the lab).",
    )
    top.add_argument("--version", action="version", version=f"stackshift {version()}")
    sub = top.add_subparsers(dest="command", required=True)
    _add_run_verbs(sub)
    _add_recovery_verbs(sub)
    _add_env_sync(sub)
    _add_analyze_migrations(sub)
    init_verbs.add_verbs(sub)
    return top


def _add_run_verbs(sub: argparse._SubParsersAction) -> None:
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
        if name == "upgrade":
            p.add_argument("--force", action="store_true",
                           help="redeploy even when the target's commit, images and head revision are what runs "
                                "(otherwise that ends at once: already at the target, nothing stopped)")
        p.add_argument("--accept-env-conflicts", action="store_true",
                       help="go ahead although the merged .env leaves a service the target needs outside the active "
                            "compose profiles (read the env diff first)")
        p.set_defaults(fn=fn, dry_run=False, accept_migration_risk=False, force=False)


def _add_recovery_verbs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recover", help="finish or roll back an interrupted upgrade, whichever is safe",
                       description="Reads the environment's run journals under its lock. A run whose runner died is "
                                   "finished when its migration had completed (the database is at the target head), "
                                   "otherwise rolled back; leftover one-off containers, rollback-point databases and "
                                   "scratch folders are removed. Every upgrade does this first by itself.")
    p.add_argument("--environment", "-e", required=True, help="stack-environment block name, e.g. staging")
    p.set_defaults(fn=_recover)
    p = sub.add_parser("verify-backup", help="restore drill: restore a backup into a scratch database and compare",
                       description="Checks the newest backup of the environment (or --backup): every file against its "
                                   "sha256 manifest, the volumes' archive read to its end, each database dump restored "
                                   "with pg_restore -j into a scratch database on the same server, every table's row "
                                   "count compared with the count taken in the dump's own snapshot. The scratch "
                                   "databases are dropped. Exit 3 when the backup would not restore whole.")
    p.add_argument("--environment", "-e", required=True, help="stack-environment block name, e.g. staging")
    p.add_argument("--backup", metavar="DIR", help="a backup folder (default: the environment's newest)")
    p.set_defaults(fn=_verify_backup)


def _add_env_sync(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env-sync", help="three-way merge of an env file onto a new template",
                       description="Merge PATH (made from --old-template) onto --new-template: stale defaults move, "
                                   "customizations and your own keys stay. A backup goes to env-backup/ first; the "
                                   "write is atomic and keeps mode, owner and symlinks. Secret values are never shown.")
    p.add_argument("--env-file", required=True, metavar="PATH", help="the operator's .env")
    p.add_argument("--old-template", required=True, metavar="PATH", help=".env.example the .env was made from")
    p.add_argument("--new-template", required=True, metavar="PATH", help=".env.example of the target release")
    p.add_argument("--compose-file", metavar="PATH",
                   help="the target's compose file: check first that `docker compose config` accepts the result and "
                        "that every service the target needs (its database, required depends_on) is in an active "
                        "profile")
    p.add_argument("--db-service", action="append", metavar="NAME",
                   help="with --compose-file: the database service (repeatable; default: db and db_postgres, those "
                        "the compose file defines)")
    p.add_argument("--accept-conflicts", action="store_true",
                   help="with --compose-file: write the result although it leaves a needed service outside the "
                        "active profiles")
    p.add_argument("--allow-empty-env", action="store_true",
                   help="merge although PATH has no KEY=value line (refused by default: an empty .env is most "
                        "likely a truncated one)")
    p.add_argument("--secret-key", action="append", metavar="KEY", help="another key whose value is secret")
    p.add_argument("--slim", action="store_true",
                   help="with --compose-file, for a split layout (Dify 1.14+): write the essentials-only .env (the "
                        "root template's keys) plus your customized keys; moved keys at their default are taken out "
                        "(reported as moved_out, with the reason)")
    p.add_argument("--generate-missing-secrets", action="store_true",
                   help="with --compose-file: a secret the target requires (${VAR:?}) that the .env leaves empty is "
                        "set to a random value (never printed) instead of refused")
    p.add_argument("--dry-run", action="store_true", help="report only; write nothing")
    p.add_argument("--json", action="store_true", help="machine-readable report (key names only)")
    p.set_defaults(fn=_env_sync)


def _add_analyze_migrations(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(fn=_analyze_migrations)


if __name__ == "__main__":
    sys.exit(main())
