"""Inbox load: N signed result folders and M experiment files land at once; the real sensors drain them in bounded
ticks (LEM_INBOX_BATCH items each, the rest left for the next tick). Prints each tick's time, the slowest tick
against Dagster's 60 s sensor timeout, the end-to-end time (inbox to every run requested), and checks that nothing
was dropped or requested twice. With --ui, a webserver on the same instance answers the leaderboard and raw
partition asset pages, timed (median of 3).

    python -m benchmarks.inbox_load --uploads 500 --experiments 50 [--ui]
"""

from __future__ import annotations

import argparse
import json
import os
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
    }


ASSET_PAGE = """query ($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  id description partitionKeysByDimension { name partitionKeys }
  assetPartitionStatuses { __typename ... on MultiPartitionStatuses { primaryDimensionName } }
  assetMaterializations(limit: 1) { runId timestamp } } } }"""


def time_ui(home: Path, storage_root: Path, repeats: int = 3) -> dict[str, float]:
    """Start a webserver on the instance and time the GraphQL query behind each asset page (median of `repeats`)."""
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
        url, deadline = f"http://127.0.0.1:{port}/graphql", time.monotonic() + 180
        while True:
            try:
                if requests.post(url, json={"query": "{ version }"}, timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the webserver did not start")
            time.sleep(1)
        out = {}
        for asset in ("leaderboard", "raw_measurements"):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                r = requests.post(url, json={"query": ASSET_PAGE, "variables": {"key": {"path": [asset]}}}, timeout=120)
                r.raise_for_status()
                if "errors" in r.json():
                    raise RuntimeError(f"{asset} page: {json.dumps(r.json()['errors'])[:300]}")
                times.append(time.perf_counter() - t0)
            out[asset] = statistics.median(times)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=500)
    ap.add_argument("--experiments", type=int, default=50)
    ap.add_argument("--ui", action="store_true", help="also time the leaderboard and raw partition asset pages")
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
        for name in ("results inbox (hold)", "results inbox (request)", "experiment inbox"):
            print(summary(name, res[name]))
        print(
            f"end to end: {args.uploads} uploads and {args.experiments} experiment files from the inbox to every "
            f"run requested once: {res['end_to_end_s']:.1f} s (LEM_INBOX_BATCH {inbox_batch()})"
        )
        if args.ui:
            for asset, s in time_ui(home, res["storage"].root).items():
                print(f"UI asset page {asset}: {s:.2f} s (median of 3)")
        shutil.rmtree(root / "storage", ignore_errors=True)


if __name__ == "__main__":
    main()
