"""Markdown a person reads in the Prefect UI (plan, env diff, backup, timeline, verification). No secrets:
the plan holds none, and env values come already masked."""
from __future__ import annotations

from collections import Counter

from core.cutover.plan import Plan


def plan_markdown(plan: Plan) -> str:
    f = plan.facts
    stack = f.settings.stack
    lines = [
        f"# Upgrade plan: {f.run.environment} → {f.target.ref}",
        "",
        f"- project `{stack.project_name}` in `{stack.compose_dir}`; "
        f"commit `{f.current.commit[:12]}` → `{f.target.commit[:12]}`",
        f"- database `{f.settings.database.name}` at `{', '.join(f.database.revision) or '(none)'}` "
        f"→ head `{', '.join(f.target.heads)}`: "
        f"{len(f.target.pending_revisions)} pending revision(s)"
        + (f", without a real downgrade: {', '.join(f.target.noop_downgrades)}" if f.target.noop_downgrades else ""),
        f"- services: {', '.join(f.current.services)} → {', '.join(f.target.services)}",
        f"- backup folder: `{f.run.dir}`",
        f"- {rollback_point_line(f.rollback.forecast, f.rollback.method)}",
        "",
        "| service | current image | target image |",
        "|---|---|---|",
    ]
    for s in sorted(set(f.current.images) | set(f.target.images)):
        cur = f.current.images.get(s, {})
        current = cur.get("repo_digest") or cur.get("image", "—")
        lines.append(f"| {s} | {current} | {f.target.images.get(s, '— (removed)')} |")
    counts = ", ".join(f"{k} {v}" for k, v in f.env_sync.counts.items() if v)
    lines += ["", f"Env merge: {counts or 'no change'}.", ""]
    if f.online.verdicts:
        lines += ["## Online preparation, per statement", "", *[f"- {line}" for line in f.online.lines()], ""]
    for title, steps in plan_sections(plan):
        lines += [f"## {title}", "", "| # | step | what it does |", "|---|---|---|"]
        lines += [f"| {i} | `{s.task_name}` | {_in_words(s)} |" for i, s in enumerate(steps, 1)]
        lines.append("")
    lines += ["The exact commands of every step are in the run's logs."]
    return "\n".join(lines)


def plan_sections(plan: Plan) -> list[tuple[str, list]]:
    return [("Backup (old version serving)", plan.backup),
            ("Right before the downtime (after the pull)", plan.prepare),
            ("Cutover (downtime)", plan.cutover),
            ("Verify", plan.verify), ("After success", plan.finish),
            ("Rollback (only on failure after cutover starts)", plan.rollback)]


def _in_words(step) -> str:
    """A step as a person reads it: its title, and the titles of the steps it runs together."""
    parts = getattr(step, "steps", ())
    text = step.title.replace("|", "\\|")
    if parts:
        text += ": " + "; ".join(p.title.replace("|", "\\|") for p in parts)
    return text


def plan_commands(plan: Plan) -> list[str]:
    """Every step with its exact commands or API calls (for the run's logs, not the artifact)."""
    return [f"plan {title.split(' (')[0].lower()} · {s.id}: {s.render()}"
            for title, steps in plan_sections(plan) for s in steps]


def rollback_point_line(forecast: dict, method: str) -> str:
    if not forecast:
        return f"rollback point: {method}"
    from core.backup.rollbackpoint import Forecast

    return Forecast(**forecast).summary()


CATEGORY_WORDS = {
    "added": "new in the target's template", "re_added": "required by the target's compose file: added back",
    "default_moved": "you had the old default: set to the new one", "customized": "your value, kept",
    "conflict": "your value, kept, but the default changed too: review it",
    "moved": "its default moved to another template file", "interpolated": "still read by the compose file: kept",
    "dropped": "removed from the template: dropped", "removed_kept": "removed from the template, your value kept",
    "user_only": "only in your file: kept", "commented": "commented out by you: stays so",
    "deleted_kept": "deleted by you: stays deleted",
}
CHANGED_CATEGORIES = {"default_moved", "moved"}


def env_mark(row: dict) -> str:
    """`+` the key is added to the .env, `-` dropped, `~` its value changes, ` ` kept as it is."""
    from core.env.envsecrets import UNSET

    before, after = row["before"], row["after"]
    if before == UNSET and after != UNSET:
        return "+"
    if after == UNSET and before != UNSET:
        return "-"
    return "~" if before != after or row["category"] in CHANGED_CATEGORIES else " "


def env_markdown(environment: str, rows: list[dict], counts: dict[str, int], effective: dict | None = None,  # noqa: PLR0913 (the .env's diff, then the split layout's parts)
                 copies: list[dict] | None = None) -> str:
    """The env diff: what changes in the .env first (`+` added, `-` dropped, `~` changed), then what stays, each
    with the file it lives in after the upgrade; each `envs/**.env` copy's own changes (`copies`: the staged
    records, `core.env.envstage.StagedCopy`); where env files disagree, the value each service gets
    (`effective`: `core.env.effective.masked`)."""
    marked = [(env_mark(r), r) for r in rows]
    changes = sorted(((m, r) for m, r in marked if m != " "), key=lambda mr: "+~-".index(mr[0]))
    kept = [r for m, r in marked if m == " "]
    summary = _changes_in_words(rows)
    lines = [f"# Env diff for {environment}", "",
             f"**{len(changes)} change(s)** to the .env" + (f": {summary}" if summary else "")
             + f"; {len(kept)} key(s) looked at and kept as they are; {counts.get('unchanged', 0)} unchanged.", ""]
    if changes:
        lines += ["## Changes", "", "| | key | before | after | why | lives in |", "|---|---|---|---|---|---|"]
        lines += [f"| **{m}** | `{r['key']}` | {r['before']} | {r['after']} | {_why(r)} | {r.get('file') or '—'} |"
                  for m, r in changes]
        lines.append("")
    if kept:
        lines += ["## Kept as they are", "", "| key | value | new default | why | lives in |", "|---|---|---|---|---|"]
        lines += [f"| `{r['key']}` | {r['after']} | {r['new_default']} | {_why(r)} | {r.get('file') or '—'} |"
                  for r in kept]
        lines.append("")
    notes = [f"- `{r['key']}`: {r['note']}" for r in rows if r.get("note")]
    if notes:
        lines += ["## Notes", ""] + notes + [""]
    lines += _copies_markdown(copies or [])
    if effective:
        lines += ["## What each service gets, where env files disagree", "",
                  "| key | service | value | from |", "|---|---|---|---|"]
        lines += [f"| `{key}` | {service} | {got['value']} | {got['from']} |"
                  for key, per in effective.items() for service, got in per.items()]
        lines.append("")
    lines += ["Values of secret-looking keys are never shown, only `(secret)` (docs/env-sync.md, 'Secret env keys')."]
    return "\n".join(lines)


def _changes_in_words(rows: list[dict]) -> str:
    """`43 added, 482 changed, 1 dropped` ('' when nothing changes)."""
    marks = [env_mark(r) for r in rows]
    return ", ".join(f"{n} {word}" for mark, word in (("+", "added"), ("~", "changed"), ("-", "dropped"))
                     if (n := marks.count(mark)))


def env_summary(rows: list[dict], copies: list[dict]) -> list[str]:
    """The env diff in a few lines, for the promotion's summary: the .env's changes; with Dify's split layout, the
    keys whose default moved to an `envs/**` template, by the file they now live in; each `envs/**.env` copy the
    operator has, changed by the merge or kept; the copies the target could load that do not exist."""
    lines = [".env: " + (_changes_in_words(rows) or "no change")]
    moved = Counter(r.get("file") or "?" for r in rows if r["category"] == "moved")
    lines += [f"{n} key(s) now defined by `{file}` (the .env keeps its values, and wins)"
              for file, n in sorted(moved.items())]
    for c in (c for c in copies if c["existed"]):
        changed = _changes_in_words(c["rows"]) or "no row"
        lines.append(f"`{c['path']}`: " + (f"changed by the merge ({changed})" if c["sha256"] else "kept as it is"))
    absent = [c["path"] for c in copies if not c["existed"]]
    if absent:
        lines.append(f"{len(absent)} optional `envs/**.env` file(s) the target can load do not exist; none is created")
    return lines


def _copies_markdown(copies: list[dict]) -> list[str]:
    """One section per existing `envs/**.env` copy: whether the upgrade changes it, and its changed rows."""
    lines: list[str] = []
    for copy in (c for c in copies if c["existed"]):
        changes = [(env_mark(r), r) for r in copy["rows"]]
        changes = [(m, r) for m, r in changes if m != " "]
        verdict = "changed by the merge, as below" if copy["sha256"] else "kept as it is"
        lines += [f"## {copy['path']}", "", f"Merged against its own templates: {verdict}.", ""]
        if changes:
            lines += ["| | key | before | after | why | lives in |", "|---|---|---|---|---|---|"]
            lines += [f"| **{m}** | `{r['key']}` | {r['before']} | {r['after']} | {_why(r)} | {r.get('file') or '—'} |"
                      for m, r in changes]
            lines.append("")
        lines += [f"- {n}" for n in copy["notes"]] + ([""] if copy["notes"] else [])
    return lines


def _why(row: dict) -> str:
    return CATEGORY_WORDS.get(row["category"], row["category"])


def timeline_markdown(journal, outcome: str) -> str:
    """The run's steps as the journal recorded them, with the measured downtime."""
    from core.cutover.journal import downtime

    lines = [f"# Timeline: {outcome}", ""]
    dt = downtime(journal)
    if dt:
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in dt.items() if k != "total")
        lines += [f"**Downtime {dt['total']:.2f} s** (writers stopped → target healthy): {parts}", ""]
    lines += ["| phase | step | seconds | state | detail |", "|---|---|---|---|---|"]
    for r in journal.steps:
        secs = f"{r.ended - r.started:.2f}" if r.ended else "—"
        detail = r.detail.replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(f"| {r.phase} | {r.id} | {secs} | {r.state if r.state == 'done' else '**' + r.state + '**'} | "
                     f"{detail} |")
    return "\n".join(lines)


def verification_markdown(verifications) -> str:
    lines = ["# Verification", ""]
    for step, v in verifications.items():
        lines += [f"## {step}: {'passed' if v.ok else 'FAILED'}", "", "| check | ok | detail |", "|---|---|---|"]
        lines += [f"| {c.name} | {'yes' if c.ok else '**no**'} | {c.detail} |" for c in v.checks]
        lines.append("")
    return "\n".join(lines)


def manifest_markdown(manifest: dict) -> str:
    lines = ["# Backup manifest", "", f"Folder `{manifest['run_dir']}` (files 0600)", "",
             "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| {n} | {m['bytes']} | `{m['sha256']}` |" for n, m in manifest["files"].items()]
    return "\n".join(lines)


MINUTE, HOUR = 60, 3600  # seconds


def _secs(s: float | None) -> str:
    if s is None:
        return "—"
    if s < MINUTE:
        return f"{s:.1f} s"
    return f"{int(s // HOUR)} h {int(s % HOUR // MINUTE)} min" if s >= HOUR else f"{s / MINUTE:.1f} min"


def probe_line(probe: dict) -> str:
    """What the probe measured, how long it took, and how busy the server was meanwhile."""
    rounds = probe.get("rounds", 1)
    budget = probe.get("budget_seconds")
    line = (f"Probe: {rounds} round{'s' if rounds != 1 else ''} of {probe['probe_rows']:,} rows "
            f"({_mb(probe['probe_heap_bytes'])}) in {probe['probe_seconds']} s"
            + (f" (budget {budget:g} s)" if budget else "") + ": rewrite "
            f"{probe['rewrite_bps'][1] / 1e6:.0f}–{probe['rewrite_bps'][0] / 1e6:.0f} MB/s, scan "
            f"{probe['scan_bps'][1] / 1e6:.0f}–{probe['scan_bps'][0] / 1e6:.0f} MB/s, one process. ")
    if not probe.get("cpu_wait_measured"):
        return line + ("Not calibrated: the server does not let this role read its backend's CPU wait (a superuser "
                       "can), so the rates are those of the moment, under whatever load the host had.")
    factor = probe.get("load_factor", 1.0)
    return line + (f"Calibrated: the time the probe waited for a CPU is taken out (it ran ×{factor:.2f} slower "
                   f"than that at the load of the moment); forecasts and the gate use the calibrated rates.")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _excerpt(sql: str, width: int = 100) -> str:
    """A statement on one line for a table cell: whitespace collapsed, cut at `width`."""
    one = " ".join(sql.split()).replace("|", "\\|").replace("`", "'")
    return f"`{one[:width]}{'…' if len(one) > width else ''}`"


def _sources_markdown(pending: list[str], src: dict, incomplete: dict[str, str]) -> list[str]:
    """Every pending revision, whether offline rendering produced its SQL (all of it, or not: `incomplete`) and
    whether the rehearsal ran it."""
    rendered, rehearsed = set(src["rendered"]), set(src["rehearsed"])
    partly = {r: why for r, why in incomplete.items() if r in rendered and r not in rehearsed}
    fully = len(rendered - set(partly))
    what = {"rendering": "the offline rendering", "rehearsal": "the rehearsal (statements the migration executed)"}
    lines = [f"## Pending revisions ({len(pending)}): {fully} rendered offline in full"
             + (f", {len(partly)} only in part (not fully analysed)" if partly else "")
             + f", {len(rehearsed)} rehearsed", "",
             f"The statements below come from {what[src['analysed_from']]}."]
    if src.get("render_error"):
        lines.append(f"Offline rendering: {src['render_error']}.")
    if src.get("rehearsal"):
        r = src["rehearsal"]
        lines.append(f"Rehearsal: the target's migration ran on `{r['database']}`, a throw-away copy of the live "
                     f"schema (no rows but `alembic_version`), in {r['seconds']:.1f} s, {r['statements']} statements "
                     f"captured; " + ("the database was dropped afterwards." if r.get("dropped") else
                                      "**the database could not be dropped**: the next run or `recover` drops it."))
    lines += ["", "| # | revision | rendered offline | rehearsed |", "|---|---|---|---|"]
    lines += [f"| {i} | `{rev}` | {_rendered_cell(rev, rendered, partly)} | {'yes' if rev in rehearsed else 'no'} |"
              for i, rev in enumerate(pending, 1)]
    return lines + [""]


def _rendered_cell(rev: str, rendered: set[str], partly: dict[str, str]) -> str:
    if rev in partly:
        return f"**in part**: {partly[rev].replace('|', '/')}"
    return "yes" if rev in rendered else "**no**"


def _coverage_markdown(report) -> list[str]:
    """Where the SQL came from, revision by revision, what it holds only in part, and what was not SQL."""
    lines: list[str] = []
    if report.revisions is not None and report.sources is not None:
        lines += _sources_markdown(report.revisions.pending, report.sources, report.incomplete)
    elif report.incomplete:
        lines += [f"## Revisions not fully analysed ({len(report.incomplete)})", ""]
        lines += [f"- `{rev}`: {why}" for rev, why in report.incomplete.items()] + [""]
    return lines + (_set_aside_markdown(report.set_aside) if report.set_aside else [])


def _set_aside_markdown(aside: list[tuple[int, str]], shown: int = 40) -> list[str]:
    """What the tool printed that is not SQL: set aside, not analysed, listed for a person to read."""
    lines = [f"## Output that is not SQL ({len(aside)} line(s), set aside)", "", "```"]
    lines += [f"{n:>5}  {t}" for n, t in aside[:shown]]
    more = [f"… {len(aside) - shown} more"] if len(aside) > shown else []
    return [*lines, *more, "```", ""]


def online_markdown(lines: list[str], setting: str) -> str:
    """The migration report's section on the online preparation: per flagged statement, prepared online while the
    old version serves, or in the downtime and why ('' when the environment's setting is off)."""
    if setting == "off":
        return ""
    said = [f"- {line}" for line in lines] or ["- no pending statement rewrites or scans a table under a blocking "
                                               "lock: nothing to prepare"]
    return "\n".join(["", "## Online preparation (while the old version serves)", "", *said, ""]) + "\n"


def _forecast_cell(f) -> str:
    fc = f.forecast_seconds
    when = f"{_secs(fc['low'])}–{_secs(fc['high'])}" if fc else "—"
    return f"catalog-only in the downtime ({when}): prepared online" if f.prepared_online is not None else when


def _prepared_markdown(statements) -> list[str]:
    """The statements prepared online: their work, forecast apart, happens while the old version serves."""
    prepared = [f for f in statements if f.prepared_online is not None]
    if not prepared:
        return []
    lines = ["", "## Prepared online, while the old version serves (not in the downtime)", "",
             "| # | line | table | forecast | batches |", "|---|---|---|---|---|"]
    for f in prepared:
        fc = f.prepared_online["forecast_seconds"]
        when = f"{_secs(fc['low'])}–{_secs(fc['high'])}" if fc else "—"
        lines.append(f"| {f.index} | {f.line} | {f.table or '—'} | {when} | {f.prepared_online['batches']:,} |")
    return lines


def migration_markdown(report, title: str, gate_reasons: list[str], uncertainty: str | None = None) -> str:
    """The migration pre-flight for a person: verdict, lock-hold per table, risky statements, sizes. `uncertainty`:
    what the verdict would be at the load of the moment, when it differs (`migcheck.at_load_note`)."""
    lines = [f"# {title}", ""]
    if gate_reasons:
        lines += ["**Stopped before any change:**", ""] + [f"- {r}" for r in gate_reasons] + [""]
    else:
        lines += ["**No finding over the environment's limits.**", ""]
    if uncertainty:
        lines += [f"Uncertainty: {uncertainty}.", ""]
    if report.revisions is not None:
        r = report.revisions
        lines += [f"Database at `{', '.join(r.db_revisions) or '(empty)'}` → head `{r.head}`: "
                  f"{len(r.pending)} pending revision(s)"
                  + (f", {len(r.noop_downgrades)} without a real downgrade" if r.noop_downgrades else "") + ".", ""]
    lines += _coverage_markdown(report)
    if report.server:
        probe = report.server.get("probe")
        lines += [f"Server PostgreSQL {report.server['version']}. "
                  + (probe_line(probe) if probe else "No probe: no durations."), ""]
    if report.lock_hold:
        factor = ((report.server or {}).get("probe") or {}).get("load_factor", 1.0)
        now = report.lock_hold_now
        lines += ["## Writes blocked, per table (high estimate)", "",
                  f"| table | blocked for (calibrated: the gate's) | at the load measured now (×{factor:.2f}) |",
                  "|---|---|---|"]
        lines += [f"| {t} | {_secs(s)} | {_secs(now.get(t))} |" for t, s in report.lock_hold.items()]
        lines.append("")
    from core.migrations.sqlrules import blocks_writes

    created = report.created_tables
    risky = [f for f in report.statements if f.rules or f.effect != "none" or blocks_writes(f, created)]
    lines += [f"## Statements with findings or blocking writes to an existing table ({len(risky)} of "
              f"{len(report.statements)})", "",
              "| # | line | revision | table | lock | effect | rules | forecast | safer alternative | statement |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for f in risky:
        when = _forecast_cell(f)
        lines.append(f"| {f.index} | {f.line} | {f.revision or '—'} | {f.table or '—'} | {f.lock or '—'} "
                     f"| **{f.effect}** | {', '.join(f.rules) or '—'} | {when} | {f.safe_alternative or '—'} "
                     f"| {_excerpt(f.sql)} |")
    lines += _prepared_markdown(report.statements)
    if report.tables:
        lines += ["", "## Live sizes", "", "| table | heap | TOAST | indexes | rows (estimate) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {t} | {_mb(v['heap_bytes'])} | {_mb(v['toast_bytes'])} | {_mb(v['index_bytes'])} "
                  f"({v['indexes']}) | {v['rows_estimate']:,} |" for t, v in report.tables.items()]
    if report.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"


def dashboard_markdown(rows: list[dict]) -> str:
    """Every environment on one page: what it runs (version, commit, database revision) and its last run."""
    lines = ["# stackshift: every environment", "",
             "What each environment runs, as its last upgrade (or rollback) recorded it, and its last upgrade or "
             "recover run.", "",
             "| environment | version | commit | database revision | last run | outcome | started |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        run = f"[{r['run']}]({r['url']})" if r.get("run") else "—"
        commit = f"`{r['commit'][:12]}`" if r.get("commit") else "—"
        lines.append(f"| **{r['environment']}** | {r.get('version') or '—'} | {commit} | {r.get('revision') or '—'} "
                     f"| {run} | {r.get('outcome') or '—'} | {r.get('when') or '—'} |")
    if not rows:
        lines.append("| (no environment saved yet) | | | | | | |")
    return "\n".join(lines) + "\n"
