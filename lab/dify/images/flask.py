#!/usr/bin/python3
"""`flask` of the dify-api stand-in: the two commands stackshift's Dify block uses, on the demo app's Alembic.

    flask upgrade-db                 Alembic's upgrade to the head (Dify's command; non-zero exit when it fails)
    flask db upgrade A:B --sql       Flask-Migrate's offline rendering of a range
"""
import os
import sys

os.chdir("/app/api")
args = sys.argv[1:]
if args == ["upgrade-db"]:
    print("Preparing database migration...", flush=True)
    argv = ["python3", "-m", "alembic", "upgrade", "head"]
elif args[:2] == ["db", "upgrade"]:
    argv = ["python3", "-m", "alembic", "upgrade", *args[2:]]
elif args[:2] == ["db", "current"]:
    argv = ["python3", "-m", "alembic", "current"]
else:
    print(f"Error: No such command {' '.join(args)!r}.", file=sys.stderr)
    sys.exit(2)
os.execvp(argv[0], argv)
