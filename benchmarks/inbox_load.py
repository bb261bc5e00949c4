"""Inbox load: N signed result folders and M experiment files land at once; the real sensors drain them in bounded
ticks (LEM_INBOX_BATCH items each, the rest left for the next tick). Prints each tick's time, the slowest tick
against Dagster's 60 s sensor timeout, the end-to-end time (inbox to every run requested), and checks that nothing
was dropped or requested twice. With --ui, the instance is then given the history the load leaves on a real
platform (a raw_measurements and a cycle_statistics materialization per requested run, a few dozen leaderboard
ones, reported without runs), and headless Chromium times the leaderboard asset page and raw_measurements'
partitions page from `goto` until each shows that data (median of 3 visits after one untimed).

    python -m benchmarks.inbox_load --uploads 500 --experiments 50 [--ui]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg

SENSOR_TIMEOUT_S = 60.0  # Dagster's default sensor evaluation timeout (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS)
SUBMITTER = "load-lab"


def make_uploads(good: Path, inbox: Path, n: int, key: Path, submitter: str = SUBMITTER) -> None:
    """`n` distinct valid result folders (the good one's tables, one temperature sample shifted per copy: a new
    content hash each), signed by `submitter`."""
    import copy

    from gpu_ops.results import read_tables, write_tables
    from gpu_ops.signing import sign_folder

    tables = read_tables(good)
    for i in range(n):
        t = copy.deepcopy(tables)
        t.timeline["temp_c"] = t.timeline.temp_c + (i + 1) * 1e-3
        write_tables(t, inbox / f"upload-{i:04d}")
        sign_folder(inbox / f"upload-{i:04d}", key, submitter)


def make_experiments(inbox: Path, n: int) -> None:
    """`n` valid experiment files, each defining its own partition (its own hardware value)."""
    for i in range(n):
        (inbox / f"exp-{i:03d}.yaml").write_text(
            f"name: load-{i}\nmodel: builtin:tiny-llama\nhardware: [load-hw-{i:03d}]\n"
        )


def drain(sensor, instance, resources: dict, stop, max_ticks: int = 1000) -> tuple[list[float], list]:
    """Evaluate `sensor` tick after tick, as the daemon does (its cursor carried over, its partition adds applied),
    until `stop(result)`; returns each tick's seconds and every run request."""
    cursor, ticks, requests = None, [], []
    while len(ticks) < max_ticks:
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        t0 = time.perf_counter()
        result = sensor(ctx)
        ticks.append(time.perf_counter() - t0)
        for req in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        requests += result.run_requests or []
        cursor = result.cursor
        if stop(result):
            return ticks, requests
    raise RuntimeError(f"{sensor.name}: not drained after {max_ticks} ticks")


def nothing_requested(result) -> bool:
    return not result.run_requests


def approve_pending(storage) -> int:
    """A moderator approves every pending upload (the moderate_submission op, invoked directly)."""
    from energy_assets.sensors.moderation import PENDING, decide

    names = [r["name"] for r in storage.submissions() if r["status"] == PENDING]
    for name in names:
        decide(dg.build_op_context(resources={"storage": storage}, op_config={"folder": name, "decision": "approve"}))
    return len(names)


def once_each(requests: list, expected: int, what: str) -> None:
    keys = [r.run_key for r in requests]
    if len(set(keys)) != len(keys):
        raise AssertionError(f"{what}: {len(keys) - len(set(keys))} run keys requested twice")
    if len(keys) != expected:
        raise AssertionError(f"{what}: {len(keys)} runs requested, expected {expected} (some dropped)")


def summary(name: str, ticks: list[float]) -> str:
    return (
        f"{name}: {len(ticks)} ticks, median {statistics.median(ticks):.2f} s, max {max(ticks):.2f} s "
        f"({max(ticks) / SENSOR_TIMEOUT_S:.0%} of the {SENSOR_TIMEOUT_S:.0f} s sensor timeout); ticks: "
        + " ".join(f"{t:.2f}" for t in ticks)
    )


def run_load(root: Path, good: Path, uploads: int, experiments: int, instance) -> dict:
    """The whole load on storage under `root`: returns tick times per sensor and the end-to-end seconds."""
    from energy_assets.resources import GpuResource, StorageResource
    from energy_assets.sensors.automation import experiment_inbox, results_inbox
    from gpu_ops.signing import KeyRegistry, keygen

    storage = StorageResource(base_path=str(root / "storage"))
    registry = KeyRegistry.load(storage.submitters_file)
    registry.add(SUBMITTER, keygen(root / "key.pem"), "2026-01-01T00:00:00+00:00")
    registry.save(storage.submitters_file)
    make_uploads(good, storage.results_inbox_dir, uploads, root / "key.pem")
    make_experiments(storage.inbox_dir, experiments)

    t0 = time.perf_counter()
    inbox = storage.results_inbox_dir
    held, _ = drain(results_inbox, instance, {"storage": storage}, lambda _: not any(inbox.iterdir()))
    if len(storage.submissions()) != uploads:
        raise AssertionError(f"{len(storage.submissions())} of {uploads} uploads held for moderation")
    approve_pending(storage)
    requested, reqs = drain(results_inbox, instance, {"storage": storage}, nothing_requested)
    once_each(reqs, uploads, "results inbox")
    resources = {"storage": storage, "gpu": GpuResource()}
    exp_ticks, exp_reqs = drain(experiment_inbox, instance, resources, nothing_requested)
    once_each(exp_reqs, experiments, "experiment inbox")
    return {
        "results inbox (hold)": held,
        "results inbox (request)": requested,
        "experiment inbox": exp_ticks,
        "end_to_end_s": time.perf_counter() - t0,
        "storage": storage,
        "requests": reqs + exp_reqs,
    }


def record_history(instance, requests: list, leaderboards: int = 36) -> dict[str, int]:
    """What the instance holds once the load has been measured, so the UI pages have their real weight: one
    raw_measurements and one cycle_statistics materialization per requested run, each in a partition of its own,
    and `leaderboards` leaderboard ones, with metadata like the assets' own. Reported without runs: seconds.
    Returns the materialization count per asset, as the instance holds them."""
    seen: set[str] = set()
    for i, req in enumerate(requests):
        key, src = str(req.partition_key), req.tags.get("lem/source", "measure")
        if key in seen:  # the uploads are copies of one result: each gets a partition of its own, as real ones would
            experiment, hardware = key.split("|")
            instance.add_dynamic_partitions("hardware", [f"{hardware}-upload-{i:03d}"])
            key = f"{experiment}|{hardware}-upload-{i:03d}"
        seen.add(key)
        raw = {"source": src, "dagster/row_count": 24, "rows": "96 requests, 24 cycles, 1200 power samples"}
        raw |= {"gross_energy_j_total": 1200.0 + i % 17, "wall_time_s": 40.0 + i % 7, "energy_status": "measured"}
        stats = {"dagster/row_count": 3, "raw_partition": key, "tokens_per_s_best": 90.0 + i % 13}
        stats |= {"j_per_token_best": 0.4 + (i % 11) / 100, "worst_cv": 0.02}
        instance.report_runless_asset_event(dg.AssetMaterialization("raw_measurements", partition=key, metadata=raw))
        instance.report_runless_asset_event(dg.AssetMaterialization("cycle_statistics", partition=key, metadata=stats))
    parts = len(seen)
    for i in range(leaderboards):
        board = {"dagster/row_count": 3 * parts, "rows": f"{parts} partitions; {3 * parts} rows measured"}
        board |= {"best_j_per_token": 0.4 + i / 1000, "slo": "250, 500, 1000", "drift": dg.MetadataValue.int(i % 3)}
        instance.report_runless_asset_event(dg.AssetMaterialization("leaderboard", metadata=board))
    return {
        a: len(instance.fetch_materializations(dg.AssetKey(a), limit=10_000).records)  # the most one fetch returns
        for a in ("raw_measurements", "cycle_statistics", "leaderboard")
    }


@contextlib.contextmanager
def webserver(home: Path, storage_root: Path):
    """dagster-webserver on the instance at `home` for this repo's workspace; yields its URL once it answers."""
    import subprocess
    import sys

    import requests

    from energy_assets.ops.local import REPO, free_port

    port = free_port()
    env = dict(os.environ, DAGSTER_HOME=str(home), LEM_STORAGE=str(storage_root))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "dagster_webserver", "-w", str(REPO / "workspace.yaml"), "-p", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
        while True:
            try:
                if requests.post(f"{url}/graphql", json={"query": "{ version }"}, timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the webserver did not start")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def shown(*texts: str) -> re.Pattern:
    """A whole text the page shows, in any of the given spellings."""
    return re.compile("^(" + "|".join(re.escape(t) for t in texts) + ")$")


def time_page(context, url: str, ready, timeout_s: float = 120) -> float:
    """Seconds from `page.goto` until `ready` (a text drawn from the instance's data) shows, in a fresh page: the
    page a person waits for, not its first bytes or its `load` event. Raises if it never shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
        left_ms = max(1.0, (timeout_s - (time.perf_counter() - t0)) * 1000)
        page.get_by_text(ready, exact=True).first.wait_for(timeout=left_ms)
        return time.perf_counter() - t0
    except PlaywrightTimeout:
        raise RuntimeError(f"{url} did not show {ready!r} within {timeout_s:.0f} s") from None
    finally:
        page.close()


def time_ui(url: str, pages: dict[str, tuple[str, str]], repeats: int = 3) -> tuple[dict[str, float], str]:
    """Headless Chromium (Debian's, as the browser tests use) visits the first page once untimed (the UI's code
    cached, as for anyone who has opened the UI before; the instance shows no welcome dialog), then times each page
    (`name: (path, ready text)`) `repeats` times, each in a fresh page. Returns the medians and Chromium's version."""
    from playwright.sync_api import sync_playwright

    from gpu_ops.site.screenshots import CHROMIUM, FLAGS

    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"--ui needs Chromium at {CHROMIUM}: apt-get install chromium (as `make chromium` does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            warm = context.new_page()
            path, ready = next(iter(pages.values()))
            warm.goto(url + path, timeout=120_000)
            warm.get_by_text(ready, exact=True).first.wait_for(timeout=120_000)
            warm.close()
            times = {
                n: [time_page(context, url + path, ready) for _ in range(repeats)] for n, (path, ready) in pages.items()
            }
            return {n: statistics.median(t) for n, t in times.items()}, browser.version
        finally:
            browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=500)
    ap.add_argument("--experiments", type=int, default=50)
    ap.add_argument(
        "--ui",
        action="store_true",
        help="then record the load's materializations and time the leaderboard and raw_measurements partitions "
        "asset pages in headless Chromium, until each shows its data (median of 3)",
    )
    args = ap.parse_args()
    os.environ.setdefault("LEM_INBOX_SETTLE_S", "0")  # the copies are complete when the load starts
    from energy_assets.ops.local import prepare_home
    from energy_assets.sensors.automation import inbox_batch
    from tests.energy_assets.conftest import fake_gpu_result

    with tempfile.TemporaryDirectory(prefix="lem-inbox-load-") as tmp:
        root = Path(tmp)
        good = fake_gpu_result(root / "good", folder="good")
        home = prepare_home(root / "home", "sqlite")
        os.environ["DAGSTER_HOME"] = str(home)
        with dg.DagsterInstance.get() as instance:
            res = run_load(root, good, args.uploads, args.experiments, instance)
            if args.ui:
                t0 = time.perf_counter()
                counts = record_history(instance, res["requests"])
                recorded_s = time.perf_counter() - t0
                parts = len(instance.get_materialized_partitions(dg.AssetKey("raw_measurements")))
                board = instance.get_latest_materialization_event(dg.AssetKey("leaderboard")).asset_materialization
                rows = int(board.metadata["dagster/row_count"].value)
        for name in ("results inbox (hold)", "results inbox (request)", "experiment inbox"):
            print(summary(name, res[name]))
        print(
            f"end to end: {args.uploads} uploads and {args.experiments} experiment files from the inbox to every "
            f"run requested once: {res['end_to_end_s']:.1f} s (LEM_INBOX_BATCH {inbox_batch()})"
        )
        if args.ui:
            print(
                f"instance when timed: {counts['raw_measurements']} raw_measurements materializations ({parts} "
                f"partitions), {counts['cycle_statistics']} cycle_statistics, {counts['leaderboard']} leaderboard; "
                f"recorded in {recorded_s:.1f} s"
            )
            pages = {  # the page, and a text it shows only once drawn from the instance's data (the UI writes
                # 1650 as "1,650": the first full-size run waited for "1650" and timed out)
                "leaderboard": ("/assets/leaderboard", shown(str(rows), f"{rows:,}")),  # the latest row count
                "raw_measurements": (
                    "/assets/raw_measurements?view=partitions",
                    shown(f"Materialized ({parts})", f"Materialized ({parts:,})"),
                ),
            }
            with webserver(home, res["storage"].root) as url:
                medians, chromium = time_ui(url, pages)
            print(f"UI timed with Dagster {dg.__version__}, Chromium {chromium} (headless)")
            for asset, s in medians.items():
                print(f"UI asset page {asset}: {s:.2f} s (median of 3)")
        shutil.rmtree(root / "storage", ignore_errors=True)


if __name__ == "__main__":
    main()
