"""What a finished campaign leaves as evidence (docs/benchmarks/platform-gpu/): the leaderboard as CSV, the site as a
tarball, the dataset card, the daemon's log, and the campaign's timing from the run records.

The timing: wall time from the first measurement run's start to the last one's end, and the share of it inside
measured cycle windows (summed from the raw partitions' windows tables). Everything else, idle baselines, the
wait for the GPU to settle, model loads, warm-up and compilation, process start, counts against the share.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd

RAW = dg.AssetKey("raw_measurements")


def campaign_timing(instance: dg.DagsterInstance, storage: Path, since: float = 0.0) -> dict:
    """Wall time and measured-window share of the campaign's measurement runs (one per raw partition), counting the
    runs that started after `since` (a timestamp) and the raw partitions they wrote."""
    records = [r for r in instance.get_run_records(dg.RunsFilter(job_name="measure")) if (r.start_time or 0) >= since]
    written = {r.dagster_run.tags.get("dagster/partition") for r in records}
    runs = [
        {
            "run_id": r.dagster_run.run_id,
            "partition": r.dagster_run.tags.get("dagster/partition"),
            "status": r.dagster_run.status.value,
            "start": r.start_time,
            "end": r.end_time,
        }
        for r in records
    ]
    done = [r for r in runs if r["start"] and r["end"]]
    if not done:
        return {"runs": runs, "wall_s": None, "windows_s": None, "share_in_windows": None}
    wall = max(r["end"] for r in done) - min(r["start"] for r in done)
    kinds: dict[str, float] = {}
    for folder in (storage / "assets" / "raw_measurements").glob("*/*"):
        if f"{folder.parent.name}|{folder.name}" in written and (folder / "windows.parquet").is_file():
            w = pd.read_parquet(folder / "windows.parquet", columns=["kind", "duration_s"])
            for kind, seconds in w.groupby("kind").duration_s.sum().items():
                kinds[kind] = kinds.get(kind, 0.0) + float(seconds)
    for r in done:
        r["seconds"] = r["end"] - r["start"]
    return {
        "runs": runs,
        "wall_s": wall,
        "windows_s": kinds.get("cycle", 0.0),
        "window_seconds_by_kind": kinds,
        "share_in_windows": kinds.get("cycle", 0.0) / wall if wall else None,
    }


def _wait_for(instance: dg.DagsterInstance, key: str, after: float, timeout_s: float = 180) -> None:
    """The automation builds the site and the dataset snapshot after the leaderboard: wait for both."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ev = instance.get_latest_materialization_event(dg.AssetKey(key))
        if ev is not None and ev.timestamp >= after:
            return
        time.sleep(3)
    raise TimeoutError(f"{key} was not rebuilt within {timeout_s:.0f} s after the leaderboard")


def write_evidence(instance: dg.DagsterInstance, platform, storage: Path, out: Path, since: float = 0.0) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    leaderboard_at = instance.get_latest_materialization_event(dg.AssetKey("leaderboard")).timestamp
    for key in ("leaderboard_site", "hf_dataset_snapshot"):
        _wait_for(instance, key, leaderboard_at)
    written = []
    lb = pd.read_parquet(storage / "assets" / "leaderboard.parquet")
    lb.to_csv(out / "leaderboard.csv", index=False)
    written.append(out / "leaderboard.csv")
    with tarfile.open(out / "site.tgz", "w:gz") as tar:
        tar.add(storage / "site", arcname="site")
    written.append(out / "site.tgz")
    shutil.copyfile(storage / "hf_dataset" / "README.md", out / "dataset-card.md")
    written.append(out / "dataset-card.md")
    shutil.copyfile(platform.log_dir / "daemon.log", out / "daemon.log")
    written.append(out / "daemon.log")
    (out / "campaign.json").write_text(json.dumps(campaign_timing(instance, storage, since), indent=1, default=str))
    written.append(out / "campaign.json")
    return written
