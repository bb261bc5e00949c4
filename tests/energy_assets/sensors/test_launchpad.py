"""A person with only the Dagster UI starts a benchmark: headless Chromium fills the submit_experiment Launchpad and
launches it; the inbox sensor queues the measurement and the daemon runs it, as `make demo` runs (CPU). The file's
schedule then shows in the UI with its next tick, with no reload by hand, and is turned off there."""

import os
import re
import time

import dagster as dg
import pytest
import requests

from energy_assets.ops.local import Platform, prepare_home
from gpu_ops.site.screenshots import CHROMIUM, FLAGS
from tests.conftest import REQUIRE_SERVICES
from tests.energy_assets.conftest import HW

pytestmark = pytest.mark.slow

LOCATION = "llm_energy_measure"
FORM = """ops:
  experiment:
    config:
      name: from-the-form
      model: builtin:tiny-llama
      max_input_tokens: 32
      max_output_tokens: 8
      min_output_tokens: 8
      prompts: {count: 8}
      batching: {strategy: static, batch_size: 4}
      cycles: 3
      warmup_requests: 2
      cooldown_s: 0
      energy: {idle_baseline_s: 0.5}
      schedule: {interval: daily, at: "04:00"}
"""
SCHEDULE = "remeasure_" + re.sub(r"[^A-Za-z0-9_]", "_", f"builtin-tiny-llama__pytorch__{HW}")
SCHEDULE_QUERY = """query ($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { __typename
  ... on Schedule { cronSchedule scheduleState { status } futureTicks(limit: 1) { results { timestamp } } } } }"""


def schedule(url: str) -> dict:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "scheduleName": SCHEDULE}
    r = requests.post(f"{url}/graphql", json={"query": SCHEDULE_QUERY, "variables": {"s": selector}}, timeout=30)
    return r.json()["data"]["scheduleOrError"]


def wait_for(what: str, probe, timeout_s: float = 300, every_s: float = 2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_a_benchmark_launched_from_the_launchpad_is_measured_and_its_schedule_is_toggled_in_the_ui(
    tmp_path, monkeypatch
):
    if not os.path.exists(CHROMIUM):
        if REQUIRE_SERVICES:
            pytest.fail("Chromium not found at /usr/bin/chromium: apt-get install chromium (the browser tests need it)")
        pytest.skip("Chromium not installed")
    from playwright.sync_api import sync_playwright

    home, storage = prepare_home(tmp_path / "home", "sqlite"), tmp_path / "storage"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LEM_STORAGE", str(storage))
    instance = dg.DagsterInstance.get()
    with Platform(home, storage) as platform, sync_playwright() as p:
        # the UI greets a first visit on 127.0.0.1 with a newsletter dialog over the page: seen, as after one visit
        requests.post(f"{platform.url}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{platform.url}/locations/{LOCATION}/jobs/submit_experiment/playground", timeout=120_000)
        editor = page.locator(".CodeMirror")
        editor.wait_for(timeout=120_000)
        value = "() => document.querySelector('.CodeMirror').CodeMirror.getValue()"
        wait_for("the scaffold in the editor", lambda: "my-experiment" in page.evaluate(value), 60, 0.5)
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(FORM)
        assert page.evaluate(value).strip() == FORM.strip()  # typed as is, not re-indented
        page.get_by_role("button", name="Launch Run").click()
        page.wait_for_url("**/runs/*", timeout=60_000)
        run_id = page.url.split("/runs/")[1].split("?")[0].split("/")[0]
        assert platform.wait_run(run_id) == "SUCCESS"
        assert instance.get_run_by_id(run_id).job_name == "submit_experiment"

        key = f"builtin-tiny-llama__pytorch|{HW}"
        measured = wait_for(
            "the inbox sensor to queue the measurement",
            lambda: instance.get_runs(filters=dg.RunsFilter(job_name="measure", tags={"dagster/partition": key})),
        )
        assert measured[0].tags["lem/experiment_file"] == "from-the-form.yaml"
        assert platform.wait_run(measured[0].run_id) == "SUCCESS"
        raw = instance.get_latest_materialization_event(dg.AssetKey("raw_measurements"))
        assert raw is not None and raw.run_id == measured[0].run_id
        origin = (storage / "experiments" / "builtin-tiny-llama__pytorch" / f"{HW}.origin").read_text()
        assert run_id in origin and '"via": "launchpad"' in origin

        # the schedule: in the webserver's code location with its next tick (nobody reloaded it)
        shown = wait_for(
            "the schedule in the UI", lambda: (s := schedule(platform.url))["__typename"] == "Schedule" and s
        )
        assert shown["cronSchedule"] == "0 4 * * *" and shown["scheduleState"]["status"] == "RUNNING"
        assert shown["futureTicks"]["results"][0]["timestamp"] > time.time()
        page.goto(f"{platform.url}/locations/{LOCATION}/schedules/{SCHEDULE}", timeout=120_000)
        toggle = page.locator("input[type=checkbox]").first  # the switch's input, drawn by its label
        toggle.wait_for(state="attached", timeout=60_000)
        assert toggle.is_checked()
        page.locator("label:has(input[type=checkbox])").first.click()
        wait_for("the schedule to stop", lambda: schedule(platform.url)["scheduleState"]["status"] == "STOPPED", 60)
        browser.close()
