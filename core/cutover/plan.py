"""The upgrade plan: facts gathered by pre-flight, turned into ordered, typed steps by one pure function.

Dry-run renders the steps, apply walks them, and rollback and recovery walk their own lists built from the same
facts. Each step is a type from `core.cutover.steps` that knows how to apply itself, how it fails and how it renders.
`build_plan` is one function per phase (`Phase`: backup, prepare, cutover, verify, finish, rollback) over what they
share (`Stack`); what depends on the rollback method comes from its strategy (`core.cutover.rollback_methods`).
The plan holds no secret (steps that need the database password say so with `needs_db_password`; the password is
added to the child's environment at the last call).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.cutover import rollback_methods as rm
from core.cutover import steps as st
from core.cutover.steps import Phase
from core.cutover.facts import Facts
from core.cutover.online import OnlineFacts, online_settings
from core.migrations.online import Preparation
from core.io import commands as c
from core.io.compose import digest_ref


@dataclass
class Plan:
    """Every list an upgrade may walk: `backup` (old version serving), `prepare` (right before the downtime, after
    the pull), `cutover` (downtime), `verify`, `finish` (after success), `rollback` (after a failure once the cutover
    began)."""

    facts: Facts
    backup: list[st.Step]
    cutover: list[st.Step]
    verify: list[st.Step]
    finish: list[st.Step]
    rollback: list[st.Step]
    prepare: list[st.Step] = field(default_factory=list)

    def lists(self) -> dict[Phase, list[st.Step]]:
        """The lists in the order an upgrade walks them."""
        return {phase: getattr(self, phase.value) for phase in Phase}

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"facts": self.facts.to_dict()}
        for phase, steps in self.lists().items():
            out[phase.value] = [{"id": s.id, "kind": type(s).__name__, "task": s.task_name, "title": s.title,
                                 "does": s.render()} for s in steps]
        return out

    def after_migration(self) -> list[st.Step]:
        """The cutover steps after the migration (what is left to finish a cutover whose migration completed)."""
        i = next(i for i, s in enumerate(self.cutover) if isinstance(s, st.Migrate))
        return self.cutover[i + 1:]

    @property
    def rollback_point(self) -> st.RollbackPoint:
        return next(s for s in self.cutover if isinstance(s, st.RollbackPoint))


def old_project(f: Facts, pinned: bool = False) -> c.ComposeProject:
    """The deployment as it was: the backup's copies of its compose files and .env, run from its directory."""
    stack = f.settings.stack
    saved = f.run.dir / "compose"
    files = tuple(saved / name for name in stack.compose_files)
    if pinned:
        files += (f.run.dir / "rollback-pins.yaml",)
    return c.ComposeProject(stack.compose_dir, files, saved / stack.env_file, stack.project_name)


def target_project(f: Facts) -> c.ComposeProject:
    return c.ComposeProject.of(f.settings.stack)


def scratch_glob(f: Facts) -> str:
    """Pre-flight's scratch folders of this stack (a killed pre-flight can leave one)."""
    return str(f.run.dir.parent / ".scratch-*")


def pinned_digests(images: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """(service, repo@sha256:…) of the target's images pinned by digest (a promotion pins every one)."""
    return tuple((s, digest) for s, ref in sorted(images.items()) if (digest := digest_ref(ref)))


def version_argv(p: c.ComposeProject, f: Facts) -> tuple[str, ...]:
    """The environment's version command, in the running container of the migrate service ([] = none)."""
    command = f.settings.health.version_command
    return tuple(c.compose_exec(p, f.settings.migration.service, command)) if command else ()


@dataclass(frozen=True)
class Stack:
    """What the phases share, read once from the facts: the projects, who stops and starts, the rollback method."""

    f: Facts
    run_id: str
    method: rm.RollbackMethod
    old: c.ComposeProject  # the backup's copies of the previous compose files and .env
    new: c.ComposeProject  # the target, checked out
    pinned: c.ComposeProject  # the previous version, every image pinned to its digest (the rollback's)
    off: tuple[tuple[str, str], ...]  # the migration switch, off ((), when the app has none)
    writers: list[str]  # running services that write: stopped first
    retired: list[str]  # running services the target no longer has
    target_db: list[str]  # the target's database services
    apps: list[str]  # the target's other services
    old_db: list[str]  # the previous version's database services
    up_timeout: int
    online: tuple[Preparation, ...] = ()  # prepared while the old version serves (`migration.online_preparation`)

    @classmethod
    def of(cls, f: Facts, run_id: str) -> Stack:
        # With a switch, every start runs with entrypoint migrations off. Without one (the app migrates when it
        # starts), the one-off `migrate` still runs first, with the writers stopped: each start then finds the
        # database at the head, and its own migration has nothing to do.
        settings = f.settings
        target_db = [s for s in settings.database.services if s in f.target.services]
        return cls(f, run_id, rm.for_run(f, run_id), old_project(f), target_project(f), old_project(f, pinned=True),
                   ((settings.migration.switch, "false"),) if settings.migration.switch else (),
                   writers=[s for s in settings.writers.services if s in f.current.running],
                   retired=[s for s in f.current.services if s not in f.target.services and s in f.current.running],
                   target_db=target_db, apps=[s for s in f.target.services if s not in target_db],
                   old_db=[s for s in settings.database.services if s in f.current.services],
                   up_timeout=settings.health.timeout_seconds + 60,
                   online=f.online.preparations(online_settings(settings)))

    def timeouts(self, services: list[str]) -> tuple[tuple[str, int], ...]:
        """The environment's stop timeouts of these services."""
        stop_timeouts = self.f.settings.writers.stop_timeouts
        return tuple((s, stop_timeouts[s]) for s in services if s in stop_timeouts)

    def create_ahead(self, services: list[str], record: str) -> st.CreateAhead:
        return st.CreateAhead(tuple(c.compose_create(self.new, services)), self.off,
                              self.f.settings.stack.project_name, tuple(services), record)

    def cleanup(self, step_id: str, phase: Phase, title: str, rolled_back: bool) -> st.Cleanup:
        return st.Cleanup(step_id, phase, title, scratch=(scratch_glob(self.f),),
                          **self.method.leftovers(rolled_back))


# --- the phases -----------------------------------------------------------------------------------------------
def _dumps(f: Facts) -> tuple[list[st.Step], list[st.Step]]:
    """Each database's dump, and its check."""
    server = f.settings.database
    dumps: list[st.Step] = []
    checks: list[st.Step] = []
    for db in f.database.names:
        dump = f.run.dir / f"{db}.dump"
        dumps.append(st.DumpDatabase(f"pg-dump-{db}", Phase.BACKUP, f"pg_dump -Fd -j {f.run.dump_jobs} of {db}, rows "
                                     f"counted in the same snapshot (online, the old version still serving)",
                                     argv=tuple(c.pg_dump(server.host, server.port, server.user, db, dump,
                                                          f.run.dump_jobs)),
                                     needs_db_password=True, timeout=f.settings.migration.timeout_seconds, database=db))
        checks.append(st.BackupCommand(f"verify-dump-{db}", Phase.BACKUP, f"Check {db}.dump is readable (pg_restore "
                                       f"--list)", argv=tuple(c.pg_restore_list(dump)), stdout_file=f"{db}.dump.list"))
    return dumps, checks


def backup_phase(s: Stack) -> list[st.Step]:
    """The old version still serving: config, dumps, volumes, the method's own (PITR's base backup), records.
    The heavy work (each dump, then the archive) one after the other, as the raw tools would; the light records and
    checks beside it, so that they cost no time of their own."""
    f = s.f
    stack = f.settings.stack
    resolved = st.SaveResolvedConfig("resolved-config", Phase.BACKUP, "Save the resolved compose config (JSON)",
                                     argv=tuple(c.compose_config_json(s.new)), stdout_file="compose-config.json")
    dumps, checks = _dumps(f)
    archive = st.BackupCommand("archive-volumes", Phase.BACKUP, "Archive bind-mounted volumes (zstd), without the live "
                               "database directory", argv=tuple(c.tar_create(f.run.dir / "volumes.tar.zst",
                                                                            stack.compose_dir / "volumes",
                                                                            f.run.volume_excludes)),
                               env=c.ZSTD_ENV, ok_codes=(0, 1), timeout=f.settings.migration.timeout_seconds)
    first = [st.Together("dump-and-config", Phase.BACKUP, "The first dump, and the resolved compose config beside it",
                         steps=(dumps[0], resolved))] if dumps else [resolved]
    return [
        st.SaveConfig("save-config", Phase.BACKUP, "Copy compose files, .env and the env template"
                      + (", and the envs/ env files" if f.env_sync.existing_copies else ""),
                      names=(*stack.compose_files, stack.env_file, stack.env_template, *f.env_sync.existing_copies)),
        *first,
        *dumps[1:],
        st.Together("archive-and-check", Phase.BACKUP, "Archive the volumes, and check every dump beside it",
                    steps=(archive, *checks)),
        *s.method.backup_steps(s.old),
        st.WriteState("write-state", Phase.BACKUP, "Record image digests, git commit and Alembic revision"),
        st.WriteManifest("manifest", Phase.BACKUP, "Write the sha256 manifest; files 0600"),
    ]


def prepare_phase(s: Stack) -> list[st.Step]:
    """Right before the downtime, after the pull (its steps run in the backup's phase): the online preparation, if
    any, then the checkpoint (which writes what the backfill dirtied, too)."""
    online = [st.PrepareOnline("prepare-online", Phase.BACKUP, f"Prepare online, the old version still serving: "
                               f"{', '.join(f'{p.table}.{p.column}' for p in s.online)} (the app's statements then "
                               f"change only the catalog in the downtime)", preparations=s.online,
                               settings=online_settings(s.f.settings))] if s.online else []
    return online + [st.Checkpoint("checkpoint", Phase.BACKUP, "Write the dirty buffers now, the old version still "
                                   "serving (not in the downtime)")]


def settle_online(s: Stack, phase: Phase) -> list[st.Step]:
    """The online preparation's clean-up (none without one): after the migration, its helper objects dropped; after a
    stop before the migration or a rollback, each preparation undone unless swapped."""
    title = ("Settle the online preparation: the rollback point, taken at the stop, already holds each swapped "
             "(widened) column, which the old version reads and writes as before; helper objects dropped"
             if phase == Phase.ROLLBACK else "Settle the online preparation: helper objects dropped (a preparation "
             "the upgrade stopped before its swap undone)")
    return [st.SettleOnline("settle-online", phase, title, preparations=s.online,
                            settings=online_settings(s.f.settings))] if s.online else []


def _stop_and_check_out(s: Stack) -> st.Step:
    """The files change while the writers stop: running containers never read them again."""
    f = s.f
    stack = f.settings.stack
    return st.Together(
        "stop-and-check-out", Phase.CUTOVER, "Stop the writers and, meanwhile, check out the target",
        steps=(st.StopContainers("stop-writers", Phase.CUTOVER, f"Stop the writers ({', '.join(s.writers) or 'none'})"
                                 f": downtime starts", project_name=stack.project_name, services=tuple(s.writers),
                                 timeouts=s.timeouts(s.writers)),
               st.Checkout("checkout-target", Phase.CUTOVER, f"git checkout {f.target.ref} ({f.target.commit[:12]})",
                           argv=tuple(c.git_checkout(stack.compose_dir, f.target.commit)))))


def _start_target(s: Stack, ahead: st.CreateAhead | None) -> st.StartServices:
    """Every service, with the migration switch off. When the database was started and waited for by `start-db`,
    compose need not wait on it again (`--no-deps`): the step polls the app's HTTP checks itself."""
    f = s.f
    switch, health_timeout = f.settings.migration.switch, f.settings.health.timeout_seconds
    starts = f"{switch}=false" if switch else "the database already at the head"
    title = f"Start every service ({starts}) and wait for health: downtime ends"
    if s.target_db:
        return st.StartApp("start-target", Phase.CUTOVER, title,
                           argv=tuple(c.compose_up(s.new, no_deps=True, remove_orphans=True, wait=False)), env=s.off,
                           timeout=s.up_timeout, project_name=f.settings.stack.project_name,
                           wait_for=tuple(f.target.services), jobs=tuple(f.target.jobs),
                           wait_timeout=float(health_timeout),
                           created_ahead=ahead.record if ahead else "")
    return st.StartServices("start-target", Phase.CUTOVER, title,
                            argv=tuple(c.compose_up(s.new, wait_timeout=health_timeout, remove_orphans=True)),
                            env=s.off, timeout=s.up_timeout)


def cutover_phase(s: Stack) -> list[st.Step]:
    """The downtime: writers stopped, the rollback point, the env, the database, the migration once, the start.
    Containers are created while an earlier step waits (for a stop, for the migration); the starts then only start."""
    f = s.f
    stack, migration = f.settings.stack, f.settings.migration
    db_ahead = s.create_ahead(s.target_db, "created-db.json") if s.retired and s.target_db else None
    app_ahead = s.create_ahead(s.apps, "created-app.json") if s.target_db and s.apps else None
    cutover: list[st.Step] = [
        _stop_and_check_out(s),
        s.method.point_step(),
        st.InstallEnv("install-env", Phase.CUTOVER, f"Install the merged {stack.env_file}"
                      + (" and envs/ env files" if f.env_sync.changed_copies else "") + " (env-sync's result)"),
    ]
    if s.retired:  # stopped now (a renamed database must let go of its data); removed after the downtime
        cutover.append(st.StopContainers("stop-retired", Phase.CUTOVER, f"Stop services the target no longer has "
                                         f"({', '.join(s.retired)})", project_name=stack.project_name,
                                         services=tuple(s.retired), timeouts=s.timeouts(s.retired), ahead=db_ahead))
    if s.target_db:
        cutover.append(st.StartDatabase("start-db", Phase.CUTOVER, f"Start the database ({', '.join(s.target_db)}) "
                                        f"and wait for health",
                                        argv=tuple(c.compose_up(s.new, s.target_db, no_deps=True, wait=False)),
                                        env=s.off, timeout=s.up_timeout, project_name=stack.project_name,
                                        wait_for=tuple(s.target_db),
                                        wait_timeout=float(f.settings.health.timeout_seconds),
                                        created_ahead=db_ahead.record if db_ahead else ""))
    meanwhile = f"; meanwhile create the containers of {', '.join(s.apps)}" if app_ahead else ""
    return cutover + [
        st.Migrate("migrate", Phase.CUTOVER, f"Migrate once: {' '.join(migration.command)} in a one-off "
                   f"{migration.service} container{meanwhile}",
                   argv=tuple(c.compose_run_once(s.new, migration.service, migration.command, dict(s.off), s.run_id,
                                                 replace_entrypoint=migration.replace_entrypoint)),
                   timeout=migration.timeout_seconds, ahead=app_ahead),
        _start_target(s, app_ahead),
    ]


def verify_phase(s: Stack) -> list[st.Step]:
    """The downtime over: retired containers go, then the target is verified (and its pinned digests, if any)."""
    f = s.f
    removal = [st.RemoveServices("remove-retired", Phase.VERIFY, f"Remove the stopped containers of services the "
                                 f"target no longer has ({', '.join(s.retired)}), the downtime over",
                                 argv=tuple(c.compose_rm(s.old, s.retired)))] if s.retired else []
    verify: list[st.Step] = [
        *removal,
        st.Verify("verify", Phase.VERIFY, f"Verify: compose health, HTTP checks, database at "
                  f"{', '.join(f.target.heads)}", project=s.new, heads=tuple(f.target.heads),
                  services=tuple(f.target.services), jobs=tuple(f.target.jobs),
                  images=tuple(sorted(f.target.images.items())),
                  version_argv=version_argv(s.new, f)),
    ]
    digests = pinned_digests(f.target.images)
    if digests:
        verify.append(st.VerifyDigests("verify-digests", Phase.VERIFY, "Verify the running containers' images are the "
                                       "pinned digests", digests=digests))
    return verify


def finish_phase(s: Stack) -> list[st.Step]:
    """After success: what the rollback point made goes (the pg_dump stays in the backup)."""
    return [s.cleanup("drop-rollback-points", Phase.FINISH, "Drop the rollback points (the pg_dump stays in the "
                      "backup)", rolled_back=False), *settle_online(s, Phase.FINISH)]


def rollback_phase(s: Stack) -> list[st.Step]:
    """After a failure once the cutover began: the previous files, images and database (as the method restores it,
    the previous database service started where it must be), the previous version started and verified, clean-up."""
    f = s.f
    stack, health_timeout = f.settings.stack, f.settings.health.timeout_seconds
    start_old_db = [st.StartServices("start-previous-db", Phase.ROLLBACK, f"Start the previous database service "
                                     f"({', '.join(s.old_db)})",
                                     argv=tuple(c.compose_up(s.pinned, s.old_db, wait_timeout=health_timeout,
                                                             no_deps=True)),
                                     env=s.off, timeout=s.up_timeout)] if s.old_db else []
    previous_images = tuple(sorted((svc, i["image"]) for svc, i in f.current.images.items()))
    return [
        st.StopRunContainers("stop-one-offs", Phase.ROLLBACK, "Remove the stack's one-off containers (a migration "
                             "still running)"),
        st.StopServices("stop-target", Phase.ROLLBACK, "Stop and remove the target's containers",
                        argv=tuple(c.compose_down(s.new)), timeout=s.up_timeout, project_name=stack.project_name),
        st.Checkout("checkout-previous", Phase.ROLLBACK, f"git checkout the previous commit {f.current.commit[:12]}",
                    argv=tuple(c.git_checkout(stack.compose_dir, f.current.commit))),
        st.RestoreEnv("restore-env", Phase.ROLLBACK, f"Restore {stack.env_file} from the backup"
                      + (" (and the envs/ env files as they were)" if f.env_sync.copies else "")),
        st.PinImages("pin-images", Phase.ROLLBACK, "Pin every service to its previous image digest"),
        *s.method.restore_steps(start_old_db),
        st.StartServices("start-previous", Phase.ROLLBACK, "Start the previous version by digest and wait for health",
                         argv=tuple(c.compose_up(s.pinned, wait_timeout=health_timeout, remove_orphans=True)),
                         env=s.off, timeout=s.up_timeout),
        st.Verify("verify-previous", Phase.ROLLBACK, f"Verify the previous version: database at "
                  f"{', '.join(f.database.revision) or '(none)'}", project=s.pinned, heads=tuple(f.database.revision),
                  services=tuple(f.current.services), jobs=tuple(f.current.jobs), images=previous_images,
                  check_images=False,
                  version_argv=version_argv(s.pinned, f)),
        s.cleanup("cleanup", Phase.ROLLBACK, "Drop the rollback points and the failed state; remove one-off containers "
                  "and scratch folders", rolled_back=True),
        *settle_online(s, Phase.ROLLBACK),
    ]


PHASES: dict[Phase, Callable[[Stack], list[st.Step]]] = {
    Phase.BACKUP: backup_phase, Phase.PREPARE: prepare_phase, Phase.CUTOVER: cutover_phase,
    Phase.VERIFY: verify_phase, Phase.FINISH: finish_phase, Phase.ROLLBACK: rollback_phase,
}


def build_plan(f: Facts, run_id: str) -> Plan:
    """The whole upgrade as steps, one function per phase. Pure: same facts, same plan."""
    stack = Stack.of(f, run_id)
    return Plan(f, **{phase.value: build(stack) for phase, build in PHASES.items()})


def with_online(plan: Plan, online: OnlineFacts) -> Plan:
    """The plan again, with the online preparation the migration pre-flight chose (the same plan without one)."""
    if online == plan.facts.online:
        return plan
    return build_plan(dataclasses.replace(plan.facts, online=online), plan.facts.run.id)
