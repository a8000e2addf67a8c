"""Pre-flight refusals: bad input or a state that must not be changed, found before anything changes."""
from __future__ import annotations


from core.errors.base import PreflightError


class UnknownEnvironment(PreflightError):
    def __init__(self, name: str):
        super().__init__(
            f"No stack-environment block named {name!r}. List them with `prefect block ls` and create one "
            f"as docs/operator-guide.md's 'Point it at your stack' shows."
        )

class EnvironmentBlockUnreadable(PreflightError):
    def __init__(self, name: str, detail: str):
        super().__init__(
            f"The stack-environment block {name!r} exists but cannot be read: {detail}. Open it in the Prefect UI "
            f"(Blocks) and fix or re-save it, or recreate it with `stackshift init --force`."
        )

class UnknownRef(PreflightError):
    def __init__(self, ref: str, compose_dir: str):
        super().__init__(
            f"{ref!r} is not a commit, tag or branch of the git checkout {compose_dir}. "
            f"Run `git -C {compose_dir} fetch --tags` and check the name with `git -C {compose_dir} tag`."
        )

class ComposeDirMissing(PreflightError):
    """The block's compose directory is gone, or is no git checkout: stackshift deploys releases as git refs."""

    def __init__(self, compose_dir: str, finding: str):
        self.compose_dir = compose_dir
        super().__init__(
            f"The compose directory {compose_dir} {finding}. Fix the block's compose_dir, or restore the checkout "
            f"(`git clone <the stack's repository> {compose_dir}`, then check out the running release); nothing was "
            f"changed."
        )

class EnvFileUnusable(PreflightError):
    """The stack's `.env` cannot be read as an env file: found by stackshift's own parser before compose reads it."""

    def __init__(self, path: str, detail: str):
        self.path = path
        super().__init__(
            f"The stack's env file cannot be used: {detail} Restore it (its last copy is in the newest backup "
            f"folder's compose/ and in env-backup/), or fix the block's env_file; nothing was changed."
        )

class UnknownMigrationService(PreflightError):
    """The block's `migration.service` is not a service of the target release."""

    def __init__(self, service: str, services: list[str]):
        self.service = service
        super().__init__(
            f"The block's migration service {service!r} is not a service of the target release (its services: "
            f"{', '.join(services) or 'none'}). Set migration.service to the service whose image holds the "
            f"migrations (e.g. api); nothing was changed."
        )

class ComposeDirDirty(PreflightError):
    def __init__(self, compose_dir: str, files: list[str]):
        super().__init__(
            f"Tracked files in {compose_dir} have local changes ({', '.join(files)}); a checkout would carry or "
            f"lose them. Commit them on a branch, or move the change to an override file listed in the block."
        )

class InvalidComposeFile(PreflightError):
    def __init__(self, ref: str, detail: str):
        super().__init__(f"The compose configuration of {ref!r} is invalid: {detail}. Fix it in the release, not here.")

class DatabaseUnreachable(PreflightError):
    def __init__(self, where: str, detail: str):
        super().__init__(
            f"Cannot connect to PostgreSQL at {where}: {detail}. Check the block's db_host/db_port/db_user/"
            f"db_password and that the database service is running."
        )

class DatabaseMissing(PreflightError):
    """The server answers, but the database the block names does not exist on it."""

    def __init__(self, where: str, name: str):
        self.name = name
        super().__init__(
            f"The PostgreSQL server at {where} has no database {name!r}. Check the block's database name (and "
            f"extra_databases) against `\\l` on that server, or point db_host/db_port at the server that holds it; "
            f"nothing was changed."
        )

class RegistryUnreachable(PreflightError):
    """The registry of the target's images did not answer, so whether they exist is unknown (not "missing")."""

    def __init__(self, images: list[str], detail: str):
        self.images = images
        super().__init__(
            f"Cannot reach the registry of {', '.join(images)}: {detail}. Check that the registry runs and that this "
            f"host reaches it (network, DNS, proxy, TLS), then run again; nothing was changed."
        )

class ImageMissing(PreflightError):
    def __init__(self, images: list[str]):
        super().__init__(
            f"Image(s) not found in their registry: {', '.join(images)}. Push them, or fix the tag in the release."
        )

class NotDeployed(PreflightError):
    def __init__(self, project: str):
        super().__init__(
            f"Compose project {project!r} has no running containers. stackshift upgrades a running stack; "
            f"start it with `docker compose up -d --wait` first."
        )

class MultipleHeads(PreflightError):
    def __init__(self, heads: list[str]):
        super().__init__(
            f"The target's migrations have {len(heads)} heads ({', '.join(heads)}); the release must merge them "
            f"(`alembic merge`) before it can be deployed."
        )

class UnknownDatabaseRevision(PreflightError):
    def __init__(self, revisions: list[str], head: str):
        super().__init__(
            f"The database is at revision(s) {', '.join(revisions)}, which the target's migrations (head {head}) "
            f"do not contain: the database is ahead of this release or on a diverged branch. Deploy the release that "
            f"created that revision, or restore the matching backup; an upgrade from here would fail or corrupt it."
        )

class SeveralDatabaseRevisions(PreflightError):
    def __init__(self, revisions: list[str], head: str, overlap: str = ""):
        self.revisions = revisions
        if overlap:  # the rows are on one branch (a stale or duplicated row): Alembic cannot tell where the db is
            super().__init__(
                f"The database has {len(revisions)} alembic_version rows ({', '.join(revisions)}) on one branch "
                f"({overlap}): Alembic cannot tell which revision the schema is at, so nothing can be planned to "
                f"{head}. Check which one the schema matches, delete the other row(s) from alembic_version, then "
                f"plan again; nothing was changed.")
            return
        super().__init__(
            f"The database has {len(revisions)} alembic_version rows ({', '.join(revisions)}): its branches are not "
            f"merged, and their SQL cannot be rendered as one range to {head} for review. Upgrade it to a merge "
            f"revision by hand first (`alembic upgrade <merge>`), then plan again."
        )

class MigrationFileUnreadable(PreflightError):
    def __init__(self, filename: str, detail: str):
        super().__init__(f"Cannot read the revision identifiers of migration file {filename}: {detail}. "
                         f"Fix the file in the release.")

class SqlFileUnreadable(PreflightError):
    def __init__(self, path: str, detail: str):
        super().__init__(f"Cannot read migration SQL {path}: {detail}. Give a UTF-8 file of SQL, e.g. the output "
                         f"of `alembic upgrade FROM:TO --sql`.")

class InvalidDsn(PreflightError):
    def __init__(self, detail: str):
        super().__init__(f"The --dsn is not a valid PostgreSQL connection string: {detail}. Use "
                         f"`postgresql://user@host:port/dbname` and pass the password in PGPASSWORD or ~/.pgpass.")

class ProbeFailed(PreflightError):
    def __init__(self, detail: str):
        super().__init__(f"The calibration probe failed on the server ({detail}); its scratch schema was dropped. "
                         f"The role needs CREATE on the database; or run without durations (`--no-probe`).")

class MigrationRiskTooHigh(PreflightError):
    """The migration gate: a forecast lock-hold over the environment's threshold, or a data-loss statement."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__(
            "The pending migrations were stopped before any change: " + "; ".join(reasons) + ". Read the "
            "migration report artifact; split or rewrite the migration (each finding names a safer alternative), "
            "schedule a window and raise the environment's max_lock_seconds, or rerun with "
            "accept_migration_risk=true once you have reviewed it."
        )

class StackLocked(PreflightError):
    """Another run holds the environment's lock: nothing was read or changed."""

    def __init__(self, lock_path: str, holder: dict):
        self.holder = holder
        who = ", ".join(f"{k} {holder[k]}" for k in ("run", "flow_run", "host", "pid", "since") if holder.get(k))
        super().__init__(
            f"Another stackshift run holds the lock of this environment ({who or 'holder unknown'}; lock file "
            f"{lock_path}). Nothing was changed. Wait for it to finish (watch it in the Prefect UI), then run again; "
            f"the lock is released the moment its process ends, so a dead holder never blocks you."
        )

class DockerHostUnreachable(PreflightError):
    def __init__(self, where: str, detail: str):
        super().__init__(f"Cannot reach the Docker engine at {where}: {detail}. Check the block's docker_host (or "
                         f"DOCKER_HOST) and that dockerd is running there.")

class MissingPrivilege(PreflightError):
    def __init__(self, user: str, detail: str):
        super().__init__(
            f"The database role {user!r} cannot take the rollback point: {detail}. Grant it with "
            f"`ALTER ROLE {user} CREATEDB` (and make it the owner of the app's databases), or set the block's db_user "
            f"to a role that has it."
        )

class OnlineTableNotOwned(PreflightError):
    """The online preparation alters tables (a shadow column, a trigger, the swap): PostgreSQL lets only their owner."""

    def __init__(self, user: str, tables: list[str]):
        super().__init__(
            f"The database role {user!r} cannot prepare online: it does not own {', '.join(tables)}, which the online "
            f"preparation alters while the old version serves. Nothing was changed. Make the role a member of the "
            f"owner (`GRANT <owner> TO {user}`), set the block's db_user to the owner, or set "
            f"migration.online_preparation to off (the statements then run in the downtime).")

class OnlineInsufficientDisk(PreflightError):
    def __init__(self, need: int, room: int):
        super().__init__(
            f"Not enough free disk beside the database's data directory for the online preparation: it writes up to "
            f"{need / 1e9:.2f} GB (a new version of every row of the table, and the shadow of each index on the "
            f"column), and {room / 1e9:.2f} GB are left once the rollback point is counted. Nothing was changed. Free "
            f"space there, or set migration.online_preparation to off (the statements then run in the downtime).")

class BackupDirUnusable(PreflightError):
    """The block's backup_dir cannot hold the run's folder, lock and journal (below a file, read-only)."""

    def __init__(self, backup_dir: str, finding: str):
        super().__init__(f"The backup folder {backup_dir} cannot be used: {finding}. Point the block's backup_dir at a "
                         f"writable folder (on a disk with room for a dump and the volumes), or fix that one; nothing "
                         f"was changed.")

class InsufficientDisk(PreflightError):
    def __init__(self, problems: list[str]):
        super().__init__("Not enough free disk for the backup and the rollback point: " + "; ".join(problems)
                         + ". Free space there, or point the block's backup_dir at a larger disk.")

class JournalUnreadable(PreflightError):
    def __init__(self, path: str, detail: str):
        super().__init__(f"The run journal {path} cannot be read ({detail}): an earlier run may have stopped halfway, "
                         f"and stackshift will not change the stack without knowing. Inspect it (and the run folder "
                         f"beside it); once the stack is whole, set its \"status\" to \"abandoned\" and run again.")

class InterruptedRunPending(PreflightError):
    def __init__(self, runs: list[str]):
        super().__init__(f"An earlier run of this environment was interrupted ({'; '.join(runs)}). A dry run changes "
                         f"nothing, so it does not recover it: run `./stackshift recover --environment <env>` (or a "
                         f"real upgrade, which recovers first).")

class UnsupportedServer(PreflightError):
    def __init__(self, detail: str):
        super().__init__(f"The database server cannot take stackshift's rollback point: {detail}.")

class RollbackPointUnavailable(PreflightError):
    def __init__(self, method: str, detail: str):
        super().__init__(f"The environment asks for a {method} rollback point, which cannot work here: {detail}. Fix "
                         f"that, or set the block's rollback_point to `auto` (stackshift then takes the cheapest one "
                         f"that works and says which).")

class RehearsalUnavailable(PreflightError):
    """The migration could not be rehearsed (the server's logging or the role does not allow capturing it)."""

    def __init__(self, detail: str):
        super().__init__(
            f"The migration could not be rehearsed: {detail}. Nothing was changed. Fix that, or unset the block's "
            f"rehearsal_command to go on with the offline SQL alone (the report then names the revisions it could "
            f"not analyse)."
        )

class RehearsalFailed(PreflightError):
    """The target's migration failed on a throw-away copy of the live schema: it would fail in the cutover too."""

    def __init__(self, detail: str):
        super().__init__(
            f"The target's migration failed when rehearsed on a copy of the live schema: {detail}. Nothing was "
            f"changed and the rehearsal database is dropped. Fix the migration or the schema before upgrading; "
            f"the statements up to the failure are in the run's logs."
        )
