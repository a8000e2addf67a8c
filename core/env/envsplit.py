"""env-sync against a target compose file: the checks and merges in order, for `./stackshift env-sync
--compose-file` (Dify's split layout since 1.14, and any single-`.env` stack).

1. The Compose version the target's compose file needs (`core.env.composeversion`), before compose reads it.
2. The target's layout (`core.env.envlayout`): env files per service, templates, interpolated variables. A
   template a service's env file needs that the target does not ship, or a malformed one, is refused.
3. The operator's `.env` merged (moved keys are `moved`, not `dropped`); existing `envs/**.env` copies merged
   against their own templates (`core.env.envcopies`).
4. New required secrets: refused with the keys named, or generated when asked (`core.env.secretgen`).
5. `--slim`, when asked: moved keys at their default taken out of `.env` (`core.env.envslim`).
6. What each service gets where files disagree (`core.env.effective`), for the report.

Nothing here writes: `write` does, after every check passed (backups first, each file atomically).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.env import composeversion, effective, envcheck, envcopies, envlayout, envmerge, envslim, secretgen
from core.env.envdoc import EnvDoc, parse, read_env_file


@dataclass
class Options:
    """What the operator asked for."""

    old_dir: Path | None = None  # the deployed release's folder (its .env.example and envs/)
    slim: bool = False
    generate_missing_secrets: bool = False
    secret_keys: frozenset[str] = frozenset()
    override: str = "rerun with --generate-missing-secrets"


@dataclass
class SplitSync:
    """The merged `.env`, the merged copies, and what the report needs besides their changes."""

    env: envmerge.MergeResult
    copies: list[envcopies.CopyMerge] = field(default_factory=list)
    layout: envlayout.EnvLayout | None = None
    disputed: dict[str, dict[str, effective.Effective]] = field(default_factory=dict)
    generated: list[str] = field(default_factory=list)
    moved_out: list[str] = field(default_factory=list)
    compose_need: composeversion.Need | None = None


def sync(compose: Path, user: EnvDoc, old: EnvDoc, new: EnvDoc, options: Options) -> SplitSync:
    """Steps 1 to 6 of the module's docstring, for the operator's `.env` `user` (made from `old`, onto `new`)."""
    compose = compose.resolve()
    text = read_env_file(compose, "compose file")
    need = composeversion.check_file(text, str(compose))
    required = envcheck.required_variables(text)
    layout = envlayout.read_layout(compose)
    project = compose.parent
    templates = envlayout.read_templates(project) if layout.split else {}
    envlayout.require_templates(layout, templates, project)
    elsewhere = envlayout.Elsewhere.of(layout, templates) if layout.split else None
    result = envmerge.merge(user, old, new, required, elsewhere)
    copies = envcopies.merge_copies(project, layout, templates, new, old_dir=options.old_dir, required=required) \
        if layout.split else []
    found = secretgen.missing(result.text, required, options.secret_keys)
    if found and not options.generate_missing_secrets:
        raise secretgen.MissingRequiredSecret(user.path, found, options.override)
    secretgen.generate(result, found)
    copy_docs = {c.path: parse(c.result.text, c.path) for c in copies}
    moved_out = envslim.slim(result, copy_docs, options.secret_keys) if options.slim else []
    files = {envlayout.ROOT_ENV: parse(result.text, user.path), **copy_docs}
    disputed = effective.disputed(layout, files, effective.every_service(layout, files))
    return SplitSync(result, copies, layout, disputed, found, moved_out, need)


def check_writable(env_file: Path, project: Path, done: SplitSync) -> None:
    """Every file the CLI would replace can be written (EnvFileUnwritable names the first that cannot)."""
    from core.env import envfile

    envfile.check_writable(env_file)
    for copy in done.copies:
        if copy.changed:
            envfile.check_writable(project / copy.path)


def write_copies(project: Path, done: SplitSync) -> dict[str, Path]:
    """Replaces each changed copy (backup first, atomically); returns the backups by copy."""
    from core.env import envfile

    return {c.path: envfile.replace_with_backup(project / c.path, c.result.text) for c in done.copies if c.changed}


def report(done: SplitSync, secret_keys: frozenset[str], written: bool,
           backups: dict[str, Path] | None = None) -> dict:
    """The parts of the `--json` report beyond the `.env`'s: copies, per-service values, generated keys (names)."""
    backups = backups or {}
    return {
        "copies": {c.path: {"changed": c.changed, "written": bool(c.changed and written),
                            "backup": str(backups[c.path]) if c.path in backups else None,
                            "counts": c.result.counts(), "keys": {k: v for k, v in c.result.by_category.items() if v},
                            "files": {ch.key: ch.file for ch in c.result.changes if ch.file},
                            "notes": c.result.notes} for c in done.copies},
        "effective": effective.masked(done.disputed, secret_keys),
        "generated": done.generated,
        "moved_out": done.moved_out,
        "compose_needs": composeversion.shown(done.compose_need.version) if done.compose_need else None,
    }


def text_lines(done: SplitSync, secret_keys: frozenset[str], dry_run: bool) -> list[str]:
    """The text report's lines beyond the `.env`'s rows: each copy's rows, then per-service values."""
    lines: list[str] = []
    for c in done.copies:
        verb = ("would write" if dry_run else "wrote") if c.changed else "no change to"
        lines.append(f"{verb} {c.path}: " + ", ".join(f"{k} {v}" for k, v in c.result.counts().items() if v))
        for r in envmerge.masked_changes(c.result, secret_keys):
            lines.append(f"  {r['category']:13s} {r['key']}: {r['before']} -> {r['after']}  [{r['file']}]")
            if r["note"]:
                lines.append(f"  {'':13s}   {r['note']}")
        lines += [f"  note: {n}" for n in c.result.notes]
    masked = effective.masked(done.disputed, secret_keys)
    if masked:
        lines.append("effective value per service, where files disagree:")
    for key, per in masked.items():
        lines.append(f"  {key}: " + "; ".join(f"{s}={v['value']} ({v['from']})" for s, v in per.items()))
    return lines


__all__ = ["Options", "SplitSync", "check_writable", "report", "sync", "text_lines",
           "write_copies"]
