"""What the command line prints about a run, as plain functions of plain data: one line per phase with its
duration, then a short summary a person reads (the plan in words, the env diff's changes with secrets masked, the
migration verdict, the downtime, the run's URL), or one JSON object (`--json`).

Nothing here runs anything or imports Prefect: `cli.run` gathers a `RunSummary` and prints what these return.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.cutover.plan import Plan

MINUTE = 60
SECRET = "(secret)"
ENV_SHOWN = 12  # env changes printed at default verbosity; the rest are counted (the env-diff artifact has all)
PHASE_WIDTH = 18

# How each list of the plan reads in the summary (the plan's lists, in the order an upgrade walks them).
PLAN_LISTS = (("backup", "backup (old version serving)"), ("prepare", "before the downtime"),
              ("cutover", "downtime"), ("verify", "verify"), ("finish", "after success"),
              ("rollback", "on failure"))


@dataclass
class PhaseRecord:
    """One phase of a run as it happened: its name, how long it took, and how it ended (ok, failed)."""

    name: str
    seconds: float
    state: str = "ok"


@dataclass
class RunSummary:
    """A run as the command line reports it. `plan` holds the plan in words (`plan_words`), `env` the env diff's
    rows as pre-flight masked them, `result` the flow's own result."""

    environment: str
    target: str
    dry_run: bool
    outcome: str  # planned | upgraded | already-at | failed
    phases: list[PhaseRecord] = field(default_factory=list)
    seconds: float = 0.0
    change: dict[str, Any] = field(default_factory=dict)  # current/target commit and revisions
    plan: list[dict] = field(default_factory=list)
    env: list[dict] = field(default_factory=list)
    env_counts: dict[str, int] = field(default_factory=dict)
    env_copies: list[dict] = field(default_factory=list)  # the `envs/**.env` copies the merge changes: path, rows
    migrations: dict[str, Any] = field(default_factory=dict)
    downtime: dict[str, float] = field(default_factory=dict)
    rollback_point: str = ""
    url: str = ""
    error: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)


def secs(s: float) -> str:
    """A duration as people read it: `3.1 s`, `2 min 05 s`."""
    if s < MINUTE:
        return f"{s:.1f} s"
    return f"{int(s // MINUTE)} min {int(s % MINUTE):02d} s"


def phase_line(p: PhaseRecord) -> str:
    """`  backup ............ 12.4 s` (and `FAILED` after a phase that failed)."""
    dots = "." * max(3, PHASE_WIDTH - len(p.name))
    return f"  {p.name} {dots} {secs(p.seconds)}" + ("  FAILED" if p.state == "failed" else "")


def finished_line(seconds: float, outcome: str) -> str:
    return f"Finished in {secs(seconds)}" + ("" if outcome != "failed" else " (failed)")


def words(step_id: str) -> str:
    """A step's id as words: `stop-and-check-out` → `stop and check out`."""
    return step_id.replace("-", " ")


def plan_words(plan: Plan) -> list[dict]:
    """Each list of the plan as one line of step names, in the order an upgrade walks them (empty lists left out)."""
    lists = plan.lists()
    out = []
    for key, title in PLAN_LISTS:
        steps = [s for phase, ss in lists.items() if phase.value == key for s in ss]
        if steps:
            out.append({"phase": key, "title": title, "steps": [s.id for s in steps]})
    return out


def changed_rows(rows: list[dict]) -> list[dict]:
    """The env diff's rows that change a value or need a look (a conflict, a note), masked once more: a row marked
    secret never shows a value, whatever it holds."""
    out = []
    for r in rows:
        if r.get("before") == r.get("after") and r.get("category") != "conflict" and not r.get("note"):
            continue
        row = dict(r) | {"change": _change(r.get("before"), r.get("after"))}
        if r.get("secret"):
            row |= {k: SECRET for k in ("before", "after", "new_default") if r.get(k) not in (None, "(unset)")}
        out.append(row)
    return out


def _change(before: str | None, after: str | None) -> str:
    """What a row does to its key (read before masking: two secrets that differ both show as `(secret)`)."""
    if before in (None, "(unset)"):
        return "added"
    if after in (None, "(unset)"):
        return "removed"
    return "kept" if before == after else "changed"


def env_line(r: dict) -> str:
    """`+ KEY=value` (added), `- KEY` (removed), `~ KEY: before → after` (changed), `! KEY` (conflict: kept)."""
    before, after, change = r.get("before"), r.get("after"), r.get("change") or _change(r.get("before"),
                                                                                         r.get("after"))
    if change == "added":
        line = f"  + {r['key']}={after}"
    elif change == "removed":
        line = f"  - {r['key']} (was {before})"
    elif change == "kept":
        line = f"  ! {r['key']}={after} kept ({r['category'].replace('_', ' ')})"
    else:
        line = f"  ~ {r['key']}: {before} → {after}"
    return line + (f"  ({r['note']})" if r.get("note") else "")


def _change_line(s: RunSummary) -> str:
    c = s.change
    if not c:
        return f"{s.environment} → {s.target}"
    rev = (f"; database {', '.join(c.get('revision') or []) or 'no revision'} → {', '.join(c.get('heads') or [])}"
           f" ({len(c.get('pending') or [])} pending revision(s))")
    return f"{s.environment}: commit {c.get('commit', '')[:12]} → {s.target} ({c.get('target_commit', '')[:12]}){rev}"


def verdict(migrations: dict) -> str:
    if not migrations:
        return "not analysed (the run stopped before)"
    if "verdict" in migrations:  # as a run on a worker published it
        return migrations["verdict"]
    if not migrations.get("pending"):
        return "nothing to migrate"
    gate = migrations.get("gate") or []
    if gate:
        return "BLOCKED: " + "; ".join(gate)
    return f"ok: {migrations['pending']} pending revision(s) within the environment's limits"


def summary_lines(s: RunSummary) -> list[str]:
    """The summary after the phase lines (the lines without their newline)."""
    if s.outcome == "already-at":
        return [already_at_line(s)] + ([f"Run: {s.url}"] if s.url else [])
    head = {"planned": "Plan (dry run: nothing changed)", "upgraded": "Upgraded",
            "failed": "FAILED"}.get(s.outcome, s.outcome)
    lines = [f"{head}: {_change_line(s)}"]
    for part in s.plan:
        if part["phase"] == "rollback":
            lines.append(f"  on failure: roll back to commit {s.change.get('commit', '')[:12]} and the database at "
                         f"the rollback point, verified ({len(part['steps'])} steps)")
        else:
            lines.append(f"  {part['title']}: {', '.join(words(i) for i in part['steps'])}")
    if s.rollback_point:
        lines.append(f"  {s.rollback_point}")
    lines += _env_lines(s)
    lines.append(f"Migrations: {verdict(s.migrations)}")
    if s.outcome == "upgraded" or s.downtime:
        total = s.downtime.get("total")
        lines.append(f"Downtime: {secs(total)} (writers stopped → target healthy)" if total is not None else
                     "Downtime: none measured")
    elif s.outcome == "planned":
        lines.append("Downtime: none (a dry run stops nothing)")
    if s.url:
        lines.append(f"Run: {s.url}")
    return lines


def _env_lines(s: RunSummary) -> list[str]:
    rows = changed_rows(s.env)
    kept = sum(n for k, n in s.env_counts.items() if k not in ("added", "default_moved", "dropped", "re_added")
               and k != "unchanged")
    if not rows:
        return ["Env: no change" + (f" ({kept} of your settings kept)" if kept else "")] + _copy_lines(s)
    out = [f"Env: {len(rows)} change(s), secrets masked" + (f"; {kept} of your settings kept" if kept else "")]
    out += [env_line(r) for r in rows[:ENV_SHOWN]]
    if len(rows) > ENV_SHOWN:
        out.append(f"  … {len(rows) - ENV_SHOWN} more in the run's env-diff artifact")
    return out + _copy_lines(s)


def _copy_lines(s: RunSummary) -> list[str]:
    """One line per `envs/**.env` copy the merge changes (Dify's split layout); its rows: the env-diff artifact."""
    out = []
    for copy in s.env_copies:
        n = len(changed_rows(copy.get("rows") or []))
        if n:
            out.append(f"Env {copy['path']}: {n} change(s), in the run's env-diff artifact")
    return out


def already_at_line(s: RunSummary) -> str:
    r = s.result or {}
    commit = (r.get("commit") or s.change.get("target_commit") or "")[:12]
    revision = ", ".join(r.get("revision") or s.change.get("revision") or []) or "no revision"
    return (f"Already at {s.target}: nothing to do ({s.environment} runs commit {commit}, the target's images, "
            f"database at {revision}; nothing stopped, no backup taken; `--force` redeploys on purpose)")


def text(s: RunSummary, phases_shown: bool = False) -> str:
    """The phase lines (unless they were printed live), `Finished in`, a blank line and the summary."""
    lines = ([] if phases_shown else [phase_line(p) for p in s.phases]) + [finished_line(s.seconds, s.outcome), ""]
    lines += summary_lines(s)
    return "\n".join(lines) + "\n"


def as_json(s: RunSummary) -> str:
    """One JSON object: every field of the summary, the env rows masked as printed."""
    data = asdict(s) | {"env": changed_rows(s.env), "ok": s.outcome != "failed",
                        "env_copies": [c | {"rows": changed_rows(c.get("rows") or [])} for c in s.env_copies]}
    return json.dumps(data, indent=2, default=str)
