"""What a finished campaign leaves as evidence (docs/benchmarks/platform-gpu/): the leaderboard as CSV, the site as a
tarball, the dataset card, the daemon's log, the campaign's timing from the run records, and one leaderboard number
traced back to its raw windows by the provenance columns alone (trace.md).

The timing: wall time from the first measurement run's start to the last one's end, the share of it inside
measured cycle windows (summed from the raw partitions' windows tables), and the whole wall time by kind (process
start, weights, engine start, compile, warm-up, idle baselines, settle, cycle windows, bookkeeping, gaps between
queued runs, and `other` for what no span covers): everything but the cycle windows counts against the share.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from energy_assets.partitions import split
from gpu_ops.rederive import same
from gpu_ops.results import read_tables
from gpu_ops.schema import HEADLINE_FIGURES, LEADERBOARD_PROVENANCE
from gpu_ops.timing import Span, breakdown

RAW = dg.AssetKey("raw_measurements")


def campaign_timing(instance: dg.DagsterInstance, storage: Path, since: float = 0.0) -> dict:
    """Wall time and measured-window share of the campaign's measurement runs (one per raw partition), counting the
    runs that started after `since` (a timestamp) and the raw partitions they wrote, and the wall time broken down
    by kind (gpu_ops.timing.KINDS and `other`; they sum to the wall time): each run's own measurement spans (its
    summary.json's wall_time), its process start (the run's start to its measurement's), its bookkeeping after the
    measurement (storing, checks) and the gaps between queued runs."""
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
    done = sorted((r for r in runs if r["start"] and r["end"]), key=lambda r: r["start"])
    if not done:
        return {"runs": runs, "wall_s": None, "windows_s": None, "share_in_windows": None}
    first, last = done[0]["start"], max(r["end"] for r in done)
    wall = last - first
    kinds: dict[str, float] = {}
    measured: dict[str, dict] = {}  # partition -> its measurement's wall_time (summary.json)
    started: dict[str, float | None] = {}  # partition -> seconds its measurement spent starting engines
    for folder in (storage / "assets" / "raw_measurements").glob("*/*"):
        key = f"{folder.parent.name}|{folder.name}"
        if key in written and (folder / "windows.parquet").is_file():
            w = pd.read_parquet(folder / "windows.parquet", columns=["kind", "duration_s"])
            for kind, seconds in w.groupby("kind").duration_s.sum().items():
                kinds[kind] = kinds.get(kind, 0.0) + float(seconds)
            summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
            if isinstance(summary.get("wall_time"), dict):
                measured[key] = summary["wall_time"]
            started[key] = started_engine_s(summary)
    spans = []
    for prev, r in zip([None, *done], done):
        r["seconds"] = r["end"] - r["start"]
        if prev is not None and r["start"] > prev["end"]:
            spans.append(Span("queue_gap", prev["end"], r["start"]))
        m = measured.get(r["partition"]) if r["status"] == "SUCCESS" else None
        if m is None or not r["start"] <= m["start"] <= m["end"] <= r["end"]:
            continue  # a failed run, or one whose stored partition a later run rewrote: its time stays `other`
        own = [
            Span("process_start", r["start"], m["start"]),
            *(Span.from_dict(d) for d in m["spans"]),
            Span("bookkeeping", m["end"], r["end"]),
        ]
        spans += own
        r["seconds_by_kind"] = breakdown(own, r["start"], r["end"])
        r["engine_start_s"] = started.get(r["partition"])
    return {
        "runs": runs,
        "wall_s": wall,
        "windows_s": kinds.get("cycle", 0.0),
        "window_seconds_by_kind": kinds,
        "share_in_windows": kinds.get("cycle", 0.0) / wall if wall else None,
        "wall_seconds_by_kind": breakdown(spans, first, last),
    }


def started_engine_s(summary: dict) -> float | None:
    """Seconds a measurement's own engine starts took (each engine's start_s, from asking for it to its engine loaded,
    with its process's imports unless a spare had done them before: no eviction of the engine before it, no stop
    after the run), summed over the engines the run started; 0 when it found them all warm; None when the summary
    records no engines."""
    engines = (summary.get("fingerprint") or {}).get("engines")
    if not isinstance(engines, list):
        return None
    return float(sum(e.get("engine_start_s") or 0.0 for e in engines if not e.get("engine_reused")))


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
    (out / "trace.md").write_text(trace_markdown(instance, storage / "assets" / "raw_measurements", lb))
    written.append(out / "trace.md")
    return written


def trace_markdown(instance: dg.DagsterInstance, raw_root: Path, lb: pd.DataFrame) -> str:
    """The leaderboard's best measured row (else its first) followed back to its raw windows using only its provenance
    columns, each step checked against the stored data: ✓ where it agrees, ✗ where it does not."""
    measured = lb[lb.j_per_token_mean.notna()]
    row = (measured.sort_values("rank_j_per_token") if len(measured) else lb).iloc[0]
    metric = HEADLINE_FIGURES.names[0 if len(measured) else 1]
    value = row[f"{metric}_mean"]
    lines = [f"# Tracing {metric} = {value:.6g} of {row.model} on {row.hardware}, sweep point `{row.sweep_point}`", ""]
    mark = {True: "✓", False: "✗"}
    problems = 0

    def step(text: str, ok: bool) -> None:
        nonlocal problems
        problems += not ok
        lines.append(f"- {mark[ok]} {text}")

    lines += ["## 1. The leaderboard row's provenance", ""]
    for col in LEADERBOARD_PROVENANCE.names:
        lines.append(f"- `{col}` = `{row[col]}`")
    lines += ["", "## 2. The raw materialization it names (Dagster's event log)", ""]
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_measurements"), asset_partitions=[row.partition_key]),
        limit=1,
    ).records
    if records:
        rec = records[0]
        step(
            f"latest materialization of `{row.partition_key}`: storage id {rec.storage_id}",
            rec.storage_id == row.raw_storage_id,
        )
        step(f"its run `{rec.run_id}`", rec.run_id == row.raw_run_id)
        version = rec.event_log_entry.asset_materialization.tags.get("dagster/data_version")
        step(f"its data version `{version}`", version == row.raw_data_version)
    else:
        step(f"no materialization of `{row.partition_key}` in this instance", False)
    lines += ["", "## 3. The stored raw partition (its folder, read with every checksum verified)", ""]
    experiment, hardware = split(row.partition_key)
    folder = raw_root / experiment / hardware
    t = read_tables(folder)
    exp = t.experiment.iloc[0]
    point = t.sweep_points[t.sweep_points.sweep_point == row.sweep_point]
    step(f"`{folder}`: content hash `{t.summary['content_hash']}`", t.summary["content_hash"] == row.raw_data_version)
    step(f"experiment hash `{exp.config_hash}`", exp.config_hash == row.experiment_hash)
    step(f"fingerprint hash `{exp.fingerprint_hash}`", exp.fingerprint_hash == row.fingerprint_hash)
    step(
        f"sweep point `{row.sweep_point}`: config hash `{point.config_hash.iloc[0] if len(point) else None}`",
        len(point) == 1 and point.config_hash.iloc[0] == row.sweep_point_hash,
    )
    lines += ["", "## 4. Its cycles (cycles.parquet)", ""]
    cycles = t.cycles[t.cycles.sweep_point == row.sweep_point].sort_values("cycle")
    lines += [
        "| cycle | duration s | output tokens | gross energy J | J/token | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for c in cycles.itertuples():
        lines.append(
            f"| {c.cycle} | {c.duration_s:.4f} | {c.output_tokens} | {c.gross_energy_j:.2f} | {c.j_per_token:.6g} | "
            f"{c.tokens_per_s:.6g} |"
        )
    lines.append("")
    step(
        f"mean of the {len(cycles)} cycles' {metric}: {cycles[metric].mean():.6g}",
        same(cycles[metric].mean(), value),
    )
    lines += ["", "## 5. Each cycle's window (windows.parquet): the energy counter, edges aligned", ""]
    windows = t.windows[(t.windows.kind == "cycle") & (t.windows.sweep_point == row.sweep_point)]
    lines += ["| cycle | start s | end s | counter J | ± J | timeline J |", "|---|---|---|---|---|---|"]
    for c in cycles.itertuples():
        w = windows[windows.cycle == c.cycle]
        if len(w) != 1:
            step(f"cycle {c.cycle}: {len(w)} windows", False)
            continue
        w = w.iloc[0]
        lines.append(
            f"| {c.cycle} | {w.start_s:.4f} | {w.end_s:.4f} | {w.gpu_energy_j:.2f} | {w.energy_uncertainty_j:.2f} | "
            f"{w.timeline_energy_j:.2f} |"
        )
        if metric == "j_per_token":
            step(
                f"cycle {c.cycle}: window energy / output tokens = {w.gpu_energy_j / c.output_tokens:.6g} J/token",
                same(w.gpu_energy_j, c.gross_energy_j) and same(w.gpu_energy_j / c.output_tokens, c.j_per_token),
            )
        else:
            step(
                f"cycle {c.cycle}: output tokens / window length = {c.output_tokens / w.duration_s:.6g} tokens/s",
                same(c.output_tokens / w.duration_s, c.tokens_per_s),
            )
    lines += ["", "every step agrees" if not problems else f"**{problems} step(s) disagree**", ""]
    return "\n".join(lines)
