"""Pre-flight's one env merge for the upgrade flow: the operator's `.env` and, when the target loads Dify's split
layout (1.14+), every existing `envs/**.env` copy, each against its own templates; then the block's choices.

1. The target's layout and templates, read from the target commit (`envsync.split_at`): a Compose too old for
   its files (ComposeTooOld), a template missing (EnvTemplatesMissing) or malformed (EnvParseError) is refused
   before anything is written.
2. The `.env` merged from the deployed release's root template onto the target's (`envsync.merge_env`).
3. Each existing copy merged from the deployed commit's template onto the target's (`envcopies.merge_copies`).
   No copy is created: a copy the target loads that the operator does not have stays absent (`absent`), and the
   rollback makes sure it is absent again.
4. A new required secret the merged `.env` leaves empty: refused (MissingRequiredSecret) unless the block's
   `stack.generate_missing_secrets` is on; then a random value is written into the merged `.env` only (never
   into a row, an artifact, a log or the plan).
5. `stack.env_slim`: the moved keys at their new default taken out of the `.env` (`envslim`).
6. What each service gets where the merged files disagree (`effective`), for the review.

The result is staged by `envsync.stage`: the reviewed diff and the installed files come from this one computation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.env import effective, envcopies, envlayout, envmerge, envslim, envstage, envsync, secretgen
from core.env.envdoc import parse
from core.io import commands as c
from core.io.executor import run

BLOCK_OVERRIDE = "turn on the environment block's stack.generate_missing_secrets"


@dataclass(frozen=True)
class Options:
    """The block's env choices (`StackSettings`): `env_slim`, `generate_missing_secrets`, `secret_env_keys`."""

    slim: bool = False
    generate_missing_secrets: bool = False
    secret_keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Release:
    """Where the releases are: the checkout, its compose files (relative), the two commits and the root templates."""

    compose_dir: Path
    compose_files: tuple[str, ...]
    current_commit: str
    target_commit: str
    old_template: str
    new_template: str

    @property
    def folder(self) -> str:
        """The compose file's folder, relative to the checkout ('' for its root): where `envs/` lives."""
        parent = Path(self.compose_files[0]).parent.as_posix()
        return "" if parent == "." else parent

    def in_checkout(self, rel: str) -> str:
        """A path relative to the compose file's folder, made relative to the checkout."""
        return f"{self.folder}/{rel}" if self.folder else rel


@dataclass
class FlowMerge:
    """The merged `.env`, the sha256 of the bytes merged, and the split layout's part (empty for one `.env`)."""

    env: envmerge.MergeResult
    source_sha256: str
    copies: list[envcopies.CopyMerge] = field(default_factory=list)  # paths relative to the compose file's folder
    absent: list[str] = field(default_factory=list)  # copies the target loads that do not exist (same)
    generated: list[str] = field(default_factory=list)  # keys only: the values are in `env.text`
    moved_out: list[str] = field(default_factory=list)
    folder: str = ""  # the compose file's folder, relative to the checkout

    def checkout_path(self, rel: str) -> str:
        return f"{self.folder}/{rel}" if self.folder else rel


def merge(release: Release, user_env: Path, required: frozenset[str], options: Options,
          scratch: Path | None = None) -> FlowMerge:
    """Steps 1 to 6 of the module's docstring."""
    split = envsync.split_at(release.compose_dir, release.target_commit, release.compose_files, scratch)
    result, source = envsync.merge_env(user_env, release.old_template, release.new_template, required,
                                       split.elsewhere if split else None)
    done = FlowMerge(result, source, folder=release.folder)
    project = release.compose_dir / release.folder
    if split is not None:
        root = parse(release.new_template, "new template")
        done.copies = envcopies.merge_copies(project, split.layout, split.templates, root, required=required,
                                             old_templates=_old_templates(release))
        merged = {c.path for c in done.copies}
        done.absent = sorted(p for p in _loaded(split.layout) if p not in merged and not _present(project / p))
    done.generated = secretgen.missing(result.text, required, options.secret_keys)
    if done.generated and not options.generate_missing_secrets:
        raise secretgen.MissingRequiredSecret(str(user_env), done.generated, BLOCK_OVERRIDE)
    secretgen.generate(result, done.generated)
    copy_docs = {c.path: parse(c.result.text, c.path) for c in done.copies}
    if options.slim and split is not None:
        done.moved_out = envslim.slim(result, copy_docs, options.secret_keys)
    if split is not None:
        files = {envlayout.ROOT_ENV: parse(result.text, envlayout.ROOT_ENV), **copy_docs}
        result.disputed = effective.disputed(split.layout, files, effective.every_service(split.layout, files))
    return done


def _present(path: Path) -> bool:
    """Whether anything is at `path`: a file, a folder, or a symlink (even one whose target is gone: not ours to
    remove)."""
    return path.exists() or path.is_symlink()


def _loaded(layout: envlayout.EnvLayout) -> set[str]:
    return {e.path for entries in layout.services.values() for e in entries if e.path != envlayout.ROOT_ENV}


def _old_templates(release: Release) -> envcopies.OldTemplates:
    """The deployed commit's `envs/**` templates, read with `git show` (None where that commit has none)."""
    def read(template: str) -> str | None:
        done = run(c.git_show(release.compose_dir, release.current_commit, release.in_checkout(template)), check=False)
        return done.stdout if done.returncode == 0 else None

    return envcopies.OldTemplates(read, f"the deployed commit {release.current_commit[:12]}")


def stage(done: FlowMerge, path: Path, secret_keys: frozenset[str] = frozenset()) -> envstage.EnvSyncResult:
    """`envstage.stage` of the merged `.env` (for `path`, in the run folder) and of every copy the target loads:
    the merged ones (staged when changed) and the absent ones. A generated key is masked like any secret."""
    keys = secret_keys | frozenset(done.generated)
    merged = {c.path: c for c in done.copies}
    copies = tuple(envstage.StagedCopy.of(done.checkout_path(p), path.parent,
                                          (merged[p].original, merged[p].result) if p in merged else None, keys)
                   for p in sorted({*merged, *done.absent}))
    return envstage.stage(done.env, path, done.source_sha256, keys, copies)


__all__ = ["BLOCK_OVERRIDE", "FlowMerge", "Options", "Release", "merge", "stage"]
