"""Entrypoint of the demo app image, shaped like Dify's api/docker/entrypoint.sh.

With MIGRATION_ENABLED=true it runs `alembic upgrade head` first and, like Dify up to 1.12.1, logs a
failure and starts anyway. With arguments it runs them instead of a role (one-off containers, e.g.
`alembic upgrade head`). Otherwise APP_ROLE picks the role: `api` (HTTP on 5001) or `worker`.
"""
import os
import subprocess
import sys

os.chdir("/app")
if os.environ.get("MIGRATION_ENABLED") == "true":
    print("entrypoint: running migrations", flush=True)
    done = subprocess.run(["python3", "-m", "alembic", "upgrade", "head"], check=False)
    if done.returncode != 0:
        print("entrypoint: migration failed; starting anyway", flush=True)

if len(sys.argv) > 1:
    os.execvp(sys.argv[1], sys.argv[1:])

role = os.environ.get("APP_ROLE", "api")
os.execvp("python3", ["python3", "-u", f"/app/{role}.py"])
