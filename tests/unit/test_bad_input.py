"""Bad input and unexpected failures (issue 23, items 3, 4 and 6): for each case the named error, a message that
names the cause and the fix, and nothing changed (every file under the test's folder hashed before and after).

The cases run the real readers (pre-flight's, env-sync's, analyze-migrations', init's, the database's, the revision
graph's, the journals') over real files, real git and the real `docker compose`, with fake engine / server answers
where the fast tier has none (FakeIO, FakeClient, FakeEngine, FAKE_COMPOSE_VERSION); no lab. Some of them run again
through the command (`./stackshift`): exit 2, the error's name on stderr, no traceback, nothing changed."""
from __future__ import annotations

import http.client
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import docker
import psycopg
import pytest
import requests

from cli.main import prefect_failed, unexpected_failure
from core.cutover import inputs, preflight
from core.cutover.journal import JOURNAL, PLAN, Journal, partial_files
from core.env import envmerge
from core.env.composeversion import ComposeFileNotYaml, ComposeTooOld, ComposeVersionUnknown
from core.env.envdoc import EnvParseError
from core.env.envlayout import EnvTemplatesMissing
from core.env.secretgen import MissingRequiredSecret
from core.errors import (BackupDirUnusable, ComposeConfigUnreadable, ComposeDirDirty, ComposeDirMissing,
                         ComposeFilesMissing, DatabaseMissing, DatabaseUnreachable, DiscoveryIncomplete,
                         DockerHostUnreachable, EnvFileEmpty, EnvFileUnusable, ImageMissing, InvalidDsn,
                         JournalUnreadable, MigrationFileUnreadable, MultipleHeads, PasswordMissing,
                         RegistryUnreachable, SeveralDatabaseRevisions, SqlFileUnreadable, TemplateImplausible,
                         UnknownDatabaseRevision, UnknownMigrationService, UnknownRef, UpgradeError)
from core.io import db as dbops
from core.io.compose import ResolvedConfig
from core.migrations.revgraph import RevisionGraph, state
from tests.conftest import DIFY
from tests.unit import _bad_input_makers as more
from tests.unit._env_helpers import operator_env, snapshot, sync_in_process
from tests.unit._settings import settings
from tests.unit.test_env_split_sync import requiring_a_secret
from tests.unit.test_plan import facts as plan_facts
from tests.unit.test_preflight_readers import CONFIG, FakeIO, _checkout
from tests.unit.test_revgraph import rev_file

pytestmark = pytest.mark.tools("git")

RUNNING = [{"Service": "api", "Name": "s-api-1", "State": "running"},
           {"Service": "db", "Name": "s-db-1", "State": "running"}]


@dataclass(frozen=True)
class Case:
    """One bad input: `make(tmp_path)` sets it up and returns the call that must refuse it."""

    id: str
    make: Callable[[Path], Callable[[], object]]
    error: type[UpgradeError]
    cause: str  # the message names the real cause…
    fix: str  # …and what to do
    tools: tuple[str, ...] = ()  # local tools beyond git that the case runs (the `tools` mark)

    def param(self):
        return pytest.param(self, id=self.id, marks=[pytest.mark.tools(*self.tools)] if self.tools else [])


# --- the stack's checkout and its .env, read before compose runs ---------------------------------------------------
def deployed_with(setup: Callable[[Path], None], io: FakeIO | None = None):
    """`read_deployed` over a real checkout that `setup(repo)` breaks; compose must not be asked anything."""
    def make(tmp_path: Path):
        repo = _checkout(tmp_path)
        (repo / ".gitignore").write_text(".env\n")
        subprocess.run(["git", "-C", str(repo), "add", ".gitignore"], check=True)
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i"],
                       check=True)
        (repo / ".env").write_text("LOG_LEVEL=INFO\n")
        setup(repo)
        fake = io or FakeIO(RUNNING, CONFIG)

        def call():
            try:
                return preflight.read_deployed(fake, settings(compose_dir=repo), "HEAD")
            finally:
                assert fake.argvs == [], "compose ran before the bad input was found"
        return call
    return make


def _env(text: bytes):
    def setup(repo: Path):
        (repo / ".env").write_bytes(text)
    return setup


def _env_missing(repo: Path):
    (repo / ".env").unlink()


def _env_dangling(repo: Path):
    (repo / ".env").unlink()
    (repo / ".env").symlink_to(repo / "shared" / ".env")


def _env_directory(repo: Path):
    (repo / ".env").unlink()
    (repo / ".env").mkdir()


def compose_dir(setup: Callable[[Path], Path]):
    def make(tmp_path: Path):
        where = setup(tmp_path)
        return lambda: preflight.read_deployed(FakeIO(RUNNING, CONFIG), settings(compose_dir=where), "v1.0.0")
    return make


def _no_dir(tmp_path: Path) -> Path:
    return tmp_path / "gone"


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "stack").write_text("not a folder")
    return tmp_path / "stack"


def _not_git(tmp_path: Path) -> Path:
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "docker-compose.yaml").write_text("services: {}\n")
    return tmp_path / "stack"


def _no_commit(tmp_path: Path) -> Path:
    where = _not_git(tmp_path)
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    return where


def _git_removed(tmp_path: Path) -> Path:
    repo = _checkout(tmp_path)
    subprocess.run(["rm", "-rf", str(repo / ".git")], check=True)
    return repo


# --- the backup folder ----------------------------------------------------------------------------------------
def backup_dir_below_a_file(tmp_path: Path):
    (tmp_path / "backups").write_text("a file where a folder should be")
    return lambda: inputs.check_backup_dir(tmp_path / "backups" / "stack")


def backup_dir_read_only(tmp_path: Path):
    (tmp_path / "backups").mkdir()

    def call():
        real = inputs.os.access
        inputs.os.access = lambda path, mode: False  # root passes permissions: a read-only mount's answer, faked
        try:
            inputs.check_backup_dir(tmp_path / "backups")
        finally:
            inputs.os.access = real
    return call


# --- the target's images and the migration service ----------------------------------------------------------------
class FakeImages:
    """The SDK's `images`: `get_registry_data` answers from `answers` (image → exception, or absent = found)."""

    def __init__(self, answers: dict[str, Exception]):
        self.answers, self.asked = answers, []

    def get_registry_data(self, image, auth_config=None):
        self.asked.append(image)
        if image in self.answers:
            raise self.answers[image]


class FakeClient:
    def __init__(self, answers: dict[str, Exception]):
        self.images = FakeImages(answers)


def api_error(status: int | None, explanation: str) -> docker.errors.APIError:
    response = None
    if status is not None:
        response = requests.Response()
        response.status_code = status
    return docker.errors.APIError(explanation, response=response, explanation=explanation)


TARGET = ResolvedConfig({"services": {"api": {"image": "127.0.0.1:5000/demo/app:2.0.0"},
                                      "worker": {"image": "127.0.0.1:5000/demo/app:2.0.0"},
                                      "db": {"image": "postgres:15"}}})


def target_images(answers: dict[str, Exception], **fields):
    def make(tmp_path: Path):
        client = FakeClient(answers)
        io = FakeIO([], {})

        def call():
            try:
                return preflight.read_target_images(io, client, settings(**fields), TARGET, None)
            finally:
                assert io.argvs == [], "nothing pulled nor logged in before the images were known to exist"
        return call
    return make


def unknown_service(tmp_path: Path):
    client = FakeClient({})

    def call():
        try:
            return preflight.read_target_images(FakeIO([], {}), client, settings(migrate_service="nosuchsvc"),
                                                TARGET, None)
        finally:
            assert client.images.asked == [], "refused before any registry call"
    return call


# --- the database -----------------------------------------------------------------------------------------------
def database_answers(message: str):
    def make(tmp_path: Path):
        def refuse(**kw):
            raise psycopg.OperationalError(message)

        def call():
            original = psycopg.connect
            psycopg.connect = refuse
            try:
                return dbops.DbAccess.of(settings(db_name="nosuch")).connect("nosuch")
            finally:
                psycopg.connect = original
        return call
    return make


# --- the database's alembic_version rows ------------------------------------------------------------------------
GRAPH = {"r1_base.py": rev_file("r1", None), "r2_a.py": rev_file("r2", "r1"), "r3_b.py": rev_file("r3", "r2")}
BRANCHED = {"r1_base.py": rev_file("r1", None), "r2_a.py": rev_file("r2", "r1"), "r3_b.py": rev_file("r3", "r1"),
            "r4_merge.py": rev_file("r4", ["r2", "r3"])}


def rows(sources: dict[str, str], revisions: list[str], sql_range: bool = False):
    def make(tmp_path: Path):
        def call():
            found = state(RevisionGraph.from_sources(sources), revisions)
            return found.sql_range if sql_range else found
        return call
    return make


# --- env-sync of an empty .env ----------------------------------------------------------------------------------
def env_sync_of(text: str):
    """What `env-sync` does first with the operator's .env: read, parse, refuse it if it has no KEY=value line."""
    def make(tmp_path: Path):
        env = operator_env(tmp_path, text)
        return lambda: envmerge.check_env(envmerge.parse(envmerge.read_env_file(env), str(env)))
    return make


CASES = [
    Case("env-missing", deployed_with(_env_missing), EnvFileUnusable, "does not exist", "Restore it"),
    Case("env-dangling-symlink", deployed_with(_env_dangling), EnvFileUnusable, "is a symlink to",
         "Point the link at the file"),
    Case("env-a-directory", deployed_with(_env_directory), EnvFileUnusable, "is a directory", "Give the path"),
    Case("env-unclosed-quote", deployed_with(_env(b"A=1\nSECRET_KEY='abc\nB=2\n")), EnvFileUnusable, "line 2",
         "Close the quote"),
    Case("env-not-utf8", deployed_with(_env(b"A=1\nB=\xff\xfe\n")), EnvFileUnusable, "not UTF-8", "Save it as UTF-8"),
    Case("env-crlf", deployed_with(_env(b"A=1\r\nB=2\r\n")), EnvFileUnusable, "Windows line endings", "Restore it"),
    Case("env-binary", deployed_with(_env(b"A=1\n\x00\x01\n")), EnvFileUnusable, "binary", "Restore it"),
    Case("env-bare-name", deployed_with(_env(b"A=1\nJUSTANAME\n")), EnvFileUnusable, "has no `=`", "Restore it"),
    Case("compose-dir-missing", compose_dir(_no_dir), ComposeDirMissing, "does not exist", "Fix the block's"),
    Case("compose-dir-a-file", compose_dir(_a_file), ComposeDirMissing, "is not a directory", "compose_dir"),
    Case("compose-dir-not-git", compose_dir(_not_git), ComposeDirMissing, "is not a git checkout", "git clone"),
    Case("compose-dir-no-commit", compose_dir(_no_commit), ComposeDirMissing, "is not a git checkout", "git clone"),
    Case("compose-dir-git-deleted", compose_dir(_git_removed), ComposeDirMissing, "is not a git checkout",
         "restore the checkout"),
    Case("backup-dir-below-a-file", backup_dir_below_a_file, BackupDirUnusable, "is a file, not a folder",
         "Point the block's backup_dir"),
    Case("backup-dir-read-only", backup_dir_read_only, BackupDirUnusable, "is not writable",
         "backup_dir at a writable"),
    Case("migration-service-unknown", unknown_service, UnknownMigrationService, "'nosuchsvc' is not a service",
         "Set migration.service"),
    Case("registry-unreachable", target_images({"127.0.0.1:5000/demo/app:2.0.0": api_error(
        500, "Get https://127.0.0.1:5000/v2/: dial tcp 127.0.0.1:5000: connect: connection refused")}),
        RegistryUnreachable, "connection refused", "Check that the registry runs"),
    Case("registry-no-answer", target_images({"postgres:15": api_error(None, "read timeout")}),
         RegistryUnreachable, "read timeout", "Check that the registry runs"),
    Case("image-missing", target_images({"127.0.0.1:5000/demo/app:2.0.0": api_error(404, "manifest unknown")}),
         ImageMissing, "127.0.0.1:5000/demo/app:2.0.0", "Push them"),
    Case("image-access-denied", target_images({"postgres:15": api_error(401, "pull access denied")}),
         ImageMissing, "postgres:15", "fix the tag"),
    Case("database-missing", database_answers(
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "nosuch" does not '
        'exist'), DatabaseMissing, "no database 'nosuch'", "Check the block's database name"),
    Case("database-unreachable", database_answers(
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused'),
        DatabaseUnreachable, "Connection refused", "database service is running"),
    Case("alembic-rows-on-one-branch", rows(GRAPH, ["r1", "r2"]), SeveralDatabaseRevisions, "on one branch",
         "delete the other row"),
    Case("alembic-row-twice", rows(GRAPH, ["r2", "r2"]), SeveralDatabaseRevisions, "the same revision twice",
         "delete the other row"),
    Case("alembic-rows-unmerged", rows(BRANCHED, ["r2", "r3"], sql_range=True), SeveralDatabaseRevisions,
         "branches are not merged", "alembic upgrade <merge>"),
    Case("env-sync-empty-env", env_sync_of(""), EnvFileEmpty, "it is empty (0 bytes)", "--allow-empty-env"),
    Case("env-sync-comments-only-env", env_sync_of("# LOG_LEVEL=INFO\n\n"), EnvFileEmpty,
         "it has no KEY=value line", "Restore it from its backup"),
]
# --- env-sync against the target's compose file (the real `docker compose`, or one reporting an old version) ----
COMPOSE = ("docker compose",)
CASES += [
    Case("env-sync-compose-2.20.3-too-old", more.env_sync(compose_version='{"version":"v2.20.3"}'), ComposeTooOld,
         "needs Docker Compose 2.24.0 or later (the long `env_file` form", "Upgrade the Docker Compose plugin",
         COMPOSE),
    Case("env-sync-compose-2.23.0-too-old", more.env_sync(compose_version='{"version":"2.23.0"}'), ComposeTooOld,
         "the installed one is 2.23.0", "Upgrade the Docker Compose plugin to 2.24.0 or later", COMPOSE),
    Case("env-sync-compose-version-unknown", more.env_sync(compose_version='{"version":"dev"}'),
         ComposeVersionUnknown, "printed no version", "Check the Docker Compose plugin", COMPOSE),
    Case("env-sync-compose-file-not-yaml", more.env_sync(more.write("docker-compose.yaml", "services:\n  api: [a\n")),
         ComposeFileNotYaml, "is not valid YAML", "Fix the compose file"),
    Case("env-sync-required-secret-left-empty", more.env_sync(requiring_a_secret), MissingRequiredSecret,
         f"requires {more.REQUIRED_SECRET}, a secret the merged file leaves empty", "--generate-missing-secrets",
         COMPOSE),
    Case("env-sync-envs-template-missing", more.env_sync(more.remove("envs/core-services/api.env.example")),
         EnvTemplatesMissing, "envs/core-services/api.env.example", "git checkout -- envs", COMPOSE),
    Case("env-sync-envs-template-unparsable", more.env_sync(more.write("envs/core-services/api.env.example",
                                                                       "A=1\nB='open\n")),
         EnvParseError, "api.env.example, line 2", "Close the quote", COMPOSE),
    Case("env-sync-new-template-empty", more.env_sync(more.write(".env.example", "# nothing\n")),
         TemplateImplausible, "it has no KEY=value line", "Check that you gave the right template"),
    Case("env-sync-new-template-foreign", more.env_sync(more.foreign_template), TemplateImplausible,
         "it shares 0 of its 40 keys with the old template", "Check that you gave the right template"),
    Case("env-sync-new-template-missing", more.env_sync(more.remove(".env.example")), EnvParseError,
         "the new template does not exist", "Check the path"),
    Case("env-sync-old-template-empty", more.env_sync(old=Path("/dev/null")), TemplateImplausible,
         "it has no KEY=value line", "the old template is the application's .env.example"),
]
# --- analyze-migrations, init, the checkout, the revision files, the journals -------------------------------------
REV = {"r1_base.py": rev_file("r1", None), "r2_a.py": rev_file("r2", "r1")}
CASES += [
    Case("analyze-sql-missing", more.analyze(more.no_sql_file), SqlFileUnreadable, "No such file or directory",
         "alembic upgrade FROM:TO --sql"),
    Case("analyze-sql-not-utf8", more.analyze(more.sql_file(b"ALTER TABLE t ADD c int; -- \xff\xfe\n")),
         SqlFileUnreadable, "not UTF-8", "Give a UTF-8 file of SQL"),
    Case("analyze-dsn-invalid", more.analyze(more.sql_file(b"SELECT 1;\n"), "--dsn", "host=db port"), InvalidDsn,
         "missing \"=\" after \"port\"", "postgresql://user@host:port/dbname"),
    Case("analyze-dsn-nobody-listens", more.analyze(more.sql_file(b"SELECT 1;\n"), "--dsn",
                                                    "postgresql://app@127.0.0.1:9/app"), DatabaseUnreachable,
         "Connection refused", "database service is running"),
    Case("init-no-compose-file", more.init_reads({".env": "A=1\n"}), ComposeFilesMissing,
         "No compose file in", "Point init at the folder"),
    Case("init-compose-refuses-the-file", more.init_reads({
        "compose.yaml": "services:\n  api:\n    image: ${IMAGE:?set IMAGE in .env}\n", ".env": "A=1\n"}),
         ComposeConfigUnreadable, "set IMAGE in .env", "Fix the compose file or .env", COMPOSE),
    Case("init-no-docker-engine", more.init_reads({"compose.yaml": "services: {}\n"}, engine=False),
         DockerHostUnreachable, "no-engine.sock", "that dockerd is running there"),
    Case("init-db-port-unpublished", more.init_proposes((DIFY / "docker-compose.1.12.1.yaml").read_text(),
                                                        (DIFY / "env.example.1.12.1").read_text()),
         DiscoveryIncomplete, "publish it on loopback", "write the block by hand", COMPOSE),
    Case("init-no-password", more.init_proposes(*more.demo_without_password()), PasswordMissing,
         "has no POSTGRES_PASSWORD", "Set STACKSHIFT_DB_PASSWORD", COMPOSE),
    Case("target-ref-unknown", more.checkout_read("v9.9.9"), UnknownRef, "'v9.9.9' is not a commit, tag or branch",
         "fetch --tags"),
    Case("compose-dir-dirty", more.checkout_read("v1.0.0", more.edit_compose_file), ComposeDirDirty,
         "local changes (docker-compose.yaml)", "Commit them on a branch"),
    Case("migration-file-syntax-error", more.revision_files(REV | {"r3_b.py": "revision = 'r3'\ndef upgrade(:\n"}),
         MigrationFileUnreadable, "r3_b.py: line 2", "Fix the file in the release"),
    Case("migration-parent-missing", more.revision_files(REV | {"r3_b.py": rev_file("r3", "r9")}),
         MigrationFileUnreadable, "names r9 as its parent", "Fix the file in the release"),
    Case("migration-two-heads", more.revision_files(REV | {"r3_b.py": rev_file("r3", "r1")}, ["r1"]), MultipleHeads,
         "2 heads (r2, r3)", "alembic merge"),
    Case("database-ahead-of-target", more.revision_files(REV, ["r7"]), UnknownDatabaseRevision,
         "at revision(s) r7", "restore the matching backup"),
    Case("journal-truncated", more.journal_reads('{"run": "r1", "status": "runn'), JournalUnreadable,
         "JSONDecodeError", 'set its "status" to "abandoned"'),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input_is_refused_by_name_with_cause_and_fix_and_nothing_changes(tmp_path, case):
    call = case.make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(case.error) as caught:
        call()
    message = str(caught.value)
    assert type(caught.value) is case.error, f"{type(caught.value).__name__}: {message}"
    assert case.cause in message, message
    assert case.fix in message, message
    assert snapshot(tmp_path) == before


# --- the same bad input through the command, as an operator runs it ---------------------------------------------
def _env_sync_cli(setup=lambda docker: None, **kw):
    return lambda tmp_path: more.env_sync_argv(tmp_path, setup, **kw)


def _analyze_cli(setup, *extra):
    return lambda tmp_path: (more.analyze_argv(tmp_path, setup, *extra), os.environ["PATH"])


def _init_cli(tmp_path):
    (tmp_path / "stack").mkdir()
    return ["init", str(tmp_path / "stack")], os.environ["PATH"]


CLI_CASES = [  # (case id, argv and PATH, the error's name)
    ("env-sync-compose-2.20.3-too-old", _env_sync_cli(compose_version='{"version":"v2.20.3"}'), ComposeTooOld),
    ("env-sync-compose-version-unknown", _env_sync_cli(compose_version='{"version":"dev"}'), ComposeVersionUnknown),
    ("env-sync-compose-file-not-yaml", _env_sync_cli(more.write("docker-compose.yaml", "services:\n  api: [a\n")),
     ComposeFileNotYaml),
    ("env-sync-required-secret-left-empty", _env_sync_cli(requiring_a_secret), MissingRequiredSecret),
    ("env-sync-envs-template-missing", _env_sync_cli(more.remove("envs/core-services/api.env.example")),
     EnvTemplatesMissing),
    ("env-sync-new-template-foreign", _env_sync_cli(more.foreign_template), TemplateImplausible),
    ("analyze-sql-not-utf8", _analyze_cli(more.sql_file(b"SELECT 1; -- \xff\n")), SqlFileUnreadable),
    ("analyze-dsn-invalid", _analyze_cli(more.sql_file(b"SELECT 1;\n"), "--dsn", "host=db port"), InvalidDsn),
    ("init-no-docker-engine", _init_cli, DockerHostUnreachable),
]


@pytest.mark.tools("docker compose")
@pytest.mark.parametrize(("argv_of", "error"), [pytest.param(a, e, id=i) for i, a, e in CLI_CASES])
def test_the_command_refuses_it_by_name_with_exit_2_no_traceback_and_nothing_changes(tmp_path, argv_of, error):
    from tests.conftest import ROOT
    from tests.unit._env_helpers import CLEAN_ENV
    argv, path = argv_of(tmp_path)
    before = snapshot(tmp_path)
    done = subprocess.run([str(ROOT / "stackshift"), *argv], check=False, capture_output=True, text=True,
                          env={k: v for k, v in CLEAN_ENV.items() if k != more.REQUIRED_SECRET}
                          | {"PATH": path, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"{error.__name__}: " in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert snapshot(tmp_path) == before


def test_each_command_case_is_a_case():
    assert {i for i, _, _ in CLI_CASES} <= {c.id for c in CASES}


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40  # noqa: PLR2004 (the issue's bar)


def test_a_good_env_gets_past_the_checks_to_compose(tmp_path):
    call = deployed_with(lambda repo: None)(tmp_path)
    with pytest.raises(AssertionError, match="compose ran"):
        call()


@pytest.mark.parametrize("text", ["", "# LOG_LEVEL=INFO\n\n"], ids=["0-bytes", "comments-only"])
def test_env_sync_refuses_an_empty_env_with_exit_2_and_writes_nothing(tmp_path, text):
    from tests.unit._env_helpers import NEW, OLD
    env = operator_env(tmp_path, text)
    before = snapshot(tmp_path)
    code, out, err = sync_in_process(["--env-file", str(env), "--old-template", str(OLD), "--new-template", str(NEW)])
    assert code == 2 and "Traceback" not in err and out == ""
    assert "looks like a truncated or emptied file" in err and "--allow-empty-env" in err
    assert "nothing was written" in err
    assert snapshot(tmp_path) == before


def test_an_empty_env_merges_when_told_it_is_intentional(tmp_path):
    from tests.unit._env_helpers import NEW, OLD
    env = operator_env(tmp_path, "")
    code, out, err = sync_in_process(["--env-file", str(env), "--old-template", str(OLD), "--new-template", str(NEW),
                                      "--allow-empty-env", "--dry-run"])
    assert code == 0, err
    assert "would write" in out


# --- item 3: the CLI's catch-all -----------------------------------------------------------------------------------
def _journal(run_dir: Path, status: str = "running", steps: tuple = (("dump-app", "backup", "failed"),)) -> Journal:
    from core.cutover.journal import StepRecord
    run_dir.mkdir(parents=True)
    j = Journal(path=run_dir / JOURNAL, run="r1", environment="staging", project="stack",
                target={"ref": "v2.0.0"}, previous={}, rollback_points={})
    j.steps = [StepRecord(i, p, s, time.time()) for i, p, s in steps]
    j.status = status
    j.save()
    return j


def test_an_unexpected_error_is_reported_as_what_it_is_with_the_step_and_the_open_journal(tmp_path):
    started = time.time()
    _journal(tmp_path / "20260101T000000Z-r1")
    err = OSError(28, "No space left on device")
    text = unexpected_failure("staging", err, started, prefect_up=True, project_dir=tmp_path)
    assert "failed with OSError: [Errno 28] No space left on device" in text
    assert "backup step 'dump-app' (failed)" in text and "still open" in text
    assert "./stackshift recover -e staging" in text and "free disk" in text
    assert "Prefect" not in text


def test_an_unexpected_error_after_the_run_closed_says_how_it_ended(tmp_path):
    started = time.time()
    j = _journal(tmp_path / "20260101T000000Z-r1", status="abandoned")
    j.outcome = "stopped before the cutover, nothing changed"
    j.save()
    text = unexpected_failure("staging", KeyError("nosuchsvc"), started, prefect_up=True, project_dir=tmp_path)
    assert "failed with KeyError: 'nosuchsvc'" in text and "ended abandoned: stopped before the cutover" in text


def test_an_unexpected_error_in_pre_flight_says_nothing_changed_and_ignores_older_runs(tmp_path):
    old = _journal(tmp_path / "20250101T000000Z-r0")
    os.utime(old.path.parent, (1, 1))
    text = unexpected_failure("staging", ValueError("bad"), time.time(), prefect_up=True, project_dir=tmp_path)
    assert "failed with ValueError: bad" in text and "nothing of the stack changed" in text


def test_the_prefect_message_only_when_prefect_failed(tmp_path):
    import httpx
    down = httpx.ConnectError("All connection attempts failed")
    assert prefect_failed(down) and not prefect_failed(OSError("disk"))
    assert "could not be recorded in Prefect" in unexpected_failure("staging", down, 0, True, tmp_path)
    assert "could not be recorded in Prefect" in unexpected_failure("staging", OSError("x"), 0, False, tmp_path)
    assert "could not be recorded in Prefect" not in unexpected_failure("staging", OSError("x"), 0, True, tmp_path)
    assert not prefect_failed(http.client.IncompleteRead(b""))


def test_a_backup_cut_short_is_partial_a_whole_one_is_kept(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in (JOURNAL, PLAN, "env.merged", ".journal.json.x1.tmp"):
        (run / name).write_text("{}")
    (run / "app.dump").mkdir()
    assert [p.name for p in partial_files(run, backup_whole=True)] == [".journal.json.x1.tmp"]
    assert sorted(p.name for p in partial_files(run, backup_whole=False)) == [
        ".journal.json.x1.tmp", "app.dump", "env.merged"]
    assert partial_files(tmp_path / "none", False) == []


# --- item 4: nothing to do is a no-op -----------------------------------------------------------------------------
def at_target(**over):
    """Facts of a stack already at its target: same commit, the target's images running, at its head."""
    same = dict(current_commit="b" * 40, target_commit="b" * 40, running_services=["api", "db", "worker"],
                target_services=["api", "db", "worker"],
                current_images={s: {"image": i, "id": "sha256:1", "repo_digests": [f"r/{s}@sha256:{s}"]}
                                for s, i in (("api", "r/app:2"), ("worker", "r/app:2"), ("db", "r/pg:15"))},
                target_images={"api": "r/app:2", "worker": "r/app:2", "db": "r/pg:15"},
                db_revision=["r2"], target_heads=["r2"], pending_revisions=[], render_sql_command=[])
    return plan_facts(**(same | over))


def test_a_stack_at_its_target_has_nothing_to_do():
    assert at_target().differences() == []
    pinned = at_target(target_images={"api": "r/api@sha256:api", "worker": "r/app:2", "db": "r/pg:15"})
    assert pinned.differences() == [], "a pinned digest the running image has is the same image"


@pytest.mark.parametrize(("over", "named"), [
    ({"current_commit": "a" * 40}, "commit aaaaaaaaaaaa → bbbbbbbbbbbb"),
    ({"target_images": {"api": "r/app:3", "worker": "r/app:2", "db": "r/pg:15"}},
     "api runs r/app:2, the target r/app:3"),
    ({"running_services": ["api", "db"]}, "worker does not run"),
    ({"target_services": ["api", "db"], "target_images": {"api": "r/app:2", "db": "r/pg:15"}},
     "worker is not in the target"),
    ({"db_revision": ["r1"], "pending_revisions": ["r2"]}, "database at r1, the target's head r2"),
    ({"db_revision": []}, "database at no revision"),
])
def test_anything_that_differs_is_named(over, named):
    assert any(named in d for d in at_target(**over).differences()), at_target(**over).differences()


def test_an_env_the_merge_would_change_is_a_difference():
    f = at_target()
    changed = replace(f, env_sync=replace(f.env_sync, sha256="1" * 64, source_sha256="2" * 64))
    assert changed.differences() == ["the merged .env differs from the one in place"]
    same = replace(f, env_sync=replace(f.env_sync, sha256="1" * 64, source_sha256="1" * 64))
    assert same.differences() == []


def test_the_upgrade_flow_ends_at_once_when_already_at_the_target_unless_forced():
    import inspect

    from flows import upgrade as flow_module
    assert inspect.signature(flow_module.upgrade.fn).parameters["force"].default is False
    result = flow_module.already_at(at_target(), [])
    assert result["already_at"] == "v2" and result["changed"] is False
    # decided right after pre-flight: before the migration analysis, the backup and any stop
    source = inspect.getsource(flow_module.run_upgrade) + inspect.getsource(flow_module._apply)
    assert source.index("plan_upgrade(") < source.index("differences()") < source.index("analyze_migrations(") \
        < source.index("open_run(")


def test_the_cli_offers_force():
    from cli.main import parser
    assert parser().parse_args(["upgrade", "-e", "s", "-t", "v1", "--force"]).force is True
    assert parser().parse_args(["upgrade", "-e", "s", "-t", "v1"]).force is False
    assert not hasattr(parser().parse_args(["plan", "-e", "s", "-t", "v1"]), "force") or \
        parser().parse_args(["plan", "-e", "s", "-t", "v1"]).force is False


# --- item 3: a run abandoned on a full disk ----------------------------------------------------------------------
def _full_disk_until(run_dir: Path, monkeypatch, freed_by: str | None):
    """Writing any file fails with ENOSPC while `run_dir / freed_by` exists (always, if None)."""
    import errno

    from core import files
    real = files.write_atomic

    def write_atomic(path, data, **kw):
        if freed_by is None or (run_dir / freed_by).exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, **kw)
    monkeypatch.setattr(files, "write_atomic", write_atomic)


def _abandon(run_dir: Path):
    from types import SimpleNamespace

    from flows import runbook
    j = Journal.load(run_dir / JOURNAL)
    plan = SimpleNamespace(backup=[SimpleNamespace(id="dump-app"), SimpleNamespace(id="archive-volumes")], finish=[])
    runbook.abandon(plan, SimpleNamespace(journal=j), OSError(28, "No space left on device"))
    return Journal.load(run_dir / JOURNAL)


def test_a_backup_cut_short_by_a_full_disk_is_removed_and_the_journal_closed(tmp_path, monkeypatch):
    run = tmp_path / "20260101T000000Z-r1"
    _journal(run, steps=(("dump-app", "backup", "failed"),))
    (run / PLAN).write_text("{}")
    (run / "app.dump").mkdir()
    (run / "app.dump" / "toc.dat").write_bytes(b"x" * 1000)
    (run / ".journal.json.abc.tmp").write_text("")
    _full_disk_until(run, monkeypatch, freed_by="app.dump")
    j = _abandon(run)
    assert j.status == "abandoned"
    assert "failed during 'dump-app' with OSError: [Errno 28] No space left on device" in j.outcome
    assert "removed the backup cut short" in j.outcome and "interrupted" not in j.outcome
    assert sorted(p.name for p in run.iterdir()) == [JOURNAL, PLAN]


def test_a_journal_that_cannot_be_written_at_all_does_not_hide_the_cause(tmp_path, monkeypatch, caplog):
    run = tmp_path / "20260101T000000Z-r1"
    _journal(run, steps=(("dump-app", "backup", "failed"),))
    (run / "app.dump").mkdir()
    _full_disk_until(run, monkeypatch, freed_by=None)
    j = _abandon(run)  # does not raise: the flow re-raises the cause
    assert j.status == "running" and not (run / "app.dump").exists()
    assert "recover` closes it" in caplog.text


def test_a_whole_backup_is_kept_when_a_later_step_fails(tmp_path):
    run = tmp_path / "20260101T000000Z-r1"
    _journal(run, steps=(("dump-app", "backup", "done"), ("archive-volumes", "backup", "done")))
    (run / "app.dump").mkdir()
    j = _abandon(run)
    assert j.status == "abandoned" and (run / "app.dump").is_dir() and "removed" not in j.outcome
