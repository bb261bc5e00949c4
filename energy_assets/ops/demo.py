"""The README's demo: Dagster on its embedded SQLite instance, the builtin models, a two-partition campaign.

    python -m energy_assets.ops.demo            # runs until Ctrl-C, UI at the printed URL
    python -m energy_assets.ops.demo --exit     # stop once the leaderboard is built (CI smoke test)
    python -m energy_assets.ops.demo --campaign examples/campaign-gpu --exit --evidence out/   # make demo-gpu
    python -m energy_assets.ops.demo --campaign examples/campaign-gpu --exit --passes 2 --evidence out/  # warm worker

With `--passes N` the same campaign is measured N times on the same platform (one worker, its engines and caches
kept between passes): each pass drops the files into the inbox again under a `passN-K-` prefix (drop_campaign: a new
file name is a new run key for the inbox sensor; even passes run the files in reverse order, starting on the engine
the previous pass ended with) and writes its own evidence folder, `OUT/pass-N/`, whose campaign.json says how that
pass spent its wall time.

The campaign goes through the real path: experiment files land in the inbox, the experiment_inbox sensor
registers partitions and queues runs, the daemon runs them one per hardware at a time, and the automation
sensor builds statistics and the leaderboard.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

from energy_assets.ops.local import REPO, Platform, PlatformError, prepare_home
from gpu_ops.readable import number


def _print_leaderboard(storage: Path) -> None:
    import pandas as pd

    from gpu_ops.schema import DEMO_LEADERBOARD

    lb = pd.read_parquet(storage / "assets" / "leaderboard.parquet")
    print(lb[list(DEMO_LEADERBOARD.names)].to_string(index=False, float_format=lambda v: number(v, 4)))
    reasons = lb.unmeasured_reason.dropna().unique()
    if len(reasons):
        print(f"energy: unmeasured on this machine ({reasons[0]}); on a GPU worker the same campaign records J/token.")
    for reason in lb.not_ranked_reason.dropna().unique():  # docs/methodology.md: stored and shown, not ranked
        print(f"not ranked ({(lb.not_ranked_reason == reason).sum()} row(s)): {reason}")


def _first_run(url: str, storage: Path) -> str:
    """The run page of the leaderboard's first row (a full run id: a short one finds no run)."""
    import pandas as pd

    ids = pd.read_parquet(storage / "assets" / "leaderboard.parquet", columns=["raw_run_id"]).raw_run_id
    return f"{url}/runs/{ids.iloc[0]}" if len(ids) else f"{url}/runs"


def campaign_partitions(files: list[Path]) -> set[str]:
    """The `experiment|hardware` partitions the campaign's files define, as the experiment inbox registers them."""
    from energy_assets.resources import GpuResource
    from gpu_ops.config import load_config

    gpu = GpuResource(visible_devices=os.environ.get("LEM_VISIBLE_DEVICES"))
    out = set()
    for f in files:
        cfg = load_config(f)
        experiment = cfg.experiment_key()
        out |= {f"{experiment}|{hw}" for hw in (cfg.hardware or [gpu.local_profile(cfg.gpus)])}
    return out


def _leaderboard_partitions(storage: Path) -> set[str]:
    import pandas as pd

    path = storage / "assets" / "leaderboard.parquet"
    return set(pd.read_parquet(path, columns=["partition_key"]).partition_key) if path.is_file() else set()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=str(REPO / ".dagster_home"))
    ap.add_argument("--storage", default=str(REPO / "var" / "storage"))
    ap.add_argument("--port", type=int, default=3000)
    ap.add_argument("--campaign", default=str(REPO / "examples" / "campaign"))
    ap.add_argument(
        "--workspace", default=str(REPO / "workspace.yaml"), help="Dagster workspace file (the code location)"
    )
    ap.add_argument("--exit", action="store_true", help="stop once the leaderboard holds every campaign partition")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds each pass may take")
    ap.add_argument(
        "--passes",
        type=int,
        default=1,
        help="measure the campaign this many times on the same platform (a warm worker's second pass)",
    )
    ap.add_argument(
        "--evidence",
        default=None,
        help="when done, write the leaderboard CSV, the site, the dataset card, the "
        "daemon's log and the campaign's timing (campaign.json) into this folder",
    )
    args = ap.parse_args(argv)
    if args.passes < 1:
        ap.error("--passes: give 1 or more")

    # Ctrl-C or a TERM stops Dagster cleanly, also when a non-interactive shell started us with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)

    home, storage = Path(args.home).resolve(), Path(args.storage).resolve()
    prepare_home(home)
    os.environ.update(DAGSTER_HOME=str(home), LEM_STORAGE=str(storage))
    os.environ.setdefault("LEM_SENSOR_INTERVAL_S", "5")  # one machine, a short campaign: each hop waits less
    from gpu_ops.models.builtin import BUILTIN_MODELS, ensure_builtin

    for name in BUILTIN_MODELS:
        print(f"builtin:{name} -> {ensure_builtin(name)}")
    files = sorted(Path(args.campaign).glob("*.yaml"))
    try:
        return _run(args, home, storage, files)
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped: Dagster webserver and daemon shut down", flush=True)
        return 0


def failure_reason(instance, run_id: str) -> str:
    """The first line of the error that failed a run (the innermost cause: our UserError, not Dagster's wrapper)."""
    for entry in instance.all_logs(run_id):
        data = getattr(entry.dagster_event, "event_specific_data", None) if entry.dagster_event else None
        error = getattr(data, "error", None)
        if error is not None:
            while error.cause is not None:
                error = error.cause
            first = error.message.strip().splitlines()[0]
            return re.sub(r"^[\w.]+(Error|Exception): ", "", first)  # "gpu_ops.errors.UserError: ..." reads as "..."
    return "no error recorded (see the run's logs)"


PASS_FILE = re.compile(r"pass\d+-\d+-(?P<name>.+)")


def drop_campaign(inbox: Path, files: list[Path], n: int) -> list[Path]:
    """Copy the campaign's files into the inbox for pass `n`, after removing the files an earlier pass dropped (so
    one file defines each partition at a time). Pass 1 keeps the files' names; pass N names them `passN-K-<name>`: a
    new name is a new run key for the inbox sensor, and K orders them, the sensor queueing runs in name order. Even
    passes run the files in reverse order, so a pass starts on the engine the previous one ended with: a warm worker
    keeps one engine per GPU, and this order reuses it once per pass instead of never."""
    inbox.mkdir(parents=True, exist_ok=True)
    names = {f.name for f in files}
    for old in inbox.glob("*.yaml"):
        earlier = PASS_FILE.fullmatch(old.name)
        if old.name in names or (earlier and earlier["name"] in names):
            old.unlink()
    order = files if n % 2 else files[::-1]
    dropped = []
    for k, f in enumerate(order):
        target = inbox / (f.name if n == 1 else f"pass{n}-{k}-{f.name}")
        shutil.copyfile(f, target)
        dropped.append(target)
    return dropped


def pass_runs(instance, since: float) -> list:
    """The measurement runs created since `since` (a timestamp): one pass's runs."""
    import dagster as dg

    records = instance.get_run_records(dg.RunsFilter(job_name="measure"))
    return [r for r in records if r.create_timestamp.timestamp() >= since]


ACTIVE = ("STARTED", "QUEUED", "STARTING", "NOT_STARTED")


def refused(instance, expected: set[str], since: float) -> dict[str, str]:
    """The automation's runs (statistics and their checks) whose latest for a campaign partition failed since `since`
    (run id -> partition): statistics refuse a partition with too few cycles, say. Its measurement was stored, but it
    will never rank, so the pass does not wait for it."""
    from datetime import UTC, datetime

    import dagster as dg

    records = instance.get_run_records(dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC)))
    latest = {}
    for r in sorted(records, key=lambda r: r.create_timestamp):
        partition = r.dagster_run.tags.get("dagster/partition")
        if r.dagster_run.job_name != "measure" and partition in expected:
            latest[partition] = r.dagster_run
    return {run.run_id: p for p, run in latest.items() if run.status.value == "FAILURE"}


def pass_done(instance, storage: Path, expected: set[str], since: float, first: bool) -> tuple[bool, dict[str, str]]:
    """Whether the pass that began at `since` is over, and its failed runs (run id -> partition).

    The first pass is over when every expected partition is on the leaderboard or has failed and nothing is pending
    (a second `make demo` on the same home finds it built already: the inbox has nothing new). A later pass re-measures
    the same partitions, so it waits for its own runs: each expected partition has one that finished, and the
    leaderboard was rebuilt after the last of them ended."""
    import dagster as dg

    records = pass_runs(instance, 0.0 if first else since)
    runs = [r.dagster_run for r in records]
    failed = {r.run_id: r.tags.get("dagster/partition", "?") for r in runs if r.status.value == "FAILURE"}
    if any(r.status.value in ACTIVE for r in runs):
        return False, failed
    failed |= refused(instance, expected, 0.0 if first else since)
    ev = instance.get_latest_materialization_event(dg.AssetKey("leaderboard"))
    ranked = _leaderboard_partitions(storage) if ev else set()
    if first:
        return expected <= ranked | set(failed.values()), failed
    finished = {r.tags.get("dagster/partition") for r in runs}
    succeeded = finished - set(failed.values())
    if not expected <= finished or not succeeded:
        return expected <= finished, failed
    # the leaderboard follows the runs that stored something; a failed run can end after it was rebuilt
    last_end = max((r.end_time or 0) for r in records if r.dagster_run.status.value == "SUCCESS")
    return ev is not None and ev.timestamp >= last_end and succeeded <= ranked, failed


def _run(args, home: Path, storage: Path, files: list[Path]) -> int:
    import dagster as dg

    expected = campaign_partitions(files)
    with Platform(home, storage, port=args.port, workspace=Path(args.workspace)) as platform:
        print(f"\nDagster UI: {platform.url}   (asset graph: {platform.url}/asset-groups)\n", flush=True)
        instance = dg.DagsterInstance.get()
        failed_any: set[str] = set()
        for n in range(1, args.passes + 1):
            began = time.time()
            dropped = drop_campaign(storage / "inbox", files, n)
            print(f"pass {n}: {', '.join(f.name for f in dropped)} -> {storage / 'inbox'}", flush=True)
            failed = _wait_pass(args, instance, platform, storage, expected, began, first=n == 1)
            if failed is None:
                return 1
            failed_any |= set(failed.values())
            ranked = _leaderboard_partitions(storage)
            if ranked and expected - set(failed.values()):
                print("\nleaderboard:" if args.passes == 1 else f"\nleaderboard after pass {n}:")
                _print_leaderboard(storage)
                if n == 1:
                    print(
                        f"\nOpen {platform.url}/assets/leaderboard: in its `top` metadata each row links to its run "
                        f"and its raw partition (resolved config and environment), e.g. "
                        f"{_first_run(platform.url, storage)}"
                    )
                    print(
                        f"The automation also builds the static site ({storage / 'site' / 'index.html'}) and the "
                        f"HuggingFace dataset folder ({storage / 'hf_dataset'}; publishing is dry-run until "
                        "LEM_HF_REPO and HF_TOKEN are set)."
                    )
                if args.evidence:
                    from energy_assets.ops.evidence import write_evidence

                    out = Path(args.evidence) / f"pass-{n}" if args.passes > 1 else Path(args.evidence)
                    for path in write_evidence(instance, platform, storage, out, since=began):
                        print(f"evidence: {path}")
                    timing = json.loads((out / "campaign.json").read_text())
                    if timing.get("share_in_windows") is not None:
                        print(
                            f"pass {n}: wall {timing['wall_s']:.1f} s, cycle windows {timing['windows_s']:.1f} s, "
                            f"share in windows {timing['share_in_windows']:.4f}",
                            flush=True,
                        )
            if failed:
                print(
                    f"pass {n}: {len(failed)} partition(s) failed: {', '.join(sorted(set(failed.values())))} "
                    "(reasons above; none of them is on the leaderboard)",
                    file=sys.stderr,
                )
        if failed_any:
            return 1
        if args.exit:
            return 0
        print("Dagster keeps running; Ctrl-C stops it.", flush=True)
        while all(p.poll() is None for p in platform.procs):
            time.sleep(1)
    return 0


def _wait_pass(
    args, instance, platform, storage: Path, expected: set[str], began: float, first: bool
) -> dict[str, str] | None:
    """Poll until the pass is over (its failed runs, reported as they fail), or None after --timeout."""
    deadline = time.monotonic() + args.timeout
    last, reported = "", set()
    while time.monotonic() < deadline:
        runs = [r.dagster_run for r in pass_runs(instance, began)]
        line = (
            f"runs: {sum(r.status.value == 'SUCCESS' for r in runs)} succeeded, "
            f"{sum(r.status.value in ACTIVE for r in runs)} active, "
            f"{sum(r.status.value == 'FAILURE' for r in runs)} failed"
        )
        if line != last:
            print(line, flush=True)
            last = line
        done, failed = pass_done(instance, storage, expected, began, first)
        for run_id, partition in failed.items():  # a failed partition is reported as it fails; the others go on
            if run_id not in reported:
                reported.add(run_id)
                print(
                    f"run {run_id} ({partition}) failed: {failure_reason(instance, run_id)}; "
                    f"{platform.url}/runs/{run_id}",
                    file=sys.stderr,
                    flush=True,
                )
        if done:
            return failed
        time.sleep(3)
    print(f"timed out after {args.timeout:.0f} s waiting for the leaderboard; see {platform.url}/runs", file=sys.stderr)
    return None


if __name__ == "__main__":
    sys.exit(main())
