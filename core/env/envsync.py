"""The env merge of one upgrade: inputs from the deployment and the target commit, result and masked report.

Pre-flight merges once (`merge_env`) and stages the result (`stage`): an `EnvSyncResult` in the plan (masked rows,
counts, the staged file's path in the run folder and its sha256) and the merged bytes in this process's memory. The
run folder receives them when the run opens (`write_staged`), so that a dry run or a plan refused before the run
opens leaves no file behind; the `env-sync` task publishes the result (`check_unchanged` first) and `install-env`
installs exactly the staged bytes (`read_staged`), refusing any others.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core import files
from core.io import commands as c
from core.env import composeversion
from core.env import effective
from core.env import envcheck
from core.env import envlayout
from core.env import envmerge
from core.env import envsecrets
from core.errors import EnvSyncError, EnvWriteFailed
from core.io.executor import run

FLOW_OVERRIDE = "plan again with accept_env_conflicts=true"


def template_at(compose_dir: Path, commit: str, template: str) -> str:
    return run(c.git_show(compose_dir, commit, template)).stdout


def operator_files(compose_dir: Path, compose_files) -> tuple[str, ...]:
    """The compose files that are the operator's, not the release's: in the checkout and not tracked by git (the
    override file `init` asks for when the database publishes no port). Checking out another release leaves them as
    they are, so the target reads them as they are now."""
    return tuple(f for f in compose_files if (compose_dir / f).is_file()
                 and run(c.git_ls_files(compose_dir, str(f)), check=False).returncode != 0)


def compose_text_at(compose_dir: Path, commit: str, name: str, mine: tuple[str, ...]) -> str:
    """A compose file as the release at `commit` will read it (`mine`: `operator_files`)."""
    return (compose_dir / name).read_text(encoding="utf-8") if name in mine else template_at(compose_dir, commit, name)


def required_at(compose_dir: Path, commit: str, compose_files) -> frozenset[str]:
    """Every `${VAR:?}` / `${VAR?}` of the compose files at `commit`: the keys a merge must not leave deleted."""
    mine = operator_files(compose_dir, compose_files)
    return frozenset().union(*(envcheck.required_variables(compose_text_at(compose_dir, commit, f, mine))
                               for f in compose_files))


def extract_release(compose_dir: Path, commit: str, compose_files, staging: Path) -> Path:
    """The release at `commit` extracted into `staging/tree`, with the operator's own compose files beside its own
    (`operator_files`); returns the tree."""
    run(c.git_archive(compose_dir, commit, staging / "target.tar"))
    (staging / "tree").mkdir()
    run(c.tar_extract(staging / "target.tar", staging / "tree"))
    for name in operator_files(compose_dir, compose_files):
        if not (staging / "tree" / name).exists():
            (staging / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(compose_dir / name, staging / "tree" / name)
    return staging / "tree"


def merge_for(user_env: Path, old_template: str, new_template: str,
              required: frozenset[str] = frozenset()) -> envmerge.MergeResult:
    """Merges the .env at `user_env` onto `new_template`; refuses templates that cannot be right.

    Args:
        required: the target compose files' required variables (`required_at`); a key the operator deleted
            comes back only if it is one of them.
    """
    return merge_env(user_env, old_template, new_template, required)[0]


def elsewhere_at(compose_dir: Path, commit: str, compose_files,
                 scratch: Path | None = None) -> envlayout.Elsewhere | None:
    """What the target at `commit` uses besides its root template when its compose file loads `envs/**` env files
    (Dify 1.14+): the keys of every `envs/**/*.env.example` it ships and the variables it interpolates. None for a
    target with one `.env`. A malformed template is refused (EnvParseError), and a Compose older than the target's
    files need (ComposeTooOld, with the version found and the one needed), before anything is written."""
    with target_tree(compose_dir, commit, compose_files, scratch) as tree:
        for path, name in zip(tree.compose_files, compose_files, strict=True):  # before compose reads them
            composeversion.check_file(path.read_text(encoding="utf-8"), f"{name} at {commit[:12]}")
        layout = envlayout.read_layout(tree.compose_files[0], scratch=tree.root.parent)
        if not layout.split:
            return None
        templates = envlayout.read_templates(tree.compose_files[0].parent)
        envlayout.require_templates(layout, templates, Path(compose_files[0]).parent)
        return envlayout.Elsewhere.of(layout, templates)


def merge_env(user_env: Path, old_template: str, new_template: str, required: frozenset[str] = frozenset(),
              elsewhere: envlayout.Elsewhere | None = None) -> tuple[envmerge.MergeResult, str]:
    """`merge_for`, and the sha256 of the .env bytes it merged (read once: the two always belong together).

    Args:
        elsewhere: the target's split layout (`elsewhere_at`): keys that left the root template are moved, not
            dropped.
    """
    text = envmerge.read_env_file(user_env)
    user = envmerge.parse(text, str(user_env))
    old = envmerge.parse(old_template, "old template")
    new = envmerge.parse(new_template, "new template")
    envmerge.check_templates(user, old, new)
    result = envmerge.merge(user, old, new, required, elsewhere)
    if elsewhere is not None and elsewhere.layout is not None:
        result.disputed = _disputed(elsewhere.layout, result, Path(user_env).parent)
    return result, _sha256(text.encode("utf-8"))


def _disputed(layout: envlayout.EnvLayout, merged: envmerge.MergeResult, project: Path) -> dict:
    """What each service gets where the merged `.env` and the operator's `envs/**.env` copies disagree."""
    files = {envlayout.ROOT_ENV: envmerge.parse(merged.text, envlayout.ROOT_ENV)}
    for copy in envlayout.existing_copies(project, layout):
        files[copy] = envmerge.parse(envmerge.read_env_file(project / copy, "envs env file"), copy)
    return effective.disputed(layout, files, effective.every_service(layout, files))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EnvChangedSincePlan(EnvSyncError):
    """Before the cutover, the `.env` the backup holds or the staged merge is not what pre-flight merged and staged:
    the env diff under review is no longer what would be installed."""

    def __init__(self, path: Path, finding: str):
        self.path = path
        super().__init__(f"{path}: {finding}, so the env diff under review is not what would be installed. Nothing was "
                         f"stopped or changed: run the upgrade again (its pre-flight merges the .env as it is then).")


class StagedEnvChanged(EnvWriteFailed):
    """At `install-env`, the staged file's bytes are not those pre-flight merged (their sha256 is not the plan's)."""

    advice = ("None of it was installed, and the stack is being rolled back to the previous version. Only stackshift "
              "writes the run folder: find what changed the file, then run the upgrade again (its pre-flight stages a "
              "new one).")

    def __init__(self, step_id: str, path: Path, expected: str, found: str):
        self.path = path
        super().__init__(step_id, f"the staged env file {path} is not the one pre-flight merged ({found}; the plan has "
                                  f"sha256 {expected[:12]}…)")


@dataclass(frozen=True)
class EnvSyncResult:
    """The env merge of one upgrade, computed once by pre-flight: the rows and counts the `env-sync` task publishes,
    and the staged file `install-env` installs, named by its sha256. Holds nothing secret (it goes into plan.json):
    the merged text is only in the staged file (0600) and, until the run folder opens, in this process's memory.

    A plan.json written before the result existed has `env_report` and `env_counts` instead (`from_facts`): nothing
    staged (`sha256` empty), and `install-env` installs the run folder's `env.merged` as it did then.
    """

    rows: list[dict]  # envmerge.masked_changes: a secret value is only ever `(secret)` or `(unset)`
    counts: dict[str, int]
    staged: str = ""  # where the merged bytes go in the run folder
    sha256: str = ""  # of the merged bytes ("" = an old plan: nothing staged)
    size: int = 0
    source_sha256: str = ""  # of the .env pre-flight merged
    effective: dict = field(default_factory=dict)  # effective.masked: per disputed key, what each service gets

    @classmethod
    def from_facts(cls, facts: dict) -> EnvSyncResult:
        """The result in a plan.json's facts, or one made of an old plan.json's `env_report` and `env_counts`."""
        if "env_sync" in facts:
            return cls(**facts["env_sync"])
        return cls(list(facts.get("env_report", [])), dict(facts.get("env_counts", {})))

    @property
    def path(self) -> Path:
        return Path(self.staged)

    def check_unchanged(self, backed_up_env: Path) -> None:
        """Raises EnvChangedSincePlan unless the backup's copy of the .env is the file pre-flight merged and the
        staged file holds the bytes it staged (an old plan has nothing to check)."""
        if not self.sha256:
            return
        if not backed_up_env.is_file() or _sha256(backed_up_env.read_bytes()) != self.source_sha256:
            raise EnvChangedSincePlan(backed_up_env, "the .env was edited after pre-flight merged it (this backup "
                                                     "copy of it is another file)")
        if not self.path.is_file() or _sha256(self.path.read_bytes()) != self.sha256:
            raise EnvChangedSincePlan(self.path, "the staged merge was changed or removed after pre-flight staged it")

    def read_staged(self, step_id: str) -> str:
        """The staged text, exactly the bytes pre-flight merged; StagedEnvChanged if they are not."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise StagedEnvChanged(step_id, self.path, self.sha256, f"it cannot be read: {exc.strerror}") from None
        found = _sha256(data)
        if found != self.sha256:
            raise StagedEnvChanged(step_id, self.path, self.sha256, f"its sha256 is {found[:12]}…")
        return data.decode("utf-8")


# Merged bytes staged by pre-flight, until the run folder opens: one entry per project folder (a dry run's or a
# refused plan's is replaced by the next pre-flight's). Never in facts, task results or artifacts.
_staged: dict[Path, tuple[str, bytes]] = {}
_staged_lock = threading.Lock()


def stage(merged: envmerge.MergeResult, path: Path, source_sha256: str,
          secret_keys: frozenset[str] = frozenset()) -> EnvSyncResult:
    """The result of pre-flight's merge, its bytes staged for `path` (in the run folder) and named by sha256.

    Call it once the checks of the merge are done (they may add notes to the rows). Nothing is written:
    `write_staged` writes the bytes when the run opens.
    """
    data = merged.text.encode("utf-8")
    result = EnvSyncResult(envmerge.masked_changes(merged, secret_keys), merged.counts(), str(path), _sha256(data),
                           len(data), source_sha256, effective.masked(merged.disputed, secret_keys))
    with _staged_lock:
        _staged[path.parent.parent] = (result.staged, data)
    return result


def write_staged(result: EnvSyncResult) -> None:
    """Writes the bytes pre-flight staged for `result` into the run folder (made 0700 if missing; the file 0600,
    atomically). Refuses (EnvChangedSincePlan) when this process holds no bytes with the plan's sha256."""
    if not result.sha256:
        return
    with _staged_lock:
        staged, data = _staged.get(result.path.parent.parent, ("", b""))
    if staged != result.staged or _sha256(data) != result.sha256:
        raise EnvChangedSincePlan(result.path, "this process holds no merge with the plan's sha256 (the plan was "
                                               "made by another process)")
    result.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    result.path.unlink(missing_ok=True)  # a new file: write_atomic makes it 0600
    files.write_atomic(result.path, data.decode("utf-8"), keep_mode=True)
    with _staged_lock:
        _staged.pop(result.path.parent.parent, None)


@dataclass(frozen=True)
class TargetTree:
    """The target commit's files, extracted to a scratch folder, and its compose files there."""

    compose_dir: Path
    root: Path
    compose_files: tuple[Path, ...]


@contextmanager
def target_tree(compose_dir: Path, commit: str, compose_files, scratch: Path | None = None) -> Iterator[TargetTree]:
    """Extracts `commit` of the checkout at `compose_dir` into a scratch folder (inside `scratch` if given: the flow
    passes the run's own, which a recovery sweeps if the runner is killed), removed afterwards."""
    staging = Path(tempfile.mkdtemp(prefix="stackshift-envcheck-", dir=scratch))
    try:
        tree = extract_release(compose_dir, commit, compose_files, staging)
        yield TargetTree(compose_dir, tree, tuple(tree / f for f in compose_files))
    finally:
        shutil.rmtree(staging)


def check_startable(target: TargetTree, merged: envmerge.MergeResult, db_services, accept: bool,
                    secret_keys: frozenset[str] = frozenset()) -> None:
    """Stops the plan (NeededServiceInactive) when the merged env would leave the target's database, or a service
    an active one requires, outside the active profiles; with `accept`, notes it on the report instead."""
    values = envmerge.parse(merged.text).values
    model = envcheck.read_model(target.compose_dir, target.compose_files, merged.text,
                                envsecrets.secret_values(values, secret_keys), scratch=target.root.parent)
    envcheck.check_startable(merged, "the merged .env", model, db_services, accept=accept, override=FLOW_OVERRIDE,
                             extra_secret_keys=secret_keys)
