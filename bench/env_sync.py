"""Benchmark: the env merge on Dify's 680-variable 1.12.1 template (a 1.0.0-based .env merged onto it).

Prints medians: the merge in-process (parse ×3 + merge), and the whole `./stackshift env-sync --dry-run`
command, wall time, measured side by side with `python3 -c pass` (the interpreter's floor).
Run: `.venv/bin/python -m bench.env_sync [--runs 30]`.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.env.envmerge import merge, parse

ROOT = Path(__file__).resolve().parent.parent
DIFY = ROOT.parent / "shared" / "fixtures" / "dify"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    old, new = (DIFY / "env.example.1.0.0").read_text(), (DIFY / "env.example.1.12.1").read_text()
    user = (old.replace("DB_PASSWORD=difyai123456", "DB_PASSWORD=operator")
            .replace("EXPOSE_NGINX_PORT=80", "EXPOSE_NGINX_PORT=8080"))
    inproc = []
    for _ in range(args.runs):
        t = time.perf_counter()
        merge(parse(user), parse(old), parse(new))
        inproc.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / ".env"
        env.write_text(user)
        cmd = [str(ROOT / "stackshift"), "env-sync", "--env-file", str(env),
               "--old-template", str(DIFY / "env.example.1.0.0"),
               "--new-template", str(DIFY / "env.example.1.12.1"), "--dry-run"]
        floor_cmd = [str(ROOT / ".venv" / "bin" / "python"), "-c", "pass"]
        wall, floor = [], []
        for _ in range(args.runs):
            for argv, bucket in ((cmd, wall), (floor_cmd, floor)):
                t = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True)
                bucket.append(time.perf_counter() - t)
    m_in, m_wall, m_floor = (statistics.median(x) * 1000 for x in (inproc, wall, floor))
    print(f"runs: {args.runs}; template keys: {len(parse(new).values)}")
    print(f"merge in-process (median): {m_in:.1f} ms   (target < 20 ms)")
    print(f"./stackshift env-sync --dry-run wall (median): {m_wall:.1f} ms   (target < 130 ms)")
    print(f"python3 -c pass wall (median): {m_floor:.1f} ms; command / interpreter floor = {m_wall / m_floor:.2f}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
