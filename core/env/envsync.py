"""The env merge of one upgrade: inputs from the backup and the target commit, result and masked report."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.io import commands as c
from core.env import envcheck
from core.env import envmerge
from core.env import envsecrets
from core.io.executor import run

FLOW_OVERRIDE = "plan again with accept_env_conflicts=true"


def template_at(compose_dir: Path, commit: str, template: str) -> str:
    return run(c.git_show(compose_dir, commit, template)).stdout


def required_at(compose_dir: Path, commit: str, compose_files) -> frozenset[str]:
    """Every `${VAR:?}` / `${VAR?}` of the compose files at `commit`: the keys a merge must not leave deleted."""
    return frozenset().union(*(envcheck.required_variables(template_at(compose_dir, commit, f)) for f in compose_files))


def merge_for(user_env: Path, old_template: str, new_template: str,
              required: frozenset[str] = frozenset()) -> envmerge.MergeResult:
    """Merges the .env at `user_env` onto `new_template`; refuses templates that cannot be right.

    Args:
        required: the target compose files' required variables (`required_at`); a key the operator deleted
            comes back only if it is one of them. Pass the same set wherever the merge of one upgrade is
            computed (plan and env-sync step), so that both give the same file.
    """
    user = envmerge.parse(envmerge.read_env_file(user_env), str(user_env))
    old = envmerge.parse(old_template, "old template")
    new = envmerge.parse(new_template, "new template")
    envmerge.check_templates(user, old, new)
    return envmerge.merge(user, old, new, required)


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
        run(c.git_archive(compose_dir, commit, staging / "target.tar"))
        (staging / "tree").mkdir()
        run(c.tar_extract(staging / "target.tar", staging / "tree"))
        yield TargetTree(compose_dir, staging / "tree", tuple(staging / "tree" / f for f in compose_files))
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
