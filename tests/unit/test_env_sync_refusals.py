"""`./stackshift env-sync` on input that cannot be right: a clear message (file, line, what to do), exit 2, and
nothing on disk changed (every file of the folder hashed before and after). Issue 9, defects 2, 4, 5 and 6."""
import errno
import json
import os
import subprocess

import pytest

from core import envmerge
from tests.unit._env_helpers import CLEAN_ENV, NEW, OLD, operator_env, snapshot, sync, sync_in_process

pytestmark = pytest.mark.tools("docker compose", "chattr")


def refused(tmp_path, env, *extra, old=OLD, new=NEW) -> str:
    """Runs the command, checks it refused and changed nothing under tmp_path; returns its stderr."""
    before = snapshot(tmp_path)
    done = sync(env, *extra, old=old, new=new)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "nothing was written" in done.stderr or "no backup was left behind" in done.stderr
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "env-backup").exists()
    return done.stderr


def dify_env_with(tmp_path, old: str, new: str):
    text = OLD.read_text()
    assert old in text, old
    return operator_env(tmp_path, text.replace(old, new, 1))


# Defect 2: templates that cannot be right.

def test_empty_new_template_is_refused_instead_of_cutting_the_env_down(tmp_path):
    env = operator_env(tmp_path)
    (tmp_path / "empty.example").write_text("")
    err = refused(tmp_path, env, new=tmp_path / "empty.example")
    assert "empty.example: it has no KEY=value line" in err and "new template" in err


def test_empty_old_template_is_refused_instead_of_keeping_every_stale_default(tmp_path):
    env = operator_env(tmp_path)
    (tmp_path / "empty.example").write_text("# nothing but a comment\n")
    err = refused(tmp_path, env, old=tmp_path / "empty.example")
    assert "empty.example: it has no KEY=value line" in err and "old template" in err


@pytest.mark.parametrize("which", ["old", "new"])
def test_template_sharing_almost_no_keys_is_refused_with_what_was_expected(tmp_path, which):
    env = operator_env(tmp_path)
    foreign = tmp_path / "other-app.example"
    foreign.write_text("".join(f"OTHER_APP_{i}=x\n" for i in range(300)) + "LOG_LEVEL=INFO\n")
    err = refused(tmp_path, env, **{which: foreign})
    assert "other-app.example: it shares 1 of its" in err or "it shares 1 of its 680 keys" in err
    assert "two releases of one .env.example share far more" in err


def test_template_foreign_to_the_env_is_refused(tmp_path):
    env = operator_env(tmp_path, "".join(f"OTHER_APP_{i}=x\n" for i in range(40)) + "LOG_LEVEL=INFO\n")
    err = refused(tmp_path, env)
    assert "it defines 1 of the 41 keys of" in err and "the old template of the application the .env belongs to" in err


def test_a_minimal_env_is_not_taken_for_a_foreign_one(tmp_path):
    env = operator_env(tmp_path, "SECRET_KEY=sk-mine-000000\nMY_OWN=1\n")
    done = sync(env, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["user_only"] == 1


# Defect 4: a byte-order mark; and CRLF.

def test_bom_at_the_start_is_dropped_said_and_the_result_is_valid_for_compose(tmp_path):
    env = operator_env(tmp_path, "\ufeff" + OLD.read_text())
    done = sync(env)
    assert done.returncode == 0, done.stderr
    assert "removed the UTF-8 byte-order mark" in done.stdout
    text = env.read_text(encoding="utf-8")
    assert not text.startswith("\ufeff") and "\ufeff" not in text
    assert text == envmerge.merge(envmerge.parse(OLD.read_text()), envmerge.parse(OLD.read_text()),
                                  envmerge.parse(NEW.read_text())).text
    assert envmerge.KEPT_HEADER not in text, "the first key is not moved to the kept section"
    config = subprocess.run(["docker", "compose", "--project-directory", str(tmp_path), "-f",
                             str(OLD.parent / "docker-compose.1.12.1.yaml"), "--env-file", str(env), "config",
                             "--quiet"], capture_output=True, text=True, env=CLEAN_ENV)
    assert config.returncode == 0, config.stderr
    assert sync(env, "--json").stdout.count('"changed": false') == 1


def test_bom_inside_the_file_is_refused_with_its_line(tmp_path):
    env = dify_env_with(tmp_path, "DB_HOST=db\n", "\ufeffDB_HOST=db\n")
    assert "line 186: a byte-order mark (U+FEFF) inside the file" in refused(tmp_path, env)


def test_crlf_env_is_refused_with_the_command_that_converts_it(tmp_path):
    env = operator_env(tmp_path, OLD.read_text().replace("\n", "\r\n"))
    err = refused(tmp_path, env)
    assert f"{env}, line 1: the file has Windows line endings (CRLF)" in err and "sed -i 's/\\r$//'" in err


def test_crlf_template_is_refused_too(tmp_path):
    env = operator_env(tmp_path)
    crlf = tmp_path / "crlf.example"
    crlf.write_bytes(NEW.read_bytes().replace(b"\n", b"\r\n"))
    assert "crlf.example, line 1: the file has Windows line endings" in refused(tmp_path, env, new=crlf)


# Defect 5: the write itself fails.

def test_unwritable_folder_is_an_error_not_a_traceback(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    env = operator_env(folder)
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable flag (and root ignores permission bits)")
    try:
        err = refused(tmp_path, env)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert f"Cannot write {env}: its folder {folder} is not writable" in err


def test_backup_folder_that_cannot_be_made_is_an_error(tmp_path):
    env = operator_env(tmp_path)
    (tmp_path / "env-backup").write_text("a file where the backup folder goes\n")
    before = snapshot(tmp_path)
    done = sync(env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'env-backup'} is not a writable folder" in done.stderr
    assert snapshot(tmp_path) == before


def test_a_write_failing_after_the_backup_leaves_no_backup_behind(tmp_path, monkeypatch):
    from core import envfile

    env = operator_env(tmp_path)
    before = snapshot(tmp_path)

    def disk_full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(envfile, "write_atomic", disk_full)
    code, out, err = sync_in_process(["--env-file", str(env), "--old-template", str(OLD), "--new-template", str(NEW)])
    assert code == 2 and "No space left on device" in err and "no backup was left behind" in err
    assert snapshot(tmp_path) == before and not (tmp_path / "env-backup").exists()


# Defect 6: bare words, swallowing quotes, a directory for a file, deleted keys.

def test_bare_word_is_refused_as_the_readme_says(tmp_path):
    env = dify_env_with(tmp_path, "DB_HOST=db\n", "DB_HOST=db\nFEATURE_X\n")
    err = refused(tmp_path, env)
    assert f"{env}, line 187: `FEATURE_X` has no `=`" in err and "Write `FEATURE_X=`" in err


def test_quote_closed_many_lines_later_is_refused_not_swallowed(tmp_path):
    text = "A=1\nB=\"start of a value\nC=3\nD=4\nE=\"\nF=6\n"
    env = operator_env(tmp_path, text)
    template = tmp_path / "t.example"
    template.write_text("A=1\nB=2\nC=3\nD=4\nE=5\nF=6\n")
    err = refused(tmp_path, env, old=template, new=template)
    assert f"{env}, line 2: the quote opened on this line closes only on line 5, so line 3 (`C=…`)" in err


def test_unclosed_quote_on_a_real_dify_env_names_its_line(tmp_path):
    env = dify_env_with(tmp_path, "CONSOLE_API_URL=\n", 'CONSOLE_API_URL="https://console.example.com\n')
    err = refused(tmp_path, env)
    assert f"{env}, line 13: the quote opened on this line" in err


def test_a_pem_body_in_quotes_is_not_taken_for_swallowed_keys(tmp_path):
    pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU=\nab==\n-----END CERTIFICATE-----"
    text = OLD.read_text() + f'MY_CA_PEM="{pem}"\n'
    done = sync(operator_env(tmp_path, text), "--dry-run")
    assert done.returncode == 0, done.stderr


def test_name_compose_rejects_is_refused(tmp_path):
    env = dify_env_with(tmp_path, "DB_HOST=db\n", "DB_HOST=db\nMY/KEY=1\n")
    assert "line 187: the name 'MY/KEY' holds '/', which compose rejects" in refused(tmp_path, env)


@pytest.mark.parametrize("role", ["env", "old", "new"])
def test_directory_given_as_a_file_says_so(tmp_path, role):
    env = operator_env(tmp_path)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    args = {"env": folder} if role == "env" else {role: folder}
    err = refused(tmp_path, args.pop("env", env), **args)
    assert f"{folder}: the " in err and "is a directory, not a file" in err
    assert "line 0" not in err and "does not exist" not in err


def test_key_the_operator_deleted_stays_deleted_and_is_reported(tmp_path):
    text = OLD.read_text().replace("LOG_LEVEL=INFO\n", "", 1)
    env = operator_env(tmp_path, text)
    first = json.loads(sync(env, "--json").stdout)
    assert first["keys"]["deleted_kept"] == ["LOG_LEVEL"] and "LOG_LEVEL" not in first["keys"].get("added", [])
    assert "LOG_LEVEL" not in envmerge.parse(env.read_text()).values
    assert json.loads(sync(env, "--json").stdout)["changed"] is False


def test_key_the_operator_deleted_comes_back_when_the_target_compose_file_requires_it(tmp_path):
    old, new = tmp_path / "old.example", tmp_path / "new.example"
    old.write_text("A=1\nTOKEN_ISSUER=me\n")
    new.write_text("A=1\nTOKEN_ISSUER=stackshift\n")
    compose = tmp_path / "docker-compose.yaml"
    compose.write_text("services:\n  app:\n    image: busybox\n    environment:\n"
                       "      ISSUER: ${TOKEN_ISSUER:?set TOKEN_ISSUER}\n")
    env = operator_env(tmp_path, "A=1\n")
    plain = json.loads(sync(env, "--json", "--dry-run", old=old, new=new).stdout)
    assert plain["keys"]["deleted_kept"] == ["TOKEN_ISSUER"]
    checked = json.loads(sync(env, "--json", "--compose-file", str(compose), old=old, new=new).stdout)
    assert checked["keys"]["re_added"] == ["TOKEN_ISSUER"]
    assert envmerge.parse(env.read_text()).values["TOKEN_ISSUER"] == "stackshift"
