"""Staging → prod promotion through the lab's two "hosts": each a Docker engine with its own work pool and worker
(lab/setup). Every path runs the real deployments of prefect.yaml on the real workers; staging's stack runs on the
first engine, the prods' on the prod engine.

One setup for the module, made once (three small stacks started side by side): a staging and two prods, `prod` and
`prod2`. Staging is upgraded once, by the scheduled promotion; every later promotion finds it verified at v2.0.0
and only plans its prod. The paths are one scenario, in this order:

1. the scheduled promotion (staging → `prod`) upgrades staging and pauses; it stays paused while
2. two tracks run in the background, each on its own prod (a prod's plan takes its lock, so one prod runs one
   promotion at a time): `prod`: a rejection, then an approval of a plan that changed since (refused); `prod2`:
   an approval whose prod upgrade fails and is rolled back, then a promotion left paused for the browser. The
   staging failure runs on staging meanwhile;
3. the scheduled promotion is approved through the API with its fingerprint (`prod` is back exactly as it was
   planned: the rejection and the refusal changed nothing), and its prod upgrade runs while the browser makes a
   custom run from a form and approves `prod2`'s promotion in the resume dialog;
4. both end Completed, each prod on staging's digests.

Tests are in that order and rely on it (module-scoped runs and tracks); each asserts one path.
"""
from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as all_done
from datetime import datetime, timedelta, UTC
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import docker
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.deployments import run_deployment

from deployments.approve import resume, summary_fingerprint
from deployments.automations import NOTIFY_BLOCK, URL_FIELD, ensure_notify_block, webhook_url
from lab import stack
from lab.paths import LAB_HOME
from tasks.promotion import run_artifacts
from tests.e2e.helpers import final, wait_for

# One worker runs the module (lab/test runs tests in parallel): its paths are one scenario, in order.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("promotion")]
PROMOTE = "promote/promote-staging-to-prod"
LOCAL = "unix:///var/run/docker.sock"
ROWS = 1_000  # the paths are about runs, states and digests, not data volume
TRACK_SECONDS = 1_200  # a background path's own waits are bounded; this only stops a test from hanging


# --- what the tests observe ---------------------------------------------------------------------------------------
def running_digests(dep: stack.Deployment, exited: bool = False) -> dict[str, list[str]]:
    """Service → repo digests of the image each running container of the stack runs (`exited`: and each stopped
    one, such as a one-shot job's), read from its own engine."""
    client = docker.DockerClient(base_url=dep.docker_host or LOCAL)
    out = {}
    for ctr in client.containers.list(all=exited, filters={"label": f"com.docker.compose.project={dep.name}"}):
        if ctr.labels.get("com.docker.compose.oneoff") != "True":
            out[ctr.labels["com.docker.compose.service"]] = client.images.get(ctr.attrs["Image"]).attrs["RepoDigests"]
    return out


def prod_state(dep: stack.Deployment) -> dict:
    return {"containers": {s: d for s, d in running_digests(dep).items()}, "health": dep.api_health()["version"],
            "data": stack.checksums(dep), "head": stack_head(dep)}


def stack_head(dep: stack.Deployment) -> str:
    import subprocess
    return subprocess.run(["git", "-C", str(dep.compose_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def paused(flow_run_id, seconds: float = 450):
    return wait_for(flow_run_id, lambda s: s.is_paused() or s.is_final(), seconds)


def state_names(flow_run_id) -> list[str]:
    with get_client(sync_client=True) as client:
        return [s.name for s in client.read_flow_run_states(flow_run_id)]


def children(flow_run_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))


def start(staging, prod, release: str | None, **extra):
    return run_deployment(PROMOTE, parameters={"release": release, "staging": staging.name, "prod": prod.name,
                                               "approval_timeout_minutes": 15, "run_timeout_minutes": 8, **extra},
                          timeout=0, as_subflow=False)


def decide(flow_run_id, decision: str, approver: str = "e2e", **extra) -> None:
    """Through the API, as `deployments.approve` does: the decision with the summary's fingerprint."""
    resume(flow_run_id, {"decision": decision, "approver": approver, "fingerprint": summary_fingerprint(flow_run_id),
                         **extra})


class Receiver:
    """A local HTTP server standing in for the chat/alerting webhook: keeps every JSON body POSTed to it."""

    def __init__(self):
        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"] or 0)) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, *patterns: str, seconds: float = 60) -> dict:
        """The latest body matching every pattern."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [b for b in self.bodies if all(re.search(p, json.dumps(b)) for p in patterns)]
            if found:
                return found[-1]
            time.sleep(0.5)
        pytest.fail(f"no notification matching {patterns!r}; got {self.bodies}")


# --- the browser ------------------------------------------------------------------------------------------------
UI_URL = "http://127.0.0.1:4200/v2"
CHROMIUM = "/usr/bin/chromium"  # Debian's package (lab/setup installs it); Playwright never downloads a browser


class UI:
    """The Prefect UI in Debian's chromium, through roles and labels (the UI has few test ids). Every step leaves a
    screenshot in the test's output folder."""

    def __init__(self, page, shots):
        self.page, self.shots = page, shots

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{len(list(self.shots.iterdir())):02d}-{name}.png"), full_page=True)

    def open(self, url: str, expect) -> None:
        """Opens a page of the UI and waits for `expect` (a locator); the single-page app sometimes stays blank on
        a loaded machine, so it is reloaded up to twice."""
        for attempt in range(3):
            self.page.goto(url)
            try:
                expect().first.wait_for(timeout=30_000)
                return
            except Exception:
                if attempt == 2:
                    self.shot("failed-to-show")  # a fixture's teardown never sees the test's exception
                    raise

    def custom_run(self, deployment: str, fields: dict[str, str], tick: list[str] = ()) -> str:
        """A run from the deployment's Custom run form (a deployment of the test's own: its one run is this one)."""
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name(deployment)
        self.open(f"{UI_URL}/deployments/deployment/{dep.id}/run",
                  lambda: self.page.get_by_role("button", name="Submit"))
        for label, value in fields.items():
            box = self.page.get_by_label(label, exact=True)
            box.fill(value)
        for label in tick:
            self.page.get_by_label(label, exact=True).click()
        self.shot("custom-run-form")
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        submit = self.page.get_by_role("button", name="Submit")
        submit.click()
        runs_tab = re.compile(r".*/deployments/deployment/.*tab=Runs.*")
        try:
            self.page.wait_for_url(runs_tab, timeout=30_000)
        except PlaywrightTimeout:
            # Seen once in a full CI run with the Prefect server busy: the click made no run at all. Keep what the
            # page showed, and press Submit again only if no run exists (never two runs).
            self.shot("after-submit-no-navigation")
            if not self._runs_of(dep.id):
                print(f"\n[browser] Submit made no run in 30 s ({self.page.url}); pressing it again")
                submit.click()
            self.page.wait_for_url(runs_tab, timeout=60_000)
        [run] = self._runs_of(dep.id)
        return run.id

    @staticmethod
    def _runs_of(deployment_id) -> list:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))

    def form_fields(self, deployment: str) -> dict[str, bool | None]:
        """The labels of a deployment's Custom run form (a field's name, `(Optional)` cut off) → for a switch, on
        or off (None for other fields). Nothing is submitted."""
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name(deployment)
        self.open(f"{UI_URL}/deployments/deployment/{dep.id}/run",
                  lambda: self.page.get_by_role("button", name="Submit"))
        self.page.get_by_label("target", exact=True).wait_for()
        self.shot(f"form-{deployment.replace('/', '-')}")
        out: dict[str, bool | None] = {}
        for label in self.page.locator("label").all():
            text, target = label.inner_text().strip(), label.get_attribute("for")
            if not text or not target:
                continue
            box = self.page.locator(f"[id='{target}']")
            state = box.get_attribute("aria-checked") or box.get_attribute("data-state") if box.count() else None
            out[text.removesuffix("(Optional)").strip()] = None if state is None else state in ("true", "checked")
        return out

    def see_runs_listed(self, deployment: str, runs: dict[str, str]) -> None:
        """The deployment's page (its Runs tab, the UI's default filter) lists these runs (id → name)."""
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name(deployment)
        # `?tab=Runs` asked for: without it the page opens on its Details tab, and the UI's switch to Runs on a wide
        # screen reads a CSS variable that is not there yet when the stylesheet loads late (seen under a full run).
        self.open(f"{UI_URL}/deployments/deployment/{dep.id}?tab=Runs",
                  lambda: self.page.get_by_text(next(iter(runs.values()))))
        for run_id, name in runs.items():
            links = self.page.locator(f"a[href*='{run_id}']")
            links.first.wait_for(timeout=30_000)
            texts = [link.inner_text() for link in links.all()]
            assert any(name in text for text in texts), (name, texts)
        self.shot(f"runs-of-{deployment.replace('/', '-')}")

    def see_completed(self, flow_run_id, name: str) -> None:
        self.open(f"{UI_URL}/runs/flow-run/{flow_run_id}", lambda: self.page.get_by_text("Completed", exact=True))
        self.shot(f"{name}-completed")

    def artifact(self, artifact_id, expect: str, name: str) -> None:
        self.open(f"{UI_URL}/artifacts/artifact/{artifact_id}", lambda: self.page.get_by_text(expect))
        self.shot(name)

    def resume(self, flow_run_id, fields: dict[str, str], decision: str) -> None:
        self.open(f"{UI_URL}/runs/flow-run/{flow_run_id}", lambda: self.page.get_by_text("Paused", exact=True))
        self.shot("paused")
        self.page.get_by_role("button", name="Open menu").first.click()
        self.page.get_by_role("menuitem", name="Resume").click()
        dialog = self.page.get_by_role("dialog")
        dialog.wait_for(timeout=15_000)
        for label, value in fields.items():
            dialog.get_by_label(label, exact=True).fill(value)
        self.choose(dialog, "Decision", decision)
        self.shot("resume-dialog")
        dialog.get_by_role("button", name="Resume").click()
        dialog.wait_for(state="hidden", timeout=15_000)

    def choose(self, dialog, label: str, value: str) -> None:
        """An enum field is a listbox button named by its <label for=…>."""
        field_id = dialog.locator("label").filter(has_text=re.compile(f"^{label}$", re.I)).get_attribute("for")
        dialog.locator(f"[id='{field_id}']").click()
        self.page.get_by_role("option", name=value, exact=True).click()


@pytest.fixture
def shots(request):
    """Screenshots go with the lab's logs (kept as test output, never in git)."""
    folder = LAB_HOME / "logs" / "screenshots" / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    return folder


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu",
                                                               "--disable-background-networking",
                                                               "--disable-component-update", "--no-first-run"])
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            b.close()


# --- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver():
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    before = webhook_url()
    r = Receiver()
    ensure_notify_block(r.url)
    saved = CustomWebhookNotificationBlock.load(NOTIFY_BLOCK)
    assert saved.url == URL_FIELD and saved.secrets.get_secret_value() == {"webhook_url": r.url}, \
        "the URL is the block's secret, not its url"
    yield r
    ensure_notify_block(before)
    r.server.shutdown()


@pytest.fixture(scope="module")
def stacks(make_module_deployment):
    """Staging on the first engine, `prod` and `prod2` on the prod engine, at v1.0.0, started side by side."""
    small = dict(rows=ROWS, migration_probe=False)
    staging, prod, prod2 = make_module_deployment.many(
        dict(host="staging", **small),
        dict(docker_host=stack.PROD_ENGINE, host="prod", **small),
        dict(docker_host=stack.PROD_ENGINE, host="prod", **small))
    return SimpleNamespace(staging=staging, prod=prod, prod2=prod2)


@pytest.fixture(scope="module")
def form_deployment(stacks):
    """`upgrade-<staging>` on staging's pool, as prefect.yaml deploys a person's upgrade form (the environment in
    its name, not in the form); deleted afterwards."""
    from prefect import flow as prefect_flow

    from deployments.serve import deployment_spec
    from tests.conftest import ROOT

    spec = deployment_spec("upgrade", stacks.staging.name)
    name = f"upgrade/{spec['name']}"
    source = prefect_flow.from_source(source=str(ROOT), entrypoint=spec["entrypoint"])
    source.deploy(name=spec["name"], work_pool_name="stackshift-staging", parameters=spec["parameters"],
                  description=spec["description"], tags=spec["tags"], build=False, push=False,
                  print_next_steps=False, ignore_warnings=True)
    yield name
    with get_client(sync_client=True) as client:
        client.delete_deployment(client.read_deployment_by_name(name).id)


@pytest.fixture(scope="module")
def scheduled(stacks, receiver):
    """The promotion of v2.0.0 from staging to `prod`, started by a schedule of the deployment set to fire in 15 s
    (removed once the run has started). Waits until it has started, not for its pause."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, \
        FlowRunFilterStartTime

    prod_before = prod_state(stacks.prod)
    params = {"release": "v2.0.0", "staging": stacks.staging.name, "prod": stacks.prod.name,
              "approval_timeout_minutes": 45, "run_timeout_minutes": 8}  # paused while the other paths run
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(PROMOTE)
        at = datetime.now(UTC) + timedelta(seconds=15)
        [schedule] = client.create_deployment_schedules(dep.id, [DeploymentScheduleCreate(
            schedule=IntervalSchedule(interval=timedelta(hours=1), anchor_date=at), active=True, parameters=params)])
        try:
            # the server's scheduler service does this every 60 s; asking now is the same call, sooner
            client._client.post(f"/deployments/{dep.id}/schedule", json={"max_runs": 1})
            runs = []
            for _ in range(120):  # until it has started (deleting the schedule would delete a run still Scheduled)
                runs = [r for r in client.read_flow_runs(deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[dep.id])), flow_run_filter=FlowRunFilter(
                    start_time=FlowRunFilterStartTime(after_=at - timedelta(seconds=5))))
                        if r.parameters.get("staging") == stacks.staging.name
                        and not (r.state.is_scheduled() or r.state.is_pending())]
                if runs:
                    break
                time.sleep(1)
            assert runs, "the schedule did not start a promotion"
        finally:
            client.delete_deployment_schedule(dep.id, schedule.id)
    return SimpleNamespace(id=runs[0].id, prod_before=prod_before)


# --- the background paths (each runs in a track's thread; its asserts fail the test that reads its result) ------
def rejection_path(staging, prod):
    before = prod_state(prod)
    run = paused(start(staging, prod, "v2.0.0").id)
    assert run.state.is_paused(), run.state
    assert "already runs v2.0.0" in run_artifacts(run.id)["promotion-summary"].data, "staging is not upgraded twice"
    assert sorted((c.parameters["environment"], bool(c.parameters.get("dry_run")), "target" in c.parameters)
                  for c in children(run.id)) == sorted([(staging.name, False, False), (prod.name, True, True)]), \
        "staging's status only looked at (it still runs what it verified), prod only planned"
    decide(run.id, "reject", comment="not today")
    run = final(run.id)
    # a standard state name (the UI's default runs filter lists states by name); the outcome is in the run's name
    assert run.state.is_completed() and run.state.name == "Completed", run.state
    assert run.name == "promote v2.0.0: rejected by e2e" and run.state.message.startswith("Rejected by e2e"), run
    assert prod_state(prod) == before
    assert staging.api_health()["version"] == "2.0.0", "staging stays where it is"
    return run


def stale_approval_path(staging, prod):
    run = paused(start(staging, prod, "v2.0.0").id)
    assert run.state.is_paused(), run.state
    env = prod.compose_dir / ".env"
    original = env.read_bytes()
    env.write_text(env.read_text().replace("SUPPORT_EMAIL=ops@example.com", "SUPPORT_EMAIL=oncall@example.com"))
    try:
        before = prod_state(prod)
        decide(run.id, "approve")  # the summary's fingerprint: right when given, stale by now
        run = final(run.id)
        message = run.state.message or ""
        assert run.state.is_failed() and ("PlanChangedSinceApproval" in message
                                          or "no longer matches the approved" in message), run.state
        assert prod_state(prod) == before
    finally:
        env.write_bytes(original)
    return run


def failing_prod_path(staging, prod):
    with prod.connect() as conn:  # prod differs from staging in a way no plan sees: the v2 migration will fail
        conn.execute("CREATE TABLE api_keys (id int)")
    try:
        before = prod_state(prod)
        run = paused(start(staging, prod, "v2.0.0").id)
        assert run.state.is_paused(), run.state
        decide(run.id, "approve")
        run = final(run.id)
        assert run.state.is_failed() and prod.name in run.state.message, run.state
        assert prod_state(prod) == before, "prod is back on v1, data identical"
        [upgrade_run] = [c for c in children(run.id) if "pinned_images" in c.parameters
                         and not c.parameters.get("dry_run")]
        assert upgrade_run.name == f"{prod.name} → v2.0.0 (rolled back)", upgrade_run.name
        return run
    finally:
        with prod.connect() as conn:
            conn.execute("DROP TABLE IF EXISTS api_keys")


@pytest.fixture(scope="module")
def tracks(stacks, scheduled):
    """Once the scheduled promotion is paused (staging verified, `prod` planned and its lock free), two tracks
    start, one thread each (a one-thread pool runs its paths in order): `prod`: rejection, then the stale approval;
    `prod2`: the failing prod upgrade, then a promotion for the browser to approve (its id)."""
    paused(scheduled.id, 600)
    on_prod, on_prod2 = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    s, p, p2 = stacks.staging, stacks.prod, stacks.prod2
    t = SimpleNamespace(rejection=on_prod.submit(rejection_path, s, p), stale=on_prod.submit(stale_approval_path, s, p),
                        failing=on_prod2.submit(failing_prod_path, s, p2),
                        for_browser=on_prod2.submit(lambda: start(s, p2, "v2.0.0").id))
    yield t
    on_prod.shutdown(wait=True)
    on_prod2.shutdown(wait=True)


# --- the paths, in order ----------------------------------------------------------------------------------------
def test_scheduled_promotion_upgrades_staging_then_waits_for_the_approval(stacks, scheduled, receiver):
    run = paused(scheduled.id, 600)
    assert run.state.is_paused(), run.state
    assert run.auto_scheduled, "started by the schedule"
    assert stacks.staging.api_health()["version"] == "2.0.0", "the promotion upgraded staging"
    assert [(c.parameters["environment"], bool(c.parameters.get("dry_run"))) for c in
            sorted(children(run.id), key=lambda c: c.expected_start_time)] == [
        (stacks.staging.name, False), (stacks.prod.name, True)], "staging upgraded, prod only planned"
    assert prod_state(stacks.prod) == scheduled.prod_before, "nothing happens to prod before the approval"
    assert re.fullmatch(r"[0-9a-f]{64}", summary_fingerprint(run.id))
    receiver.wait_for(rf"approval needed for {run.name}")


def test_staging_failure_never_reaches_the_approval(stacks, tracks, receiver):
    """On staging while the tracks run on the prods (`tracks` starts them first)."""
    staging, prod = stacks.staging, stacks.prod
    run = final(start(staging, prod, "v9.9.9").id)  # a release staging cannot take: its upgrade stops in pre-flight
    assert run.state.is_failed(), run.state
    assert "upgrade of" in run.state.message and staging.name in run.state.message
    assert "Paused" not in state_names(run.id), "a failed staging upgrade must never reach the approval"
    assert [c.parameters["environment"] for c in children(run.id)] == [staging.name], "prod was not even planned"
    assert staging.api_health()["version"] == "2.0.0", "staging stays on what it verified"
    receiver.wait_for(r"UnknownRef|is not a commit, tag or branch", staging.name)


def test_rejection_leaves_prod_untouched(tracks):
    tracks.rejection.result(TRACK_SECONDS)


def test_approval_of_a_plan_that_changed_is_refused(tracks):
    tracks.stale.result(TRACK_SECONDS)


def test_scheduled_promotion_is_approved_through_the_api_with_its_fingerprint(stacks, scheduled, tracks):
    """`prod` went through a rejected and a refused promotion meanwhile, and is as it was planned: the fingerprint
    the approver signed still holds. Its prod upgrade runs during the next tests."""
    all_done([tracks.rejection, tracks.stale])  # `prod` is free again (and its .env restored)
    decide(scheduled.id, "approve", approver="e2e api")
    run = wait_for(scheduled.id, lambda s: not s.is_paused(), 120)
    assert not run.state.is_final() or run.state.is_completed(), run.state


def test_failing_prod_upgrade_rolls_back_and_notifies(stacks, tracks, receiver):
    tracks.failing.result(TRACK_SECONDS)
    prod2 = stacks.prod2.name
    receiver.wait_for(rf"{prod2} rolled back")
    # the run's Failed event reaches the automation through the server's event pipeline, slow on a busy host
    receiver.wait_for(r"upgrade Failed", r"ended Failed", prod2, seconds=240)


@pytest.fixture
def for_browser(tracks):
    """The id of `prod2`'s promotion, started by its track right after the failing path (paused by now, or soon)."""
    return tracks.for_browser.result(TRACK_SECONDS)


def test_in_the_browser_a_form_run_then_the_summary_env_diff_and_approval(stacks, for_browser, form_deployment,
                                                                         browser, shots):
    """The browser: upgrade-prod's form has no environment and no internal field and plans by default; a dry run of
    staging from its own deployment's form, listed as `<env> → v2.0.0 (plan)`; a promotion's summary and prod env
    diff; the approval in the resume dialog (which carries the summary's fingerprint: another would fail the run);
    the run Completed."""
    staging, prod2 = stacks.staging, stacks.prod2
    ui = UI(browser, shots)
    fields = ui.form_fields("upgrade/upgrade-prod")
    assert "target" in fields and fields.get("dry_run") is True, fields
    assert not {"environment", "pinned_images", "approved_fingerprint"} & set(fields), fields

    form_run = ui.custom_run(form_deployment, {"target": "v2.0.0"}, tick=["dry_run (Optional)"])
    run = final(form_run)
    assert run.state.is_completed() and run.name == f"{staging.name} → v2.0.0 (plan)", (run.name, run.state)
    assert {staging.name, "dry-run", "ui"} <= set(run.tags), run.tags
    ui.see_runs_listed(form_deployment, {str(form_run): f"{staging.name} → v2.0.0 (plan)"})
    ui.see_completed(form_run, "form-run")

    run = paused(for_browser, 400)
    assert run.state.is_paused(), run.state
    made = run_artifacts(run.id)
    ui.artifact(made["promotion-summary"].id, "Promotion of v2.0.0", "summary")
    env_diff = next(a for c in children(run.id) if c.parameters.get("dry_run")
                    for k, a in run_artifacts(c.id).items() if k == f"{prod2.name}-env-diff")
    ui.artifact(env_diff.id, "LOG_LEVEL", "prod-env-diff")
    t0 = time.monotonic()
    ui.resume(run.id, {"Approver": "e2e browser", "Comment (Optional)": "looks right",
                       "Fingerprint": summary_fingerprint(run.id)}, decision="approve")  # required: pasted
    run = final(run.id)
    assert run.state.is_completed() and run.state.name == "Completed", run.state
    ui.see_completed(run.id, "promotion")
    print(f"\n[browser promotion] approval to done {time.monotonic() - t0:.1f} s")
    assert prod2.api_health()["version"] == "2.0.0"
    on_staging, on_prod2 = running_digests(staging), running_digests(prod2)
    assert set(on_staging) == set(on_prod2)
    for service, digests in on_staging.items():
        assert set(digests) & set(on_prod2[service]), f"{service}: prod2 runs {on_prod2[service]}, staging {digests}"


def test_scheduled_promotion_puts_prod_on_stagings_digests_with_every_artifact(stacks, scheduled):
    staging, prod = stacks.staging, stacks.prod
    run = final(scheduled.id, 600)
    assert run.state.is_completed() and run.state.name == "Completed", run.state
    print(f"\n[scheduled promotion] phases {run_artifacts(run.id)['promotion-timeline'].data}")
    assert staging.api_health()["version"] == "2.0.0" and prod.api_health()["version"] == "2.0.0"
    on_staging, on_prod = running_digests(staging), running_digests(prod)
    assert set(on_staging) == set(on_prod)
    for service, digests in on_staging.items():
        assert set(digests) & set(on_prod[service]), f"{service}: prod runs {on_prod[service]}, staging {digests}"
    assert {"promotion-summary", "promotion-timeline"} <= set(run_artifacts(run.id))
    kids = children(run.id)
    assert len(kids) == 3, [c.parameters for c in kids]  # staging's upgrade, prod's plan, prod's upgrade
    assert run.name == "promote v2.0.0" and {"promotion", "schedule"} <= set(run.tags), (run.name, run.tags)
    assert sorted(c.name for c in kids) == sorted([f"{staging.name} → v2.0.0", f"{prod.name} → v2.0.0 (plan)",
                                                   f"{prod.name} → v2.0.0"]), "a plan reads apart from an upgrade"
    for child in kids:
        env = child.parameters["environment"]
        assert {env, "promotion"} <= set(child.tags) and ("dry-run" in child.tags) == bool(
            child.parameters.get("dry_run")), child.tags
    for child in kids:
        keys = set(run_artifacts(child.id))
        env = child.parameters["environment"]
        if child.parameters.get("dry_run"):
            assert {f"{env}-plan", f"{env}-env-diff", f"{env}-migrations", f"{env}-approval-facts"} <= keys, keys
        else:
            assert {f"{env}-plan", f"{env}-env-diff", f"{env}-timeline", f"{env}-verification",
                    f"{env}-digests"} <= keys, keys


def test_status_shows_staging_and_prod_after_the_promotion(stacks, scheduled):
    """`stackshift status` after the scheduled promotion: staging and `prod` at v2.0.0 (commit, revision), on the
    same digests, each last run completed, both locks free."""
    import subprocess

    from lab.demo.releases import HEADS
    from tests.conftest import ROOT

    staging, prod = stacks.staging, stacks.prod
    if paused(scheduled.id, 600).state.is_paused():  # run alone (`-k`): nobody approved it before; `approve` does
        approve = [str(ROOT / "stackshift"), "approve", str(scheduled.id), "--approver", "e2e status"]
        wrong = subprocess.run([*approve, "--fingerprint", "0" * 64], capture_output=True, text=True, check=False)
        assert wrong.returncode == 2 and "Nothing was sent" in wrong.stderr, wrong.stdout + wrong.stderr
        done = subprocess.run([*approve, "--fingerprint", summary_fingerprint(scheduled.id)[:16]],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0 and done.stdout.startswith("Approved by e2e status"), done.stdout + done.stderr
    assert final(scheduled.id, 600).state.is_completed()
    done = subprocess.run([str(ROOT / "stackshift"), "status", "-e", staging.name, "-e", prod.name, "--json"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    found = {st["environment"]: st for st in json.loads(done.stdout)}
    for dep in (staging, prod):
        st = found[dep.name]
        assert st["version"] == {"version": "v2.0.0", "commit": stack_head(dep), "revision": [HEADS["2.0.0"]]}, st
        assert st["last_run"]["status"] == "completed" and st["last_run"]["target"] == "v2.0.0", st["last_run"]
        assert st["last_run_state"] == "Completed" and st["lock"] is None and st["digests_release"] == "v2.0.0"
    on_staging, on_prod = ({s: d.split("@")[-1] for s, d in found[dep.name]["digests"].items()}
                           for dep in (staging, prod))
    assert on_staging == on_prod, "prod runs what staging verified"
    text = subprocess.run([str(ROOT / "stackshift"), "status", "-e", staging.name, "-e", prod.name],
                          capture_output=True, text=True, check=False, timeout=300).stdout
    for dep in (staging, prod):
        assert f"{dep.name}: v2.0.0 (commit {stack_head(dep)[:12]}, database at {HEADS['2.0.0']})" in text, text


def test_a_skipped_and_a_rejected_promotion_show_in_the_deployments_runs_and_the_dashboard_lists_prod(
        stacks, scheduled, tracks, browser, shots):
    """With staging and `prod` both on v2.0.0, a promotion without a release (staging's verified one) has nothing
    to do. It and the rejected one are in the promote deployment's runs list under the UI's default filter (a
    custom state name would hide them); the dashboard artifact shows `prod` on v2.0.0 with its last run."""
    staging, prod = stacks.staging, stacks.prod
    with ThreadPoolExecutor(1) as outside_the_browsers_loop:  # Prefect's sync calls return coroutines inside it
        skipped = final(outside_the_browsers_loop.submit(start, staging, prod, None).result().id)
    assert skipped.state.is_completed() and skipped.name == "promote v2.0.0: skipped, nothing to promote", (
        skipped.name, skipped.state)
    assert "Nothing to promote" in skipped.state.message
    rejected = tracks.rejection.result(TRACK_SECONDS)
    ui = UI(browser, shots)
    ui.see_runs_listed(PROMOTE, {str(skipped.id): skipped.name, str(rejected.id): rejected.name})

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from tasks.dashboard import DASHBOARD

    def board() -> str:
        with get_client(sync_client=True) as client:
            [latest] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[DASHBOARD])),
                                             sort=ArtifactSort.CREATED_DESC, limit=1)
        return str(latest.data)

    row = f"| **{prod.name}** | v2.0.0 |"
    deadline = time.monotonic() + 60
    while row not in (text := board()) and time.monotonic() < deadline:
        time.sleep(2)
    assert row in text and f"{prod.name} → v2.0.0" in text, text
    ui.open(f"{UI_URL}/artifacts/key/{DASHBOARD}", lambda: ui.page.get_by_text(prod.name))
    ui.shot("dashboard")
