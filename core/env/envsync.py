"""The env merge of one upgrade: inputs from the deployment and the target commit, result and masked report.

Pre-flight merges once (`merge_env`; with Dify's split layout `core.env.flowmerge`) and stages the result
(`core.env.envstage.stage`, re-exported here with the rest of the staging): an `EnvSyncResult` in the plan and the
merged bytes in this process's memory, which `install-env` installs exactly.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.io import commands as c
from core.env import composeversion
from core.env import effective
from core.env import envcheck
from core.env import envlayout
from core.env import envmerge
from core.env import envsecrets
from core.env.envstage import (EnvChangedSincePlan, EnvSyncResult, StagedEnvChanged, sha256 as _sha256,  # noqa: F401 (re-exported)
                               stage, write_staged)
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


@dataclass(frozen=True)
class TargetSplit:
    """The target's split layout (Dify 1.14+): its env files per service, its `envs/**` templates, and what the
    `.env` merge needs of them."""

    layout: envlayout.EnvLayout
    templates: dict
    elsewhere: envlayout.Elsewhere


def split_at(compose_dir: Path, commit: str, compose_files, scratch: Path | None = None) -> TargetSplit | None:
    """The target at `commit`'s split layout when its compose file loads `envs/**` env files (None for a target
    with one `.env`). A malformed template is refused (EnvParseError), one a service needs that is missing
    (EnvTemplatesMissing), and a Compose older than the target's files need (ComposeTooOld, with the version found
    and the one needed), before anything is written."""
    with target_tree(compose_dir, commit, compose_files, scratch) as tree:
        for path, name in zip(tree.compose_files, compose_files, strict=True):  # before compose reads them
            composeversion.check_file(path.read_text(encoding="utf-8"), f"{name} at {commit[:12]}")
        layout = envlayout.read_layout(tree.compose_files[0], scratch=tree.root.parent)
        if not layout.split:
            return None
        templates = envlayout.read_templates(tree.compose_files[0].parent)
        envlayout.require_templates(layout, templates, Path(compose_files[0]).parent)
        return TargetSplit(layout, templates, envlayout.Elsewhere.of(layout, templates))


def elsewhere_at(compose_dir: Path, commit: str, compose_files,
                 scratch: Path | None = None) -> envlayout.Elsewhere | None:
    """What the target at `commit` uses besides its root template (`split_at`): the keys of every
    `envs/**/*.env.example` it ships and the variables it interpolates; None for a target with one `.env`."""
    split = split_at(compose_dir, commit, compose_files, scratch)
    return split.elsewhere if split else None


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
