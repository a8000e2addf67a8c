"""Benchmark: the migration gate's verdict on the same 1 M-row upgrade, idle and under a CPU load of twice the cores.

One deployment of the lab's demo stack at v1.0.0 with 1,000,000 events; each round runs `./stackshift plan` to
v2.0.0 (a dry run: pre-flight, the migration report with its probe, the gate's verdict; nothing changes), once on
the host as it is ("idle") and once with 2 × cores busy processes spinning beside it ("load"), alternately. Per
round it prints the plan's wall time, the probe's duration and rounds, the load factor the probe measured, the
forecast lock-hold of `events` (calibrated: the gate's; and at the load of the moment: what an uncalibrated gate
would have used) and both verdicts against the environment's `max_lock_seconds`. Then the medians and the ratios
load/idle.

Run under the end-to-end lock (it makes a stack):
`flock /tmp/ss/e2e.lock .venv/bin/python -m bench.gate_under_load [--rounds 3] [--rows 1000000]` (after lab/setup).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # the lab's server, before Prefect loads

from blocks.stack_environment import StackEnvironment  # noqa: E402
from lab import stack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT = "bench-gate"
SPIN = "while True: pass"


class Load:
    """`n` processes spinning on a CPU each, for as long as the `with` lasts (ended by their own pids)."""

    def __init__(self, n: int):
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Load:
        self.procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(self.n)]
        time.sleep(1)  # the run queue fills before the plan starts
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def plan_once(limit: float) -> dict:
    """One `./stackshift plan`, timed; what its migration report says."""
    load_before = loadavg()
    t0 = time.monotonic()
    done = subprocess.run([str(ROOT / "stackshift"), "plan", "-e", ENVIRONMENT, "-t", "v2.0.0"], check=False,
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"plan failed ({done.returncode}): {done.stderr[-2000:]}")
    m = json.loads(done.stdout)["migrations"]
    probe = m["probe"]
    hold, now = m["lock_hold"]["events"], m["lock_hold_at_current_load"]["events"]
    return {"plan_s": wall, "loadavg": load_before, "probe_s": probe["probe_seconds"], "rounds": probe["rounds"],
            "load_factor": probe["load_factor"], "hold": hold, "hold_now": now,
            "verdict": "stop" if m["gate"] else "go", "verdict_now": "stop" if now > limit else "go",
            "rewrite_slow_mb_s": probe["rewrite_bps"][1] / 1e6, "sort_slow_m_s": probe["sort_nlogn_ps"][1] / 1e6,
            "probe": probe}


def show(kind: str, i: int, r: dict) -> None:
    print(f"round {i} {kind:4s} loadavg {r['loadavg']:5.1f}  plan {r['plan_s']:5.1f} s  probe {r['probe_s']:4.2f} s "
          f"({r['rounds']} rounds, ×{r['load_factor']:.2f})  events blocked: calibrated {r['hold']:6.1f} s → "
          f"{r['verdict']:4s}  at the load of the moment {r['hold_now']:6.1f} s → {r['verdict_now']:4s}  "
          f"rewrite {r['rewrite_slow_mb_s']:.0f} MB/s, sort {r['sort_slow_m_s']:.1f} M/s", flush=True)
    print(f"  probe {json.dumps(r['probe'])}", flush=True)


def verdicts(rs: list[dict], limit: float, field: str) -> str:
    return " ".join("stop" if r[field] > limit else "go" for r in rs)


def summary(results: dict[str, list[dict]], limit: float) -> None:
    fields = ("plan_s", "probe_s", "rounds", "load_factor", "hold", "hold_now", "rewrite_slow_mb_s", "sort_slow_m_s")
    med = {k: {f: statistics.median(r[f] for r in rs) for f in fields} for k, rs in results.items()}
    print(f"\nmedians ({len(results['idle'])} rounds each)")
    print("| | idle | load | load / idle |\n|---|---|---|---|")
    for field, label in (("plan_s", "plan wall time (s)"), ("probe_s", "probe (s)"), ("rounds", "probe rounds"),
                         ("load_factor", "load factor the probe measured"),
                         ("hold", "events blocked, calibrated (s): the gate's"),
                         ("hold_now", "events blocked at the load of the moment (s)"),
                         ("rewrite_slow_mb_s", "rewrite rate, calibrated (MB/s)"),
                         ("sort_slow_m_s", "sort rate, calibrated (M n·log n/s)")):
        i, lo = med["idle"][field], med["load"][field]
        print(f"| {label} | {i:.2f} | {lo:.2f} | {lo / i:.2f} |")
    # A limit just over the idle forecast (+50 %): where a gate that followed the load would flip.
    tight = round(1.5 * med["idle"]["hold"], 1)
    for name, lim in (("the environment's", limit), ("a tight", tight)):
        print(f"\nverdicts against {name} limit {lim:g} s")
        for k, rs in results.items():
            print(f"- {k}: calibrated (the gate) {verdicts(rs, lim, 'hold')}; at the load of the moment "
                  f"{verdicts(rs, lim, 'hold_now')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--busy", type=int, default=2 * (os.cpu_count() or 1), help="busy processes under load")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gate-", dir="/var/tmp") as tmp:
        t = time.monotonic()
        dep = stack.create(Path(tmp), ENVIRONMENT, "v1.0.0", args.rows)
        try:
            block = StackEnvironment(**dep.block_fields())
            block.save(ENVIRONMENT, overwrite=True)
            limit = block.settings().migration.max_lock_seconds
            with dep.connect() as conn:
                sizes = conn.execute("SELECT relname, pg_relation_size(oid), pg_indexes_size(oid), reltuples "
                                     "FROM pg_class WHERE relname IN ('events', 'accounts')").fetchall()
            print(f"deployment with {args.rows:,} events in {time.monotonic() - t:.0f} s ({sizes}); load = "
                  f"{args.busy} busy processes on {os.cpu_count()} cores", flush=True)
            results: dict[str, list[dict]] = {"idle": [], "load": []}
            for i in range(1, args.rounds + 1):
                results["idle"].append(plan_once(limit))
                show("idle", i, results["idle"][-1])
                with Load(args.busy):
                    results["load"].append(plan_once(limit))
                show("load", i, results["load"][-1])
            summary(results, limit)
        finally:
            dep.down()


if __name__ == "__main__":
    main()
