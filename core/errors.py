"""Errors stackshift reports to an operator, named after the condition, each saying what to do next."""
from __future__ import annotations

import re


class UpgradeError(Exception):
    """Base of every error stackshift reports to an operator."""


class PreflightError(UpgradeError):
    """Raised before anything was changed."""


class UnknownEnvironment(PreflightError):
    def __init__(self, name: str):
        super().__init__(
            f"No stack-environment block named {name!r}. List them with `prefect block ls` and create one "
            f"as the README's 'Pointing stackshift at a deployment' shows."
        )


class UnknownRef(PreflightError):
    def __init__(self, ref: str, compose_dir: str):
        super().__init__(
            f"{ref!r} is not a commit, tag or branch of the git checkout {compose_dir}. "
            f"Run `git -C {compose_dir} fetch --tags` and check the name with `git -C {compose_dir} tag`."
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
            f"The database is at revision(s) {', '.join(revisions)}, which the target's migrations (head {head}) do not "
            f"contain: the database is ahead of this release or on a diverged branch. Deploy the release that "
            f"created that revision, or restore the matching backup; an upgrade from here would fail or corrupt it."
        )


class SeveralDatabaseRevisions(PreflightError):
    def __init__(self, revisions: list[str], head: str):
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


class CommandFailed(UpgradeError):
    """A command exited non-zero. The message carries the argv (never a secret) and the end of stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str):
        self.argv, self.returncode, self.stderr = argv, returncode, stderr
        tail = stderr.strip().splitlines()[-6:]
        super().__init__(f"`{' '.join(argv)}` exited {returncode}" + (": " + " | ".join(tail) if tail else ""))


class CommandTimedOut(CommandFailed):
    """A command ran past its timeout and was killed."""

    def __init__(self, argv: list[str], timeout: float, stderr: str = ""):
        self.timeout = timeout
        UpgradeError.__init__(self, f"`{' '.join(argv)}` did not finish within its timeout of {timeout:g} s and was "
                                    f"killed. Find out why it hangs (is the Docker engine or the database "
                                    f"answering?), or raise the block's timeout for it.")
        self.argv, self.returncode, self.stderr = argv, -9, stderr or f"timed out after {timeout:g} s"


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


class InsufficientDisk(PreflightError):
    def __init__(self, problems: list[str]):
        super().__init__("Not enough free disk for the backup and the rollback point: " + "; ".join(problems)
                         + ". Free space there, or point the block's backup_dir at a larger disk.")


class StepFailed(UpgradeError):
    """A step of the plan failed. Each kind of step raises its own subclass, whose `advice` says what to do."""

    advice = "Read the step's detail in the run's timeline artifact."

    def __init__(self, step_id: str, detail: str):
        self.step_id, self.detail = step_id, detail
        super().__init__(f"{step_id}: {detail}. {self.advice}")


class BackupFailed(StepFailed):
    advice = ("Nothing was stopped or changed yet; fix the cause (disk, permissions, the database's reachability) "
              "and run again.")


class PullFailed(StepFailed):
    advice = "Nothing was stopped yet; check the registry and the tags, then run again."


class StopFailed(StepFailed):
    advice = "The stack is being rolled back to the previous version; check the Docker engine."


class RollbackPointFailed(StepFailed):
    advice = ("The database was not changed; the stack is being put back. Check the role's CREATEDB privilege and "
              "free disk on the database server.")


class CheckoutFailed(StepFailed):
    advice = "The stack is being rolled back; check the compose directory's git checkout (permissions, locks)."


class EnvWriteFailed(StepFailed):
    advice = "The stack is being rolled back; check free disk and permissions of the compose directory."


class ServiceRemovalFailed(StepFailed):
    advice = "The stack is being rolled back; check the Docker engine."


class MigrationFailed(StepFailed):
    advice = ("The database is being put back at the rollback point. Fix the migration in the release (the error is "
              "above), or restore the schema it expects, then run again.")


class HealthCheckFailed(StepFailed):
    advice = ("The stack is being rolled back. Read the container logs (`docker compose logs`) of the services named "
              "above.")


class RestoreFailed(StepFailed):
    advice = "Run `./stackshift recover --environment <env>` to retry; the rollback point database is kept."


class CleanupFailed(StepFailed):
    advice = ("The stack itself is whole; drop or remove the leftovers named above by hand (or run `./stackshift "
              "recover`, which sweeps the stack's leftovers).")


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


class ServicesNotHealthy(UpgradeError):
    """Raised by the health poller; the step that started the services reports it as its own failure."""


class RollbackPointUnavailable(PreflightError):
    def __init__(self, method: str, detail: str):
        super().__init__(f"The environment asks for a {method} rollback point, which cannot work here: {detail}. Fix "
                         f"that, or set the block's rollback_point to `auto` (stackshift then takes the cheapest one "
                         f"that works and says which).")


class BackupCheckFailed(UpgradeError):
    """The restore drill found the backup damaged or incomplete."""

    def __init__(self, run_dir: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"The backup {run_dir} failed its restore drill: {'; '.join(problems)}. Do not rely on it: "
                         f"take a new one (a dry-run-free upgrade takes one first) and find what damaged this one.")


class RollbackFailed(UpgradeError):
    """The rollback itself failed: the operator must act. The message says what state things are in."""


class UpgradeInterrupted(UpgradeError):
    """The run was stopped from outside (SIGTERM, a cancel in the UI, Prefect's cancellation) after the writers
    stopped; the message says what was done about it."""


class EnvSyncError(PreflightError):
    pass


def error_line(stderr: str) -> str:
    """The line of a command's stderr a person needs: the last exception line (`pkg.SomeError: …`), else the last
    line mentioning an error or an unhealthy container, else the last line."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Violation)\b.*:", ln):
            return ln
    for ln in reversed(lines):
        if re.search(r"\berror\b|unhealthy", ln, re.I) and not ln.startswith(("File ", "(Background")):
            return ln
    return lines[-1] if lines else "no output"


class TemplateImplausible(EnvSyncError):
    """An env template that cannot be the one meant: empty, or sharing almost no keys with the .env or the other
    template. Merging onto it would drop the operator's keys or keep every stale default."""

    def __init__(self, path: str, finding: str, expected: str):
        self.path = path
        super().__init__(f"{path}: {finding}, but {expected}. Check that you gave the right template; nothing was "
                         f"written.")


class NeededServiceInactive(EnvSyncError):
    """The merged env would leave a service the target stack needs (its database, a `depends_on` target) outside
    the active compose profiles: the stack would start without it."""

    def __init__(self, env: str, key: str, finding: str, fix: str, override: str):
        self.key = key
        super().__init__(f"{env}: {finding}. Set {fix} in the env file, or {override} to go ahead anyway; nothing was "
                         f"written.")


class EnvFileUnwritable(EnvSyncError):
    """The env file, or its backup under env-backup/, cannot be written."""

    def __init__(self, path: str, detail: str, backup_dir: str):
        self.path = path
        super().__init__(f"Cannot write {path}: {detail}. Make {backup_dir} and the file's folder writable for this "
                         f"user (or run as the file's owner) and run again; the file is unchanged and no backup was "
                         f"left behind.")


class ComposeUnavailable(EnvSyncError):
    """`docker compose` cannot be run, so the merged env cannot be checked against the target's compose file."""

    def __init__(self, detail: str):
        super().__init__(f"Cannot run `docker compose` to check the merged env ({detail}). Install Docker with the "
                         f"Compose v2 plugin (`docker compose version`), or leave out --compose-file; nothing was "
                         f"written.")


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


# --- hosts, pinned images and promotion (issue 10) --------------------------------------------------------------
class WrongHost(PreflightError):
    """A flow of an environment started on a host other than the one whose engine and compose directory it changes."""

    def __init__(self, environment: str, expected: str, here: str):
        super().__init__(
            f"Environment {environment!r} runs on host {expected!r} (its block's `host`), but this run is on "
            f"{here!r}. Start it from that host's work pool (deployment `upgrade-{environment}` on pool "
            f"`stackshift-{expected}`), or run the CLI there; nothing was read or changed.")


class PinnedImageMismatch(PreflightError):
    """The images the run was asked to pin (by digest) do not fit the target release's services."""

    def __init__(self, detail: str):
        super().__init__(f"The pinned images do not fit the release: {detail}. Promote the release staging "
                         f"verified (same tag), or run without pinned images; nothing was changed.")


class PlanChangedSinceApproval(PreflightError):
    """The plan computed now differs from the one an approver saw (prod changed, or the digests did)."""

    def __init__(self, environment: str, approved: str, now: str):
        super().__init__(
            f"The plan of {environment!r} no longer matches the approved one (approved fingerprint {approved[:16]}, "
            f"now {now[:16]}): the environment or the images changed after the approval. Nothing was changed. Start "
            f"the promotion again and review the new plan and env diff before approving.")


class ApprovalRefused(UpgradeError):
    """An approval was given for a different fingerprint than the promotion summary's."""

    def __init__(self, given: str, expected: str):
        super().__init__(
            f"The approval names fingerprint {given[:16] or '(none)'}, but this promotion's summary shows "
            f"{expected[:16]}: the approver saw another plan. Prod was not touched. Start the promotion again and "
            f"approve the fingerprint its summary shows.")


class PromotionStopped(UpgradeError):
    """A run the promotion depends on (the staging upgrade, the prod plan or the prod upgrade) did not complete."""

    def __init__(self, what: str, state: str, message: str, url: str):
        super().__init__(f"The promotion stopped: {what} ended {state} ({message or 'no message'}). See {url}. "
                         f"Fix the cause and start the promotion again.")


class ChildRunTimedOut(UpgradeError):
    """A run on another host's pool did not finish in time (is that host's worker running?)."""

    def __init__(self, what: str, minutes: float, pool: str, url: str):
        super().__init__(f"{what} did not finish within {minutes:g} min ({url}). Check that the worker of pool "
                         f"{pool!r} runs (`prefect worker start --pool {pool}`); the promotion stopped before prod "
                         f"changed.")


class NoReleaseFound(PreflightError):
    def __init__(self, compose_dir: str):
        super().__init__(f"No release tag (vX.Y.Z) in {compose_dir}. Run `git -C {compose_dir} fetch --tags`, or "
                         f"give the release explicitly.")
