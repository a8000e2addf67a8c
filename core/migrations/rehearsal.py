"""The rehearsal: the pending SQL, captured from a real run of the target's migration on a throw-away copy of the
live schema, when offline rendering is not enough.

Some revisions cannot be rendered offline (they inspect the live database), so `alembic upgrade --sql` fails or
covers only part of the range. The rehearsal then:

1. creates a throw-away database `<db>__ss_rh_<run>` on the same server and restores into it the live database's
   schema (`pg_dump --schema-only`) and its `alembic_version` rows (no other data);
2. sets `log_statement = 'all'` on that database only (`ALTER DATABASE … SET`, a superuser setting), so the server
   logs every statement any session of it runs, and nothing of the live database;
3. runs the target's migration against it in a one-off container of the target image (the block's
   `rehearsal_command`, `{database}` standing for its name), on the stack's network with its service's environment;
4. reads the statements back from the database service's log (`docker compose logs --since`), in the format of the
   server's own `log_line_prefix`, and turns them into SQL text with Alembic's `-- Running upgrade A -> B` markers
   (from the `alembic_version` updates the migration makes after each revision), which the rules analyse exactly like
   rendered SQL;
5. drops the throw-away database, whatever happened.

It also proves, before any downtime, that the migration runs on this schema: a failure stops the upgrade
(`RehearsalFailed`). Everything here but `rehearse` is pure: names, SQL, argv and parsing.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.io import commands as c
from core.errors import CommandFailed, CommandTimedOut, RehearsalFailed, RehearsalUnavailable, error_line
from core.io import pgsql

log = logging.getLogger("stackshift")
INFIX = "__ss_rh_"
PLACEHOLDER = "{database}"
_REVISION_MARK = re.compile(r"^-- Running (?:upgrade|downgrade) (\S*) -> (\S+)", re.M)
_VERSION_WRITE = re.compile(
    r"^\s*(?:UPDATE\s+alembic_version\s+SET\s+version_num\s*=\s*'(?P<to>[^']+)'\s+WHERE\s+alembic_version\."
    r"version_num\s*=\s*'(?P<from>[^']+)'|INSERT\s+INTO\s+alembic_version\s*\(version_num\)\s*VALUES\s*\("
    r"'(?P<first>[^']+)'\))", re.I)
_READ_ONLY = re.compile(r"^\s*(SELECT|SHOW)\b", re.I)
_STATEMENT = re.compile(r"^(?:statement|execute [^:]*): (?P<sql>.*)", re.S)


@dataclass
class Rehearsal:
    """What a rehearsal ran: its SQL (marked by revision), the revisions it saw applied, its database and duration."""

    sql: str
    revisions: list[str]
    database: str
    seconds: float
    statements: int
    notes: list[str] = field(default_factory=list)
    dropped: bool = False


def database_name(db: str, run_id: str) -> str:
    return f"{db}{INFIX}{run_id}"


def create_statements(name: str) -> list[pgsql.Statement]:
    return [*drop_statements(name), pgsql.create_database(name)]


def log_statements_sql(name: str) -> pgsql.Statement:
    """Every statement of every session of `name` goes to the server log (only new sessions see it)."""
    return pgsql.log_every_statement(name)


def drop_statements(name: str) -> list[pgsql.Statement]:
    """`FORCE` ends sessions that connect again between the terminate and the drop (a killed `compose run` client
    leaves its container migrating)."""
    return [pgsql.terminate(name), pgsql.drop_database(name, force=True)]


def check_targets_the_copy(command: list[str], env: dict[str, str]) -> None:
    """The rehearsal command must be pointed at the throw-away database: run as is, it would migrate the live one,
    online and before any backup."""
    if not any(PLACEHOLDER in part for part in [*command, *env.values()]):
        raise RehearsalUnavailable(f"the block's rehearsal_command names no {PLACEHOLDER} (nor does rehearsal_env): it "
                                   f"would migrate the live database instead of the throw-away copy")


SERVER_SETTINGS_SQL = ("SELECT current_setting('log_destination'), current_setting('logging_collector'), "
                       "current_setting('log_line_prefix'), current_setting('log_statement'), "
                       "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")


def check_server(destination: str, collector: str, prefix: str, statement: str, superuser: bool) -> None:
    """Refuses a server whose log the rehearsal cannot read back unambiguously, or a role that cannot set it."""
    if not superuser:
        raise RehearsalUnavailable("the block's db_user is not a superuser, and only a superuser may set "
                                   "log_statement on a database")
    if "stderr" not in [d.strip() for d in destination.split(",")] or collector == "on":
        raise RehearsalUnavailable(f"the server logs to {destination} with logging_collector={collector}; the "
                                   f"rehearsal reads the statements from the database container's output, which "
                                   f"needs log_destination to include stderr and logging_collector off")
    if statement not in ("none", "ddl") or (statement == "ddl" and "%d" not in prefix):
        raise RehearsalUnavailable(f"the server already logs statements of every database (log_statement="
                                   f"{statement}) and its log_line_prefix {prefix!r} "
                                   + ("names the database (%d), but logs every statement" if "%d" in prefix else
                                      "does not name the database (%d)") + ": the rehearsal's could not be told apart")
    if not prefix_regex(prefix).pattern:
        raise RehearsalUnavailable("log_line_prefix is empty")


def dump_schema(host: str, port: int, user: str, db: str, out: Path) -> list[str]:
    return ["pg_dump", "--host", host, "--port", str(port), "--username", user, "--no-password", "--schema-only",
            "--no-owner", "--no-privileges", "--format", "custom", "--file", str(out), db]


def dump_versions(host: str, port: int, user: str, db: str, out: Path) -> list[str]:
    return ["pg_dump", "--host", host, "--port", str(port), "--username", user, "--no-password", "--data-only",
            "--table", "alembic_version", "--format", "custom", "--file", str(out), db]


def restore(host: str, port: int, user: str, db: str, dump: Path) -> list[str]:
    return ["pg_restore", "--host", host, "--port", str(port), "--username", user, "--no-password", "--no-owner",
            "--no-privileges", "--exit-on-error", "--dbname", db, str(dump)]


def fill(template: list[str] | dict[str, str], database: str):
    if isinstance(template, dict):
        return {k: v.replace("{database}", database) for k, v in template.items()}
    return [a.replace("{database}", database) for a in template]


def image_override(service: str, image: str) -> str:
    """A compose override (JSON is YAML) running `service` from the target's image, with the deployment's config."""
    return json.dumps({"services": {service: {"image": image}}}, indent=2) + "\n"


def prefix_regex(prefix: str) -> re.Pattern:
    """A regex matching the start of a log entry written with PostgreSQL's `log_line_prefix`: literal text as is,
    `%p` (process id) as digits, `%%` as `%`, the first `%d` as the group `db`, every other escape as any text
    (non-greedy). What follows `%q` is optional: background processes write only the part before it."""
    out, i, optional, named = [], 0, False, False
    while i < len(prefix):
        ch = prefix[i]
        if ch == "%" and i + 1 < len(prefix):
            esc = prefix[i + 1]
            i += 2
            while esc.isdigit() or esc == "-":  # padding such as %-10u
                if i >= len(prefix):
                    break
                esc, i = prefix[i], i + 1
            if esc == "q":
                optional = True
                out.append("(?:")
            elif esc == "d" and not named:
                named = True
                out.append(r"(?P<db>.*?)")
            else:
                out.append({"p": r"\d+", "%": "%"}.get(esc, r".*?"))
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out) + (")?" if optional else ""))


@dataclass(frozen=True)
class LogEntry:
    level: str
    message: str
    database: str | None = None  # when the prefix names it (%d)


_LEVELS = r"(?P<level>DEBUG\d?|INFO|NOTICE|WARNING|ERROR|LOG|FATAL|PANIC|DETAIL|HINT|QUERY|CONTEXT|LOCATION|STATEMENT)"


def parse_log(text: str, prefix: str) -> list[LogEntry]:
    """The entries of a stderr server log: a line that starts with the prefix and a severity opens one, and the lines
    that follow (a statement's further lines) belong to it."""
    start = re.compile("^" + prefix_regex(prefix).pattern + _LEVELS + ":  (?P<msg>.*)$")
    entries: list[list] = []
    for line in text.splitlines():
        m = start.match(line)
        if m:
            entries.append([m.group("level"), m.group("msg"), m.groupdict().get("db")])
        elif entries:
            entries[-1][1] += "\n" + line
    return [LogEntry(level, msg, db) for level, msg, db in entries]


def executed(entries: list[LogEntry], database: str | None = None) -> list[str]:
    """The statements the sessions ran, in order (simple and extended protocol), without read-only queries; only
    those of `database` when the log names each entry's database."""
    out = []
    for e in entries:
        if database is not None and e.database is not None and e.database != database:
            continue
        m = _STATEMENT.match(e.message) if e.level == "LOG" else None
        if m:
            sql = m.group("sql").strip().rstrip(";").strip()
            if sql and not _READ_ONLY.match(sql):
                out.append(sql)
    return out


def server_errors(entries: list[LogEntry], database: str | None = None) -> list[str]:
    return [e.message.splitlines()[0] for e in entries if e.level in ("ERROR", "FATAL", "PANIC")
            and (database is None or e.database in (None, database))]


def as_sql(statements: list[str]) -> tuple[str, list[str]]:
    """SQL text of executed statements, each revision's statements under Alembic's own marker (the migration writes
    `alembic_version` after each revision), and the revisions in the order they were applied."""
    chunks, revisions, pending = [], [], []
    for sql in statements:
        pending.append(sql)
        m = _VERSION_WRITE.match(sql)
        if m:
            to = m.group("to") or m.group("first")
            chunks.append(f"-- Running upgrade {m.group('from') or ''} -> {to}\n\n"
                          + "".join(f"{s};\n\n" for s in pending))
            revisions.append(to)
            pending = []
    tail = "".join(f"{s};\n\n" for s in pending)
    return "".join(chunks) + tail, revisions


def rendered_revisions(sql: str, complete: bool) -> list[str]:
    """Revisions whose SQL an offline rendering holds: each after its marker up to the next one; when the rendering
    stopped on an error (`complete` False), the last marker's revision is cut short and does not count."""
    revs = [m.group(2) for m in _REVISION_MARK.finditer(sql)]
    return revs if complete else revs[:-1]


def rehearse(io, f, scratch: Path, secret_env=None) -> Rehearsal:
    """Runs the rehearsal for the plan's facts `f` (see the module's docstring) through the stack's I/O, with the
    block's `rehearsal_env` (a SecretDict, unwrapped only into the container's command environment); the throw-away
    database is dropped in every case, an interruption (SIGTERM, cancellation) included."""
    t0 = time.monotonic()
    stack, database, migration = f.settings.stack, f.settings.database, f.settings.migration
    name = database_name(database.name, f.run.id or "x")
    check_targets_the_copy(migration.rehearsal.command, secret_env.get_secret_value() if secret_env else {})
    db_service = next((s for s in database.services if s in f.current.running), None)
    if db_service is None:
        raise RehearsalUnavailable(f"none of the database services {', '.join(database.services)} is running")
    with io.db.connect(database.name) as conn:
        check_server(*conn.execute(SERVER_SETTINGS_SQL).fetchone())
        prefix = conn.execute("SELECT current_setting('log_line_prefix')").fetchone()[0]
    live_before = io.revisions(database.name)
    scratch.mkdir(parents=True, mode=0o700, exist_ok=True)
    deployed = c.ComposeProject.of(stack)
    override = scratch / "rehearsal-image.json"
    override.write_text(image_override(migration.service, f.target.images[migration.service]))
    with_target = c.ComposeProject(deployed.project_dir, (*deployed.files, override), deployed.env_file,
                                   stack.project_name)
    schema, versions = scratch / "schema.dump", scratch / "alembic_version.dump"
    try:
        _make_the_copy(io, f, name, schema, versions)
        since = time.time() - 1  # entries are told apart by database (%d) or by the server logging no others
        env = fill(secret_env.get_secret_value() if secret_env else {}, name)  # by name in argv, values in env
        argv = c.compose_run_once(with_target, migration.service, fill(migration.rehearsal.command, name), None,
                                  f.run.id, pass_env=list(env), replace_entrypoint=migration.replace_entrypoint)
        failure = None
        try:
            io.run(c.Command(argv, env=env, timeout=migration.timeout_seconds))
        except CommandTimedOut:
            raise RehearsalUnavailable(f"the rehearsal's migration did not finish within {migration.timeout_seconds} s "
                                       f"(the block's migration_timeout_seconds)") from None
        except CommandFailed as exc:
            failure = error_line(exc.stderr) if exc.stderr.strip() else str(exc)
        time.sleep(0.5)  # the server's last lines reach the container log
        text = io.run(c.Command(c.compose_logs_since(deployed, db_service, f"{since:.3f}"))).stdout
        entries = parse_log(text, prefix)
        if failure is not None:
            errors = server_errors(entries, name)
            raise RehearsalFailed(failure + (f" (server: {errors[-1]})" if errors else ""))
        statements = executed(entries, name)
    finally:
        dropped = _clean_up(io, f, name, scratch)
    if io.revisions(database.name) != live_before:
        raise RehearsalFailed(f"the live database's revision changed during the rehearsal ({live_before} → "
                              f"{io.revisions(database.name)}): the rehearsal_command reached it instead of {name}. "
                              f"Restore it from the last backup before anything else")
    sql, revisions = as_sql(statements)
    notes = []
    missing = [r for r in f.target.pending_revisions if r not in revisions]
    if missing:
        notes.append(f"the rehearsal's log shows no alembic_version write for {', '.join(missing)}")
    return Rehearsal(sql, revisions, name, round(time.monotonic() - t0, 2), len(statements), notes, dropped)


def _make_the_copy(io, f, name: str, schema: Path, versions: Path) -> None:
    """Creates the throw-away database `name` with the live database's schema and alembic_version rows (dumped to
    `schema` and `versions`), its statements logged."""
    db, timeout = f.settings.database, f.settings.migration.timeout_seconds
    io.sql(create_statements(name))
    io.run(c.Command(dump_schema(db.host, db.port, db.user, db.name, schema), timeout=timeout), db_password=True)
    io.run(c.Command(restore(db.host, db.port, db.user, name, schema), timeout=timeout), db_password=True)
    if f.database.revision:
        io.run(c.Command(dump_versions(db.host, db.port, db.user, db.name, versions)), db_password=True)
        io.run(c.Command(restore(db.host, db.port, db.user, name, versions)), db_password=True)
    io.sql([log_statements_sql(name)])


def _clean_up(io, f, name: str, scratch: Path) -> bool:
    """Removes the rehearsal's one-off container (a killed client leaves it running), drops the throw-away database
    and the scratch folder. Runs while an error or an interruption unwinds, so it logs its own failures instead of
    replacing that one (the next run's or `recover`'s sweep drops a leftover). Whether the database is gone."""
    if f.run.id:
        try:
            ids = io.run(c.Command(c.docker_ps_labelled(c.RUN_LABEL, f.run.id))).stdout.split()
            if ids:
                io.run(c.Command(c.docker_rm_force(ids)))
        except Exception as exc:  # noqa: BLE001
            log.warning("could not remove the rehearsal's container: %s", exc)
    try:
        io.sql(drop_statements(name))
        dropped = name not in io.databases()
    except Exception as exc:  # noqa: BLE001
        log.warning("could not drop the rehearsal database %s (the next run or `recover` drops it): %s", name, exc)
        dropped = False
    shutil.rmtree(scratch, ignore_errors=True)
    return dropped


def leftovers(db: str, names: set[str]) -> list[str]:
    """Rehearsal databases of `db` a killed run left behind (the recovery's sweep drops them)."""
    return sorted(n for n in names if n.startswith(db + INFIX))
