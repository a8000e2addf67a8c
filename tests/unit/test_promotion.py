"""Promotion's plain parts: the host check, the newest release, pinning by digest, the fingerprint, the form."""
import pytest
from pydantic import ValidationError

from core import hosts, promotion
from core.io import compose
from core.errors import PinnedImageMismatch, WrongHost
from core.cutover.plan import build_plan
from core.env.envsync import EnvSyncResult
from tests.unit.test_plan import facts

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def env(rows: list[dict]) -> EnvSyncResult:
    """Pre-flight's env result with these (masked) rows."""
    return EnvSyncResult(rows, {})


class Cfg:
    def __init__(self, host):
        self.host = host


def test_a_flow_refuses_another_environments_host_and_names_both():
    hosts.check_host(None, "prod", here="staging")  # unset: any host
    hosts.check_host("prod", "prod", here="prod")
    with pytest.raises(WrongHost) as e:
        hosts.check_host("prod", "prod", here="staging")
    assert "'prod'" in str(e.value) and "'staging'" in str(e.value) and "stackshift-prod" in str(e.value)


def test_this_host_is_the_workers_name_else_the_hostname(monkeypatch):
    import socket

    monkeypatch.setenv(hosts.HOST_VAR, "prod")
    assert hosts.this_host() == "prod"
    monkeypatch.delenv(hosts.HOST_VAR)
    assert hosts.this_host() == socket.gethostname()


def test_releases_are_ordered_by_version_not_text_and_a_prerelease_is_none():
    tags = ["v1.0.0", "v10.0.0", "v2.0.0", "v3.0.0-unhealthy", "v9.9.9-rc1", "latest", "v2.10.1", "v2.9.9"]
    assert promotion.releases_newest_first(tags) == ["v10.0.0", "v2.10.1", "v2.9.9", "v2.0.0", "v1.0.0"]
    assert promotion.releases_newest_first(["main", "nightly"]) == []


def test_pins_keep_the_tag_and_take_the_digest_and_refuse_what_does_not_fit():
    images = {"api": "r:5000/demo/app:2.0.0", "db_postgres": "r:5000/demo/postgres:15"}
    pins = {"api": f"r:5000/demo/app@{D1}", "db_postgres": f"r:5000/demo/postgres@{D2}"}
    assert compose.apply_pins(images, pins) == {"api": f"r:5000/demo/app:2.0.0@{D1}",
                                                  "db_postgres": f"r:5000/demo/postgres:15@{D2}"}
    assert compose.apply_pins(images, {}) == images
    for bad, finding in [({"api": pins["api"]}, "db_postgres has no pinned digest"),
                         (pins | {"api": f"r:5000/other/app@{D1}"}, "pinned r:5000/other/app"),
                         (pins | {"api": "r:5000/demo/app:2.0.0"}, "not pinned by digest"),
                         (pins | {"worker": f"r:5000/demo/app@{D1}"}, "worker are not in the release")]:
        with pytest.raises(PinnedImageMismatch, match=finding):
            compose.apply_pins(images, bad)


def test_a_pinned_image_is_pulled_by_digest_and_its_tag_pointed_at_it():
    assert compose.tag_of_pinned(f"r:5000/demo/app:2.0.0@{D1}") == (f"r:5000/demo/app@{D1}", "r:5000/demo/app:2.0.0")
    assert compose.tag_of_pinned("r:5000/demo/app:2.0.0") is None
    assert compose.tag_of_pinned(f"r:5000/demo/app@{D1}") is None


def test_a_pinned_plan_verifies_the_running_digests():
    pinned = facts(target_images={"api": f"r/app:2@{D1}", "worker": f"r/app:2@{D1}", "db_postgres": f"r/pg:15@{D2}"})
    plan = build_plan(pinned, "run1")
    assert [s.id for s in plan.verify] == ["remove-retired", "verify", "verify-digests"]
    assert plan.verify[-1].digests == (("api", f"r/app@{D1}"), ("db_postgres", f"r/pg@{D2}"), ("worker", f"r/app@{D1}"))
    assert [s.id for s in build_plan(facts(), "run1").verify] == ["remove-retired", "verify"]


class FakeEngine:
    """A stand-in for the Docker engine (the fast tier has none), answering as the SDK does for a Dify-shaped
    project: `api` running (and an older, exited container of it), the one-shot job `init_permissions` exited 0,
    and a `compose run` one-off. `containers.list` without `all` leaves out stopped containers, as the engine does."""

    IMAGES = {"sha256:api1": ("r/app:1", [f"r/app@{D2}"]), "sha256:api2": ("r/app:2", [f"r/app@{D1}"]),
              "sha256:bb": ("r/busybox:latest", [f"r/busybox@{D2}"])}
    CONTAINERS = [  # id, service, state, created, image id
        ("old-api", "api", "exited", 1, "sha256:api1"), ("api", "api", "running", 2, "sha256:api2"),
        ("job", "init_permissions", "exited", 2, "sha256:bb"), ("run", "api", "running", 3, "sha256:api1")]

    def __init__(self):
        from types import SimpleNamespace as NS

        def labels(cid, service):
            return {"com.docker.compose.service": service} | (
                {"com.docker.compose.oneoff": "True"} if cid == "run" else {})

        self.listed = [{"Id": cid, "State": state, "Created": created, "Labels": labels(cid, service),
                        "Image": self.IMAGES[image][0], "ImageID": image}
                       for cid, service, state, created, image in self.CONTAINERS]
        by_id = {c["Id"]: NS(id=c["Id"], labels=c["Labels"], status=c["State"],
                             attrs={"Config": {"Image": c["Image"]}, "Image": c["ImageID"]}) for c in self.listed}
        self.api = NS(containers=lambda all=False, filters=None: [c for c in self.listed
                                                                   if all or c["State"] == "running"])
        self.containers = NS(get=by_id.__getitem__, list=lambda all=False, filters=None: [
            by_id[c["Id"]] for c in self.api.containers(all=all)])
        self.images = NS(get=lambda i: NS(id=i, attrs={"RepoDigests": self.IMAGES[i][1]}))


def test_the_verified_digests_include_a_one_shot_jobs_image_and_each_services_running_container():
    """A promotion pins every service of the release, Dify's one-shot `init_permissions` too: staging's verified
    digests must hold the image its exited container ran (else prod's plan is refused: "no pinned digest")."""
    from core.io.engine import current_images

    assert promotion.verified_digests(current_images(FakeEngine(), "stack")) == {
        "api": f"r/app@{D1}", "init_permissions": f"r/busybox@{D2}"}


def test_the_fingerprint_covers_state_target_and_env_diff_not_the_run():
    row = {"key": "LOG_LEVEL", "change": "default_moved", "old": "INFO", "new": "WARNING", "note": ""}
    base = facts(env_sync=env([row]))
    fp = promotion.fingerprint(base)
    assert fp == promotion.fingerprint(facts(env_sync=env([row]), run_dir=base.run.dir.parent / "other", run_id="x"))
    for changed in [facts(env_sync=env([row | {"new": "DEBUG"}])), facts(env_sync=env([])),
                    facts(env_sync=env([row]), current_commit="c" * 40), facts(env_sync=env([row]), db_revision=["r0"]),
                    facts(env_sync=env([row]), target_images=base.target.images | {"api": f"r/app:2@{D1}"}),
                    facts(env_sync=env([row]), current_images={"api": {"image": "r/app:1", "repo_digest": "r/app@x"}})]:
        assert promotion.fingerprint(changed) != fp


def test_the_fingerprint_holds_no_secret_value():
    from core.env import envmerge
    # the env report as pre-flight makes it, from a real merge with real values (a changed password among them)
    user = envmerge.parse("DB_PASSWORD=hunter2-live\nLOG_LEVEL=INFO\n")
    old = envmerge.parse("DB_PASSWORD=difyai123456\nLOG_LEVEL=INFO\n")
    new = envmerge.parse("DB_PASSWORD=difyai654321\nLOG_LEVEL=WARNING\nSECRET_KEY=sk-9f8e7d6c5b4a3f2e1d0c\n")
    rows = envmerge.masked_changes(envmerge.merge(user, old, new))
    material = str(promotion.fingerprint_material(facts(env_sync=env(rows))))
    assert "DB_PASSWORD" in material and "SECRET_KEY" in material, "the secret keys' changes are part of it"
    for value in ("hunter2-live", "difyai123456", "difyai654321", "sk-9f8e7d6c5b4a3f2e1d0c"):
        assert value not in material


def test_the_approval_form_has_no_default_decision():
    from tasks.promotion import Approval

    with pytest.raises(ValidationError):
        Approval(approver="ops", fingerprint="f")
    with pytest.raises(ValidationError):
        Approval(decision="maybe", approver="ops", fingerprint="f")
    assert Approval(decision="approve", approver="ops", fingerprint="f").comment == ""
    schema = Approval.model_json_schema()
    assert "default" not in schema["properties"]["decision"]
    assert all(schema["properties"][k].get("description") for k in ("decision", "approver", "comment", "fingerprint"))


def test_summary_names_release_digests_verdict_links_and_fingerprint():
    md = promotion.summary_markdown("v2.0.0", "staging", "prod", digests={"api": f"r/app@{D1}"},
                                    verdict="ok: 1 pending revision(s)", fp="f" * 64,
                                    links={"Prod env diff": "http://ui/artifacts/artifact/1"},
                                    notes=["staging upgraded"])
    for part in ("v2.0.0", f"r/app@{D1}", "ok: 1 pending", "[Prod env diff](http://ui/artifacts/artifact/1)", "f" * 64):
        assert part in md


def test_summary_names_the_split_layouts_env_changes_of_prods_plan():
    """Dify 1.12.1 → 1.15.0 on prod: the summary says what happens to the env files (the .env's changes, the keys
    now defined by `envs/**` templates, the operator's `envs/**.env` copies), not only a link to the env diff."""
    from core import report

    def row(key, category, before="a", after="a", file=".env.example"):
        return {"key": key, "category": category, "before": before, "after": after, "file": file}

    shared, redis = "envs/core-services/shared.env.example", "envs/databases/redis.env.example"
    rows = [row("NEW", "added", before="(unset)"), row("OLD", "dropped", after="(unset)"), row("MINE", "customized"),
            row("A", "moved", file=shared), row("B", "moved", file=shared), row("C", "moved", file=redis),
            row("POSTGRES_MAX_CONNECTIONS", "default_moved", before="100", after="200")]
    copies = [{"path": "envs/core-services/api.env", "existed": True, "sha256": "ab" * 32,
               "rows": [row("X", "default_moved", before="1", after="2")], "notes": []},
              {"path": "envs/databases/redis.env", "existed": True, "sha256": "", "rows": [], "notes": []},
              {"path": "envs/core-services/web.env", "existed": False, "sha256": "", "rows": [], "notes": []}]
    env = report.env_summary(rows, copies)
    assert env == [".env: 1 added, 4 changed, 1 dropped",
                   f"2 key(s) now defined by `{shared}` (the .env keeps its values, and wins)",
                   f"1 key(s) now defined by `{redis}` (the .env keeps its values, and wins)",
                   "`envs/core-services/api.env`: changed by the merge (1 changed)",
                   "`envs/databases/redis.env`: kept as it is",
                   "1 optional `envs/**.env` file(s) the target can load do not exist; none is created"]
    assert report.env_summary([row("MINE", "customized")], []) == [".env: no change"]
    md = promotion.summary_markdown("1.15.0", "staging", "prod", digests={}, verdict="ok", fp="f" * 64, links={},
                                    notes=[], env=env)
    assert "## Env changes on prod" in md and all(f"- {line}" in md for line in env)
    assert "Env changes" not in promotion.summary_markdown("1.15.0", "staging", "prod", digests={}, verdict="ok",
                                                           fp="f" * 64, links={}, notes=[])


def test_prefect_yaml_deploys_each_environment_on_its_hosts_pool_and_schedules_the_promotion():
    import inspect
    from pathlib import Path

    import yaml

    from flows.promote import promote
    from flows.recover import recover
    from flows.status import status
    from flows.upgrade import upgrade, upgrade_release

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert set(by_name) == {"upgrade-staging", "recover-staging", "status-staging", "promotion-staging",
                            "upgrade-prod", "recover-prod", "status-prod", "promotion-prod", "promote-staging-to-prod"}
    flows = {"flows/upgrade.py:upgrade": upgrade, "flows/upgrade.py:upgrade_release": upgrade_release,
             "flows/recover.py:recover": recover, "flows/promote.py:promote": promote,
             "flows/status.py:status": status}
    for name, d in by_name.items():
        params = inspect.signature(flows[d["entrypoint"]].fn).parameters
        assert set(d.get("parameters") or {}) <= set(params), name
        env = name.rsplit("-", 1)[1]
        assert d["work_pool"]["name"] == f"stackshift-{env}", name
    promo = by_name["promote-staging-to-prod"]
    assert promo["schedules"][0]["cron"] and "concurrency_limit" not in promo, "a pause must not hold a lease"


def test_a_verified_upgrade_counts_only_while_the_environment_still_runs_it():
    verified = [{"service": "api", "digest": f"r/app@{D1}", "release": "v2", "commit": "c2"},
                {"service": "db", "digest": f"r/pg@{D2}", "release": "v2", "commit": "c2"}]
    running = [{"service": "api", "digest": f"r/app@{D1}", "commit": "c2"},
               {"service": "db", "digest": f"r/pg@{D2}", "commit": "c2"}]
    assert promotion.still_runs(verified, running)
    assert not promotion.still_runs(verified, []), "nothing running, or no answer: not verified"
    assert not promotion.still_runs([], running)
    assert not promotion.still_runs(verified, [r | {"commit": "c1"} for r in running]), "redeployed at another commit"
    assert not promotion.still_runs(verified, running[:1]), "a service gone"
    assert not promotion.still_runs(verified, running + [{"service": "x", "digest": "r/x@sha256:0", "commit": "c2"}])
    assert not promotion.still_runs(verified, [running[0], running[1] | {"digest": f"r/pg@{D1}"}]), "another image"


def test_a_plan_is_held_to_the_approved_fingerprint():
    from core.errors import PlanChangedSinceApproval

    f = facts()
    promotion.check_approved("prod", f, promotion.fingerprint(f))
    with pytest.raises(PlanChangedSinceApproval, match="no longer matches the approved one"):
        promotion.check_approved("prod", facts(db_revision=["r0"]), promotion.fingerprint(f))
