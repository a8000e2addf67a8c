"""`./stackshift`: plan and run upgrades of compose stacks (and more commands, added per feature).

Heavy imports (Prefect) happen inside the commands that need them, so light commands stay fast.
"""
from __future__ import annotations

import argparse
import json
import sys

from cli import init as init_verbs
from cli import migrations, promotion, run, status
from cli.run import prefect_failed, unexpected_failure  # noqa: F401 (where the tests and older callers find them)
from cli.version import version
from core.cutover import faults


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
    from core.errors import UpgradeError

    needs_compose = [flag for flag, on in (("--db-service", args.db_service), ("--slim", args.slim),
                                           ("--generate-missing-secrets", args.generate_missing_secrets)) if on]
    if needs_compose and not args.compose_file:
        print(f"stackshift env-sync: {needs_compose[0]} needs --compose-file (the target's layout is read from it)",
              file=sys.stderr)
        return 2
    secret_keys = frozenset(args.secret_key or [])
    try:
        result, changed, backup, split, copy_backups = env_sync_run(args, secret_keys)
    except UpgradeError as exc:
        print(f"stackshift env-sync: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    _env_sync_report(args, result, changed, backup, secret_keys, split=split, copy_backups=copy_backups)
    return 0


def env_sync_run(args: argparse.Namespace, secret_keys: frozenset[str]):
    """env-sync's checks and merge, then its writes (none with --dry-run); raises an EnvSyncError (or another
    UpgradeError) on bad input or a refused result, before anything is written."""
    from pathlib import Path

    from core.env import envfile, envmerge

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
    return result, changed, backup, split, copy_backups


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
    run.add_parsers(sub)
    status.add_parsers(sub)
    promotion.add_parsers(sub)
    _add_recovery_verbs(sub)
    _add_env_sync(sub)
    migrations.add_parser(sub)
    init_verbs.add_verbs(sub)
    return top


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


if __name__ == "__main__":
    from cli.leave import leave

    sys.exit(leave(main()))
