"""Failures of a step once the run began changing things, and of the rollback."""
from __future__ import annotations


from core.errors.base import StepFailed, UpgradeError


class BackupFailed(StepFailed):
    advice = ("Nothing was stopped or changed yet; fix the cause (disk, permissions, the database's reachability) "
              "and run again.")

class OnlinePreparationFailed(StepFailed):
    advice = ("Nothing was stopped; the online preparation is undone (its shadow column, trigger and helper objects "
              "dropped) unless its swap had committed (then the column stays widened, which the old version reads "
              "and writes as before). Fix the cause (a lock held by a long transaction, disk, the role's privileges) "
              "and run again, or set the environment's migration.online_preparation to off.")

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

class ServicesNotHealthy(UpgradeError):
    """Raised by the health poller; the step that started the services reports it as its own failure."""

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
