"""A checkout laid out like Dify's (the compose folder is the repository's `docker/`) with the operator's own,
untracked override file (what `stackshift init` asks for when PostgreSQL publishes no port): the target release is
read with that file as it is on disk, and templates are read from the compose folder, not the repository's root."""
import subprocess

import pytest

from core.env import envsync

pytestmark = pytest.mark.tools("git")

RELEASE = "services:\n  api:\n    image: app:{tag}\n    environment:\n      KEY: ${{KEY:?set KEY}}\n"
OVERRIDE = "services:\n  db:\n    ports: ['127.0.0.1:${DB_PORT:?publish it}:5432']\n"


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


@pytest.fixture
def checkout(tmp_path):
    repo, docker = tmp_path / "dify", tmp_path / "dify" / "docker"
    docker.mkdir(parents=True)
    git(repo, "init", "--quiet")
    (repo / ".gitignore").write_text("docker/.env\ndocker/docker-compose.override.yaml\n")
    for tag in ("1.12.1", "1.15.0"):
        (docker / "docker-compose.yaml").write_text(RELEASE.format(tag=tag))
        (docker / ".env.example").write_text(f"KEY=from-{tag}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", tag)
        git(repo, "tag", tag)
    git(repo, "checkout", "--quiet", "1.12.1")
    (docker / "docker-compose.override.yaml").write_text(OVERRIDE)
    return docker


FILES = ["docker-compose.yaml", "docker-compose.override.yaml"]


def test_templates_are_read_from_the_compose_folder(checkout):
    assert envsync.template_at(checkout, "1.15.0", ".env.example") == "KEY=from-1.15.0\n"


def test_the_operators_untracked_override_is_theirs_and_read_from_disk(checkout):
    assert envsync.operator_files(checkout, FILES) == ("docker-compose.override.yaml",)
    assert envsync.required_at(checkout, "1.15.0", FILES) == {"KEY", "DB_PORT"}


def test_the_target_tree_holds_the_release_and_the_operators_override(checkout):
    with envsync.target_tree(checkout, "1.15.0", FILES) as tree:
        release, override = tree.compose_files
        assert "app:1.15.0" in release.read_text()
        assert override.read_text() == OVERRIDE
