"""Benchmark: `./stackshift plan` on the lab's Dify-faithful stack (lab/dify: Dify 1.12.1's real compose file, 12
containers, the block `stackshift init` proposes, the forecast's probe on) to the split release 1.15.0, and the
migration probe's duration inside it. Prints each round, then the medians.

Run: `.venv/bin/python -m bench.dify_plan [--rounds 5]` (after lab/setup; the stack is made and removed here).
"""
from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from lab.dify import build
from lab.dify import stack as dify

ROOT = Path(__file__).resolve().parents[1]


def stackshift(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "stackshift"), *args], capture_output=True, text=True, check=False, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    build.ensure()
    name = "bench-dify-" + secrets.token_hex(3)
    root = Path(tempfile.mkdtemp(prefix=name))
    dep = dify.create(root, name, "1.12.1", rows=300)
    try:
        done = stackshift("init", str(dep.compose_dir), "--name", name, "--backup-dir", str(dep.backup_dir), "--yes")
        if done.returncode:
            raise SystemExit(done.stdout + done.stderr)
        walls, probes = [], []
        for i in range(1, args.rounds + 1):
            t0 = time.monotonic()
            done = stackshift("plan", "-e", name, "-t", "1.15.0", "--json")
            walls.append(time.monotonic() - t0)
            if done.returncode:
                raise SystemExit(done.stderr[-2000:])
            probe = json.loads(done.stdout)["migrations"]["probe"]
            probes.append(probe["probe_seconds"])
            print(f"round {i}: plan {walls[-1]:5.1f} s, probe {probe['probe_seconds']:.2f} s "
                  f"({probe['rounds']} rounds)", flush=True)
        print(f"median of {args.rounds}: plan {statistics.median(walls):.1f} s, "
              f"probe {statistics.median(probes):.2f} s")
    finally:
        dep.down()
        from tests.e2e import server

        server.remove(name)  # the block init saved
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
