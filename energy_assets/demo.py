"""The README's demo: Dagster on its embedded SQLite instance, the builtin models, a two-partition campaign.

    python -m energy_assets.demo            # runs until Ctrl-C, UI at the printed URL
    python -m energy_assets.demo --exit     # stop once the leaderboard is built (CI smoke test)
    python -m energy_assets.demo --campaign examples/campaign-gpu --exit --evidence out/   # make demo-gpu

The campaign goes through the real path: experiment files land in the inbox, the experiment_inbox sensor
registers partitions and queues runs, the daemon runs them one per hardware at a time, and the automation
sensor builds statistics and the leaderboard.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

from energy_assets.local import REPO, Platform, PlatformError, prepare_home


def _print_leaderboard(storage: Path) -> None:
    import pandas as pd

    lb = pd.read_parquet(storage / "assets" / "leaderboard.parquet")
    cols = [
        "rank_label",
        "experiment_key",
        "hardware",
        "sweep_point",
        "tokens_per_s_mean",
        "tokens_per_s_ci95",
        "ttft_p50_pooled_s",
        "cv",
        "energy_status",
        "raw_run_id",
    ]
    print(lb[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
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
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument(
        "--evidence",
        default=None,
        help="when done, write the leaderboard CSV, the site, the dataset card, the "
        "daemon's log and the campaign's timing (campaign.json) into this folder",
    )
    args = ap.parse_args(argv)

    # Ctrl-C or a TERM stops Dagster cleanly, also when a non-interactive shell started us with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)

    home, storage = Path(args.home).resolve(), Path(args.storage).resolve()
    prepare_home(home)
    os.environ.update(DAGSTER_HOME=str(home), LEM_STORAGE=str(storage))
    from gpu_ops.models.builtin import BUILTIN_MODELS, ensure_builtin

    for name in BUILTIN_MODELS:
        print(f"builtin:{name} -> {ensure_builtin(name)}")
    inbox = storage / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    files = sorted(Path(args.campaign).glob("*.yaml"))
    for f in files:
        shutil.copyfile(f, inbox / f.name)
    print(f"campaign: {', '.join(f.name for f in files)} -> {inbox}")
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


def _run(args, home: Path, storage: Path, files: list[Path]) -> int:
    import dagster as dg

    expected = campaign_partitions(files)
    began = time.time()
    with Platform(home, storage, port=args.port, workspace=Path(args.workspace)) as platform:
        print(f"\nDagster UI: {platform.url}   (asset graph: {platform.url}/asset-groups)\n", flush=True)
        instance = dg.DagsterInstance.get()
        deadline = time.monotonic() + args.timeout
        last, failed = "", {}
        while time.monotonic() < deadline:
            ev = instance.get_latest_materialization_event(dg.AssetKey("leaderboard"))
            runs = instance.get_runs(limit=50)
            line = (
                f"runs: {sum(r.status.value == 'SUCCESS' for r in runs)} succeeded, "
                f"{sum(r.status.value in ('STARTED', 'QUEUED', 'STARTING') for r in runs)} active, "
                f"{sum(r.status.value == 'FAILURE' for r in runs)} failed"
            )
            if line != last:
                print(line, flush=True)
                last = line
            for r in runs:  # a failed partition is reported as it fails; the others go on
                if r.status.value == "FAILURE" and r.run_id not in failed:
                    failed[r.run_id] = r.tags.get("dagster/partition", "?")
                    print(
                        f"run {r.run_id} ({failed[r.run_id]}) failed: {failure_reason(instance, r.run_id)}; "
                        f"{platform.url}/runs/{r.run_id}",
                        file=sys.stderr,
                        flush=True,
                    )
            active = any(r.status.value in ("STARTED", "QUEUED", "STARTING", "NOT_STARTED") for r in runs)
            # done when every campaign partition is on the leaderboard or has failed, and nothing is pending
            # (a second `make demo` on the same home finds it built already: the inbox has nothing new)
            ranked = _leaderboard_partitions(storage) if ev else set()
            if not active and expected <= ranked | set(failed.values()):
                if ranked:
                    print("\nleaderboard:")
                    _print_leaderboard(storage)
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
                        from energy_assets.evidence import write_evidence

                        for path in write_evidence(instance, platform, storage, Path(args.evidence), since=began):
                            print(f"evidence: {path}")
                if failed:
                    print(
                        f"{len(failed)} partition(s) failed: {', '.join(sorted(set(failed.values())))} "
                        "(reasons above; nothing of theirs was stored)",
                        file=sys.stderr,
                    )
                    return 1
                break
            time.sleep(3)
        else:
            print(
                f"timed out after {args.timeout:.0f} s waiting for the leaderboard; see {platform.url}/runs",
                file=sys.stderr,
            )
            return 1
        if args.exit:
            return 0
        print("Dagster keeps running; Ctrl-C stops it.", flush=True)
        while all(p.poll() is None for p in platform.procs):
            time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
