import os
import sys

import pytest

from core.io.commands import Command
from core.io.compose import image_repo, image_tag, parse_ps
from core.errors import CommandFailed, error_line
from core.io.executor import run
from core.cutover.verify import revision_check, services_check
from core.io.http import CheckResult
from core.polling import poll

PS_NDJSON = ('{"Service":"api","Name":"p-api-1","State":"running","Health":"healthy","Image":"r/app:2"}\n'
             '{"Service":"worker","Name":"p-worker-1","State":"running","Health":"","Image":"r/app:2"}\n')


def test_parse_ps_reads_ndjson_and_arrays():
    rows = parse_ps(PS_NDJSON)
    assert [(r.service, r.ok) for r in rows] == [("api", True), ("worker", True)]
    assert parse_ps("[" + PS_NDJSON.strip().replace("\n", ",") + "]") == rows
    assert parse_ps("") == []


def test_services_check_flags_unhealthy_wrong_image_and_orphans():
    rows = parse_ps(PS_NDJSON + '{"Service":"db","Name":"p-db-1","State":"running","Health":"unhealthy","Image":"pg"}')
    result = services_check(rows, ["api", "worker", "db_postgres"], {"api": "r/app:3"})
    assert not result.ok
    assert "db_postgres has no container" in result.detail and "api runs r/app:2, expected r/app:3" in result.detail
    assert "orphans" in result.detail


def test_poll_retries_until_the_probe_passes_or_the_deadline():
    now = [0.0]
    answers = iter([False, False, True])
    result = poll(lambda: CheckResult("x", next(answers), ""), 10, interval=1,
                  clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert result.ok and now[0] == 2
    now[0] = 0.0
    result = poll(lambda: CheckResult("x", False, "down"), 3, interval=1,
                  clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert not result.ok and now[0] == 3


def test_revision_check_and_image_tag():
    assert revision_check(["b"], ["b"]).ok and not revision_check(["a"], ["b"]).ok and not revision_check([], ["b"]).ok
    assert image_tag("127.0.0.1:5000/demo/app:2.0.0") == "2.0.0"
    assert image_tag("127.0.0.1:5000/demo/app@sha256:ab") == "" and image_tag("nginx") == ""
    assert image_repo("127.0.0.1:5000/demo/app:2.0.0") == "127.0.0.1:5000/demo/app"
    assert image_repo("127.0.0.1:5000/demo/app@sha256:ab") == "127.0.0.1:5000/demo/app"
    assert image_repo("nginx:latest") == "nginx" and image_repo("ubuntu/squid") == "ubuntu/squid"


def test_error_line_picks_the_exception_not_the_noise():
    stderr = ("Traceback\n  File \"x.py\", line 1\nsqlalchemy.exc.IntegrityError: (CheckViolation) violated\n"
              "[SQL: ALTER]\n(Background on this error at: https://sqlalche.me/e/14/gkpj)\n")
    assert error_line(stderr) == "sqlalchemy.exc.IntegrityError: (CheckViolation) violated"
    assert error_line(" Container a Waiting\ncontainer p-api-1 is unhealthy\n") == "container p-api-1 is unhealthy"


def test_executor_passes_secrets_by_env_and_scrubs_them_from_errors():
    code = "import os, sys; sys.stderr.write('auth failed for ' + os.environ['PGPASSWORD']); sys.exit(3)"
    with pytest.raises(CommandFailed) as raised:
        run(Command([sys.executable, "-c", code], env={"PGPASSWORD": "hunter2-secret"}))
    assert raised.value.returncode == 3
    assert "hunter2-secret" not in str(raised.value) and "auth failed for ***" in str(raised.value)
    assert run(Command([sys.executable, "-c", "import sys; sys.exit(1)"], ok_codes=(0, 1))).returncode == 1


def test_libpq_messages_lose_every_form_of_password():
    from core.io.db import clean_error

    assert clean_error("bad dsn postgresql://u:hunter2@h:5432/d", None) == "bad dsn postgresql://u:***@h:5432/d"
    assert clean_error("invalid: host=h password='a b\\'c' port=x", None) == "invalid: host=h password=*** port=x"
    assert clean_error("FATAL: hunter2 rejected\nDETAIL: more", "hunter2") == "FATAL: *** rejected"


def test_the_manifest_hashes_every_file_across_threads_and_names_a_changed_one(tmp_path):
    import hashlib

    from core.backup import bundle as bk
    run = tmp_path / "run"
    (run / "app.dump").mkdir(parents=True)
    blobs = {"app.dump/3001.dat.gz": os.urandom(3 << 20), "app.dump/toc.dat": b"toc",
             "volumes.tar.zst": os.urandom(1 << 20),
             "state.json": b"{}", "journal.json": b"live"}
    for name, data in blobs.items():
        (run / name).write_bytes(data)
    manifest = bk.write_manifest(run, threads=3)
    assert manifest["files"] == {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                                 for name, data in blobs.items() if name != "journal.json"}
    assert all((run / name).stat().st_mode & 0o777 == 0o600 for name in manifest["files"])
    assert bk.verify_manifest(run) == []
    (run / "app.dump" / "toc.dat").write_bytes(b"tampered")
    assert bk.verify_manifest(run) == ["app.dump/toc.dat"]
