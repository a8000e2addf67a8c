"""Markdown a person reads in the Prefect UI (plan, env diff, backup, timeline, verification). No secrets:
the plan holds none, and env values come already masked."""
from __future__ import annotations

from core.plan import Plan, Step


def _cmd(step: Step) -> str:
    if step.argv:
        keys = sorted(step.env) + (["PGPASSWORD"] if step.needs_db_password else [])
        env = f" (env: {', '.join(keys)})" if keys else ""
        return f"`{' '.join(step.argv)}`{env}"
    return f"_{step.kind}_"


def plan_markdown(plan: Plan) -> str:
    f = plan.facts
    lines = [
        f"# Upgrade plan: {f.environment} → {f.target_ref}",
        "",
        f"- project `{f.project}` in `{f.compose_dir}`; commit `{f.current_commit[:12]}` → `{f.target_commit[:12]}`",
        f"- database `{f.db_name}` at `{', '.join(f.db_revision) or '(none)'}` → head `{', '.join(f.target_heads)}`",
        f"- services: {', '.join(f.current_services)} → {', '.join(f.target_services)}",
        f"- backup folder: `{f.run_dir}`",
        "",
        "| service | current image | target image |",
        "|---|---|---|",
    ]
    for s in sorted(set(f.current_images) | set(f.target_images)):
        cur = f.current_images.get(s, {})
        lines.append(f"| {s} | {cur.get('repo_digest') or cur.get('image', '—')} | {f.target_images.get(s, '— (removed)')} |")
    counts = ", ".join(f"{k} {v}" for k, v in f.env_counts.items() if v)
    lines += ["", f"Env merge: {counts or 'no change'}.", ""]
    for title, steps in (("Backup (old version serving)", plan.backup), ("Cutover", plan.cutover),
                         ("Rollback (only on failure after cutover starts)", plan.rollback)):
        lines += [f"## {title}", ""]
        lines += [f"{i}. **{s.id}**: {s.title}: {_cmd(s)}" for i, s in enumerate(steps, 1)]
        lines.append("")
    if f.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in f.warnings]
    return "\n".join(lines)


def env_markdown(environment: str, rows: list[dict], counts: dict[str, int]) -> str:
    lines = [f"# Env diff for {environment}", "",
             ", ".join(f"**{k}** {v}" for k, v in counts.items()) or "no change", "",
             "| key | what happens | before | after | new default |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['key']}` | {r['category']} | {r['before']} | {r['after']} | {r['new_default']} |")
    lines += ["", "Values of secret-looking keys are never shown."]
    return "\n".join(lines)


def timeline_markdown(events, downtime: dict[str, float], outcome: str) -> str:
    lines = [f"# Timeline: {outcome}", ""]
    if downtime:
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in downtime.items() if k != "total")
        lines += [f"**Downtime {downtime['total']:.2f} s** (writers stopped → target healthy): {parts}", ""]
    lines += ["| phase | step | seconds | ok | detail |", "|---|---|---|---|---|"]
    for e in events:
        detail = e.detail.replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(f"| {e.phase} | {e.step} | {e.seconds:.2f} | {'yes' if e.ok else '**no**'} | {detail} |")
    return "\n".join(lines)


def verification_markdown(verifications) -> str:
    lines = ["# Verification", ""]
    for step, v in verifications.items():
        lines += [f"## {step}: {'passed' if v.ok else 'FAILED'}", "", "| check | ok | detail |", "|---|---|---|"]
        lines += [f"| {c.name} | {'yes' if c.ok else '**no**'} | {c.detail} |" for c in v.checks]
        lines.append("")
    return "\n".join(lines)


def manifest_markdown(manifest: dict) -> str:
    lines = [f"# Backup manifest", "", f"Folder `{manifest['run_dir']}` (files 0600)", "",
             "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| {n} | {m['bytes']} | `{m['sha256']}` |" for n, m in manifest["files"].items()]
    return "\n".join(lines)
