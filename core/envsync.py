"""The env merge of one upgrade: inputs from the backup and the target commit, result and masked report."""
from __future__ import annotations

from pathlib import Path

from core import commands as c
from core import envmerge
from core.executor import run


def template_at(compose_dir: Path, commit: str, template: str) -> str:
    return run(c.git_show(compose_dir, commit, template)).stdout


def merge_for(user_env: Path, old_template: str, new_template: str) -> envmerge.MergeResult:
    user = envmerge.parse(envmerge.read_env_file(user_env), str(user_env))
    old = envmerge.parse(old_template, "old template")
    new = envmerge.parse(new_template, "new template")
    return envmerge.merge(user, old, new)

