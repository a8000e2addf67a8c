from pathlib import Path

from core.io import commands as c
P = c.ComposeProject(Path("/srv/app"), (Path("/srv/app/docker-compose.yaml"),), Path("/srv/app/.env"), "app")
BASE = ["docker", "compose", "--project-directory", "/srv/app", "--project-name", "app", "--env-file", "/srv/app/.env",
        "--file", "/srv/app/docker-compose.yaml"]


def test_compose_commands_are_exact_argv_lists():
    assert c.compose_config_json(P) == BASE + ["config", "--format", "json"]
    assert c.compose_ps_json(P) == BASE + ["ps", "--all", "--format", "json"]
    assert c.compose_stop(P, ["api", "worker"]) == BASE + ["stop", "api", "worker"]
    assert c.compose_rm(P, ["db"]) == BASE + ["rm", "--stop", "--force", "db"]
    assert c.compose_up(P, ["db_postgres"], wait_timeout=30, no_deps=True) == BASE + [
        "up", "--detach", "--wait", "--wait-timeout", "30", "--no-deps", "db_postgres"]
    assert c.compose_up(P, remove_orphans=True) == BASE + ["up", "--detach", "--wait", "--wait-timeout", "120",
                                                         "--remove-orphans"]
    assert c.compose_down(P) == BASE + ["down", "--remove-orphans"]


def test_one_off_migration_container_turns_entrypoint_migrations_off():
    argv = c.compose_run_once(P, "api", ["flask", "upgrade-db"], {"MIGRATION_ENABLED": "false"}, "run1")
    assert argv == BASE + ["run", "--rm", "--no-deps", "--no-TTY", "--label", "io.stackshift.stack=app", "--label",
                           "io.stackshift.run=run1", "--env", "MIGRATION_ENABLED=false", "api", "flask", "upgrade-db"]


def test_one_off_migration_can_run_in_place_of_an_entrypoint_that_ignores_its_arguments():
    """Dify's entrypoint starts the server whatever the command (but with MODE=job): the command runs as the
    entrypoint instead, its first word after `--entrypoint`."""
    argv = c.compose_run_once(P, "api", ["flask", "upgrade-db"], {"MIGRATION_ENABLED": "false"}, "run1",
                              replace_entrypoint=True)
    assert argv == BASE + ["run", "--rm", "--no-deps", "--no-TTY", "--label", "io.stackshift.stack=app", "--label",
                           "io.stackshift.run=run1", "--env", "MIGRATION_ENABLED=false", "--entrypoint", "flask", "api",
                           "upgrade-db"]


def test_a_file_at_a_commit_is_read_relative_to_the_compose_folder():
    """Dify's compose folder is `docker/` in its repository: `./` makes git read the path from there."""
    assert c.git_show(Path("/srv/dify/docker"), "abc", ".env.example") == [
        "git", "-C", "/srv/dify/docker", "show", "abc:./.env.example"]


def test_leftover_containers_are_found_by_the_stack_label_and_removed_by_id():
    assert c.docker_ps_labelled(c.STACK_LABEL, "app") == [
        "docker", "container", "ls", "--all", "--quiet", "--no-trunc", "--filter", "label=io.stackshift.stack=app"]
    assert c.docker_rm_force(["a1", "b2"]) == ["docker", "container", "rm", "--force", "--volumes", "a1", "b2"]


def test_pg_and_registry_commands_never_carry_a_password():
    dump = c.pg_dump("127.0.0.1", 5432, "app", "app", Path("/b/app.dump"), jobs=2)
    assert dump == ["pg_dump", "--host", "127.0.0.1", "--port", "5432", "--username", "app", "--no-password",
                    "--format", "directory", "--jobs", "2", "--file", "/b/app.dump", "app"]
    assert c.docker_login("reg:5000", "bot") == ["docker", "login", "--username", "bot", "--password-stdin", "reg:5000"]


def test_git_and_tar_commands():
    assert c.git_rev_parse(Path("/r"), "v2") == ["git", "-C", "/r", "rev-parse", "--verify", "--quiet", "v2^{commit}"]
    assert c.git_checkout(Path("/r"), "abc") == ["git", "-C", "/r", "checkout", "--quiet", "--detach", "abc"]
    assert c.tar_create(Path("/b/v.tar.zst"), Path("/r/volumes"), ["./db/data"]) == [
        "tar", "--create", "--zstd", "--file", "/b/v.tar.zst", "--directory", "/r/volumes",
        "--exclude", "./db/data", "."]
    assert c.docker_run_offline("img:1", ["python3", "/app/tool.py"]) == [
        "docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", "img:1", "/app/tool.py"]
    assert c.docker_run_offline("img:1", ["tool"], stack="app")[4:8] == [
        "none", "--label", "io.stackshift.stack=app", "--entrypoint"]


def test_command_description_names_env_keys_but_not_values():
    cmd = c.Command(["pg_dump", "x"], env={"PGPASSWORD": "s3cret"})
    assert cmd.describe() == "pg_dump x (env: PGPASSWORD)"


def test_a_project_without_an_env_file_leaves_it_to_compose():
    """A stack `init` reads may have no .env: compose is then not told one (it would refuse a missing file)."""
    bare = c.ComposeProject(Path("/srv/app"), (Path("/srv/app/docker-compose.yaml"),), None, "app")
    assert "--env-file" not in bare.base() and "--env-file" in P.base()
