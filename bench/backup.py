"""Benchmark: stackshift's backup bundle against the raw tools doing the same work, on the same data, in one run.

- **bundle**: the backup steps of a real plan (`core.cutover.plan.build_plan` from a real pre-flight), walked by the
  same `execute` as an upgrade: config copies, the resolved compose config (pre-flight's output, handed over
  in memory while the files are unchanged), `pg_dump -Fd -j N` in an exported
  snapshot while another session counts every table's rows in that snapshot, `pg_restore --list`, the volumes
  with `tar --zstd`, the state record, the sha256 manifest of every file.
- **raw**: `pg_dump -Fd -j N` and `tar --zstd` of the same volumes, nothing else.

Rounds alternate (raw, bundle, raw, bundle, ...); the medians, their ratio and the bundle's steps are printed.

Run: `.venv/bin/python -m bench.backup [--rows 1000000] [--rounds 7]` (after lab/setup).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")

from blocks.stack_environment import StackEnvironment  # noqa: E402
from core.settings import Settings
from core.io import commands as c  # noqa: E402
from core.cutover import preflight as pf  # noqa: E402
from core.cutover import steps as st  # noqa: E402
from core.cutover.journal import Journal  # noqa: E402
from core.cutover.plan import build_plan  # noqa: E402
from core.stackio import StackIO  # noqa: E402
from lab import stack  # noqa: E402


def bundle(cfg: Settings, dep: stack.Deployment, out: Path, i: int) -> tuple[float, int]:
    run_id = f"bench{i}"
    facts = pf.gather(cfg, pf.UpgradeRequest("bench-backup", "v2.0.0", out / run_id, run_id))
    plan = build_plan(facts, run_id)
    facts.run.dir.mkdir(parents=True, mode=0o700)
    journal = Journal(path=facts.run.dir / "journal.json", run=run_id, environment="bench-backup", project=dep.name,
                      target={}, previous={}, rollback_points={})
    ctx = st.StepContext(facts, StackIO(cfg, dep.name), journal)
    t = time.monotonic()
    for step in plan.backup:
        st.execute(step, ctx)
    took = time.monotonic() - t
    size = sum(p.stat().st_size for p in facts.run.dir.rglob("*") if p.is_file())
    parts = {r.id: r.ended - r.started for r in journal.steps if r.ended is not None}
    return took, size, parts


def raw(dep: stack.Deployment, out: Path, jobs: int) -> tuple[float, int]:
    out.mkdir(parents=True)
    env = os.environ | {"PGPASSWORD": dep.db_password} | dict(c.ZSTD_ENV)
    t = time.monotonic()
    subprocess.run(c.pg_dump("127.0.0.1", dep.db_port, "app", "app", out / "app.dump", jobs), env=env, check=True)
    subprocess.run(c.tar_create(out / "volumes.tar.zst", dep.compose_dir / "volumes", ["./db/data"]), env=env,
                   check=True)
    took = time.monotonic() - t
    return took, sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backup-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        dep = stack.create(root, "bench-backup", "v1.0.0", args.rows)
        try:
            cfg = StackEnvironment(**(dep.block_fields() | {"rollback_point": "file-copy"})).settings()
            jobs = cfg.backup.dump_jobs or max(1, min(4, os.cpu_count() or 1))
            storage = dep.compose_dir / "volumes" / "app" / "storage"
            storage.mkdir(parents=True, exist_ok=True)
            (storage / "uploads.bin").write_bytes(os.urandom(16 << 20) + bytes(48 << 20))  # 64 MB of app files
            b, r, parts = [], [], {}
            raw(dep, root / "warm", jobs)  # a first read of the data, not counted
            shutil.rmtree(root / "warm")
            for i in range(args.rounds):
                took, size = raw(dep, root / f"raw{i}", jobs)
                r.append(took)
                print(f"round {i + 1}: raw    {took:6.2f} s  {size / 1e6:7.1f} MB", flush=True)
                took, size, steps = bundle(cfg, dep, root / "bundles", i)
                b.append(took)
                for name, secs in steps.items():
                    parts.setdefault(name, []).append(secs)
                print(f"round {i + 1}: bundle {took:6.2f} s  {size / 1e6:7.1f} MB", flush=True)
                shutil.rmtree(root / f"raw{i}")
                shutil.rmtree(root / "bundles")
        finally:
            dep.down()
    mb, mr = statistics.median(b), statistics.median(r)
    print(f"\n{args.rows:,} rows, pg_dump -j {jobs}, {args.rounds} rounds: median bundle {mb:.2f} s, raw {mr:.2f} s, "
          f"ratio {mb / mr:.3f}")
    print("bundle steps (medians): " + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
