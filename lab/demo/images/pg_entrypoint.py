"""Entrypoint of the demo PostgreSQL 15 image (Debian packages): initdb on first start, then postgres.

Like the official image, POSTGRES_USER becomes the superuser with POSTGRES_PASSWORD, and
POSTGRES_DB is created. It runs postgres as the `postgres` user.
"""
import os
import sys
import pwd
import subprocess
import tempfile

pgdata = os.environ["PGDATA"]
user = os.environ.get("POSTGRES_USER", "postgres")
db = os.environ.get("POSTGRES_DB", user)
pw = pwd.getpwnam("postgres")
os.makedirs(pgdata, exist_ok=True)
os.chown(pgdata, pw.pw_uid, pw.pw_gid)
os.chown(os.path.dirname(pgdata), pw.pw_uid, pw.pw_gid)
os.chmod(pgdata, 0o700)
os.makedirs("/run/postgresql", exist_ok=True)
os.chown("/run/postgresql", pw.pw_uid, pw.pw_gid)


def as_postgres():
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


if not os.path.exists(os.path.join(pgdata, "PG_VERSION")):
    with tempfile.NamedTemporaryFile("w", delete=False, dir="/tmp") as f:
        f.write(os.environ["POSTGRES_PASSWORD"])
    os.chmod(f.name, 0o644)
    subprocess.run(
        ["initdb", "-D", pgdata, "-U", user, "--pwfile", f.name, "--auth-local=trust", "--auth-host=scram-sha-256",
         "-E", "UTF8", "--locale=C.UTF-8"],
        preexec_fn=as_postgres, check=True,
    )
    os.unlink(f.name)
    with open(os.path.join(pgdata, "pg_hba.conf"), "a") as hba:
        hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
    with open(os.path.join(pgdata, "postgresql.auto.conf"), "a") as conf:
        conf.write("listen_addresses = '*'\nfsync = on\nshared_buffers = '256MB'\nmax_wal_size = '2GB'\n")
    if db != "postgres":
        subprocess.run(["postgres", "--single", "-D", pgdata, "postgres"],
                       input=f'CREATE DATABASE "{db}" OWNER "{user}";\n', text=True, preexec_fn=as_postgres,
                       check=True, stdout=subprocess.DEVNULL)

as_postgres()
# `postgres -c k=v …` as the command (Dify's compose file gives one): its settings are kept, as the official
# image's entrypoint does
extra = sys.argv[2:] if sys.argv[1:2] == ["postgres"] else []
os.execvp("postgres", ["postgres", "-D", pgdata, *extra])
