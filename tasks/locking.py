"""The environment's lock, whoever starts the run: the kernel's file lock decides, the Prefect UI shows it.

`environment_lock` takes the stack's `flock` (core.cutover.lock) first: that is the lock. Then, for people watching the
UI, it occupies the one slot of a global concurrency limit `stackshift-<environment>` (Concurrency page), held by this
flow run. That slot is best effort: if the Prefect server is down, restarted or the lease cannot be renewed, the
cutover goes on (a lost lease never cancels it); and a slot still leased to a dead holder (it expires within about
a minute) does not block a run the file lock let through.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager, suppress
from uuid import UUID

from core.settings import Settings
from core.cutover.lock import RECOVERY, StackLock, dead_holder_run, lock_path

log = logging.getLogger("stackshift")
LEASE_SECONDS = 60


def limit_name(environment: str) -> str:
    return f"stackshift-{environment}".lower().replace("_", "-")


def ensure_limit(environment: str) -> None:
    """Creates the environment's global concurrency limit (1 slot) if it does not exist."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(limit_name(environment))
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name(environment), limit=1))


@contextmanager
def _ui_slot(environment: str, flow_run_id: str | None, lock: StackLock):
    """The UI's slot, its lease noted in the lock file: a holder that dies keeps its slot until the lease expires,
    and the next holder of the file lock (which proves it dead) frees it first instead of waiting for it."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency._leases import maintain_concurrency_lease
    from prefect.concurrency._sync import acquire_concurrency_slots_with_lease, release_concurrency_slots_with_lease

    lease = None
    try:
        ensure_limit(environment)
        if lock.previous.get("ui_lease"):
            with suppress(Exception):  # expired already, or the server forgot it: nothing to free
                release_concurrency_slots_with_lease(UUID(lock.previous["ui_lease"]))
        holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(flow_run_id)) if flow_run_id else None
        lease = acquire_concurrency_slots_with_lease([limit_name(environment)], 1, timeout_seconds=3,
                                                     lease_duration=LEASE_SECONDS, strict=True, holder=holder,
                                                     suppress_warnings=True).lease_id
        lock.note(ui_lease=str(lease))
    except Exception as exc:
        log.warning("The UI's concurrency slot %s was not taken (%s); the file lock holds the environment anyway.",
                    limit_name(environment), type(exc).__name__)
    if lease is None:
        yield
        return
    try:
        with maintain_concurrency_lease(lease, LEASE_SECONDS, raise_on_lease_renewal_failure=False,
                                        suppress_warnings=True):
            yield
    finally:
        from tasks._common import api_reachable

        try:
            if not api_reachable(timeout=10):  # the run is over: a busy server may take its time
                raise ConnectionError("the Prefect server does not answer")
            release_concurrency_slots_with_lease(lease)
        except Exception as exc:
            log.warning("Could not release the UI's concurrency slot (%s); its lease expires by itself.",
                        type(exc).__name__)


@contextmanager
def environment_lock(cfg: Settings, environment: str, run: str, flow_run_id: str | None, recovery: bool = False,
                     wait_seconds: float = 0.0):
    """Holds the stack's lock for the whole run, or raises StackLocked at once (naming the holder). A holder found
    dead (its record left in the lock file) gets its flow run marked Crashed (`mark_dead_holder`).

    A `recovery` marks its record so; it waits up to `wait_seconds` for another recovery holding the lock (two
    automations, or one fired twice, may start two for one crash: the second then finds nothing left to do)."""
    holder = {"run": run, "flow_run": flow_run_id, "environment": environment} | (
        {"purpose": RECOVERY} if recovery else {})
    with (StackLock(lock_path(cfg.backup.dir, cfg.stack.project_name), holder,
                    wait_for_purpose=RECOVERY if recovery else None, wait_seconds=wait_seconds) as lock,
          _ui_slot(environment, flow_run_id, lock)):
        mark_dead_holder(cfg, environment, lock.previous, f"run {run}")
        yield lock


def mark_dead_holder(cfg: Settings, environment: str, previous: dict, by: str) -> None:
    """A run killed holding the lock (SIGKILL, its host gone) stays Running in Prefect: the next run to take the
    lock marks it Crashed. Runs an open journal names are left to the recovery, which marks them with what it did.
    Best effort: never raises."""
    from pathlib import Path

    from core.cutover.journal import Journal
    from tasks._common import api_reachable, set_state_if_open

    # before the cutover, so a busy server may take its time: 10 s, not the 2 s of the extras during the downtime
    if not previous.get("flow_run") or not api_reachable(timeout=10):
        return
    try:
        open_runs = {j.flow_run_id or "" for j in Journal.open_runs(Path(cfg.backup.dir) / cfg.stack.project_name)}
    except Exception:  # an unreadable journal: the recovery says so; nothing is marked meanwhile
        return
    dead = dead_holder_run(previous, open_runs)
    if dead:
        from prefect.states import Crashed

        log.warning("Run %s died holding the lock of %s; its flow run %s is marked Crashed.", previous.get("run"),
                    environment, dead)
        set_state_if_open(dead, Crashed(message=(
            f"Its process (pid {previous.get('pid')} on {previous.get('host')}) died holding the lock of "
            f"{environment} (since {previous.get('since')}); found by {by} when it took the lock.")))
