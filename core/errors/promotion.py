"""Hosts, pinned images, approvals and the promotion's child runs."""
from __future__ import annotations

from core.errors.base import PreflightError, UpgradeError


# --- hosts, pinned images and promotion (issue 10) --------------------------------------------------------------
class WrongHost(PreflightError):
    """A flow of an environment started on a host other than the one whose engine and compose directory it changes."""

    def __init__(self, environment: str, expected: str, here: str):
        super().__init__(
            f"Environment {environment!r} runs on host {expected!r} (its block's `host`), but this run is on "
            f"{here!r}. Start it from that host's work pool (deployment `upgrade-{environment}` on pool "
            f"`stackshift-{expected}`), or run the CLI there; nothing was read or changed.")

class HandedOverRecoveryFailed(UpgradeError):
    """The recovery an environment's own host ran (`recover-<environment>`, handed over by a recover run elsewhere)
    did not complete."""

    def __init__(self, environment: str, run: str, state: str):
        super().__init__(
            f"The recovery of {environment!r} was handed to its own host (deployment `recover-{environment}`, flow run "
            f"{run}), which ended {state}. Read that run's logs; `./stackshift recover -e {environment}` on that host "
            f"retries it.")


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

    def __init__(self, what: str, state: str | None, message: str, url: str):
        super().__init__(f"The promotion stopped: {what} ended {state} ({message or 'no message'}). See {url}. "
                         f"Fix the cause and start the promotion again.")

class ChildRunTimedOut(UpgradeError):
    """A run on another host's pool did not finish in time (is that host's worker running?)."""

    def __init__(self, what: str, minutes: float, pool: str, url: str):
        super().__init__(f"{what} did not finish within {minutes:g} min ({url}). Check that the worker of pool "
                         f"{pool!r} runs (`prefect worker start --pool {pool}`); the promotion stopped before prod "
                         f"changed.")

class NoReleaseFound(PreflightError):
    """A promotion without a release, and staging has verified none (no upgrade of staging recorded its digests)."""

    def __init__(self, staging: str):
        super().__init__(f"{staging!r} has no verified release to promote (no upgrade of it has completed and "
                         f"recorded its digests). Give the release to promote (e.g. `v2.0.0`), or upgrade {staging} "
                         f"first; nothing was changed.")


class NotARelease(PreflightError):
    """A form's target that is no tag of the stack's compose checkout."""

    SHOWN = 15  # the newest tags named in the message

    def __init__(self, target: str, releases: list[str], compose_dir: str):
        more = " …" if len(releases) > self.SHOWN else ""
        shown = ", ".join(releases[:self.SHOWN]) + more if releases else "none"
        super().__init__(f"{target!r} is not a release tag of {compose_dir}. Release tags, newest first: {shown}. "
                         f"Start the run again with one of them (`git -C {compose_dir} fetch --tags` if yours is "
                         f"missing); nothing was changed.")


class NotADeployedEnvironment(PreflightError):
    """`upgrade_release` started outside a deployment named `upgrade-<environment>` (it takes its environment from
    that name)."""

    def __init__(self, deployment: str):
        super().__init__(f"This flow takes its environment from its deployment's name, `upgrade-<environment>`, but "
                         f"it runs in deployment {deployment!r}. Use the `upgrade` flow (the CLI's) to name the "
                         f"environment; nothing was changed.")
