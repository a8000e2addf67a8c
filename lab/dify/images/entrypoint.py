#!/usr/bin/python3
"""Entrypoint of the dify-api stand-in, shaped like Dify's api/docker/entrypoint.sh (the demo app inside).

MIGRATION_ENABLED=true: `flask upgrade-db` first (a failure stops the container, as `set -e` does there; with
MODE=migration it exits after it). Then MODE picks the process: `worker`, `beat`, `job` (`flask "$@"`, its exit code),
else the api on 5001. Like Dify's, it ignores its arguments in every mode but `job`.
"""
import os
import subprocess
import sys

os.chdir("/app/api")
mode = os.environ.get("MODE", "api")
if os.environ.get("MIGRATION_ENABLED") == "true":
    print("Running migrations", flush=True)
    done = subprocess.run(["flask", "upgrade-db"], check=False)
    if done.returncode:
        sys.exit(done.returncode)
    if mode == "migration":
        print("Migration completed, exiting normally", flush=True)
        sys.exit(0)
if mode == "job":
    if not sys.argv[1:]:
        print("Error: No command specified for job mode.", flush=True)
        sys.exit(1)
    sys.exit(subprocess.run(["flask", *sys.argv[1:]], check=False).returncode)
role = {"worker": "worker.py", "beat": "worker.py"}.get(mode, "api.py")
os.execvp("python3", ["python3", "-u", f"/app/api/{role}"])
